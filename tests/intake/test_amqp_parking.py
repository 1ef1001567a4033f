"""A rejected AMQP submission is never parked with its content in clear (DESIGN §5, issue 18 #1).

Each submission carries canaries in every content and contact string (the child's name,
the narrative, the guardians' contacts). Rejected — an unknown local authority (validly
signed), a schema-invalid body, a bad signature — it is parked as metadata only (message
id, client, reason, time, body size and SHA-256) with the original message sealed to its
recipient teams, resolved as intake resolves them for an accepted referral: the LA's and
the force's team keys, those that are configured (the force: the verified client's own).
It opens with those teams' keys and no other. When no team resolves (not JSON, nothing
known, over the size limit) the body is dropped. `safeguard dlq show` prints the metadata,
`safeguard dlq open --key` the sealed original for a holder of one of those teams' keys,
and names the key ids it is sealed to when given another."""
from __future__ import annotations

import uuid
import hashlib
import io
import json

import aio_pika
import pytest

from shared.bus.parked import open_parked
from shared.crypto import CryptoError, generate_sealing_key, write_private_key
from tests.factories import canary_phone, new_canary, postcode_of, referral_body
from tests.intake.conftest import OTHER_LA, Intake, make_settings
from tests.intake.test_amqp import DirectReplies, get_one, signed_message

PARKED = "intake.submissions.parked"
SUBMISSION_HEADERS = {"keyid", "created", "nonce", "signature"}
TEAM_KEYS = ("E99999999", "dev-force", OTHER_LA, "notifier")  # every sealing key file of the set-up


def markers(canary: str, phone: str) -> list[str]:
    """Every form a canary takes in a submission (strings, e-mails, postcode, phone digits)."""
    return [canary, postcode_of(canary), phone, phone[1:]]


def leaks(parked: aio_pika.abc.AbstractIncomingMessage, found: list[str]) -> list[str]:
    """The markers found in clear anywhere in the parked message: body, headers, every property."""
    text = "\n".join([parked.body.decode("utf-8", "replace"), repr(parked.headers), repr(parked.info()),
                      str(parked.message_id), str(parked.correlation_id), str(parked.app_id), str(parked.reply_to)])
    return [m for m in found if m in text]


# case -> (overrides of the referral, tamper the signature, reason, verified client, key files that open it)
CASES = {
    # validly signed, the LA unknown: the verified client's force team only
    "unknown_la": ({"la_code": "E11111111"}, False, "unknown_organisation", True, {"dev-force"}),
    "schema_invalid": ({"age_band": "99-100"}, False, "schema_invalid", True, {"E99999999", "dev-force"}),
    # unverified: the teams the body names
    "bad_signature": ({}, True, "bad_signature", False, {"E99999999", "dev-force"}),
    "other_la": ({"la_code": OTHER_LA, "age_band": "99-100"}, False, "schema_invalid", True, {OTHER_LA, "dev-force"}),
}
KEY_IDS = {"E99999999": "E99999999-1", "dev-force": "dev-force-1", OTHER_LA: f"{OTHER_LA}-1"}


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
async def test_a_rejected_submission_is_parked_as_metadata_sealed_to_its_recipient_teams(
        case, intake_settings, aiohttp_client, tmp_path):
    from services.intake.bootstrap import create_app

    intake = Intake(await aiohttp_client(create_app(intake_settings)), intake_settings, tmp_path)
    overrides, tamper, reason, verified, opens = CASES[case]
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
    assert sorted(r["key_id"] for r in doc["sealed"]["recipients"]) == sorted(KEY_IDS[o] for o in opens)
    for org in TEAM_KEYS:  # each recipient team's key opens it, and no other key does
        if org in opens:
            opened = open_parked(parked.body, intake.team_key(org))
            assert opened.body == sent and canary in opened.body.decode()  # the team gets it all back
            assert opened.headers["keyid"] == "dev-mash" and set(opened.headers) == SUBMISSION_HEADERS
            assert opened.message_id == message.message_id
        else:
            with pytest.raises(CryptoError, match="not sealed to this key"):
                open_parked(parked.body, intake.team_key(org))
    with pytest.raises(CryptoError):
        open_parked(parked.body, generate_sealing_key())


# case -> (the body, tamper the signature, reason, system settings)
NOTHING_RESOLVES = {
    "not_json": (lambda c, p: f"not json: {c} {p}".encode(), False, "malformed_json", {}),
    "not_an_object": (lambda c, p: json.dumps([c, p]).encode(), False, "schema_invalid", {}),
    "nothing_known_unverified": (lambda c, p: referral_body(c, p, la_code="E11111111", force="no-such-force"),
                                 True, "bad_signature", {}),
    "too_large": (lambda c, p: referral_body(c, p) + b" " * 1024, False, "body_too_large", {"max_body_bytes": 1024}),
}


@pytest.mark.parametrize("case", list(NOTHING_RESOLVES))
async def test_with_no_recipient_team_resolved_the_body_is_dropped(case, tmp_path, amqp_url, pg_url, aiohttp_client):
    from services.intake.bootstrap import create_app

    make_body, tamper, reason, system = NOTHING_RESOLVES[case]
    settings = make_settings(tmp_path, amqp_url, pg_url, **system)
    intake = Intake(await aiohttp_client(create_app(settings)), settings, tmp_path)
    canary, phone = new_canary(), canary_phone()
    body = make_body(canary, phone)
    message, reply, parked = await submit_and_take_parked(intake, body, tamper)
    assert reply["reason"] == reason
    assert leaks(parked, markers(canary, phone)) == []
    doc = json.loads(parked.body)
    assert (doc["form"], doc["reason"], doc["sealed"]) == ("metadata", reason, None)
    assert doc["body_sha256"] == hashlib.sha256(message.body).hexdigest()  # which body it was, not what it said
    assert parked.headers["x-parked-form"] == "metadata"
    assert len(parked.body) < 1024 and b"ciphertext" not in parked.body  # no body at all, sealed or not
    for org in TEAM_KEYS:
        with pytest.raises(CryptoError, match="dropped"):
            open_parked(parked.body, intake.team_key(org))


async def test_dlq_show_prints_metadata_and_open_needs_a_recipient_teams_key(intake_settings, aiohttp_client,
                                                                           tmp_path):
    from safeguard.dlq import open_command, show_command
    from services.intake.bootstrap import create_app
    from tests.bus.helpers import ready_count

    settings = intake_settings
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
        assert shown["sealed_to"] == ["dev-force-1"] and leaks_in(out.getvalue() + err.getvalue(), canary, phone) == []
        wrong = tmp_path / "wrong.x25519"
        write_private_key(wrong, bytes(generate_sealing_key()))
        for key_file in (wrong, tmp_path / "keys" / "E99999999.x25519"):  # not the force's: refused, and told whose
            out, err = io.StringIO(), io.StringIO()
            assert await open_command(settings, message_id=message.message_id, key_file=key_file, out=out,
                                      err=err) == 1
            assert out.getvalue() == "" and "cannot open" in err.getvalue()
            assert "sealed to dev-force-1" in err.getvalue() and "dev-force-1 (dev-force)" in err.getvalue()
        out, err = io.StringIO(), io.StringIO()
        key_file = tmp_path / "keys" / "dev-force.x25519"
        assert await open_command(settings, message_id=message.message_id, key_file=key_file, out=out, err=err) == 0
        assert out.getvalue().encode() == message.body and canary not in err.getvalue()
        assert await ready_count(conn, PARKED) == 1  # reading is not taking: it stays parked
    finally:
        await conn.close()
    rows = [(r.action, r.outcome, r.detail.get("message_id")) for r in await intake.audit_rows()
            if r.action.startswith("dlq.")]
    assert rows == [("dlq.open", "refused", message.message_id)] * 2 + [("dlq.open", "ok", message.message_id)]


def leaks_in(text: str, canary: str, phone: str) -> list[str]:
    return [m for m in markers(canary, phone) if m in text]


async def _wait_parked(conn, timeout: float = 10) -> None:
    import asyncio

    from tests.bus.helpers import ready_count

    async with asyncio.timeout(timeout):
        while await ready_count(conn, PARKED) < 1:
            await asyncio.sleep(0.05)
