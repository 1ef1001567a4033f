"""The §3.4 AMQP submission path: a signed message is accepted and answered on
reply_to with the 202 JSON; a bad one is answered with a problem, audited and
parked with its reason; a redelivered message is answered again, stored once."""
from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid

import aio_pika

from services.intake.adapters import tables
from tests.factories import referral_body


def signed_message(intake, body: bytes, reply_to: str, *, client_id="dev-mash", tamper=False, message_id=None):
    created, nonce = str(int(time.time())), uuid.uuid4().hex
    sig = intake.key(client_id).sign(body + b"\n" + created.encode() + b"\n" + nonce.encode()).signature
    if tamper:
        body = body.replace(b"11-15", b"16-17")
    return aio_pika.Message(body, headers={"keyid": client_id, "created": created, "nonce": nonce,
                                           "signature": base64.b64encode(sig).decode()},
                            delivery_mode=aio_pika.DeliveryMode.PERSISTENT, reply_to=reply_to,
                            message_id=message_id or str(uuid.uuid4()), content_type="application/json")


class DirectReplies:
    """RabbitMQ's direct reply-to on `channel` (publish with reply_to=`NAME` on the same channel):
    where intake answers a submission whose signature did not verify."""

    NAME = "amq.rabbitmq.reply-to"

    def __init__(self) -> None:
        self.got: asyncio.Queue = asyncio.Queue()

    @classmethod
    async def on(cls, channel) -> "DirectReplies":
        self = cls()
        queue = await channel.get_queue(cls.NAME, ensure=False)
        await queue.consume(self.got.put, no_ack=True)
        return self

    async def get(self, timeout: float = 15.0):
        return await asyncio.wait_for(self.got.get(), timeout)


async def get_one(queue, timeout: float = 15.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        msg = await queue.get(fail=False)
        if msg is not None:
            await msg.ack()
            return msg
        await asyncio.sleep(0.05)
    raise AssertionError("no message")


async def test_amqp_submissions_are_answered_parked_and_idempotent(intake):
    conn = await aio_pika.connect(intake.settings.amqp_url)
    try:
        channel = await conn.channel()
        replies = await channel.declare_queue(f"reply.dev-mash.{uuid.uuid4().hex}", exclusive=True)
        exchange = await channel.get_exchange("safeguard.submissions")
        body = referral_body()
        good = signed_message(intake, body, replies.name)
        await exchange.publish(good, "referral")
        reply = json.loads((await get_one(replies)).body)
        assert set(reply) == {"referral_id", "reference", "status", "received_at", "out_of_hours",
                              "acknowledge_by", "checks_due_by"}
        await exchange.publish(good, "referral")  # the same message again (a redelivery)
        assert json.loads((await get_one(replies)).body) == reply
        assert await intake.count(tables.referrals) == 1

        direct = await DirectReplies.on(channel)  # a message that does not verify: direct reply-to only
        await exchange.publish(signed_message(intake, body, replies.name, tamper=True), "referral")
        await exchange.publish(signed_message(intake, body, DirectReplies.NAME, tamper=True), "referral")
        problem = json.loads((await direct.get()).body)
        assert (problem["status"], problem["reason"]) == (401, "bad_signature")
        parked_queue = await channel.declare_queue("intake.submissions.parked", passive=True)
        for _ in range(2):
            assert (await get_one(parked_queue)).headers["x-parked-reason"] == "bad_signature"
        assert await replies.get(fail=False) is None  # reply.dev-mash.… only for a verified message
        bad_json = signed_message(intake, b'{"not": "a referral"}', replies.name)
        await exchange.publish(bad_json, "referral")
        assert json.loads((await get_one(replies)).body)["status"] == 422
        assert (await get_one(parked_queue)).headers["x-parked-reason"] == "schema_invalid"
    finally:
        await conn.close()
    assert await intake.count(tables.referrals) == 1
    rows = [(r.outcome, (r.detail or {}).get("reason"), (r.detail or {}).get("via")) for r in await intake.audit_rows()]
    assert rows == [("accepted", None, "amqp"), ("rejected", "bad_signature", "amqp"),
                    ("rejected", "bad_signature", "amqp"), ("rejected", "schema_invalid", "amqp")]
