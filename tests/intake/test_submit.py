"""POST /v1/referrals: every refusal is audited with its reason and stores and
publishes nothing; an accepted referral gets the 202 reply and one event."""
from __future__ import annotations

import asyncio
import json
import re
import time
from datetime import datetime, timedelta

import aio_pika
import pytest
import sqlalchemy as sa

from services.intake.entrypoints.http import CONTEXT
from prometheus_client import REGISTRY, generate_latest

from services.intake.adapters import tables
from services.intake.domain.referral import Referral
from shared.bus.topology import AUDIT_CHECKPOINTS
from shared.clock import LONDON
from tests.factories import referral, referral_body, years_ago
from tests.intake.conftest import make_settings

REFERRAL = referral_body()


async def bind_events(settings):
    """A test queue bound to every event (safeguard.events '#')."""
    conn = await aio_pika.connect(settings.amqp_url)
    channel = await conn.channel()
    queue = await channel.declare_queue(exclusive=True)
    await queue.bind("safeguard.events", "#")
    return conn, queue


async def drain(queue, wait: float = 1.0) -> list:
    got, deadline = [], asyncio.get_running_loop().time() + wait
    while asyncio.get_running_loop().time() < deadline:
        msg = await queue.get(fail=False)
        if msg is None:
            await asyncio.sleep(0.05)
            continue
        await msg.ack()
        got.append(msg)
    return got


def _headers(intake, body=REFERRAL, **kw):
    return {**intake.signed("POST", "/v1/referrals", "dev-mash", body, **kw), "Content-Type": "application/json"}


CASES = {
    "unsigned": (401, "missing_signature", lambda i: {"Content-Type": "application/json"}, REFERRAL),
    "wrong_key": (401, "bad_signature", lambda i: _headers(i, key_as="dev-prevent"), REFERRAL),
    "unknown_client": (401, "unknown_keyid",
                       lambda i: {**i.signed("POST", "/v1/referrals", "nobody", REFERRAL, key_as="dev-mash"),
                                  "Content-Type": "application/json"}, REFERRAL),
    "tampered_body": (401, "digest_mismatch", lambda i: _headers(i), REFERRAL.replace(b"11-15", b"16-17")),
    "stale_created": (401, "stale_created", lambda i: _headers(i, created=int(time.time()) - 3600), REFERRAL),
    "wrong_role": (403, "wrong_role", lambda i: {**i.signed("POST", "/v1/referrals", "dev-prevent", REFERRAL),
                                                 "Content-Type": "application/json"}, REFERRAL),
    "wrong_force": (403, "wrong_organisation", None, referral_body(force="other-force")),
    "malformed_json": (400, "malformed_json", None, b'{"force": '),
    "schema": (422, "schema_invalid", None, None),
    "unknown_la": (422, "unknown_organisation", None, referral_body(la_code="E12345678")),
    "oversize": (413, "body_too_large", None, b'{"x": "' + b"a" * 300_000 + b'"}'),
    "content_type": (415, "unsupported_media_type", "text/plain", REFERRAL),
}


async def _refuse(intake, case: str) -> None:
    status, reason, headers, body = CASES[case]
    if case == "schema":
        doc = referral(age_band="42", content={**referral()["content"], "concerns": "SECRET-VALUE-xyz"},
                       extra_field="SECRET-VALUE-abc")
        doc["content"]["subject"]["date_of_birth"] = "SECRET-VALUE-dob"
        doc["content"]["subject"]["Jane SECRET-VALUE-key"] = "x"  # a name sent as a key
        body = json.dumps(doc).encode()
    if callable(headers):
        resp = await intake.client.post("/v1/referrals", data=body, headers=headers(intake))
    else:
        h = _headers(intake, body)
        if isinstance(headers, str):
            h["Content-Type"] = headers
        resp = await intake.client.post("/v1/referrals", data=body, headers=h)
    text = await resp.text()
    assert resp.status == status, (case, text)
    problem = json.loads(text)
    assert resp.content_type == "application/problem+json"
    assert problem["status"] == status and problem["type"].startswith("/problems/")
    assert problem["reason"] == reason, case
    assert "SECRET-VALUE" not in text and "CTP checks pending" not in text
    if case == "schema":
        assert {e["loc"] for e in problem["errors"]} >= {"age_band", "(unknown field #11)",
                                                        "content.subject.date_of_birth",
                                                        "content.subject.(unknown field #8)"}
        assert all(set(e) == {"loc", "type", "msg"} for e in problem["errors"])
    before_authentication = status in (401, 413)
    if before_authentication:  # counted, written as one aggregate entry a minute (issue 18 #7)
        ctx = intake.app[CONTEXT]
        assert await ctx.rejections.flush(intake.engine, ctx.clock()) == 1
    entry = (await intake.audit_rows())[-1]
    assert (entry.action, entry.outcome, entry.detail["reason"]) == ("referral.submit", "rejected", reason), case
    if before_authentication:
        assert entry.actor == "unauthenticated" and entry.detail["count"] == 1, case
        assert entry.detail.get("claimed_keyid") == (None if case in ("unsigned", "oversize") else
                                                     "unknown" if case == "unknown_client" else "dev-mash"), case
    elif case not in ("unsigned", "unknown_client", "oversize"):
        assert entry.actor == ("dev-prevent" if case == "wrong_role" else "dev-mash"), case
        assert entry.detail["client_id"] == entry.actor
    assert "SECRET-VALUE" not in json.dumps(entry.detail)


def rejected(reason: str) -> float:
    labels = {"action": "referral.submit", "reason": reason, "via": "http"}
    return REGISTRY.get_sample_value("safeguard_intake_rejected_total", labels) or 0.0


async def events_in_outbox(intake) -> int:
    """Outbox rows other than the audit checkpoint copies (a start record is always there)."""
    async with intake.engine.connect() as conn:
        return int(await conn.scalar(sa.select(sa.func.count()).select_from(tables.outbox)
                                     .where(tables.outbox.c.routing_key != AUDIT_CHECKPOINTS)))


async def test_bad_input_is_refused_audited_and_stores_and_publishes_nothing(intake):
    conn, queue = await bind_events(intake.settings)
    before = {case: rejected(reason) for case, (_, reason, _, _) in CASES.items()}
    try:
        for case in CASES:
            await _refuse(intake, case)
        assert len(await intake.audit_rows()) == len(CASES)
        assert {case: rejected(CASES[case][1]) - n for case, n in before.items()} == dict.fromkeys(CASES, 1.0)
        assert "SECRET-VALUE" not in generate_latest(REGISTRY).decode()
        assert await intake.count(tables.referrals) == 0
        assert await events_in_outbox(intake) == 0
        assert await intake.count(tables.idempotency_keys) == 0
        assert await drain(queue, 0.5) == []
    finally:
        await conn.close()


async def test_replayed_nonce_is_refused(intake):
    headers = _headers(intake)
    first = await intake.client.post("/v1/referrals", data=REFERRAL, headers=headers)
    assert first.status == 202
    again = await intake.client.post("/v1/referrals", data=REFERRAL, headers=headers)
    assert again.status == 401
    assert (await again.json())["reason"] == "replayed_nonce"
    assert await intake.count(tables.referrals) == 1
    ctx = intake.app[CONTEXT]
    await ctx.rejections.flush(intake.engine, ctx.clock())
    entry = (await intake.audit_rows())[-1]
    assert (entry.actor, entry.outcome, entry.detail["reason"]) == ("unauthenticated", "rejected", "replayed_nonce")
    assert entry.detail["claimed_keyid"] == "dev-mash"


async def test_rate_limit_gives_429_with_retry_after(tmp_path, amqp_url, pg_url, aiohttp_client):
    from services.intake.bootstrap import create_app
    from tests.intake.conftest import Intake

    settings = make_settings(tmp_path, amqp_url, pg_url, rate_limit_per_minute=2)
    intake = Intake(await aiohttp_client(create_app(settings)), settings, tmp_path)
    statuses = [(await intake.submit(referral(client_reference=f"R{i}"))).status for i in range(2)]
    assert statuses == [202, 202]
    resp = await intake.submit(referral(client_reference="R3"))
    assert resp.status == 429
    assert int(resp.headers["Retry-After"]) >= 1
    assert await intake.count(tables.referrals) == 2
    assert (await intake.audit_rows())[-1].detail["reason"] == "rate_limited"


async def test_idempotency_key_replays_and_conflicts(intake):
    doc = referral()
    first = await intake.submit(doc, headers={"Idempotency-Key": "k-1"})
    again = await intake.submit(doc, headers={"Idempotency-Key": "k-1"})
    assert first.status == again.status == 202
    assert await first.json() == await again.json()
    other = await intake.submit(referral(client_reference="OTHER"), headers={"Idempotency-Key": "k-1"})
    assert other.status == 409
    assert (await other.json())["reason"] == "idempotency_conflict"
    # keys are scoped per client: nothing else was stored or published
    assert await intake.count(tables.referrals) == 1
    assert await events_in_outbox(intake) == 1


async def test_accepted_referral_replies_202_and_publishes_sealed_contacts_only(intake):
    conn, queue = await bind_events(intake.settings)
    try:
        resp = await intake.submit(referral())
        assert resp.status == 202
        reply = await resp.json()
        assert set(reply) == {"referral_id", "reference", "status", "received_at", "out_of_hours",
                              "acknowledge_by", "checks_due_by"}
        assert reply["status"] == "received"
        assert re.fullmatch(r"PRV-\d{4}-000001", reply["reference"])
        for k in ("received_at", "acknowledge_by", "checks_due_by"):
            assert re.search(r"[+-]\d\d:\d\d$", reply[k])
        second = await (await intake.submit(referral())).json()
        assert second["reference"].endswith("000002")
        msgs = await drain(queue, 1.5)
        assert [m.routing_key for m in msgs] == ["referral.received"] * 2
        event = json.loads(msgs[0].body)
        assert event["reference"] == reply["reference"] and event["contacts_sealed"]["ciphertext"]
        assert "content" not in event and "content_sealed" not in event
        assert event["holding_review_by"] == "2026-12-22"  # for CTP Prevent's review reminder
        assert "CTP checks pending" not in msgs[0].body.decode()  # the hold's reason is free text: never on the bus
        assert msgs[0].headers["x-safeguard-producer"] == "intake"
    finally:
        await conn.close()


def test_the_example_referrals_are_valid_one_with_and_one_without_holding_instructions():
    from pathlib import Path

    held = Referral.model_validate_json(Path("examples/referral.json").read_bytes())
    free = Referral.model_validate_json(Path("examples/referral-no-hold.json").read_bytes())
    assert held.holding_instructions.no_family_contact and held.holding_instructions.no_further_sharing
    assert not (free.holding_instructions.no_family_contact or free.holding_instructions.no_further_sharing)


async def test_the_age_band_must_agree_with_the_date_of_birth_and_a_subject_of_18_is_refused(intake):
    """DESIGN §4 (issue 16): a contradicting age band, or a subject aged 18 or over on the day
    of receipt, is a 422 naming the field, never its value; an unknown date of birth is fine."""
    today = datetime.now(LONDON).date()
    cases = [
        ("11-15", years_ago(8), "age_band", "age_band_mismatch"),
        ("16-17", years_ago(18), "content.subject.date_of_birth", "not_a_child"),
        ("0-10", today + timedelta(days=3), "content.subject.date_of_birth", "date_in_future"),
    ]
    for band, born, loc, kind in cases:
        doc = referral(age_band=band)
        doc["content"]["subject"]["date_of_birth"] = born.isoformat()
        resp = await intake.submit(doc)
        problem = await resp.json()
        assert resp.status == 422 and problem["errors"] == [{"loc": loc, "type": kind, "msg": problem["errors"][0]["msg"]}]
        assert born.isoformat() not in json.dumps(problem)
    unknown = referral(age_band="16-17")
    del unknown["content"]["subject"]["date_of_birth"]
    unknown["content"] |= {"how_concern_came_to_light": "a teacher noticed", "person_aware_of_referral": "no",
                           "family_aware_of_referral": "unknown", "previous_prevent_involvement": "no",
                           "previous_channel_involvement": "no"}
    assert (await intake.submit(unknown)).status == 202
    ten = referral(age_band="0-10")
    ten["content"]["subject"]["date_of_birth"] = years_ago(10).isoformat()
    assert (await intake.submit(ten)).status == 202  # ten today: still 0-10
