"""Hypothesis-generated bad messages on every consumer, on the real broker and database:
intake.submissions (§3.4), escalation.events and notifier.requests. Every bad message is
parked on `<queue>.parked` with a reason header (intake also answers it with its problem
document), none is retried (no crash loop), the consumer stays attached, and a valid
message published after the garbage is still processed."""
from __future__ import annotations

import uuid
import json
from datetime import timedelta

import aio_pika

from services.escalation.entrypoints.amqp import DISPATCH as ESCALATION_DISPATCH
from services.notifier.entrypoints.amqp import DISPATCH as NOTIFIER_DISPATCH
from shared import bus
from shared.crypto import load_signing_key
from shared.messages import ChecksCompleted, FeedbackReleased, ReferralAcknowledged, ReferralClosed, ReferralDecided
from tests.factories import london, referral, referral_event, referral_received
from tests.fuzz.amqp_harness import Bad, consumed, consumers, drain, publish, text
from tests.fuzz.amqp_messages import (
    SUBMISSION_KINDS, escalation_extra, notifier_extra, service_kinds, service_message, submission, submission_headers,
)
from tests.fuzz.amqp_strategies import stratified, tally

PER_KIND = 4  # generated bad messages per way of breaking one: 40-52 per consumer


async def _garbage(channel, queue: str, cases: list[tuple[Bad, frozenset[str] | None]]) -> dict[str, str]:
    """Publish every case; return {tag: parked reason} once all are parked."""
    retries = consumed(queue, "retry")
    for bad, _ in cases:
        await publish(channel, bad)
    parked = {text(m.correlation_id): text(m.headers["x-parked-reason"])
              for m in await drain(channel, f"{queue}.parked", len(cases))}
    assert consumed(queue, "retry") == retries, "a bad message was retried (handler raised)"
    for bad, reasons in cases:
        assert bad.tag in parked, (bad.kind, bad.routing_key)
        assert reasons is None or parked[bad.tag] in reasons, (bad.kind, parked[bad.tag])
        assert not parked[bad.tag].startswith("delivery_limit"), bad.kind
    assert await consumers(channel, queue) >= 1
    return parked


def _record(reliability, queue: str, cases, parked: dict[str, str], sentinel: str) -> None:
    reliability.row("fuzz", target=queue, tool="hypothesis", cases=len(cases),
                    outcomes=f"parked {len(parked)} ({tally(list(parked.values()), str)}); valid after: {sentinel}",
                    failures=0)
    print(queue, len(cases), "kinds:", tally([b for b, _ in cases], lambda b: b.kind.split(":")[0]),
          "| reasons:", tally(list(parked.values()), str))


async def test_escalation_events_parks_every_bad_message(esc, reliability):
    first = referral_received(london(2026, 11, 9, 10))
    at = first.at + timedelta(hours=1)
    valid = [("intake", e) for e in (
        first, referral_event(ReferralAcknowledged, first, at, client_id="dev-social-care"),
        referral_event(ReferralDecided, first, at, pathway="early_help"),
        referral_event(ChecksCompleted, first, at, outcome="not_suitable"),
        referral_event(FeedbackReleased, first, at, family_contact_lifted=False, audiences=("referrer",)),
        referral_event(ReferralClosed, first, at))]
    keys = {s: load_signing_key(esc.keys_dir / f"service-{s}.ed25519") for s in ("intake", "escalation", "notifier")}
    allowed, extra = frozenset({"intake"}), escalation_extra(keys, set(ESCALATION_DISPATCH.routes))
    cases = stratified(lambda kind: service_message(valid, keys, allowed=allowed, extra=extra, kind=kind),
                       service_kinds(keys, allowed, extra), PER_KIND)
    async with esc.app():
        async with esc.connection.channel() as channel:
            parked = await _garbage(channel, bus.ESCALATION_EVENTS, cases)
        sentinel = referral_received(london(2026, 11, 9, 11))
        await esc.wait_processed(await esc.publish(sentinel))
    _record(reliability, bus.ESCALATION_EVENTS, cases, parked, "processed")


async def test_notifier_requests_parks_every_bad_message(world, tmp_path, reliability):
    keys = {s: load_signing_key(tmp_path / "keys" / f"service-{s}.ed25519")
            for s in ("intake", "escalation", "notifier")}
    request = world.request("receipt", "la:mash_team")
    feedback = FeedbackReleased(referral_id=world.referral_id, reference=world.reference, force="dev-force",
                                la_code="E99999999", at=request.requested_at, family_contact_lifted=False,
                                audiences=("referrer",))
    valid = [("escalation", request), ("intake", feedback)]
    producers = {key: route.model.producer for key, route in NOTIFIER_DISPATCH.routes.items()}
    allowed, extra = frozenset({"escalation", "intake", "notifier"}), notifier_extra(keys, producers)
    cases = stratified(lambda kind: service_message(valid, keys, allowed=allowed, extra=extra, kind=kind),
                       service_kinds(keys, allowed, extra), PER_KIND)
    async with world.connection.channel() as channel:
        parked = await _garbage(channel, bus.NOTIFIER_REQUESTS, cases)
    await world.received()  # a valid referral.received after the garbage: its hold is recorded
    _record(reliability, bus.NOTIFIER_REQUESTS, cases, parked, "processed")


# refused before the client's signature verified: never answered on the client's reply queue
UNVERIFIED = {"missing_signature", "bad_signature", "unknown_keyid", "stale_created", "malformed_signature",
              "body_too_large", "missing_nonce"}


async def test_intake_submissions_answers_and_parks_every_bad_message(fuzz_intake, reliability):
    key = fuzz_intake.key("dev-mash")
    conn = await aio_pika.connect(fuzz_intake.settings.amqp_url)
    try:
        channel = await conn.channel()
        replies = await channel.declare_queue(f"reply.dev-mash.{uuid.uuid4().hex}", exclusive=True)
        cases = stratified(lambda kind: submission(key, referral(), replies.name, kind), SUBMISSION_KINDS, PER_KIND)
        parked = await _garbage(channel, bus.INTAKE_SUBMISSIONS, cases)
        # a reply goes to `reply.dev-mash.…` only for a message whose signature verified (issue 18 #8);
        # one refused before or at the signature check is answered on direct reply-to only
        answers = {text(m.correlation_id): json.loads(m.body) for m in await drain(channel, replies.name, len(cases),
                                                                                    timeout=5.0)}
        assert set(answers) <= {bad.tag for bad, _ in cases} and answers
        for bad, _ in cases:
            doc = answers.get(bad.tag)
            if doc is None:
                assert parked[bad.tag] in UNVERIFIED, (bad.kind, parked[bad.tag])
                continue
            assert set(doc) >= {"type", "title", "status", "reason"} and 400 <= doc["status"] < 500, doc
            # (a short nonce is refused after the signature verified: answered, as missing_nonce)
            assert doc["reason"] == parked[bad.tag] and doc["reason"] not in UNVERIFIED - {"missing_nonce"}
        good = referral()
        body = json.dumps(good).encode()
        await publish(channel, Bad("valid", body, "referral", submission_headers(key, "dev-mash", body),
                                   exchange=bus.SUBMISSIONS, reply_to=replies.name))
        [reply] = await drain(channel, replies.name, 1)
        assert json.loads(reply.body)["status"] == "received"
    finally:
        await conn.close()
    statuses = tally(list(answers.values()), lambda d: str(d["status"]))
    _record(reliability, bus.INTAKE_SUBMISSIONS, cases, parked, f"accepted (problem replies {statuses})")
