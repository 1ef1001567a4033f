"""The checker, in the style of Jepsen's: every expected outcome of the run is classified
from what was observed, never from what the services say about themselves.

An item is `once` (one arrival, on time), `duplicated` (arrived more than once: either the
same send twice — same Message-ID / message id, the at-least-once window — or two
different sends), `lost` (never arrived) or `late` (one arrival, more than `bound_s` after
it was due). A duplicate is charged to the first fault whose window overlaps the span
between its first and last arrival (the sender died or was cut off after its first send);
a late or lost item to the fault overlapping longest the span from when it was due to
when it arrived (or the end of the run); "no fault" if none overlaps.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from statistics import median

from tests.faults.observe import Seen


@dataclass(frozen=True)
class Expected:
    key: tuple  # (kind, reference, detail)
    due: float  # epoch seconds


@dataclass(frozen=True)
class Fault:
    name: str
    start: float
    end: float


@dataclass
class Verdict:
    key: tuple
    outcome: str  # once | duplicated | lost | late
    latency: float | None
    same_copy: bool = False  # a duplicate that is the same send again (same id)
    arrived: tuple[float, ...] = ()


@dataclass
class Result:
    verdicts: list[Verdict] = field(default_factory=list)
    unexpected: list[Seen] = field(default_factory=list)  # arrivals nobody expected
    tap_redeliveries: int = 0  # broker redeliveries to the tap itself (not the system's doing)
    settled: dict[str, float] = field(default_factory=dict)  # reference -> when its last item first arrived
    charged: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))

    def count(self, outcome: str, kind: str | None = None) -> int:
        return sum(v.outcome == outcome and (kind is None or v.key[0] == kind) for v in self.verdicts)


def classify(expected: list[Expected], seen: list[Seen], faults: list[Fault], *, bound_s: float,
             end: float) -> Result:
    result = Result()
    arrivals: dict[tuple, list[Seen]] = defaultdict(list)
    ids_seen: set[tuple] = set()
    for s in sorted(seen, key=lambda s: s.at):
        if s.redelivered and (s.key, s.copy_id) in ids_seen:
            result.tap_redeliveries += 1
            continue
        ids_seen.add((s.key, s.copy_id))
        arrivals[s.key].append(s)
    wanted = {e.key for e in expected}
    result.unexpected = [s for k, v in arrivals.items() if k not in wanted for s in v]
    for e in expected:
        got = arrivals.get(e.key, [])
        latency = got[0].at - e.due if got else None
        times = tuple(s.at for s in got)
        if not got:
            v = Verdict(e.key, "lost", None)
        elif len(got) > 1:
            v = Verdict(e.key, "duplicated", latency, len({s.copy_id for s in got}) == 1, times)
        elif latency > bound_s:
            v = Verdict(e.key, "late", latency, arrived=times)
        else:
            v = Verdict(e.key, "once", latency, arrived=times)
        result.verdicts.append(v)
        if got:
            result.settled[e.key[1]] = max(result.settled.get(e.key[1], 0.0), got[0].at)
        if v.outcome == "duplicated":  # the sender died (or was cut off) after its first send
            first = next((f.name for f in faults if f.start <= got[-1].at and f.end >= got[0].at), "no fault")
            result.charged[first][v.outcome] += 1
        elif v.outcome != "once":
            result.charged[_longest(faults, e.due, got[0].at if got else end)][v.outcome] += 1
    return result


def _longest(faults: list[Fault], start: float, end: float) -> str:
    """The fault overlapping [start, end] the longest (a point span: the one it falls in)."""
    best, most = "no fault", -1.0
    for f in faults:
        overlap = min(f.end, end) - max(f.start, start)
        if overlap >= 0 and overlap > most:
            best, most = f.name, overlap
    return best


def kind_rows(result: Result) -> list[dict]:
    """One row per kind of item: how each was classified, with latencies."""
    rows = []
    for kind in dict.fromkeys(v.key[0] for v in result.verdicts):
        vs = [v for v in result.verdicts if v.key[0] == kind]
        lat = sorted(v.latency for v in vs if v.latency is not None)
        rows.append({
            "item": kind, "expected": len(vs), "once": sum(v.outcome == "once" for v in vs),
            "duplicated (same send again)": sum(v.outcome == "duplicated" and v.same_copy for v in vs),
            "duplicated (two sends)": sum(v.outcome == "duplicated" and not v.same_copy for v in vs),
            "lost": sum(v.outcome == "lost" for v in vs), "late": sum(v.outcome == "late" for v in vs),
            "median latency s": f"{median(lat):.1f}" if lat else "-", "max latency s": f"{lat[-1]:.1f}" if lat else "-",
        })
    return rows
