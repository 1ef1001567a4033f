"""POST /v1/referrals/{reference}/strategy-discussion (DESIGN §3.3, §4): social care of the
referral's LA records the discussion once — before or after acknowledgement; a repeat gets
the recorded reply and publishes nothing, another record is a 409, so is one after close;
malformed bodies are refused, audited, and change nothing. With `ctp_prevent` among the
agencies and the parents informed it lifts the family-contact hold. Its notes are sealed
to the recipient teams: a canary in them is nowhere in clear."""
from __future__ import annotations

import asyncio
import io
import json
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from safeguard import trace
from services.intake.adapters import tables
from services.intake.entrypoints.client import open_envelope
from shared.clock import LONDON
from shared.messages import StrategyDiscussionRecorded
from tests.factories import new_canary, referral
from tests.intake.test_sealing import _dump_database, log_stream  # noqa: F401 (a fixture)
from tests.intake.test_submit import bind_events, drain

ACTION = "strategy-discussion"
EVENT = StrategyDiscussionRecorded.routing_key
HELD_AT = (datetime.now(UTC) - timedelta(minutes=30)).replace(microsecond=0)


def record(**overrides) -> dict:
    """A valid body (the same each time unless overridden; None drops a field)."""
    body = {"held_at": HELD_AT.isoformat(),
            "agencies": ["local_authority", "police", "ctp_prevent", "health"], "legal_advice_sought": True,
            "decision": "section_47_enquiry", "parents_informed": False}
    return {k: v for k, v in {**body, **overrides}.items() if v is not None}


async def submit(intake, **overrides) -> str:
    resp = await intake.submit(referral(**overrides))
    assert resp.status == 202
    return (await resp.json())["reference"]


async def post(intake, ref: str, client_id: str, payload) -> tuple[int, dict]:
    resp = await intake.call("POST", f"/v1/referrals/{ref}/{ACTION}", client_id, payload)
    return resp.status, await resp.json()


async def row_of(intake, ref: str):
    async with intake.engine.connect() as conn:
        return (await conn.execute(tables.referrals.select().where(tables.referrals.c.reference == ref))).one()


async def status_of(intake, ref: str) -> dict:
    resp = await intake.call("GET", f"/v1/referrals/{ref}", "dev-social-care")
    assert resp.status == 200
    return await resp.json()


def strategy_events(messages, ref: str) -> list[dict]:
    return [body for m in messages if m.routing_key == EVENT and (body := json.loads(m.body))["reference"] == ref]


async def test_wrong_callers_and_malformed_bodies_are_refused_audited_and_change_nothing(intake):
    conn, queue = await bind_events(intake.settings)
    try:
        ref = await submit(intake)
        before = await row_of(intake, ref)
        status, body = await post(intake, ref, "dev-prevent", record())
        assert (status, body["reason"]) == (403, "wrong_role")
        status, body = await post(intake, ref, "other-social-care", record())
        assert (status, body["reason"]) == (403, "wrong_organisation")
        naive = (datetime.now(UTC) - timedelta(hours=1)).replace(tzinfo=None).isoformat()
        bad = {
            "missing decision": (record(decision=None), "decision"),
            "missing parents_informed": (record(parents_informed=None), "parents_informed"),
            "unknown agency": (record(agencies=["police", "social_services"]), "agencies[1]"),
            "unknown decision": (record(decision="section_17"), "decision"),
            "naive held_at": (record(held_at=naive), "held_at"),
            "held_at a number": (record(held_at=1_700_000_000), "held_at"),
            "held_at in the future": (record(held_at=(datetime.now(UTC) + timedelta(hours=2)).isoformat()),
                                      "held_at"),
            "held_at long before receipt": (record(held_at="2020-01-01T10:00:00+00:00"), "held_at"),
            "held_at out of range": (record(held_at="0001-01-01T00:00:00+01:00"), "held_at"),
            "empty agencies": (record(agencies=[]), "agencies"),
            "repeated agency": (record(agencies=["police", "police"]), "agencies"),
            "not a bool": (record(parents_informed="yes"), "parents_informed"),
            "unknown field": (record(minutes="x"), "(unknown field #6)"),
        }
        for case, (payload, loc) in bad.items():
            status, problem = await post(intake, ref, "dev-social-care", payload)
            assert (status, problem["reason"], problem["type"]) == (422, "schema_invalid",
                                                                    "/problems/validation-failed"), case
            assert loc in [e["loc"] for e in problem["errors"]], (case, problem["errors"])
        resp = await intake.call("POST", f"/v1/referrals/{ref}/{ACTION}", "dev-social-care", raw=b"")
        assert (resp.status, (await resp.json())["reason"]) == (400, "malformed_json")  # a body is required
        messages = await drain(queue, 1.0)
    finally:
        await conn.close()
    assert [m.routing_key for m in messages] == ["referral.received"]
    assert await row_of(intake, ref) == before
    refused = [(r.outcome, r.actor, r.detail["reason"]) for r in await intake.audit_rows()
               if r.action == f"referral.{ACTION}"]
    assert refused[:2] == [("rejected", "dev-prevent", "wrong_role"),
                           ("rejected", "other-social-care", "wrong_organisation")]
    assert refused[2:2 + len(bad)] == [("rejected", "dev-social-care", "schema_invalid")] * len(bad)


async def test_recorded_once_before_acknowledgement_repeat_conflict_and_close(intake):
    conn, queue = await bind_events(intake.settings)
    try:
        ref = await submit(intake, immediate_risk=True)
        held_at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=20)
        payload = record(held_at=held_at.isoformat(), agencies=["police", "local_authority", "nspcc"],
                         decision="immediate_safeguarding_action", legal_advice_sought=False)
        status, first = await post(intake, ref, "dev-social-care", payload)
        assert status == 200  # no acknowledgement needed: immediate safety does not wait
        assert first == {
            "reference": ref, "status": "received", "action": ACTION, "held_at": held_at.isoformat(),
            "agencies": ["local_authority", "police", "nspcc"], "legal_advice_sought": False,
            "decision": "immediate_safeguarding_action", "parents_informed": False,
            "family_contact_lifted": False, "strategy_at": first["strategy_at"]}
        # the same record, agencies in another order and held_at in London time: the recorded reply
        same = {**payload, "agencies": ["nspcc", "police", "local_authority"],
                "held_at": held_at.astimezone(LONDON).isoformat(), "notes": "later notes are not a new record"}
        assert await post(intake, ref, "dev-social-care", same) == (200, first)
        for change in ({"decision": "section_47_enquiry"}, {"agencies": ["local_authority", "police"]},
                       {"legal_advice_sought": True}, {"parents_informed": True},
                       {"held_at": (held_at - timedelta(minutes=1)).isoformat()}):
            status, problem = await post(intake, ref, "dev-social-care", {**payload, **change})
            assert (status, problem["reason"]) == (409, "already_recorded"), change
        ack = await intake.call("POST", f"/v1/referrals/{ref}/acknowledgement", "dev-social-care")
        assert ack.status == 200  # and the LA track goes on
        view = await status_of(intake, ref)
        assert [s["event"] for s in view["timeline"]] == ["received", "strategy_discussion_recorded", "acknowledged"]
        assert view["timeline"][1]["by"] == "dev-social-care"
        assert view["strategy_discussion"] == {
            "held_at": held_at.astimezone(LONDON).isoformat(), "agencies": ["local_authority", "police", "nspcc"],
            "legal_advice_sought": False, "decision": "immediate_safeguarding_action", "parents_informed": False,
            "family_contact_lifted": False, "recorded_at": view["timeline"][1]["at"], "recorded_by": "dev-social-care"}

        closed = await submit(intake)
        assert (await intake.call("POST", f"/v1/referrals/{closed}/close", "dev-social-care")).status == 200
        status, problem = await post(intake, closed, "dev-social-care", record())
        assert (status, problem["reason"]) == (409, "closed")
        assert (await status_of(intake, closed))["strategy_discussion"] is None
        # closing after the record: the same record again is still the recorded reply
        assert (await intake.call("POST", f"/v1/referrals/{ref}/close", "dev-prevent")).status == 200
        status, again = await post(intake, ref, "dev-social-care", payload)
        assert (status, {**again, "status": "received"}) == (200, first)
        status, problem = await post(intake, ref, "dev-social-care", {**payload, "decision": "no_immediate_action"})
        assert (status, problem["reason"]) == (409, "already_recorded")
        messages = await drain(queue, 2.0)
    finally:
        await conn.close()
    [event] = strategy_events(messages, ref)
    assert StrategyDiscussionRecorded.model_validate(event)
    assert {k: event[k] for k in ("held_at", "agencies", "legal_advice_sought", "decision", "parents_informed",
                                  "family_contact_lifted")} == {
        "held_at": held_at.isoformat().replace("+00:00", "Z"), "agencies": ["local_authority", "police", "nspcc"],
        "legal_advice_sought": False, "decision": "immediate_safeguarding_action", "parents_informed": False,
        "family_contact_lifted": False}
    assert (event["la_code"], event["force"]) == ("E99999999", "dev-force")
    assert not strategy_events(messages, closed)
    audit = [(r.outcome, r.detail) for r in await intake.audit_rows()
             if r.action == f"referral.{ACTION}" and r.reference == ref]
    assert audit[0] == ("ok", {"decision": "immediate_safeguarding_action", "family_contact_lifted": False})
    assert [o for o, _ in audit] == ["ok", "repeated", *["rejected"] * 5, "repeated", "rejected"]


async def test_the_family_contact_hold_is_lifted_only_with_ctp_prevent_and_the_parents_informed(intake):
    table = {  # (ctp_prevent among the agencies, parents informed) -> hold lifted
        (True, True): True, (True, False): False, (False, True): False, (False, False): False}
    conn, queue = await bind_events(intake.settings)
    try:
        refs = {}
        for (ctp, informed), lifted in table.items():
            ref = refs[ctp, informed] = await submit(intake)
            agencies = ["local_authority", "police", *(["ctp_prevent"] if ctp else [])]
            status, reply = await post(intake, ref, "dev-social-care",
                                       record(agencies=agencies, parents_informed=informed))
            assert (status, reply["family_contact_lifted"]) == (200, lifted), (ctp, informed)
            view = await status_of(intake, ref)
            assert view["holding"]["no_family_contact"] is (not lifted), (ctp, informed)
            assert view["strategy_discussion"]["family_contact_lifted"] is lifted
            assert view["holding"]["no_further_sharing"] is True  # only the CTP checks lift that one
            assert (await row_of(intake, ref)).family_contact_hold is (not lifted)
        # without a hold there is nothing to lift
        unheld = await submit(intake, holding_instructions={
            "no_further_sharing": False, "no_family_contact": False, "reason": "none"})
        status, reply = await post(intake, unheld, "dev-social-care", record(parents_informed=True))
        assert (status, reply["family_contact_lifted"]) == (200, False)
        assert (await status_of(intake, unheld))["holding"]["no_family_contact"] is False
        # lifted by the discussion: CTP feedback then reaches the guardians, and lifts nothing itself
        ref = refs[True, True]
        assert (await intake.call("POST", f"/v1/referrals/{ref}/checks", "dev-prevent",
                                  {"outcome": "suitable_for_prevent"})).status == 200
        resp = await intake.call("POST", f"/v1/referrals/{ref}/feedback", "dev-prevent", {"family_contact": "keep"})
        feedback = await resp.json()
        assert (resp.status, feedback["family_contact_lifted"], feedback["audiences"]) == (
            200, False, ["social_care", "referrer", "guardians"])
        status, reply = await post(intake, ref, "dev-social-care", record(
            agencies=["local_authority", "police", "ctp_prevent"], parents_informed=True))
        assert (status, reply["family_contact_lifted"]) == (200, True)  # a repeat still says what it did
        # the hold kept by a feedback release is lifted by a later discussion
        kept = await submit(intake)
        assert (await intake.call("POST", f"/v1/referrals/{kept}/checks", "dev-prevent",
                                  {"outcome": "not_suitable"})).status == 200
        assert (await intake.call("POST", f"/v1/referrals/{kept}/feedback", "dev-prevent",
                                  {"family_contact": "keep"})).status == 200
        status, reply = await post(intake, kept, "dev-social-care", record(parents_informed=True))
        assert (status, reply["family_contact_lifted"]) == (200, True)
        assert (await status_of(intake, kept))["holding"]["no_family_contact"] is False
        resp = await intake.call("POST", f"/v1/referrals/{kept}/feedback", "dev-prevent", {"family_contact": "keep"})
        assert (await resp.json())["family_contact_lifted"] is False  # the release's own result, unchanged
        messages = await drain(queue, 2.0)
    finally:
        await conn.close()
    for (ctp, informed), lifted in table.items():
        [event] = strategy_events(messages, refs[ctp, informed])
        assert (event["family_contact_lifted"], event["parents_informed"], "ctp_prevent" in event["agencies"]) == (
            lifted, informed, ctp)
    assert [e["family_contact_lifted"] for e in strategy_events(messages, kept)] == [True]
    audit = {r.reference: r.detail for r in await intake.audit_rows()
             if r.action == f"referral.{ACTION}" and r.outcome == "ok"}
    assert audit[refs[True, True]] == {"decision": "section_47_enquiry", "family_contact_lifted": True}
    assert audit[refs[True, False]] == {"decision": "section_47_enquiry", "family_contact_lifted": False}


async def test_a_canary_in_the_notes_is_sealed_to_the_teams_and_nowhere_in_clear(intake, log_stream):  # noqa: F811
    canary = new_canary()
    notes = f"{canary} — discussed with the school; father not told yet"
    conn, queue = await bind_events(intake.settings)
    replies = []
    try:
        ref = await submit(intake)
        for client_id, payload in (("dev-social-care", record(notes=notes)),           # recorded
                                   ("dev-social-care", record(notes=notes)),           # repeated
                                   ("dev-social-care", record(notes=notes, decision="no_immediate_action")),
                                   ("dev-prevent", record(notes=notes)),               # wrong role
                                   ("dev-social-care", record(notes=notes, agencies=[]))):  # 422
            resp = await intake.call("POST", f"/v1/referrals/{ref}/{ACTION}", client_id, payload)
            replies.append(await resp.text())
        for client_id in ("dev-social-care", "dev-prevent"):
            replies.append(await (await intake.call("GET", f"/v1/referrals/{ref}", client_id)).text())
            replies.append(await (await intake.call("GET", f"/v1/referrals/{ref}/sealed", client_id)).text())
        messages = await drain(queue, 2.0)
    finally:
        await conn.close()
    assert [json.loads(r).get("status") for r in replies[:5]] == ["received", "received", 409, 403, 422]
    assert not any(canary in r for r in replies)
    assert [m.routing_key for m in messages] == ["referral.received", EVENT]
    for message in messages:
        wire = message.body.decode() + json.dumps(dict(message.headers or {}), default=str)
        assert canary not in wire, message.routing_key
    row = await row_of(intake, ref)
    envelope = row.strategy_notes_sealed
    assert envelope["ciphertext"] and canary not in json.dumps(envelope)
    for org in ("E99999999", "dev-force"):  # sealed to both recipient teams
        assert json.loads(open_envelope(envelope, row.id, intake.team_key(org))) == notes
    dump = await _dump_database(intake.engine)
    assert ref in dump and "referral.strategy-discussion" in dump
    assert canary not in dump
    out, err = io.StringIO(), io.StringIO()
    assert await trace.trace_command(intake.settings, ref, as_json=True, out=out, err=err) == 0
    steps = [e["step"] for e in json.loads(out.getvalue())["entries"]]
    assert "strategy discussion recorded" in steps and "strategy discussion recorded [repeated]" in steps
    assert canary not in out.getvalue() + err.getvalue()
    await asyncio.sleep(0.1)
    logs = log_stream.getvalue()
    assert ref in logs and canary not in logs
