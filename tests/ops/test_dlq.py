"""`safeguard dlq list|replay|purge` against the real broker, parking through the real Consumer."""
from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from structlog.testing import capture_logs

from safeguard import parking
from safeguard.audit_db import service_audit
from safeguard.dlq import format_age, list_command, purge_command, replay_command
from shared import bus
from shared.audit import verify_chain
from shared.storage import create_engine
from shared.storage.migrate import upgrade
from tests.bus.helpers import Recorder, eventually, new_id, ready_count
from tests.support.processes import run_cli

pytestmark = pytest.mark.broker
ROOT = Path(__file__).resolve().parents[2]
CANARY = "CANARY-Amelia-Quill-2011-07-04"  # stands in for content: must never be printed or logged
BODY = json.dumps({"reference": "SR-TEST-1", "narrative": CANARY}).encode()
EVENTS_SPEC = bus.queue_spec(bus.ESCALATION_EVENTS)
PARKED = EVENTS_SPEC.parking_queue


async def consuming(connection, publisher, verify_keys, handler) -> bus.Consumer:
    consumer = bus.Consumer(connection, EVENTS_SPEC, handler, publisher=publisher, verify_keys=verify_keys,
                            allowed_producers={"intake"}, retry_backoff_s=0.05)
    await consumer.start()
    return consumer


async def park_unsigned(connection, publisher, verify_keys) -> str:
    """An unsigned referral event, parked by a running escalation-style consumer."""
    handler = Recorder()
    consumer = await consuming(connection, publisher, verify_keys, handler)
    try:
        message_id = new_id()
        before = await ready_count(connection, PARKED)
        await publisher.publish(bus.EVENTS, "referral.received", BODY, message_id=message_id, sign=False)
        await _wait_count(connection, PARKED, before + 1)
    finally:
        await consumer.stop()
    return message_id


async def park_after_delivery_limit(connection, publisher, verify_keys) -> tuple[str, Recorder]:
    """A signed event whose handler always fails: parked as `delivery_limit: RuntimeError`."""
    async def broken(message, n):
        raise RuntimeError(f"bug while handling {CANARY}")

    handler = Recorder(broken)
    consumer = await consuming(connection, publisher, verify_keys, handler)
    try:
        message_id = new_id()
        before = await ready_count(connection, PARKED)
        await publisher.publish(bus.EVENTS, "referral.received", BODY, message_id=message_id,
                                headers={"traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01"})
        await _wait_count(connection, PARKED, before + 1)
    finally:
        await consumer.stop()
    assert len(handler.seen) == EVENTS_SPEC.delivery_limit
    return message_id, handler


async def park_schema_invalid(connection, publisher, verify_keys) -> str:
    async def reject(message, n):
        raise bus.Reject("schema_invalid")

    consumer = await consuming(connection, publisher, verify_keys, Recorder(reject))
    try:
        message_id = new_id()
        before = await ready_count(connection, PARKED)
        await publisher.publish(bus.EVENTS, "referral.received", BODY, message_id=message_id)
        await _wait_count(connection, PARKED, before + 1)
    finally:
        await consumer.stop()
    return message_id


async def _wait_count(connection, queue: str, n: int, timeout: float = 15) -> None:
    async with asyncio.timeout(timeout):
        while await ready_count(connection, queue) != n:
            await asyncio.sleep(0.05)


async def run_list(settings, **kw) -> tuple[int, dict, str]:
    out, err = io.StringIO(), io.StringIO()
    rc = await list_command(settings, as_json=True, out=out, err=err, **kw)
    return rc, json.loads(out.getvalue()), err.getvalue()


# -- list ---------------------------------------------------------------------------------

async def test_list_shows_where_why_and_when_but_no_content_and_keeps_everything(
        connection, publisher, verify_keys, settings):
    unsigned = await park_unsigned(connection, publisher, verify_keys)
    invalid = await park_schema_invalid(connection, publisher, verify_keys)
    before = await ready_count(connection, PARKED)
    assert before == 2

    rc, doc, err = await run_list(settings)
    assert rc == 0 and err == ""
    assert doc["missing_queues"] == []
    rows = {m["message_id"]: m for m in doc["messages"]}
    assert list(rows) == [unsigned, invalid]  # queue order
    row = rows[unsigned]
    assert row["parking_queue"] == PARKED and row["original_queue"] == "escalation.events"
    assert row["reason"] == "unsigned" and row["parked_by"] == "consumer"
    assert row["routing_key"] == "referral.received" and row["exchange"] == bus.EVENTS
    assert 0 <= row["age_seconds"] < 60 and row["parked_at"].endswith("+00:00")
    assert rows[invalid]["reason"] == "schema_invalid" and rows[invalid]["producer"] == "intake"

    text, text_err = io.StringIO(), io.StringIO()
    assert await list_command(settings, out=text, err=text_err) == 0
    table = text.getvalue()
    for expected in ("PARKING QUEUE", PARKED, "escalation.events", "unsigned", "schema_invalid", unsigned,
                     invalid, "referral.received", "2 parked message(s)"):
        assert expected in table
    for output in (json.dumps(doc), table, text_err.getvalue(), err):
        assert CANARY not in output and "narrative" not in output

    # Nothing was taken: same count, same order, bodies intact, a third read agrees.
    assert await ready_count(connection, PARKED) == before
    rc, again, _ = await run_list(settings, queue="escalation.events")
    assert [m["message_id"] for m in again["messages"]] == [unsigned, invalid]
    assert await ready_count(connection, PARKED) == before


async def test_list_reads_broker_dead_letters_from_x_death(connection, publisher, settings):
    message_id = new_id()
    await publisher.publish(bus.EVENTS, "referral.closed", BODY, message_id=message_id)
    async with connection.channel() as channel:  # a consumer nacks without requeue
        queue = await channel.declare_queue(bus.ESCALATION_EVENTS, passive=True)
        incoming = await queue.get(no_ack=False, timeout=5)
        await incoming.reject(requeue=False)
    await _wait_count(connection, PARKED, 1)
    rc, doc, _ = await run_list(settings)
    (row,) = doc["messages"]
    assert (row["message_id"], row["reason"], row["parked_by"]) == (message_id, "rejected", "broker")
    assert (row["original_queue"], row["exchange"], row["routing_key"]) == (
        "escalation.events", bus.EVENTS, "referral.closed")
    assert row["age_seconds"] is not None and row["age_seconds"] < 60


async def test_list_of_an_unknown_queue_fails_and_lists_the_known_ones(settings, topology):
    out, err = io.StringIO(), io.StringIO()
    assert await list_command(settings, queue="nope", out=out, err=err) == 2
    assert "escalation.events.parked" in err.getvalue() and "control-room.dev-force.parked" in err.getvalue()


async def test_list_reports_undeclared_parking_queues(settings, connection):
    rc, doc, err = await run_list(settings)  # nothing declared in this fresh vhost
    assert rc == 0 and doc["messages"] == []
    assert set(doc["missing_queues"]) == set(parking.parking_queues(["dev-force"]))
    assert "not declared" in err


# -- replay -------------------------------------------------------------------------------

async def test_replay_after_fixing_the_handler_is_consumed_and_leaves_the_parking_queue(
        connection, publisher, verify_keys, settings):
    message_id, broken = await park_after_delivery_limit(connection, publisher, verify_keys)
    engine = create_engine(settings.database_url_for("escalation"))  # escalation owns escalation.events
    try:
        await upgrade(engine, "escalation")
    finally:
        await engine.dispose()
    rc, doc, _ = await run_list(settings)
    assert doc["messages"][0]["reason"] == "delivery_limit: RuntimeError"

    fixed = Recorder()  # the handler after the fix is deployed
    consumer = await consuming(connection, publisher, verify_keys, fixed)
    try:
        out = io.StringIO()
        with capture_logs() as logs:
            rc = await replay_command(settings, message_id=message_id, actor="ops-tester", out=out)
        assert rc == 0, out.getvalue()
        assert out.getvalue().startswith("replayed ")
        await eventually(lambda: len(fixed.seen) == 1)
        await eventually(lambda: not consumer._tasks)
    finally:
        await consumer.stop()
    seen = fixed.seen[0]
    assert (seen.message_id, seen.routing_key, seen.producer, seen.body) == (
        message_id, "referral.received", "intake", BODY)
    assert seen.delivery_count == 0  # the old attempts do not count against the new delivery limit
    assert seen.headers["traceparent"].startswith("00-" + "a" * 32)
    assert seen.headers[parking.REPLAY_COUNT_HEADER] == 1
    assert not any(h.startswith("x-parked") or h.startswith("x-original") for h in seen.headers)
    assert await ready_count(connection, PARKED) == 0
    assert await ready_count(connection, bus.ESCALATION_EVENTS) == 0
    (entry,) = [e for e in logs if e["event"] == "dlq_replayed"]
    assert entry["message_id"] == message_id and entry["queue"] == "escalation.events"
    assert entry["reason"] == "delivery_limit: RuntimeError" and entry["actor"] == "ops-tester"
    assert CANARY not in repr(logs)
    async with service_audit(settings, "escalation") as audit:  # and in escalation's hash chain
        rows = (await audit.conn.execute(sa.select(audit.table).where(audit.table.c.action == "dlq.replay"))).all()
        verdict = await verify_chain(audit.conn, audit.table, audit.checkpoints, verify_keys["escalation"])
    assert [(r.actor, r.outcome, r.detail["message_id"], r.detail["reason"]) for r in rows] == [
        ("operator:ops-tester", "replayed", message_id, "delivery_limit: RuntimeError")]
    assert verdict.ok and CANARY not in repr(rows)


async def test_replay_of_an_unsigned_message_is_refused_unless_forced(connection, publisher, verify_keys, settings):
    message_id = await park_unsigned(connection, publisher, verify_keys)
    out = io.StringIO()
    with capture_logs() as logs:
        rc = await replay_command(settings, message_id=message_id, out=out)
    assert rc == 1
    assert out.getvalue().startswith("refused") and "unsigned" in out.getvalue()
    assert [e["event"] for e in logs] == ["dlq_replay_refused"]
    assert await ready_count(connection, PARKED) == 1 and await ready_count(connection, bus.ESCALATION_EVENTS) == 0

    # Forced: it goes back, fails verification again, and is parked again (never lost).
    handler = Recorder()
    consumer = await consuming(connection, publisher, verify_keys, handler)
    try:
        out = io.StringIO()
        assert await replay_command(settings, message_id=message_id, force=True, as_json=True, out=out) == 0
        (result,) = json.loads(out.getvalue())["results"]
        assert result["outcome"] == "replayed" and "forced past: unsigned" in result["detail"]
        await _wait_count(connection, PARKED, 1)
        await eventually(lambda: not consumer._tasks)
    finally:
        await consumer.stop()
    assert handler.seen == []
    rc, doc, _ = await run_list(settings)
    assert [(m["message_id"], m["reason"]) for m in doc["messages"]] == [(message_id, "unsigned")]


async def test_replay_of_a_queue_replays_the_transient_and_keeps_the_permanent(
        connection, publisher, verify_keys, settings):
    invalid = await park_schema_invalid(connection, publisher, verify_keys)
    transient, _ = await park_after_delivery_limit(connection, publisher, verify_keys)
    out = io.StringIO()
    rc = await replay_command(settings, queue="escalation.events.parked", as_json=True, out=out)
    assert rc == 1  # not everything went
    outcomes = {r["message_id"]: r["outcome"] for r in json.loads(out.getvalue())["results"]}
    assert outcomes == {invalid: "refused", transient: "replayed"}
    assert await ready_count(connection, bus.ESCALATION_EVENTS) == 1  # no consumer running: it waits there
    rc, doc, _ = await run_list(settings)
    assert [m["message_id"] for m in doc["messages"]] == [invalid]


async def test_replay_refuses_a_signature_that_no_longer_verifies(connection, publisher, settings):
    from nacl.signing import SigningKey

    impostor = bus.Publisher(connection, producer="intake", signing_key=SigningKey.generate())
    message_id = new_id()
    await impostor.publish(bus.EVENTS, "referral.received", BODY, message_id=message_id)
    await impostor.close()
    async with connection.channel() as channel:  # dead-lettered by the broker: reason `rejected`
        queue = await channel.declare_queue(bus.ESCALATION_EVENTS, passive=True)
        await (await queue.get(no_ack=False, timeout=5)).reject(requeue=False)
    await _wait_count(connection, PARKED, 1)
    out = io.StringIO()
    assert await replay_command(settings, message_id=message_id, out=out) == 1
    assert "bad_signature" in out.getvalue()
    assert await ready_count(connection, PARKED) == 1


async def test_replay_of_an_unknown_id_fails(settings, topology):
    err = io.StringIO()
    assert await replay_command(settings, message_id="no-such-id", err=err, out=io.StringIO()) == 1
    assert "no parked message" in err.getvalue()
    assert await replay_command(settings, err=err, out=io.StringIO()) == 2


# -- purge --------------------------------------------------------------------------------

async def test_purge_asks_for_the_queue_name_and_reports_the_count(connection, publisher, verify_keys, settings):
    await park_unsigned(connection, publisher, verify_keys)
    await park_schema_invalid(connection, publisher, verify_keys)
    err = io.StringIO()
    rc = await purge_command(settings, queue="escalation.events", ask=lambda prompt: "escalation.events",
                             out=io.StringIO(), err=err)
    assert rc == 1 and "not confirmed" in err.getvalue()  # the parking queue's name is asked for
    assert await ready_count(connection, PARKED) == 2

    out = io.StringIO()
    rc = await purge_command(settings, queue="escalation.events", ask=lambda prompt: PARKED, out=out)
    assert rc == 0 and out.getvalue().strip() == f"purged 2 message(s) from {PARKED}"
    assert await ready_count(connection, PARKED) == 0

    await park_unsigned(connection, publisher, verify_keys)
    out = io.StringIO()
    with capture_logs() as logs:
        assert await purge_command(settings, queue=PARKED, yes=True, actor="ops-tester", out=out) == 0
    assert "purged 1 message(s)" in out.getvalue()
    assert await ready_count(connection, PARKED) == 0
    assert [(e["event"], e["count"], e["actor"]) for e in logs] == [("dlq_purged", 1, "ops-tester")]


# -- the real command ---------------------------------------------------------------------

async def test_safeguard_dlq_list_subprocess(connection, publisher, verify_keys, ops_env):
    message_id = await park_unsigned(connection, publisher, verify_keys)
    listed = await asyncio.to_thread(run_cli, "dlq", "list", "--json", cwd=ROOT, env=ops_env)
    assert listed.returncode == 0, listed.stderr
    doc = json.loads(listed.stdout)
    assert [(m["message_id"], m["reason"], m["parking_queue"]) for m in doc["messages"]] == [
        (message_id, "unsigned", PARKED)]
    assert CANARY not in listed.stdout + listed.stderr
    assert await ready_count(connection, PARKED) == 1

    text = await asyncio.to_thread(run_cli, "dlq", "list", "--queue", "escalation.events", cwd=ROOT, env=ops_env)
    assert text.returncode == 0 and message_id in text.stdout and "unsigned" in text.stdout
    assert CANARY not in text.stdout + text.stderr


def test_parking_queue_names_and_ages():
    assert parking.parking_queues(["f1"], "escalation.events") == ["escalation.events.parked"]
    assert parking.parking_queues(["f1"], "control-room.f1.parked") == ["control-room.f1.parked"]
    assert "control-room.f1.parked" in parking.parking_queues(["f1"])
    with pytest.raises(parking.UnknownQueue):
        parking.parking_queues(["f1"], "control-room.f2")
    assert [format_age(s) for s in (None, 5, 65, 3700, 90000)] == ["?", "5s", "1m05s", "1h01m", "1d01h"]
