"""The §3.4 submission path: signed referrals on `intake.submissions`.

Messages are signed by the MASH client (headers keyid, created, nonce, signature),
not by a service, so the consumer runs with `verify_keys=None` and this handler
checks the client signature. It shares `handlers.submit_referral` with HTTP and
answers on `reply_to` (if set: RabbitMQ's direct reply-to, or a queue named
`reply.<client id>.…` — nothing else) with the same JSON as the HTTP 202, or the problem
document. A bad message is audited, answered, then parked with its reason
(`Reject`, naming the client when it is a configured one); a transient failure
(database down) is retried by the consumer. What is parked is metadata, with the
submission sealed to its recipient teams (services/intake/recipients.py) or dropped
(shared/bus/parked.py).
A redelivered message (same client, same message id) gets the stored reply again.
No rate limit here: the queue and the consumer's prefetch already pace the work.
"""
from __future__ import annotations

import functools
import json
import time
import uuid

from services.intake import handlers
from services.intake.adapters import repository as repo
from services.intake.adapters.effects import audit_rejection
from services.intake.auth import SUBMISSION_MAX_AGE_S, MAX_SKEW_S
from services.intake.context import Context
from services.intake.recipients import parked_recipients
from services.intake.domain.commands import SubmitReferral
from services.intake.domain.errors import IntakeError, TooLarge
from shared import bus
from shared.logging import bound_contextvars, get_logger

log = get_logger(__name__)


DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"


def reply_allowed(reply_to: str, client: str | None, ctx: Context) -> bool:
    """Replies go only to RabbitMQ's direct reply-to (it reaches the publishing connection
    only) or, for a message whose signature verified, to a queue named `reply.<client id>.<name>`
    of that client — never to any other queue a message names (issue 18 #8: a garbage message once put a problem document
    into `control-room.dev-force`)."""
    if reply_to == DIRECT_REPLY_TO or reply_to.startswith(DIRECT_REPLY_TO + "."):
        return True
    prefix = f"reply.{client}."
    return (bool(client) and ctx.settings.client(client) is not None and reply_to.startswith(prefix)
            and "." not in reply_to[len(prefix):])  # client `acme` never gets client `acme.x`'s queues


async def _reply(publisher: bus.Publisher, message: bus.BusMessage, doc: dict, ctx: Context,
                 client: str | None) -> None:
    reply_to = message.reply_to
    if not reply_to:
        return
    if not reply_allowed(reply_to, client, ctx):
        log.info("submission_reply_refused", reason="reply_to_not_allowed")
        return
    try:
        await publisher.publish_raw("", reply_to, json.dumps(doc).encode(), message_id=str(uuid.uuid4()),
                                    correlation_id=message.correlation_id or message.message_id or None)
    except bus.PublishFailed as exc:  # the client's reply queue is gone: the referral still stands
        log.warning("submission_reply_failed", error=type(exc).__name__)


def make_handler(ctx: Context, publisher: bus.Publisher):
    auth = ctx.auth
    assert auth is not None  # bootstrap wires it

    async def handle(message: bus.BusMessage) -> None:
        corr = message.correlation_id or message.message_id or str(uuid.uuid4())
        with bound_contextvars(correlation_id=corr[:64], message_id=message.message_id):
            actor = None
            try:
                if len(message.body) > ctx.settings.file.system.max_body_bytes:
                    raise TooLarge("The body is over the limit")
                actor, nonce = auth.verify_submission(message.headers, message.body)
                key = f"amqp:{message.message_id}" if message.message_id else None
                if key:
                    async with ctx.engine.connect() as conn:
                        stored = await repo.get_idempotent(conn, actor, key[:200])
                    if stored is not None:  # a redelivery of a message already accepted
                        return await _reply(publisher, message, dict(stored.response), ctx, actor)
                await auth.claim(actor, nonce, time.time(), SUBMISSION_MAX_AGE_S + MAX_SKEW_S)
                done = await handlers.submit_referral(SubmitReferral(
                    actor, message.body, key[:200] if key else None, corr[:64], "amqp"), ctx)
            except IntakeError as err:
                await audit_rejection(ctx, actor=actor or err.actor, action="referral.submit", reference=None,
                                      err=err, via="amqp")
                client = actor or err.actor
                await _reply(publisher, message, err.problem(), ctx, actor)  # verified only: else direct reply-to
                known = client is not None and ctx.settings.client(client) is not None
                raise bus.Reject(err.reason, client=client if known else None,
                                 client_verified=known and actor is not None) from None
            await _reply(publisher, message, done.reply, ctx, actor)
    return handle


def submissions_consumer(ctx: Context, connection, publisher: bus.Publisher) -> bus.Consumer:
    return bus.Consumer(connection, bus.queue_spec(bus.INTAKE_SUBMISSIONS), make_handler(ctx, publisher),
                        publisher=publisher, verify_keys=None, prefetch=16,
                        seal_to=functools.partial(parked_recipients, ctx.settings))
