"""Out of hours both ways (DESIGN §3.3, §3.5): intake's `referral.concern_raised` raises one
`out_of_hours_concern` alert per concern (re-escalated like every alert), and
`POST /v1/alerts/{alert_id}/outcome` records once what the control room did — acknowledging
the alert if it was still open — with its notes sealed to the LA's and the force's team keys
and nowhere in clear. Real broker, real PostgreSQL, events signed as intake."""
from __future__ import annotations

import asyncio
import io
import json
import logging
import uuid
from datetime import timedelta

import aiohttp
import pytest
import structlog
from prometheus_client import REGISTRY
from sqlalchemy import select

from services.escalation.adapters.tables import alerts, audit, timers
from services.intake.entrypoints.client import open_envelope
from shared.clock import ManualClock
from shared.crypto import load_private_sealing_key
from shared.httpsig import authority_of, sign_request
from shared.logging import configure
from shared.messages import AlertOutcomeRecorded, ConcernRaised, ControlRoomAlert
from tests.factories import london, new_canary, referral_event, referral_received
from tests.intake.test_sealing import _dump_database

pytestmark = [pytest.mark.broker, pytest.mark.database]
PATH = "/v1/alerts/{alert_id}/outcome"


@pytest.fixture
def log_stream():
    stream = io.StringIO()
    configure("escalation", "json", level=logging.DEBUG, stream=stream)
    yield stream
    structlog.reset_defaults()
    logging.getLogger().handlers.clear()


def concern(received, at, category: str = "welfare", concern_id: str | None = None) -> ConcernRaised:
    return referral_event(ConcernRaised, received, at, concern_id=concern_id or str(uuid.uuid4()),
                          category=category, client_id="dev-social-care")


async def post(esc, server, alert_id: str, client_id: str | None, payload=None, *, raw: bytes | None = None,
               content_type: str = "application/json", key=None) -> tuple[int, str, str]:
    path = PATH.format(alert_id=alert_id)
    body = raw if raw is not None else json.dumps(payload).encode()
    headers = {"Content-Type": content_type}
    if client_id:
        headers |= sign_request(method="POST", path=path, body=body, key_id=client_id,
                                key=key or esc.client_key(client_id), authority=authority_of(server.make_url(path)))
    async with aiohttp.ClientSession() as session:
        async with session.post(server.make_url(path), data=body, headers=headers) as resp:
            return resp.status, resp.content_type, await resp.text()


async def alert_of(esc, alert_id: str):
    [row] = await esc.rows(select(alerts).where(alerts.c.alert_id == alert_id))
    return row


async def test_each_concern_raises_its_own_alert_once_and_it_is_re_escalated(esc):
    esc.clock = ManualClock(london(2026, 11, 2, 14))
    async with esc.app() as server:
        received = referral_received(london(2026, 11, 2, 14))  # Monday afternoon: no alert on receipt
        await esc.publish(received)
        await esc.settle()
        assert await esc.take("control-room.dev-force", timeout=0.3) == []
        first, second = concern(received, esc.clock()), concern(received, esc.clock(), "missing")
        mid = await esc.publish(first)
        await esc.publish(second)
        await esc.publish(first)  # the same concern again under another message id: no second alert
        raised = [ControlRoomAlert.model_validate_json(m.body) for m in
                  await esc.take("control-room.dev-force", timeout=5)]
        await esc.settle()
        raised += [ControlRoomAlert.model_validate_json(m.body) for m in
                   await esc.take("control-room.dev-force", timeout=0.5)]
        await esc.wait_processed(mid)
        assert [(a.kind, a.reference, a.level) for a in raised] == [
            ("out_of_hours_concern", received.reference, "control_room")] * 2
        rows = {r.concern_id: r for r in await esc.rows(select(alerts))}
        assert set(rows) == {first.concern_id, second.concern_id}
        assert {r.alert_id for r in rows.values()} == {a.alert_id for a in raised}
        consumed = [(r.outcome, r.detail["concern_id"], r.detail["category"]) for r in
                    await esc.rows(select(audit).where(audit.c.action == "referral.concern_raised")
                                   .order_by(audit.c.seq))]
        # the consumer handles several events at a time: the order of the entries is not fixed
        assert sorted(consumed) == sorted([("ok", first.concern_id, "welfare"), ("ok", second.concern_id, "missing"),
                                           ("duplicate", first.concern_id, "welfare")])
        ops = [k for k, _ in await esc.take_json("ops.events", timeout=2)]
        assert ops == ["alert.raised", "alert.raised"]
        # unacknowledged, a concern's alert is raised one level up like every alert
        esc.clock.advance(timedelta(minutes=10))
        assert await esc.fire(server) == 2
        up = [ControlRoomAlert.model_validate_json(m.body) for m in
              await esc.take("control-room.dev-force", timeout=5)]
        assert sorted((a.alert_id, a.level) for a in up) == sorted(
            (a.alert_id, "duty_inspector") for a in raised)


async def test_refused_callers_and_bodies_are_audited_problems_that_change_nothing(esc):
    async with esc.app() as server:
        await esc.publish(referral_received(london(2026, 11, 7, 10)))  # Saturday: an alert
        [message] = await esc.take("control-room.dev-force", timeout=5)
        alert = ControlRoomAlert.model_validate_json(message.body)
        before = await alert_of(esc, alert.alert_id)
        ok = {"action": "no_action_needed"}
        cases = [
            ((None, ok), {}, 401, "unauthenticated", None),
            (("dev-social-care", ok), {}, 403, "forbidden", "forbidden_role"),
            (("dev-prevent", ok), {}, 403, "forbidden", "forbidden_role"),
            (("other-control-room", ok), {"key": esc.other_key}, 403, "forbidden", "forbidden_force"),
            (("dev-control-room", {"action": "officers_deployed"}), {}, 422, "validation-failed", "schema_invalid"),
            (("dev-control-room", {**ok, "officer": "x"}), {}, 422, "validation-failed", "schema_invalid"),
            (("dev-control-room", {"notes": "n"}), {}, 422, "validation-failed", "schema_invalid"),
            (("dev-control-room", {**ok, "notes": 7}), {}, 422, "validation-failed", "schema_invalid"),
            (("dev-control-room", None), {"raw": b"{action"}, 400, "bad-request", "malformed_json"),
            (("dev-control-room", ok), {"content_type": "text/plain"}, 415, "unsupported-media-type",
             "unsupported_media_type"),
        ]
        problems = []
        for (client_id, payload), kw, status, slug, _ in cases:
            got, ctype, text = await post(esc, server, alert.alert_id, client_id, payload, **kw)
            problem = json.loads(text)
            assert (got, ctype, problem["type"], problem["status"]) == (
                status, "application/problem+json", f"/problems/{slug}", status), (client_id, payload, kw)
            problems.append(problem)
        assert [e["loc"] for e in problems[4]["errors"]] == ["action"]
        assert [e["loc"] for e in problems[5]["errors"]] == ["(unknown field #2)"]  # the name is not echoed
        assert [e["loc"] for e in problems[6]["errors"]] == ["action"]
        assert [e["loc"] for e in problems[7]["errors"]] == ["notes"]
        status, _, _ = await post(esc, server, "no-such-alert", "dev-control-room", ok)
        assert status == 404
        await esc.settle()
        assert await alert_of(esc, alert.alert_id) == before  # still open, no outcome
        assert [k for k, _ in await esc.take_json("ops.events", timeout=1)] == ["alert.raised"]
        refused = [(r.action, r.outcome, r.actor) for r in await esc.rows(select(audit).order_by(audit.c.seq))
                   if r.action in ("alert.outcome", "signature_rejected")]
        assert refused == [("signature_rejected", "missing_signature", "unknown")] + [
            ("alert.outcome", reason, args[0]) for args, _, _, _, reason in cases[1:]] + [
            ("alert.outcome", "not_found", "dev-control-room")]


async def test_an_outcome_acknowledges_the_open_alert_once_repeats_and_conflicts(esc):
    async with esc.app() as server:
        received = referral_received(london(2026, 11, 7, 10))
        await esc.publish(received)
        [message] = await esc.take("control-room.dev-force", timeout=5)
        alert = ControlRoomAlert.model_validate_json(message.body)
        via = {"via": "outcome"}
        acked_before = REGISTRY.get_sample_value("safeguard_escalation_alerts_acknowledged_total", via) or 0
        esc.clock.advance(timedelta(minutes=4))
        status, _, text = await post(esc, server, alert.alert_id, "dev-control-room",
                                     {"action": "welfare_check_completed"})
        assert status == 200
        reply = json.loads(text)
        at = esc.clock().isoformat()
        assert reply == {"alert_id": alert.alert_id, "kind": "out_of_hours_concern", "level": "control_room",
                         "status": "acknowledged", "reference": received.reference, "force": "dev-force",
                         "la_code": "E99999999", "raised_at": reply["raised_at"], "acknowledged_at": at,
                         "acknowledged_by": "dev-control-room",
                         "outcome": {"action": "welfare_check_completed", "recorded_at": at,
                                     "recorded_by": "dev-control-room", "notes": False}}
        assert REGISTRY.get_sample_value("safeguard_escalation_alerts_acknowledged_total", via) == acked_before + 1
        # the same again: the recorded result, nothing new; a different one: 409
        assert (await post(esc, server, alert.alert_id, "dev-control-room", {"action": "welfare_check_completed",
                                                                             "notes": "later"}))[::2] == (200, text)
        status, _, text = await post(esc, server, alert.alert_id, "dev-control-room", {"action": "passed_to_patrol"})
        assert (status, json.loads(text)["reason"], json.loads(text)["type"]) == (409, "already_recorded",
                                                                                  "/problems/conflict")
        await esc.settle()
        ops = await esc.take_json("ops.events", timeout=2)
        assert [k for k, _ in ops] == ["alert.raised", "alert.acknowledged", "alert.outcome_recorded"]
        event = AlertOutcomeRecorded.model_validate(ops[-1][1])
        assert (event.alert_id, event.reference, event.action, event.recorded_by, event.notes) == (
            alert.alert_id, received.reference, "welfare_check_completed", "dev-control-room", False)
        # acknowledged: its re-escalation is cancelled, nothing more reaches the control room
        esc.clock.advance(timedelta(minutes=30))
        await esc.fire(server)
        assert await esc.take("control-room.dev-force", timeout=0.5) == []
        assert {t.status for t in await esc.rows(select(timers).where(timers.c.alert_id == alert.alert_id))} == {
            "cancelled"}
        row = await alert_of(esc, alert.alert_id)
        assert (row.status, row.outcome_action, row.outcome_notes_sealed) == (
            "acknowledged", "welfare_check_completed", None)
        entries = [(r.action, r.outcome, (r.detail or {}).get("via")) for r in
                   await esc.rows(select(audit).where(audit.c.action.like("alert.%")).order_by(audit.c.seq))]
        assert entries == [("alert.raised", "ok", None), ("alert.acknowledged", "ok", "outcome"),
                           ("alert.outcome_recorded", "ok", None), ("alert.outcome_recorded", "repeated", None),
                           ("alert.outcome", "already_recorded", None)]

        # an alert acknowledged before: the outcome is recorded and acknowledges nothing again
        other = referral_received(london(2026, 11, 7, 10))
        await esc.publish(other)
        [message] = await esc.take("control-room.dev-force", timeout=5)
        second = ControlRoomAlert.model_validate_json(message.body)
        path = f"/v1/alerts/{second.alert_id}/acknowledgement"
        headers = {"Content-Type": "application/json", **sign_request(
            method="POST", path=path, body=b"{}", key_id="dev-control-room", key=esc.client_key("dev-control-room"),
            authority=authority_of(server.make_url(path)))}
        async with aiohttp.ClientSession() as session:
            async with session.post(server.make_url(path), data=b"{}", headers=headers) as resp:
                assert resp.status == 200
                acknowledged_at = (await resp.json())["acknowledged_at"]
        esc.clock.advance(timedelta(minutes=2))
        status, _, text = await post(esc, server, second.alert_id, "dev-control-room",
                                     {"action": "referred_to_la_edt"})
        reply = json.loads(text)
        assert (status, reply["acknowledged_at"], reply["outcome"]["action"]) == (
            200, acknowledged_at, "referred_to_la_edt")
        await esc.settle()
        assert [k for k, _ in await esc.take_json("ops.events", timeout=2)] == [
            "alert.raised", "alert.acknowledged", "alert.outcome_recorded"]
        assert REGISTRY.get_sample_value("safeguard_escalation_alerts_acknowledged_total", via) == acked_before + 1


async def test_a_canary_in_the_notes_is_sealed_to_the_la_and_the_force_and_nowhere_in_clear(esc, log_stream):
    canary = new_canary()
    notes = f"{canary}: officers attended 23:40, child safe at grandmother's"
    async with esc.app() as server:
        received = referral_received(london(2026, 11, 7, 10))
        await esc.publish(received)
        [message] = await esc.take("control-room.dev-force", timeout=5)
        alert = ControlRoomAlert.model_validate_json(message.body)
        replies = []
        for client_id, payload, kw in (
                ("dev-prevent", {"action": "no_action_needed", "notes": notes}, {}),           # wrong role
                ("other-control-room", {"action": "no_action_needed", "notes": notes}, {"key": esc.other_key}),
                ("dev-control-room", {"action": "no_action_needed", "notes": [notes]}, {}),  # 422
                ("dev-control-room", {"action": "no_action_needed", "notes": notes, notes: 1}, {}),  # a name as key
                ("dev-control-room", {"action": "no_action_needed", "notes": notes}, {}),    # recorded
                ("dev-control-room", {"action": "no_action_needed", "notes": notes}, {}),    # repeated
                ("dev-control-room", {"action": "passed_to_patrol", "notes": notes}, {})):   # 409
            status, _, text = await post(esc, server, alert.alert_id, client_id, payload, **kw)
            replies.append((status, text))
        assert [s for s, _ in replies] == [403, 403, 422, 422, 200, 200, 409]
        assert not any(canary in text for _, text in replies)
        await esc.settle()
        bus = [m for q in ("ops.events", "control-room.dev-force", "notifier.requests") for m in await esc.take(q)]
        assert any(m.routing_key == "alert.outcome_recorded" for m in bus)
        for m in bus:
            assert canary not in m.body.decode() + json.dumps(dict(m.headers or {}), default=str), m.routing_key
        row = await alert_of(esc, alert.alert_id)
        envelope = row.outcome_notes_sealed
        assert envelope["ciphertext"] and canary not in json.dumps(envelope)
        assert {r["key_id"] for r in envelope["recipients"]} == {"E99999999-1", "dev-force-1"}
        for org in ("E99999999", "dev-force"):
            team_key = load_private_sealing_key(esc.keys_dir / f"{org}.x25519")
            assert json.loads(open_envelope(envelope, received.referral_id, team_key)) == notes
        dump = await _dump_database(esc.engine)
        assert received.reference in dump and "alert.outcome_recorded" in dump
        assert canary not in dump
    await asyncio.sleep(0.1)
    logs = log_stream.getvalue()
    assert alert.alert_id in logs or received.reference in logs
    assert canary not in logs


async def test_retention_shreds_the_outcome_notes_of_alerts_of_referrals_closed_past_their_period(esc):
    from safeguard.retention import shred_outcome_notes
    from shared.crypto import CryptoError, envelope_key_ids
    from shared.messages import TrackClosed

    days = esc.settings.file.system.retention_days
    async with esc.app() as server:
        closed, kept = referral_received(london(2026, 11, 7, 10)), referral_received(london(2026, 11, 7, 10))
        ids = {}
        for received in (closed, kept):
            await esc.publish(received)
            [message] = await esc.take("control-room.dev-force", timeout=5)
            ids[received.referral_id] = ControlRoomAlert.model_validate_json(message.body).alert_id
            status, _, _ = await post(esc, server, ids[received.referral_id], "dev-control-room",
                                      {"action": "passed_to_patrol", "notes": "patrol 4 attended"})
            assert status == 200
        for track, last in (("la", False), ("ctp", True)):  # the first referral is closed, the other open
            mid = await esc.publish(referral_event(TrackClosed, closed, esc.clock(), track=track, referral_closed=last))
            await esc.wait_processed(mid)
    settings = esc.settings
    assert await shred_outcome_notes(settings, esc.clock() + timedelta(days=days - 1)) == []  # not yet
    later = esc.clock() + timedelta(days=days, minutes=1)
    assert await shred_outcome_notes(settings, later) == [ids[closed.referral_id]]
    assert await shred_outcome_notes(settings, later) == []  # a second run: nothing left to do
    shredded, young = await alert_of(esc, ids[closed.referral_id]), await alert_of(esc, ids[kept.referral_id])
    assert envelope_key_ids(shredded.outcome_notes_sealed) == [] and shredded.outcome_action == "passed_to_patrol"
    for org in ("E99999999", "dev-force"):
        key = load_private_sealing_key(esc.keys_dir / f"{org}.x25519")
        with pytest.raises(CryptoError):
            open_envelope(shredded.outcome_notes_sealed, closed.referral_id, key)
        assert json.loads(open_envelope(young.outcome_notes_sealed, kept.referral_id, key)) == "patrol 4 attended"
    entries = [(r.reference, r.actor, r.detail) for r in await esc.rows(
        select(audit).where(audit.c.action == "alert.notes_shredded"))]
    assert entries == [(closed.reference, "safeguard-retention",
                        {"alert_id": ids[closed.referral_id], "retention_days": days})]
