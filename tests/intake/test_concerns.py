"""POST /v1/referrals/{reference}/concerns (DESIGN §3.3, §3.5): social care of the referral's
LA (its emergency duty team out of hours) raises a concern for the force's control room. Not
once-only: each call is a new concern with its own id and its own `referral.concern_raised`
event (ids, category and time only); an Idempotency-Key makes a retry return the first reply.
Refused once the LA track is closed; wrong callers and malformed bodies are refused, audited,
and change nothing. The status reply shows the concerns."""
from __future__ import annotations

import json

import sqlalchemy as sa

from services.intake.adapters import tables
from shared.messages import ConcernRaised
from tests.factories import referral
from tests.intake.test_submit import bind_events, drain

EVENT = ConcernRaised.routing_key


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
                              "client_id"}
        assert (event["la_code"], event["force"], event["client_id"]) == ("E99999999", "dev-force",
                                                                          "dev-social-care")
    assert not concern_events(messages, other)
    audit = [(r.outcome, r.detail.get("reason") or r.detail.get("category")) for r in await intake.audit_rows()
             if r.action == "referral.concern"]
    assert audit == [("ok", "missing"), ("ok", "missing"), ("ok", "new_information"), ("replayed", None),
                     ("rejected", "idempotency_conflict"), ("rejected", "idempotency_conflict"), ("ok", "other"),
                     ("rejected", "closed"), ("replayed", None)]
