"""Every notification escalation can request is one the notifier can render.

escalation names a template and an audience in each NotificationRequested; the notifier
looks them up in its own table. The two services never import each other, so this test
(which may import both) is where a template one side asks for and the other lacks shows up.
"""
from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

import pytest

from services.escalation.adapters.effects import referral_times
from services.escalation.domain import ladder
from services.notifier.adapters.rendering import Renderer
from services.notifier.domain.recipients import audience_kind
from shared.config import EscalationTimings
from tests.escalation.test_ladder import CAL, T
from tests.factories import london, referral_received


def requested() -> set[tuple[str, str]]:
    pairs: set[tuple[str, str]] = set()
    for at in (london(2026, 11, 2, 14), london(2026, 11, 7, 10)):  # in hours, Saturday
        for risk in (False, True):
            plan = ladder.plan_receipt(referral_received(at, immediate_risk=risk), CAL, T)
            pairs |= {(n.template, n.audience) for n in plan.notifications}
    for template, audiences, _ in ladder.TIMER_ACTIONS.values():
        pairs |= {(template, a) for a in audiences}
    # handlers._reescalate: one level up, to that level's force contact
    pairs |= {("alert_escalated", f"force:{level}") for level in EscalationTimings().alert_levels[1:]}
    return pairs


@pytest.mark.parametrize("template,audience", sorted(requested()))
def test_the_notifier_renders_what_escalation_requests(template, audience):
    renderer = Renderer(public_base_url="https://relay.example")
    kind = audience_kind(audience)
    assert renderer.supports(template, kind), f"notifier has no {template}.{kind} template"
    ev = referral_received(london(2026, 11, 2, 14))
    times = referral_times(SimpleNamespace(  # as escalation sends them (a strategy discussion asked for)
        received_at=ev.received_at, acknowledge_by=ev.acknowledge_by, checks_due_by=ev.checks_due_by,
        strategy_by=ev.received_at + timedelta(hours=1), strategy_recorded_at=None))
    out = renderer.render(template=template, kind=kind, reference=ev.reference, times=times,
                          urgent=template in ("immediate_safety", "alert_escalated"))
    assert ev.reference in out.subject
