"""Control-room alerts: signed acknowledgement API and re-escalation one level up."""
from __future__ import annotations

from datetime import timedelta

import aiohttp
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select

from services.escalation.adapters.tables import alerts, audit, timers
from services.escalation.bootstrap import TIMERS
from shared.httpsig import authority_of, sign_request
from shared.messages import ControlRoomAlert
from tests.factories import london, referral_received
from tests.support.processes import free_port

pytestmark = [pytest.mark.broker, pytest.mark.database]


async def _alert(esc) -> ControlRoomAlert:
    [message] = await esc.take("control-room.dev-force", timeout=5)
    return ControlRoomAlert.model_validate_json(message.body)


async def _post(server, alert_id: str, client_id: str | None, key=None) -> tuple[int, str, dict]:
    path = f"/v1/alerts/{alert_id}/acknowledgement"
    body = b"{}"
    headers = {"Content-Type": "application/json"}
    if client_id:
        headers |= sign_request(method="POST", path=path, body=body, key_id=client_id, key=key,
                                authority=authority_of(server.make_url(path)))
    async with aiohttp.ClientSession() as session:
        async with session.post(server.make_url(path), data=body, headers=headers) as resp:
            return resp.status, resp.content_type, await resp.json(content_type=None)


async def test_signed_acknowledgement_checks_role_and_force_is_idempotent_and_stops_reescalation(esc):
    async with esc.app() as server:
        await esc.publish(referral_received(london(2026, 11, 7, 10)))
        alert = await _alert(esc)
        status, ctype, body = await _post(server, alert.alert_id, None)
        assert (status, ctype, body["type"]) == (401, "application/problem+json", "/problems/unauthenticated")
        status, _, body = await _post(server, alert.alert_id, "dev-social-care", esc.client_key("dev-social-care"))
        assert (status, body["type"]) == (403, "/problems/forbidden")
        status, _, _ = await _post(server, alert.alert_id, "other-control-room", esc.other_key)
        assert status == 403
        status, _, _ = await _post(server, "no-such-alert", "dev-control-room", esc.client_key("dev-control-room"))
        assert status == 404
        key = esc.client_key("dev-control-room")
        status, _, body = await _post(server, alert.alert_id, "dev-control-room", key)
        assert status == 200
        assert (body["status"], body["acknowledged_by"], body["level"]) == ("acknowledged", "dev-control-room",
                                                                             "control_room")
        status, _, again = await _post(server, alert.alert_id, "dev-control-room", key)
        assert (status, again) == (200, body)  # idempotent
        await esc.settle()
        ops = [k for k, _ in await esc.take_json("ops.events", timeout=2)]
        assert ops == ["alert.raised", "alert.acknowledged"]
        esc.clock.advance(timedelta(minutes=30))
        assert await esc.fire(server) == 0
        assert await esc.take("control-room.dev-force", timeout=0.5) == []
        [t] = await esc.rows(select(timers).where(timers.c.alert_id == alert.alert_id))
        assert t.status == "cancelled"
        outcomes = [(r.action, r.outcome) for r in await esc.rows(select(audit).order_by(audit.c.seq))]
        assert ("signature_rejected", "missing_signature") in outcomes
        assert ("alert.acknowledge", "forbidden_role") in outcomes
        assert ("alert.acknowledge", "forbidden_force") in outcomes
        assert outcomes.count(("alert.acknowledged", "ok")) == 1


async def test_unacknowledged_alert_is_raised_one_level_up_every_interval_until_the_top(esc):
    async with esc.app() as server:
        await esc.publish(referral_received(london(2026, 11, 7, 10), immediate_risk=True))
        first = await _alert(esc)
        assert (first.kind, first.level) == ("immediate_safety", "control_room")
        await esc.settle()
        await esc.notes()
        esc.clock.advance(timedelta(minutes=9))
        assert await esc.fire(server) == 0
        levels = []
        for _ in range(3):
            esc.clock.advance(timedelta(minutes=10))
            await esc.fire(server)
            levels += [ControlRoomAlert.model_validate_json(m.body) for m in
                       await esc.take("control-room.dev-force", timeout=2)]
        assert [(a.alert_id, a.level) for a in levels] == [
            (first.alert_id, "duty_inspector"), (first.alert_id, "superintendent")]  # stops at the top
        notes = await esc.notes()
        assert [(n["template"], n["audience"], n["priority"]) for n in notes if n["template"] == "alert_escalated"] == [
            ("alert_escalated", "force:duty_inspector", "urgent")]  # superintendent has no configured route
        # Meanwhile the strategy-discussion clock of the immediate risk reached half time (30 min).
        assert {n["template"] for n in notes} == {"alert_escalated", "strategy_reminder"}
        [row] = await esc.rows(select(alerts))
        assert (row.status, row.level, row.level_index) == ("open", "superintendent", 2)  # open and visible
        await server.app[TIMERS].refresh_gauges()
        labels = {"kind": "immediate_safety", "force": "dev-force", "level": "superintendent"}
        assert REGISTRY.get_sample_value("safeguard_alerts_open", labels) == 1
        pending = {(r.kind, r.status) for r in await esc.rows(select(timers))}
        for kind, status in pending:
            n = len(await esc.rows(select(timers).where(timers.c.kind == kind, timers.c.status == status)))
            assert REGISTRY.get_sample_value("safeguard_escalation_timers", {"kind": kind, "status": status}) == n
        assert ("alert_reescalate", "fired") in pending
        ops = [k for k, _ in await esc.take_json("ops.events", timeout=2)]
        assert [k for k in ops if k.startswith("alert.")] == ["alert.raised", "alert.escalated", "alert.escalated"]
        assert [k for k in ops if k.startswith("deadline.")] == ["deadline.reminder"]  # the strategy clock's


async def test_a_signed_request_replayed_after_a_restart_is_refused(esc, reliability):
    """Issue 18 #9: escalation kept request nonces in memory only, so the same signed request
    replayed after a restart (or on another replica) was accepted. Now they are claimed in
    its database."""
    path = "/v1/alerts/no-such-alert/acknowledgement"
    esc.port = free_port()  # the restarted process listens where the first did (the same @authority)
    async with esc.app() as server:
        headers = {"Content-Type": "application/json",
                   **sign_request(method="POST", path=path, body=b"{}", key_id="dev-control-room",
                                  key=esc.client_key("dev-control-room"), authority=authority_of(server.make_url(path)))}
        async with aiohttp.ClientSession() as session:
            async with session.post(server.make_url(path), data=b"{}", headers=headers) as resp:
                assert resp.status == 404  # authenticated: the alert does not exist
    async with esc.app() as restarted, aiohttp.ClientSession() as session:  # a new process, the same database
        async with session.post(restarted.make_url(path), data=b"{}", headers=headers) as resp:
            assert resp.status == 401 and "replayed_nonce" in (await resp.json(content_type=None))["detail"]
    outcomes = [(r.action, r.outcome) for r in await esc.rows(select(audit).order_by(audit.c.seq))]
    assert ("signature_rejected", "replayed_nonce") in outcomes
    reliability.row("attacks", finding="#9", attack="a signed escalation request (acknowledge an alert) replayed "
                    "after a restart of escalation",
                    before="accepted: nonces were kept in memory only",
                    after="401 replayed_nonce, audited: the nonce is claimed in escalation_nonces (shared with "
                          "every replica) until the signature's window has passed")
