"""POST /v1/referrals/{reference}/concerns (DESIGN §3.3, §3.5): social care of the referral's
LA (its emergency duty team out of hours) raises a concern for the force's control room. Not
once-only: each call is a new concern with its own id and its own `referral.concern_raised`
event (ids, category and time only); an Idempotency-Key makes a retry return the first reply.
Refused once the LA track is closed; wrong callers and malformed bodies are refused, audited,
and change nothing. The status reply shows the concerns; with escalation running, each
concern reaches `control-room.<force>` as its own `out_of_hours_concern` alert with no
content, the control room's outcome is recorded there, and `safeguard trace` shows both."""
from __future__ import annotations

import asyncio
import contextlib
import io
import json
from datetime import UTC, datetime, timedelta

import aio_pika
import aiohttp
import sqlalchemy as sa
from aiohttp.test_utils import TestServer

from safeguard import trace
from services.escalation.adapters.tables import alerts as escalation_alerts
from services.escalation.bootstrap import create_app as escalation_app
from services.intake.adapters import tables
from services.intake.entrypoints.client import open_envelope
from services.intake.entrypoints.http import CONTEXT
from shared.clock import ManualClock
from shared.httpsig import authority_of, sign_request
from shared.messages import ConcernRaised, ControlRoomAlert
from tests.factories import london, new_canary, referral
from tests.intake.test_sealing import _dump_database, log_stream  # noqa: F401 (a fixture)
from tests.intake.test_submit import bind_events, drain

EVENT = ConcernRaised.routing_key


def now_utc() -> datetime:
    return datetime.now(UTC)


async def submit(intake, **overrides) -> str:
    resp = await intake.submit(referral(**overrides))
    assert resp.status == 202
    return (await resp.json())["reference"]


async def concern(intake, ref: str, client_id: str = "dev-social-care", payload=None, *,
                  key: str | None = None, **kw) -> tuple[int, dict]:
    headers = {"Idempotency-Key": key} if key else None
    resp = await intake.call("POST", f"/v1/referrals/{ref}/concerns", client_id,
                             {"category": "welfare"} if payload is None else payload, headers=headers, **kw)
    return resp.status, await resp.json()


async def rows(intake, table: sa.Table) -> list:
    async with intake.engine.connect() as conn:
        return list((await conn.execute(sa.select(table))).all())


async def status_of(intake, ref: str, client_id: str = "dev-social-care") -> dict:
    resp = await intake.call("GET", f"/v1/referrals/{ref}", client_id)
    assert resp.status == 200
    return await resp.json()


def concern_events(messages, ref: str) -> list[dict]:
    return [body for m in messages if m.routing_key == EVENT and (body := json.loads(m.body))["reference"] == ref]


async def test_wrong_callers_and_malformed_bodies_are_refused_audited_and_change_nothing(intake):
    conn, queue = await bind_events(intake.settings)
    try:
        ref = await submit(intake)
        async with intake.engine.connect() as c:
            before = (await c.execute(tables.referrals.select())).all()
        refusals = [
            (("dev-prevent",), {}, 403, "wrong_role"),
            (("dev-control-room",), {}, 403, "wrong_role"),
            (("dev-mash",), {}, 403, "wrong_role"),
            (("other-social-care",), {}, 403, "wrong_organisation"),
            (("dev-social-care", {"category": "burglary"}), {}, 422, "schema_invalid"),
            (("dev-social-care", {"category": "welfare", "details": "x"}), {}, 422, "schema_invalid"),
            (("dev-social-care", {}), {}, 422, "schema_invalid"),
            (("dev-social-care", ["welfare"]), {}, 422, "schema_invalid"),
            (("dev-social-care",), {"raw": b""}, 400, "malformed_json"),
            (("dev-social-care",), {"raw": b"{category"}, 400, "malformed_json"),
            (("dev-social-care",), {"content_type": "text/plain"}, 415, "unsupported_media_type"),
            (("dev-social-care",), {"key": "bad key with spaces"}, 400, "bad_idempotency_key"),
        ]
        problems = []
        for args, kw, status, reason in refusals:
            got, problem = await concern(intake, ref, *args, **kw)
            assert (got, problem["reason"], problem["status"]) == (status, reason, status), (args, kw)
            assert problem["type"].startswith("/problems/")
            problems.append(problem)
        assert [e["loc"] for e in problems[4]["errors"]] == ["category"]
        assert [e["loc"] for e in problems[5]["errors"]] == ["(unknown field #2)"]  # the name is not echoed
        assert [e["loc"] for e in problems[6]["errors"]] == ["category"]
        # an absent referral is refused like another organisation's
        status, problem = await concern(intake, "PRV-2026-999999")
        assert (status, problem["reason"]) == (403, "wrong_organisation")
        messages = await drain(queue, 1.0)
    finally:
        await conn.close()
    assert [m.routing_key for m in messages] == ["referral.received"]
    assert await rows(intake, tables.concerns) == []
    async with intake.engine.connect() as c:
        assert (await c.execute(tables.referrals.select())).all() == before
    refused = [(r.outcome, r.actor, r.detail["reason"], r.detail["status"]) for r in await intake.audit_rows()
               if r.action == "referral.concern"]
    assert refused == [("rejected", args[0], reason, status) for args, _, status, reason in refusals] + [
        ("rejected", "dev-social-care", "wrong_organisation", 403)]


async def test_each_call_is_a_new_concern_on_the_status_reply_idempotency_key_and_closed_track(intake):
    conn, queue = await bind_events(intake.settings)
    try:
        ref = await submit(intake)
        status, first = await concern(intake, ref, payload={"category": "missing"})
        assert status == 201
        assert first == {"reference": ref, "status": "received", "action": "concern",
                         "concern_id": first["concern_id"], "category": "missing",
                         "raised_at": first["raised_at"], "raised_by": "dev-social-care"}
        status, second = await concern(intake, ref, payload={"category": "missing"})  # the same again: a new one
        assert status == 201 and second["concern_id"] != first["concern_id"]
        # a retry with an Idempotency-Key gets the first reply and raises nothing new
        status, keyed = await concern(intake, ref, payload={"category": "new_information"}, key="edt-0001")
        assert status == 201
        assert await concern(intake, ref, payload={"category": "new_information"}, key="edt-0001") == (201, keyed)
        status, problem = await concern(intake, ref, payload={"category": "other"}, key="edt-0001")
        assert (status, problem["reason"]) == (409, "idempotency_conflict")
        other = await submit(intake)
        status, problem = await concern(intake, other, payload={"category": "new_information"}, key="edt-0001")
        assert (status, problem["reason"]) == (409, "idempotency_conflict")  # the key stands for one referral
        # CTP closing its own track does not stop the LA raising concerns; the LA's close does
        assert (await intake.call("POST", f"/v1/referrals/{ref}/close", "dev-prevent")).status == 200
        status, after_ctp = await concern(intake, ref, payload={"category": "other"})
        assert status == 201
        assert (await intake.call("POST", f"/v1/referrals/{ref}/close", "dev-social-care")).status == 200
        status, problem = await concern(intake, ref)
        assert (status, problem["reason"], problem["type"]) == (409, "closed", "/problems/conflict")
        # the retry of a concern raised before the close still gets its reply
        assert await concern(intake, ref, payload={"category": "new_information"}, key="edt-0001") == (201, keyed)
        views = {c: await status_of(intake, ref, c) for c in ("dev-social-care", "dev-prevent")}
        messages = await drain(queue, 2.0)
    finally:
        await conn.close()
    raised = [first, second, keyed, after_ctp]
    assert views["dev-social-care"] == views["dev-prevent"]  # the LA and CTP see the same
    view = views["dev-prevent"]
    assert [(c["concern_id"], c["category"], c["raised_by"]) for c in view["concerns"]] == [
        (c["concern_id"], c["category"], "dev-social-care") for c in raised]
    concern_steps = [s for s in view["timeline"] if s["event"] == "concern_raised"]
    assert [s["at"] for s in concern_steps] == [c["raised_at"] for c in view["concerns"]]
    assert {s["by"] for s in concern_steps} == {"dev-social-care"}
    assert [s["event"] for s in view["timeline"]][-1] == "closed"
    assert len(await rows(intake, tables.concerns)) == 4
    events = concern_events(messages, ref)
    assert [(e["concern_id"], e["category"]) for e in events] == [(c["concern_id"], c["category"]) for c in raised]
    for event in events:
        assert ConcernRaised.model_validate(event)
        assert set(event) == {"referral_id", "reference", "force", "la_code", "at", "concern_id", "category",
                              "client_id", "by"}
        assert event["by"] == {"id": "dev-social-care", "role": "social_care", "organisation": "E99999999",
                               "issuer": None, "subject": None, "name": None, "client_id": None}
        assert (event["la_code"], event["force"], event["client_id"]) == ("E99999999", "dev-force",
                                                                          "dev-social-care")
    assert not concern_events(messages, other)
    audit = [(r.outcome, r.detail.get("reason") or r.detail.get("category")) for r in await intake.audit_rows()
             if r.action == "referral.concern"]
    assert audit == [("ok", "missing"), ("ok", "missing"), ("ok", "new_information"), ("replayed", None),
                     ("rejected", "idempotency_conflict"), ("rejected", "idempotency_conflict"), ("ok", "other"),
                     ("rejected", "closed"), ("replayed", None)]


@contextlib.asynccontextmanager
async def escalation_beside(intake, clock: ManualClock):
    """escalation's real app on intake's broker vhost and database (its own tables)."""
    server = TestServer(escalation_app(intake.settings, clock, timer_options={"poll_interval_s": 3600}))
    await server.start_server()
    try:
        yield server
    finally:
        await server.close()


async def tap(settings) -> tuple[aio_pika.abc.AbstractConnection, aio_pika.abc.AbstractQueue]:
    """A queue bound to every message on the events and alerts exchanges."""
    conn = await aio_pika.connect(settings.amqp_url)
    queue = await (await conn.channel()).declare_queue(exclusive=True)
    await queue.bind("safeguard.events", "#")
    await queue.bind("safeguard.alerts", "#")
    return conn, queue


async def control_room(settings, n: int, timeout: float = 10.0) -> list[ControlRoomAlert]:
    """The next `n` alerts on control-room.dev-force (what a control-room consumer takes)."""
    got: list[ControlRoomAlert] = []
    async with await aio_pika.connect(settings.amqp_url) as conn:
        queue = await (await conn.channel()).declare_queue("control-room.dev-force", passive=True)
        async with asyncio.timeout(timeout):
            while len(got) < n:
                message = await queue.get(no_ack=True, fail=False)
                if message is None:
                    await asyncio.sleep(0.05)
                    continue
                got.append(ControlRoomAlert.model_validate_json(message.body))
        await asyncio.sleep(0.5)
        assert await queue.get(no_ack=True, fail=False) is None  # and no more
    return got


async def post_outcome(server, alert_id: str, payload: dict, intake) -> tuple[int, str]:
    path, body = f"/v1/alerts/{alert_id}/outcome", json.dumps(payload).encode()
    headers = {"Content-Type": "application/json", **sign_request(
        method="POST", path=path, body=body, key_id="dev-control-room", key=intake.key("dev-control-room"),
        authority=authority_of(server.make_url(path)))}
    async with aiohttp.ClientSession() as session:
        async with session.post(server.make_url(path), data=body, headers=headers) as resp:
            return resp.status, await resp.text()


async def test_concerns_reach_the_control_room_without_content_and_the_trace_shows_concern_and_outcome(
        intake, log_stream):  # noqa: F811
    canary, notes_canary = new_canary(), new_canary()
    clock = ManualClock(london(2026, 11, 30, 14))  # Monday afternoon: the receipt itself raises no alert
    intake.app[CONTEXT].clock = clock
    conn, queue = await tap(intake.settings)
    replies = []
    try:
        async with escalation_beside(intake, clock) as esc:
            ref = await submit(intake, canary=canary)
            clock.advance(timedelta(hours=9))  # 23:00: the LA's emergency duty team
            status, first = await concern(intake, ref, payload={"category": "welfare"})
            assert status == 201
            clock.advance(timedelta(minutes=3))
            status, second = await concern(intake, ref, payload={"category": "missing"})
            assert status == 201
            alerts = await control_room(intake.settings, 2)
            assert [(a.kind, a.reference, a.force, a.la_code, a.level) for a in alerts] == [
                ("out_of_hours_concern", ref, "dev-force", "E99999999", "control_room")] * 2
            assert len({a.alert_id for a in alerts}) == 2  # one alert per concern
            assert all(ref in a.summary and "Out-of-hours concern" in a.summary for a in alerts)
            async with intake.engine.connect() as c:
                by_concern = dict((await c.execute(sa.select(escalation_alerts.c.concern_id,
                                                             escalation_alerts.c.alert_id))).all())
            assert by_concern == {first["concern_id"]: alerts[0].alert_id, second["concern_id"]: alerts[1].alert_id}
            # the control room records what it did about the first: sealed notes, the alert acknowledged
            status, text = await post_outcome(esc, alerts[0].alert_id,
                                              {"action": "welfare_check_completed", "notes": notes_canary}, intake)
            replies.append(text)
            assert status == 200 and json.loads(text)["status"] == "acknowledged"
            await asyncio.sleep(1.0)  # the relays publish
            messages = await drain(queue, 1.0)
    finally:
        await conn.close()
    keys = [m.routing_key for m in messages]
    assert keys.count("referral.concern_raised") == 2 and keys.count("control-room.dev-force") == 2
    assert keys.count("alert.raised") == 2 and "alert.outcome_recorded" in keys
    for message in messages:
        wire = message.body.decode() + json.dumps(dict(message.headers or {}), default=str)
        assert canary not in wire and notes_canary not in wire, message.routing_key
    assert not any(canary in r or notes_canary in r for r in replies)
    async with intake.engine.connect() as c:
        row = (await c.execute(sa.select(escalation_alerts).where(
            escalation_alerts.c.alert_id == alerts[0].alert_id))).one()
        rid = (await c.execute(sa.select(tables.referrals.c.id))).scalar_one()
    assert (row.outcome_action, row.outcome_by, row.concern_id) == (
        "welfare_check_completed", "dev-control-room", first["concern_id"])
    for org in ("E99999999", "dev-force"):  # the notes are sealed to both teams
        assert json.loads(open_envelope(row.outcome_notes_sealed, rid, intake.team_key(org))) == notes_canary
    dump = await _dump_database(intake.engine)
    assert ref in dump and canary not in dump and notes_canary not in dump

    out, err = io.StringIO(), io.StringIO()
    assert await trace.trace_command(intake.settings, ref, as_json=True, out=out, err=err) == 0
    entries = json.loads(out.getvalue())["entries"]
    steps = [(e["service"], e["step"]) for e in entries]
    assert steps.count(("intake", "concern raised for the control room")) == 2
    assert steps.count(("escalation", "concern consumed")) == 2
    assert steps.count(("escalation", "control-room alert raised")) == 2
    [outcome] = [e for e in entries if e["step"] == "control-room outcome recorded"]
    assert (outcome["actor"], outcome["detail"]["action"], outcome["detail"]["alert_id"]) == (
        "dev-control-room", "welfare_check_completed", alerts[0].alert_id)
    assert outcome["detail"]["notes"] is True and outcome["detail"]["acknowledged"] is True
    assert steps.index(("intake", "concern raised for the control room")) < steps.index(
        ("escalation", "concern consumed")) < steps.index(("escalation", "control-room outcome recorded"))
    concerns = [e for e in entries if e["step"] == "concern raised for the control room"]
    assert [e["detail"]["concern_id"] for e in concerns] == [first["concern_id"], second["concern_id"]]
    assert canary not in out.getvalue() + err.getvalue() and notes_canary not in out.getvalue()
    await asyncio.sleep(0.1)
    logs = log_stream.getvalue()
    assert ref in logs and canary not in logs and notes_canary not in logs


async def test_a_key_taken_meanwhile_for_another_concern_is_a_409_never_a_500(intake):
    """Another request with the same key (for another referral, so not behind this one's row
    lock) inserts the key after this one looked it up and before this one stores it."""
    ref = await submit(intake)
    async with intake.engine.connect() as other:
        tx = await other.begin()
        await other.execute(sa.insert(tables.idempotency_keys).values(
            client_id="dev-social-care", key="race-1", body_sha256="0" * 64, response={}, created_at=now_utc()))
        request = asyncio.create_task(concern(intake, ref, key="race-1"))
        await asyncio.sleep(1.5)
        assert not request.done()  # it waits for the other transaction's key
        await tx.commit()
        status, problem = await request
    assert (status, problem["reason"], problem["type"]) == (409, "idempotency_conflict", "/problems/conflict")
    assert await rows(intake, tables.concerns) == []
