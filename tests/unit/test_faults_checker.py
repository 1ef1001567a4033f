"""The fault-injection checker (tests/faults/checker.py) on a hand-made history: each
outcome is told apart and charged to the fault whose window overlaps it longest."""
from __future__ import annotations

from tests.faults.checker import Expected, Fault, classify, kind_rows
from tests.faults.observe import Seen


def seen(at: float, key: tuple, copy: str, redelivered: bool = False) -> Seen:
    return Seen(at, key, copy, redelivered)


def test_once_duplicated_lost_late_and_their_faults() -> None:
    a, b, c, d, e = (("email", f"PRV-2026-00000{i}", "mash") for i in range(5))
    expected = [Expected(k, 100.0) for k in (a, b, c, d, e)]
    history = [
        seen(101, a, "m-a"),  # once
        seen(102, b, "m-b"), seen(140, b, "m-b"),  # the same send twice (same Message-ID)
        seen(103, c, "m-c1"), seen(104, c, "m-c2"),  # two sends
        seen(400, e, "m-e"),  # late: 300 s after due
        seen(105, ("email", "PRV-2026-999999", "mash"), "m-x"),  # nobody expected it
    ]
    faults = [Fault("kill -9 notifier, restart", 130, 150), Fault("SMTP answers 451", 200, 230)]
    result = classify(expected, history, faults, bound_s=120, end=500)
    outcome = {v.key: v.outcome for v in result.verdicts}
    assert outcome == {a: "once", b: "duplicated", c: "duplicated", d: "lost", e: "late"}
    assert [v.same_copy for v in result.verdicts if v.outcome == "duplicated"] == [True, False]
    assert [s.copy_id for s in result.unexpected] == ["m-x"]
    assert result.charged["kill -9 notifier, restart"] == {"duplicated": 1}  # b: its two arrivals straddle it
    assert result.charged["SMTP answers 451"] == {"lost": 1, "late": 1}  # the longest overlap of due .. arrival/end
    assert result.charged["no fault"] == {"duplicated": 1}  # c: both copies came before any fault
    [row] = kind_rows(result)
    assert (row["expected"], row["once"], row["duplicated (same send again)"], row["duplicated (two sends)"],
            row["lost"], row["late"], row["max latency s"]) == (5, 1, 1, 1, 1, 1, "300.0")


def test_a_redelivery_to_the_tap_itself_is_not_a_duplicate() -> None:
    key = ("alert", "PRV-2026-000001", "control_room")
    history = [seen(101, key, "id-1"), seen(130, key, "id-1", redelivered=True)]
    result = classify([Expected(key, 100.0)], history, [], bound_s=120, end=200)
    assert [v.outcome for v in result.verdicts] == ["once"] and result.tap_redeliveries == 1
    republished = classify([Expected(key, 100.0)], [seen(101, key, "id-1"), seen(130, key, "id-1")], [],
                           bound_s=120, end=200)
    assert [(v.outcome, v.same_copy) for v in republished.verdicts] == [("duplicated", True)]


def test_a_duplicate_is_charged_to_the_fault_that_cut_off_its_first_send() -> None:
    key = ("email", "PRV-2026-000052", "mash")
    faults = [Fault("kill -9 notifier, restart", 50, 60), Fault("SMTP answers 451", 83, 103)]
    history = [seen(48.5, key, "m-1"), seen(222.0, key, "m-1")]  # re-sent long after, across the SMTP fault
    result = classify([Expected(key, 40.0)], history, faults, bound_s=120, end=300)
    assert result.charged == {"kill -9 notifier, restart": {"duplicated": 1}}
