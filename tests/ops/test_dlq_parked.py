"""`safeguard dlq replay` and `safeguard retention run` with parked copies that hold no
content in clear (issue 18 #1 and #3), against the real broker.

- a submission parked sealed (to its recipient teams) replays only with one of those teams'
  keys, as it was first published;
- a copy whose sealed sections were removed is never replayed, not even with --force;
- retention re-parks what the broker dead-lettered itself (in clear) in the safe form and
  (sealed to the recipient teams the body names, or without its body when none resolves) and
  deletes what has been parked longer than `[system] parking_ttl_days`."""
from __future__ import annotations

import asyncio
import base64
import functools
import io
import json
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from safeguard import retention
from safeguard.dlq import replay_command
from shared import bus
from services.intake.recipients import parked_recipients
from shared.bus.parked import open_parked
from shared.crypto import CryptoError, load_private_sealing_key, load_signing_key
from tests.bus.helpers import Recorder, get_one, new_id, ready_count
from tests.factories import canary_phone, new_canary, referral_body, referral_received

pytestmark = pytest.mark.broker
SUBMISSIONS = bus.queue_spec(bus.INTAKE_SUBMISSIONS)
EVENTS = bus.queue_spec(bus.ESCALATION_EVENTS)
ENVELOPE = {"v": 1, "alg": "XChaCha20-Poly1305", "key_version": 1, "nonce": "bm9uY2U=",
            "ciphertext": "Y2lwaGVydGV4dA==", "recipients": [{"key_id": "notifier-1", "sealed_key": "c2VhbGVk"}]}


def submission_headers(settings, body: bytes) -> dict[str, str]:
    created, nonce = str(int(time.time())), uuid.uuid4().hex
    key = load_signing_key(settings.resolve_path("keys/dev-mash.ed25519"))
    signature = key.sign(body + b"\n" + created.encode() + b"\n" + nonce.encode()).signature
    return {"keyid": "dev-mash", "created": created, "nonce": nonce, "signature": base64.b64encode(signature).decode()}


def team_key_file(settings, org: str):
    return settings.resolve_path(f"keys/{org}.x25519")


async def _wait_count(connection, queue: str, n: int, timeout: float = 15) -> None:
    async with asyncio.timeout(timeout):
        while await ready_count(connection, queue) != n:
            await asyncio.sleep(0.05)


async def park_failing(connection, publisher, spec, publish, **kw) -> None:
    async def broken(message, n):
        raise RuntimeError("bug")

    consumer = bus.Consumer(connection, spec, Recorder(broken), publisher=publisher, retry_backoff_s=0.01, **kw)
    await consumer.start()
    try:
        await publish()
        await _wait_count(connection, spec.parking_queue, 1)
    finally:
        await consumer.stop()


async def test_a_sealed_submission_replays_only_with_a_recipient_teams_key(connection, publisher, settings):
    seal_to = functools.partial(parked_recipients, settings)
    body, message_id = referral_body(new_canary(), canary_phone()), new_id()
    headers = submission_headers(settings, body)

    async def publish():
        await publisher.publish_raw(bus.SUBMISSIONS, "referral", body, message_id=message_id, headers=headers)

    await park_failing(connection, publisher, SUBMISSIONS, publish, verify_keys=None, seal_to=seal_to)
    out = io.StringIO()
    assert await replay_command(settings, message_id=message_id, out=out) == 1
    assert out.getvalue().startswith("refused") and "--key" in out.getvalue()
    out = io.StringIO()  # the notifier's key is no recipient team's: refused, naming the teams' key ids
    assert await replay_command(settings, message_id=message_id, key_file=team_key_file(settings, "notifier"),
                                out=out) == 1
    assert out.getvalue().startswith("refused") and "sealed to E99999999-1, dev-force-1" in out.getvalue()
    assert await ready_count(connection, SUBMISSIONS.parking_queue) == 1
    out = io.StringIO()
    rc = await replay_command(settings, message_id=message_id, key_file=team_key_file(settings, "dev-force"), out=out)
    assert rc == 0, out.getvalue()
    replayed = await get_one(connection, bus.INTAKE_SUBMISSIONS)
    assert (replayed.body, replayed.message_id) == (body, message_id)  # as the MASH system published it
    assert {k: replayed.headers[k] for k in headers} == headers
    assert await ready_count(connection, SUBMISSIONS.parking_queue) == 0


async def test_a_copy_without_its_sealed_sections_is_never_replayed(connection, publisher, settings, verify_keys):
    event = referral_received(datetime.now(UTC), contacts_sealed=ENVELOPE)
    message_id = new_id()

    async def publish():
        await publisher.publish(bus.EVENTS, "referral.received", event.to_bytes(), message_id=message_id)

    await park_failing(connection, publisher, EVENTS, publish, verify_keys=verify_keys, allowed_producers={"intake"})
    for force in (False, True):
        out = io.StringIO()
        assert await replay_command(settings, message_id=message_id, force=force, out=out) == 1
        assert out.getvalue().startswith("refused") and "sealed sections were removed" in out.getvalue()
    assert await ready_count(connection, EVENTS.parking_queue) == 1
    assert await ready_count(connection, bus.ESCALATION_EVENTS) == 0


async def _dead_letter_by_the_broker(connection, queue: str) -> None:
    async with connection.channel() as channel:  # a consumer nacks without requeue (or the delivery-limit backstop)
        incoming = await (await channel.declare_queue(queue, passive=True)).get(no_ack=False, timeout=5)
        await incoming.reject(requeue=False)


async def test_retention_reparks_clear_copies_safely_and_deletes_expired_ones(connection, publisher, settings):
    canary = new_canary()
    body, submission = referral_body(canary, canary_phone()), new_id()
    await publisher.publish_raw(bus.SUBMISSIONS, "referral", body, message_id=submission,
                                headers=submission_headers(settings, body))
    await _dead_letter_by_the_broker(connection, bus.INTAKE_SUBMISSIONS)
    garbage = f"not a referral {canary}".encode()  # no recipient team resolves: re-parked without its body
    await publisher.publish_raw(bus.SUBMISSIONS, "referral", garbage, message_id=new_id(),
                                headers=submission_headers(settings, garbage))
    await _dead_letter_by_the_broker(connection, bus.INTAKE_SUBMISSIONS)
    event = new_id()
    await publisher.publish(bus.EVENTS, "referral.received",
                            referral_received(datetime.now(UTC), contacts_sealed=ENVELOPE).to_bytes(), message_id=event)
    await _dead_letter_by_the_broker(connection, bus.ESCALATION_EVENTS)
    old = new_id()  # parked long ago (by a version before the TTL, or a queue declared without it)
    await publisher.publish_raw(bus.DEAD_LETTER, bus.ESCALATION_EVENTS, b"{}", message_id=old, headers={
        "x-parked-reason": "schema_invalid", "x-parked-at": (datetime.now(UTC) - timedelta(days=15)).isoformat(),
        "x-parked-from": bus.ESCALATION_EVENTS})
    await _wait_count(connection, EVENTS.parking_queue, 2)
    await _wait_count(connection, SUBMISSIONS.parking_queue, 2)

    report = {r.parking_queue: r for r in await retention.sweep_broker(settings)}
    assert (report[SUBMISSIONS.parking_queue].resealed, report[SUBMISSIONS.parking_queue].expired) == (2, 0)
    assert (report[EVENTS.parking_queue].resealed, report[EVENTS.parking_queue].expired) == (1, 1)
    assert report[EVENTS.parking_queue].remaining == 1
    parked = await get_one(connection, SUBMISSIONS.parking_queue)
    assert canary.encode() not in parked.body and parked.headers["x-parked-form"] == "sealed"
    assert json.loads(parked.body)["reason"] == "rejected"  # the broker's x-death reason
    for org in ("E99999999", "dev-force"):  # the teams the submission names
        assert open_parked(parked.body, load_private_sealing_key(team_key_file(settings, org))).body == body
    with pytest.raises(CryptoError, match="not sealed to this key"):
        open_parked(parked.body, load_private_sealing_key(team_key_file(settings, "notifier")))
    dropped = await get_one(connection, SUBMISSIONS.parking_queue)
    assert canary.encode() not in dropped.body and dropped.headers["x-parked-form"] == "metadata"
    assert json.loads(dropped.body)["sealed"] is None
    stripped = await get_one(connection, EVENTS.parking_queue)
    assert stripped.message_id == event and b"contacts_sealed" not in stripped.body
    assert stripped.headers["x-parked-form"] == "stripped"
    assert await ready_count(connection, EVENTS.parking_queue) == 0  # the old one is gone
    again = {r.parking_queue: r for r in await retention.sweep_broker(settings)}
    assert all((r.resealed, r.expired, r.remaining) == (0, 0, 0) for r in again.values())
