"""The ops dashboard at `GET /ops`: counts only, read-only, server-side rendered.

Queue depths and consumers (passive declares), parked messages per parking queue,
escalation's outbox lag, open alerts by force and level, unmet deadlines due today or
breached, timers by kind. No reference, name or content is ever on the page. People with
the `ops` role sign in (DESIGN §3.7, `shared.web`). Charts are inline SVG; `static/ops.js`
reloads the page every `?refresh=` seconds (default 15) and can be paused.
"""
from __future__ import annotations

import asyncio
from datetime import UTC, datetime, time, timedelta

from aiohttp import web

from services.escalation.adapters import ops_queries as q
from services.escalation.domain.console import level_label
from services.escalation.domain.ladder import TIMER_KINDS
from services.escalation.entrypoints.http import CONTEXT
from shared.bus.topology import all_queues
from shared.clock import LONDON
from shared.logging import get_logger
from shared.runtime import RUNTIME
from shared.web.pages import render, signed_in

log = get_logger(__name__)
REFRESH_S, BROKER_TIMEOUT_S = 15, 5.0


def bars(items: list[tuple[str, int]], width: int = 300) -> list[dict]:
    """Rows of a horizontal bar chart, bar widths scaled to the largest value."""
    top = max([n for _, n in items] + [1])
    return [{"label": label, "value": n, "width": round(width * n / top)} for label, n in items]


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    s = int(seconds)
    return f"{s // 3600} h {s % 3600 // 60} min" if s >= 3600 else f"{s // 60} min {s % 60} s"


async def _queues(app: web.Application, names: list[str]) -> dict[str, q.QueueCount] | None:
    try:
        async with asyncio.timeout(BROKER_TIMEOUT_S):
            return {c.name: c for c in await q.queue_counts(app[RUNTIME].connection, names)}
    except Exception as exc:  # the broker is down: the page says so
        log.warning("ops_queue_counts_failed", error=type(exc).__name__)
        return None


async def dashboard_view(app: web.Application) -> dict:
    ctx = app[CONTEXT]
    settings, now = ctx.settings, ctx.clock()
    end_of_day = datetime.combine(now.astimezone(LONDON).date() + timedelta(days=1), time(), LONDON).astimezone(UTC)
    forces = [f.slug for f in settings.file.forces]
    specs = all_queues(forces)
    counts = await _queues(app, [s.name for s in specs] + [s.parking_queue for s in specs])
    async with app[RUNTIME].engine.connect() as conn:
        backlog, oldest = await q.outbox_lag(conn, now)
        open_alerts = await q.open_alerts(conn)
        deadlines = await q.deadlines(conn, now, end_of_day)
        timer_rows = await q.timer_counts(conn, now)
    levels = list(settings.file.escalation.alert_levels)
    levels += sorted({lvl for _, lvl, _, _ in open_alerts} - set(levels))
    by_force = {f: dict.fromkeys(levels, 0) for f in forces}
    for force, level, _, n in open_alerts:
        by_force.setdefault(force, dict.fromkeys(levels, 0))[level] = n
    queues = [counts.get(s.name) for s in specs] if counts is not None else []
    parked = [counts.get(s.parking_queue) for s in specs] if counts is not None else []
    kinds = [*TIMER_KINDS, *sorted(set(timer_rows) - set(TIMER_KINDS))]
    timers = {k: timer_rows.get(k, {"pending": 0, "overdue": 0, "failed": 0}) for k in kinds}
    return {
        "now": now.astimezone(LONDON), "broker_ok": counts is not None, "queues": queues, "parked": parked,
        "parked_total": sum(c.messages or 0 for c in parked if c),
        "outbox": {"backlog": backlog, "oldest": _age(oldest)},
        "levels": levels, "alerts": by_force, "alerts_total": sum(n for *_, n in open_alerts),
        "deadlines": deadlines, "timers": timers, "level_labels": {lvl: level_label(lvl) for lvl in levels},
        "force_names": {f.slug: f.name for f in settings.file.forces},
        "report_url": settings.file.system.public_base_url.rstrip("/") + "/report",
        "charts": {
            "queues": bars([(c.name, c.messages or 0) for c in queues if c]),
            "alerts": bars([(f, sum(v.values())) for f, v in by_force.items()]),
            "timers": bars([(k, v["pending"]) for k, v in timers.items()]),
        },
    }


@signed_in({"ops"})
async def dashboard(request: web.Request) -> web.StreamResponse:
    try:
        refresh = min(max(int(request.query.get("refresh", REFRESH_S)), 2), 3600)
    except ValueError:
        refresh = REFRESH_S
    return render(request, "ops.html", title="Operations", view=await dashboard_view(request.app), refresh=refresh)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/ops", dashboard)
