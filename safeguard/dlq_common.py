"""What `safeguard dlq`'s commands share (safeguard/dlq.py, safeguard/dlq_show.py): the
topology's parking queues from the config, a broker connection, the audit of operator actions."""
from __future__ import annotations

from typing import TextIO

from safeguard import parking
from shared.config import Settings

CONNECTION_NAME = "safeguard-dlq"


def _forces(settings: Settings) -> list[str]:
    return [f.slug for f in settings.file.forces]


async def _connect(settings: Settings, err: TextIO):
    from shared import bus

    try:
        return await bus.connect(settings.amqp_url, name=CONNECTION_NAME, timeout=10)
    except Exception as exc:
        print(f"safeguard dlq: cannot reach the broker ({type(exc).__name__}); check SAFEGUARD_AMQP_URL",
              file=err)
        return None


def _queues(settings: Settings, queue: str | None, err: TextIO) -> list[str] | None:
    try:
        return parking.parking_queues(_forces(settings), queue)
    except parking.UnknownQueue:
        known = ", ".join(parking.parking_queues(_forces(settings)))
        print(f"safeguard dlq: unknown queue {queue!r}; parking queues: {known}", file=err)
        return None


async def _audit(settings: Settings, entries: list[tuple[str, str, str, dict]], who: str, err: TextIO) -> bool:
    """Record each action in the owning service's audit chain; False if one could not be written."""
    from safeguard.audit_db import record_operator_action

    ok = True
    for queue, action, outcome, detail in entries:
        try:
            service = await record_operator_action(settings, queue, actor=f"operator:{who}", action=action,
                                                   outcome=outcome, detail=detail)
        except Exception as exc:
            print(f"safeguard dlq: could not write the audit entry ({type(exc).__name__}); "
                  "keep this output with the change record", file=err)
            ok = False
            continue
        if service is None:
            print(f"safeguard dlq: no audit table for {queue}'s service yet; the log line is the only record",
                  file=err)
    return ok
