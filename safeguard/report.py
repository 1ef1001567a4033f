"""`safeguard report --from DATE --to DATE [--format csv|json]` — the performance data report.

Reads intake's database (where the referral metadata lives) as configured, like `safeguard
audit verify`; computes the same document as intake's `GET /v1/report` (every organisation,
small numbers suppressed at `[system] small_number_threshold`) and records a `report.read`
audit entry (actor `cli`). `report_command` takes the settings and streams so tests run it
in-process.
"""
from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import date, timedelta
from pathlib import Path
from typing import Any, TextIO

from shared.clock import LONDON, utcnow
from shared.config import Settings, load_settings


async def report_command(settings: Settings, start: date, end: date, *, fmt: str = "csv",
                         out: TextIO | None = None, err: TextIO | None = None) -> int:
    from sqlalchemy import inspect

    from services.intake.adapters.queries import report
    from services.intake.adapters.tables import referrals
    from services.intake.context import Context
    from services.intake.entrypoints import export
    from shared.storage import create_engine

    out, err = out or sys.stdout, err or sys.stderr
    if start > end:
        print("safeguard report: --from must be on or before --to", file=err)
        return 2
    url = settings.database_url_for("intake")
    if url.startswith("sqlite") and not Path(url.split(":///", 1)[1]).exists():
        print("safeguard report: intake has no database yet", file=err)
        return 1
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            ready = await conn.run_sync(lambda c: inspect(c).has_table(referrals.name))
        if not ready:
            print("safeguard report: intake's database has no referrals table yet", file=err)
            return 1
        doc = await report(Context(settings=settings, engine=engine), "cli", start, end, via="cli")
    finally:
        await engine.dispose()
    out.write(export.to_csv(doc) if fmt == "csv" else export.to_json(doc) + "\n")
    return 0


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError("expected a date YYYY-MM-DD") from None


DAYS_BACK = 364  # like the /report page: the last year, ending today


def default_period(start: date | None, end: date | None, today: date) -> tuple[date, date]:
    """`--to` defaults to today (London) and `--from` to 364 days before it."""
    end = end or today
    return start or end - timedelta(days=DAYS_BACK), end


def _cmd(args: argparse.Namespace) -> int:
    start, end = default_period(args.start, args.end, utcnow().astimezone(LONDON).date())
    return asyncio.run(report_command(load_settings(), start, end, fmt=args.format))


def register(sub: Any) -> None:
    p = sub.add_parser("report", help="performance data report (small numbers suppressed)")
    p.add_argument("--from", dest="start", type=_day, metavar="DATE",
                   help="first day (London; default: 364 days before --to)")
    p.add_argument("--to", dest="end", type=_day, metavar="DATE", help="last day (London; default: today)")
    p.add_argument("--format", choices=("csv", "json"), default="csv")
    p.set_defaults(func=_cmd)
