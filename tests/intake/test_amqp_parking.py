"""A rejected AMQP submission is never parked with its content in clear (DESIGN §5, issue 18 #1).

Each submission carries canaries in every content and contact string (the child's name,
the narrative, the guardians' contacts). Rejected — an unknown local authority (validly
signed), a schema-invalid body, a bad signature — it is parked as metadata only (message
id, client, reason, time, body size and SHA-256) with the original message sealed to the
`[system] parking_key`; without a parking key the body is dropped. `safeguard dlq show`
prints the metadata, `safeguard dlq open --key` the sealed original for an operator
holding the parking key's private half."""
from __future__ import annotations

import uuid
import hashlib
import io
import json
from pathlib import Path

import aio_pika
import pytest

from shared.config import SealingKey
from shared.crypto import b64e, generate_sealing_key, write_private_key
from tests.factories import canary_phone, new_canary, postcode_of, referral_body
from tests.intake.conftest import Intake, make_settings
from tests.intake.test_amqp import DirectReplies, get_one, signed_message

PARKED = "intake.submissions.parked"
SUBMISSION_HEADERS = {"keyid", "created", "nonce", "signature"}


def markers(canary: str, phone: str) -> list[str]:
    """Every form a canary takes in a submission (strings, e-mails, postcode, phone digits)."""
    return [canary, postcode_of(canary), phone, phone[1:]]


def leaks(parked: aio_pika.abc.AbstractIncomingMessage, found: list[str]) -> list[str]:
    text = "\n".join([parked.body.decode("utf-8", "replace"), repr(parked.headers), str(parked.message_id),
                      str(parked.correlation_id), str(parked.app_id), str(parked.reply_to)])
    return [m for m in found if m in text]


# case -> (overrides of the referral, tamper the signature, reason, verified client)
CASES = {
    "unknown_la": ({"la_code": "E11111111"}, False, "unknown_organisation", True),
    "schema_invalid": ({"age_band": "99-100"}, False, "schema_invalid", True),
    "bad_signature": ({}, True, "bad_signature", False),
}


def parking_key(directory: Path):
    key = generate_sealing_key()
    write_private_key(directory / "parking-test.x25519", bytes(key))
    return key, SealingKey(key_id="parking-test", public_key=b64e(bytes(key.public_key)))


@pytest.fixture
def with_key(tmp_path, amqp_url, pg_url):
    private, public = parking_key(tmp_path)
    return private, make_settings(tmp_path, amqp_url, pg_url, parking_key=public)


async def submit_and_take_parked(intake: Intake, body: bytes, tamper: bool):
    conn = await aio_pika.connect(intake.settings.amqp_url)
    try:
        channel = await conn.channel()
        direct = await DirectReplies.on(channel)  # answers a message whether or not it verifies
        exchange = await channel.get_exchange("safeguard.submissions")
        message = signed_message(intake, body, DirectReplies.NAME, tamper=tamper)
        await exchange.publish(message, "referral")
        reply = json.loads((await direct.get()).body)
        parked = await get_one(await channel.declare_queue(PARKED, passive=True))
    finally:
        await conn.close()
    return message, reply, parked


@pytest.mark.parametrize("case", list(CASES))
async def test_a_rejected_submission_is_parked_as_metadata_with_the_body_sealed(case, with_key, aiohttp_client,
                                                                              tmp_path):
    from services.intake.bootstrap import create_app

    private, settings = with_key
    intake = Intake(await aiohttp_client(create_app(settings)), settings, tmp_path)
    overrides, tamper, reason, verified = CASES[case]
    canary, phone = new_canary(), canary_phone()
    body = referral_body(canary, phone, **overrides)
    message, reply, parked = await submit_and_take_parked(intake, body, tamper)
    assert reply["reason"] == reason
    assert leaks(parked, markers(canary, phone)) == []  # nothing of the child, the narrative or the contacts
    assert not SUBMISSION_HEADERS & set(parked.headers)
    assert (parked.headers["x-parked-reason"], parked.headers["x-parked-form"]) == (reason, "sealed")
    doc = json.loads(parked.body)
    sent = message.body
    assert {k: doc[k] for k in ("form", "queue", "reason", "message_id", "client_id", "client_verified",
                                "body_bytes", "body_sha256")} == {
        "form": "sealed", "queue": "intake.submissions", "reason": reason, "message_id": message.message_id,
        "client_id": "dev-mash", "client_verified": verified, "body_bytes": len(sent),
        "body_sha256": hashlib.sha256(sent).hexdigest()}
    assert [r["key_id"] for r in doc["sealed"]["recipients"]] == ["parking-test"]
    from shared.bus.parked import open_parked

    opened = open_parked(parked.body, private)
    assert opened.body == sent and canary in opened.body.decode()  # the operator with the key gets it all back
    assert opened.headers["keyid"] == "dev-mash" and set(opened.headers) == SUBMISSION_HEADERS
    assert opened.message_id == message.message_id


@pytest.mark.parametrize("case", list(CASES))
async def test_without_a_parking_key_only_metadata_is_parked(case, tmp_path, amqp_url, pg_url, aiohttp_client):
    from services.intake.bootstrap import create_app

    settings = make_settings(tmp_path, amqp_url, pg_url, parking_key=None)
    intake = Intake(await aiohttp_client(create_app(settings)), settings, tmp_path)
    overrides, tamper, reason, _ = CASES[case]
    canary, phone = new_canary(), canary_phone()
    _, _, parked = await submit_and_take_parked(intake, referral_body(canary, phone, **overrides), tamper)
    assert leaks(parked, markers(canary, phone)) == []
    doc = json.loads(parked.body)
    assert (doc["form"], doc["reason"], doc["sealed"]) == ("metadata", reason, None)
    assert parked.headers["x-parked-form"] == "metadata"


async def test_dlq_show_prints_metadata_and_open_needs_the_parking_key(with_key, aiohttp_client, tmp_path):
    from safeguard.dlq import open_command, show_command
    from services.intake.bootstrap import create_app
    from tests.bus.helpers import ready_count

    private, settings = with_key
    intake = Intake(await aiohttp_client(create_app(settings)), settings, tmp_path)
    canary, phone = new_canary(), canary_phone()
    conn = await aio_pika.connect_robust(settings.amqp_url)
    try:
        channel = await conn.channel()
        replies = await channel.declare_queue(f"reply.dev-mash.{uuid.uuid4().hex}", exclusive=True)
        message = signed_message(intake, referral_body(canary, phone, la_code="E11111111"), replies.name)
        await (await channel.get_exchange("safeguard.submissions")).publish(message, "referral")
        await get_one(replies)
        await _wait_parked(conn)
        out, err = io.StringIO(), io.StringIO()
        assert await show_command(settings, message_id=message.message_id, out=out, err=err) == 0
        shown = json.loads(out.getvalue())
        assert (shown["reason"], shown["form"], shown["client_id"]) == ("unknown_organisation", "sealed", "dev-mash")
        assert shown["sealed_to"] == ["parking-test"] and leaks_in(out.getvalue() + err.getvalue(), canary, phone) == []
        out, err = io.StringIO(), io.StringIO()
        wrong = tmp_path / "wrong.x25519"
        write_private_key(wrong, bytes(generate_sealing_key()))
        assert await open_command(settings, message_id=message.message_id, key_file=wrong, out=out, err=err) == 1
        assert out.getvalue() == "" and "cannot open" in err.getvalue()
        out, err = io.StringIO(), io.StringIO()
        key_file = tmp_path / "parking-test.x25519"
        assert await open_command(settings, message_id=message.message_id, key_file=key_file, out=out, err=err) == 0
        assert out.getvalue().encode() == message.body and canary not in err.getvalue()
        assert await ready_count(conn, PARKED) == 1  # reading is not taking: it stays parked
    finally:
        await conn.close()
    rows = [(r.action, r.outcome, r.detail.get("message_id")) for r in await intake.audit_rows()
            if r.action.startswith("dlq.")]
    assert rows == [("dlq.open", "refused", message.message_id), ("dlq.open", "ok", message.message_id)]


def leaks_in(text: str, canary: str, phone: str) -> list[str]:
    return [m for m in markers(canary, phone) if m in text]


async def _wait_parked(conn, timeout: float = 10) -> None:
    import asyncio

    from tests.bus.helpers import ready_count

    async with asyncio.timeout(timeout):
        while await ready_count(conn, PARKED) < 1:
            await asyncio.sleep(0.05)
