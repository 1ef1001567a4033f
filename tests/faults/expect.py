"""What the run must produce, per accepted referral (the run's config: tests/support/loadrun.py).

Every referral is out of hours (a working week of one day that is neither today nor
the next two days), so each one makes: one intake row; a control-room alert at level
`control_room`, re-raised after R (`duty_inspector`) and 2R (`superintendent`) by two
timers; an email to the MASH team and an acknowledgement to the referrer at receipt,
and an email to the duty inspector at the first re-escalation.
"""
from __future__ import annotations

from tests.faults.checker import Expected
from tests.faults.load import Sent
from tests.faults.observe import Seen

REESCALATE_MIN = 0.1  # R = 6 s
LEVELS = ("control_room", "duty_inspector", "superintendent")
EMAILS = {"mash-team@dev-borough.example": 0, "referrer@dev-force.example": 0,
          "duty-inspector@dev-force.example": 1}  # recipient -> the re-escalation step it is due at


def expected(sent: list[Sent]) -> list[Expected]:
    step = REESCALATE_MIN * 60
    out = []
    for s in sent:
        out.append(Expected(("referral", s.client_reference, ""), s.first_try))
        if s.reference is None:
            continue  # never accepted: the referral is lost; nothing else can be expected of it
        out += [Expected(("email", s.reference, to), s.accepted + k * step) for to, k in EMAILS.items()]
        out += [Expected(("alert", s.reference, level), s.accepted + k * step) for k, level in enumerate(LEVELS)]
        out += [Expected(("timer", s.reference, level), s.accepted + k * step)
                for k, level in enumerate(LEVELS) if k]
    return out


def referral_rows(sent: list[Sent], rows: dict[str, list[str]], end: float) -> list[Seen]:
    """Each intake row, seen when its post was answered (or at the end if it never was)."""
    at = {s.client_reference: s.accepted or end for s in sent}
    return [Seen(at.get(client_ref, end), ("referral", client_ref, ""), ref)
            for client_ref, refs in rows.items() for ref in refs]


def timer_firings(audits: list) -> list[Seen]:
    """Each `alert.escalated` audit entry: one per re-escalation timer that fired."""
    return [Seen(a.at.timestamp(), ("timer", a.reference, a.detail["level"]), f"audit-{n}")
            for n, a in enumerate(audits)]
