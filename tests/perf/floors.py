"""The durable floors: the least work any intake or consumer with our guarantees must do.

A bare publish (baselines.py) shows how far we are from the broker; a floor shows how much of
our cost is ours to remove. Each floor keeps the guarantees and nothing else:

- **intake floor** (`python -m tests.perf.floors PORT AMQP_URL DSN KEYFILE`, a child process like
  ours): verify the request's one Ed25519 signature (RFC 9421, the same verifier), seal the body
  with a fresh XChaCha20-Poly1305 key wrapped to three recipients, insert the sealed row and an
  outbox row in one PostgreSQL transaction, publish with a confirm, mark the outbox row sent.
- **consumer floor** (`ConsumerFloor`, in the bench process like the bare relay): consume a
  persistent message, insert one row and a processed-id row in one transaction, ack after the
  commit, publish one confirmed message.

Raw asyncpg and aio-pika: no ORM, no schema validation, no audit chain, no timers.
"""
from __future__ import annotations

import asyncio
import sys
import time
import uuid

import aio_pika
import asyncpg
import nacl.utils
from aio_pika import DeliveryMode, Message
from aiohttp import web
from nacl.bindings import crypto_aead_xchacha20poly1305_ietf_encrypt as aead_encrypt
from nacl.public import PrivateKey, SealedBox
from nacl.signing import VerifyKey

from shared.crypto import load_signing_key
from shared.httpsig import SignatureRejected, verify_request
from tests.perf.baselines import serving

QUORUM = {"x-queue-type": "quorum"}
SCHEMA = """
CREATE TABLE IF NOT EXISTS floor_referrals (id uuid PRIMARY KEY, sealed bytea NOT NULL,
    wrapped bytea[] NOT NULL, received_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS floor_outbox (id uuid PRIMARY KEY, body bytea NOT NULL, sent_at timestamptz);
CREATE TABLE IF NOT EXISTS floor_rows (id uuid PRIMARY KEY, body bytea NOT NULL);
CREATE TABLE IF NOT EXISTS floor_processed (message_id text PRIMARY KEY);
"""
RECIPIENTS = [PrivateKey.generate().public_key for _ in range(3)]
POOL = web.AppKey("pool", asyncpg.Pool)
CHANNEL = web.AppKey("channel", aio_pika.abc.AbstractChannel)


class _NoReplayCheck:
    def seen_or_add(self, key_id: str, nonce: str, now: float) -> bool:
        return False


def seal_floor(body: bytes, referral_id: uuid.UUID) -> tuple[bytes, list[bytes]]:
    key, nonce = nacl.utils.random(32), nacl.utils.random(24)
    sealed = nonce + aead_encrypt(body, referral_id.bytes, nonce, key)
    return sealed, [SealedBox(pk).encrypt(key) for pk in RECIPIENTS]


def intake_floor_app(amqp_url: str, dsn: str, verify_key: VerifyKey, key_id: str) -> web.Application:
    app = web.Application(client_max_size=1024 ** 2)

    async def connect(app: web.Application):
        app[POOL] = await asyncpg.create_pool(dsn, min_size=2, max_size=5)
        async with app[POOL].acquire() as conn:
            await conn.execute(SCHEMA)
        connection = await aio_pika.connect_robust(amqp_url)
        channel = await connection.channel(publisher_confirms=True)
        await channel.declare_queue("floor.intake", durable=True, arguments=QUORUM)
        app[CHANNEL] = channel
        yield
        await connection.close()
        await app[POOL].close()

    async def accept(request: web.Request) -> web.Response:
        body = await request.read()
        try:
            verify_request(method=request.method, path=request.path, query=request.query_string,
                           headers=request.headers, body=body, nonces=_NoReplayCheck(),
                           resolve_key=lambda kid: verify_key if kid == key_id else None)
        except SignatureRejected as exc:
            return web.json_response({"reason": exc.reason}, status=401)
        rid, oid = uuid.uuid4(), uuid.uuid4()
        sealed, wrapped = seal_floor(body, rid)
        event = b'{"referral_id":"%s","outbox_id":"%s"}' % (rid.hex.encode(), oid.hex.encode())  # ids only
        async with request.app[POOL].acquire() as conn, conn.transaction():
            await conn.execute("INSERT INTO floor_referrals (id, sealed, wrapped) VALUES ($1, $2, $3)",
                               rid, sealed, wrapped)
            await conn.execute("INSERT INTO floor_outbox (id, body) VALUES ($1, $2)", oid, event)
        await request.app[CHANNEL].default_exchange.publish(
            Message(event, delivery_mode=DeliveryMode.PERSISTENT, message_id=str(oid)),
            routing_key="floor.intake", mandatory=True)
        async with request.app[POOL].acquire() as conn:
            await conn.execute("UPDATE floor_outbox SET sent_at = now() WHERE id = $1", oid)
        return web.json_response({"status": "received", "id": str(rid)}, status=202)

    app.cleanup_ctx.append(connect)
    return serving(app, accept)


class ConsumerFloor:
    """Consume `source`, one transaction per message (a row and its processed id), ack after
    the commit, publish one confirmed message to `sink`; `done` counts messages handled."""

    def __init__(self, amqp_url: str, dsn: str, prefetch: int = 16) -> None:
        self.amqp_url, self.dsn, self.prefetch = amqp_url, dsn, prefetch
        self.source, self.sink = "floor.consume", "floor.forward"
        self.done = 0
        self._tag: str | None = None

    async def open(self) -> None:
        self.pool = await asyncpg.create_pool(self.dsn, min_size=2, max_size=5)
        async with self.pool.acquire() as conn:
            await conn.execute(SCHEMA)
        self.connection = await aio_pika.connect_robust(self.amqp_url)
        self.channel = await self.connection.channel(publisher_confirms=True)
        await self.channel.set_qos(prefetch_count=self.prefetch)
        self.queue = await self.channel.declare_queue(self.source, durable=True, arguments=QUORUM)
        self.sink_queue = await self.channel.declare_queue(self.sink, durable=True, arguments=QUORUM)

    async def fill(self, body: bytes, n: int) -> None:
        gate = asyncio.Semaphore(32)

        async def one() -> None:
            async with gate:
                await self.channel.default_exchange.publish(
                    Message(body, delivery_mode=DeliveryMode.PERSISTENT, message_id=uuid.uuid4().hex),
                    routing_key=self.source, mandatory=True)
        await asyncio.gather(*(one() for _ in range(n)))

    async def _handle(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("INSERT INTO floor_processed (message_id) VALUES ($1)", message.message_id)
            await conn.execute("INSERT INTO floor_rows (id, body) VALUES ($1, $2)", uuid.uuid4(), message.body[:256])
        await message.ack()
        await self.channel.default_exchange.publish(
            Message(message.body[:256], delivery_mode=DeliveryMode.PERSISTENT, message_id=uuid.uuid4().hex),
            routing_key=self.sink, mandatory=True)
        self.done += 1

    async def start(self) -> None:
        self._tag = await self.queue.consume(self._handle)

    async def stop(self) -> None:
        if self._tag is not None:
            await self.queue.cancel(self._tag)
            self._tag = None
        await self.sink_queue.purge()

    async def close(self) -> None:
        await self.stop()
        await self.connection.close()
        await self.pool.close()

    async def drain(self, n: int, timeout: float) -> float:
        """Start consuming `n` queued messages; seconds until all are handled."""
        before, start = self.done, time.monotonic()
        await self.start()
        try:
            while self.done < before + n:
                if time.monotonic() - start > timeout:
                    raise TimeoutError("consumer floor did not drain in time")
                await asyncio.sleep(0.02)
        finally:
            await self.stop()
        return time.monotonic() - start


def main() -> None:
    port, amqp_url, dsn, key_file, key_id = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
    verify_key = load_signing_key(key_file).verify_key
    web.run_app(intake_floor_app(amqp_url, dsn, verify_key, key_id), host="127.0.0.1", port=port, print=None,
                access_log=None)


if __name__ == "__main__":
    main()
