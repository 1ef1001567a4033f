"""`safeguard audit verify`: every service's audit chain, its signed checkpoints and their
copies in the checkpoint stream (DESIGN §5; shared/audit.py, shared/audit_store.py).

One verdict line per service — `<svc>: ok (N entries, M checkpoints)` or
`<svc>: FAILED at entry N: <problem>` — then indented notes; exit 1 if any failed. Beyond
the chain itself it fails when a record in the stream is not validly signed by its
service, when two records of one entry disagree, when a checkpoint in the stream is
missing from the table or differs from it, and when after a clean stop (the service's
newest record is `final`) the chain's head is not covered by a checkpoint in the stream.
Entries after the newest checkpoint are only reported while the service runs (a consumer
on its work queue) or after a stop without a final checkpoint (a crash): a checkpoint
protects what came before it, and the next one (every five minutes) covers them.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import aiormq.exceptions

from safeguard.audit_db import service_audit
from shared.audit import verify_chain
from shared import bus
from shared.audit_store import BadRecord, Record, parse, read_stream
from shared.bus.topology import AUDIT_CHECKPOINTS, ESCALATION_EVENTS, INTAKE_SUBMISSIONS, NOTIFIER_REQUESTS
from shared.config import SERVICES, Settings
from shared.runtime import service_verify_keys

WORK_QUEUES = {"intake": INTAKE_SUBMISSIONS, "escalation": ESCALATION_EVENTS, "notifier": NOTIFIER_REQUESTS}


@dataclass
class External:
    records: dict[str, list[Record]] = field(default_factory=dict)  # per service, in stream order
    bad: list[BadRecord] = field(default_factory=list)
    running: dict[str, bool] = field(default_factory=dict)


async def read_external(amqp_url: str, verify_keys) -> External:
    found = External()
    connection = await bus.connect_once(amqp_url, name="safeguard-audit-verify", timeout=10)  # first node up
    try:
        for service, name in WORK_QUEUES.items():
            channel = await connection.channel()
            try:  # a failed passive declare closes the channel
                queue = await channel.declare_queue(name, passive=True)
                found.running[service] = queue.declaration_result.consumer_count > 0
            except aiormq.exceptions.ChannelNotFoundEntity:
                found.running[service] = False
            if not channel.is_closed:
                await channel.close()
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=500)
        try:
            stream = await channel.get_queue(AUDIT_CHECKPOINTS, ensure=True)
        except aiormq.exceptions.ChannelNotFoundEntity:
            return found  # no service has started here: every head is uncovered
        for message in await read_stream(stream):
            try:
                rec = parse(message, verify_keys)
                found.records.setdefault(rec.service, []).append(rec)
            except BadRecord as exc:
                found.bad.append(exc)
    finally:
        await connection.close()
    return found


def coverage(records: list[Record], head: int, running: bool) -> tuple[bool, str | None]:
    """Whether the head is covered as it must be; a note or the problem."""
    last = max((r.seq for r in records), default=0)
    if head <= last:
        return True, None
    gap = f"entries {last + 1}..{head}" if head > last + 1 else f"entry {head}"
    if running:
        return True, f"{gap} not covered by a checkpoint yet (the service is running)"
    if records and records[-1].event != "final":
        return True, (f"{gap} not covered: the service stopped without a final checkpoint (a crash?); "
                      "starting it signs its head")
    if not records:
        return False, f"head {head} is not covered by any checkpoint in {AUDIT_CHECKPOINTS}"
    return False, f"head {head} is not covered by a checkpoint after a clean stop (last checkpoint {last})"


async def verify_service(settings: Settings, service: str, key, records: list[Record], bad: list[BadRecord],
                         running: bool) -> tuple[str, list[str]]:
    """The service's verdict (after `<svc>: `) and its notes."""
    if bad:
        first = bad[0]
        return f"FAILED at entry {first.seq}: external checkpoint {first.seq} has a bad signature ({first.reason})", []
    hashes: dict[int, str] = {}
    for rec in records:
        if hashes.setdefault(rec.seq, rec.hash) != rec.hash:
            return f"FAILED at entry {rec.seq}: the external checkpoints of entry {rec.seq} disagree", []
    async with service_audit(settings, service) as audit:
        if audit is None:
            top = max(hashes, default=0)
            return (f"FAILED at entry 1: no audit tables, but {AUDIT_CHECKPOINTS} has checkpoints up to entry {top}"
                    if top else "no audit log yet"), []
        v = await verify_chain(audit.conn, audit.table, audit.checkpoints, key, external=hashes)
    if not v.ok:
        return f"FAILED at entry {v.first_bad}: {v.problem}", []
    covered, note = coverage(records, v.entries, running)
    if not covered:
        return f"FAILED at entry {v.entries}: {note}", []
    notes = [f"{len(records)} records in {AUDIT_CHECKPOINTS}" + (
        f" (newest: {records[-1].event} at entry {records[-1].seq})" if records else "")]
    if unpublished := v.checkpoints - len([s for s in hashes if s > 0]):
        notes.append(f"{unpublished} checkpoints not yet in {AUDIT_CHECKPOINTS} (the outbox publishes them)")
    return f"ok ({v.entries} entries, {v.checkpoints} checkpoints)", notes + ([note] if note else [])


async def verify_all(settings: Settings) -> int:
    keys = service_verify_keys(settings)
    try:
        external = await read_external(settings.amqp_url, keys)
    except (OSError, asyncio.TimeoutError, aiormq.exceptions.AMQPError) as exc:
        print(f"checkpoint stream: FAILED: cannot read {AUDIT_CHECKPOINTS} ({type(exc).__name__})")
        return 1
    failed = 0
    for exc in external.bad:
        if exc.service not in SERVICES:
            failed += 1
            print(f"checkpoint stream: FAILED: a record that is not a signed checkpoint ({exc.reason})")
    for svc in SERVICES:
        verdict, notes = await verify_service(settings, svc, keys[svc], external.records.get(svc, []),
                                              [b for b in external.bad if b.service == svc],
                                              external.running.get(svc, False))
        failed += verdict.startswith("FAILED")
        print(f"{svc}: {verdict}")
        for note in notes:
            print(f"  {svc}: {note}")
    return 1 if failed else 0
