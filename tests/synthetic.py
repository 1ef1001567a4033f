"""A synthetic year of referrals for the performance report, inserted in bulk into
intake's `intake_referrals` table (metadata in clear; content sealed by the real `seal` to a
dummy key, one envelope shared by every row to keep the insert fast — reports never read it).

Shares follow the published Prevent statistics: nationally ~57 % of referrals are about
under-18s and 70 % of those are aged 11–15. The relay carries only referrals about
children (the `age_band` contract has no adult band), so the generator produces that
under-18 slice: 0–10 9 %, 11–15 70 %, 16–17 21 %. About 13 % are discussed at a Channel
panel (CTP outcome `channel_referral`); deadlines come from the real working-time rules.
Every row carries `canary` in its clear `client_reference` and its sealed content, so a
test can prove no report shows either.

    python -m tests.synthetic --url postgresql+asyncpg://… --count 5000 --year 2025
"""
from __future__ import annotations

import argparse
import asyncio
import json
import random
from datetime import UTC, datetime, time, timedelta
from typing import Any

from nacl.public import PrivateKey

from services.intake.adapters.tables import referrals
from services.intake.domain.lifecycle import format_reference
from shared.clock import LONDON
from shared.crypto import seal
from shared.worktime import WorkingCalendar, compute_deadlines
from tests.factories import intake_referral_row

AGE_BANDS = {"0-10": 0.09, "11-15": 0.70, "16-17": 0.21}
CONCERNS = {"mixed_unclear_unstable": 0.37, "extreme_right_wing": 0.22, "islamist": 0.12, "school_massacre": 0.09,
            "incel": 0.05, "conflicted": 0.03, "other": 0.12}
PATHWAYS = {"no_further_action": 0.38, "early_help": 0.22, "section_17": 0.22, "section_47": 0.14,
            "immediate_protection": 0.04}
OUTCOMES = {"not_suitable": 0.55, "suitable_for_prevent": 0.20, "channel_referral": 0.13, "police_led": 0.12}
OUT_OF_HOURS = 0.25  # share received outside working time
ACK_ON_TIME = 0.90
CHECKS_ON_TIME = 0.85


def _draw(rng: random.Random, shares: dict[str, float], n: int) -> list[str]:
    return rng.choices(list(shares), weights=list(shares.values()), k=n)


def _received(rng: random.Random, year: int, calendar: WorkingCalendar) -> datetime:
    """A receipt time in `year`: in working hours (a working day, 09:00–17:00) or outside them."""
    start = datetime(year, 1, 1, tzinfo=LONDON)
    want_ooh = rng.random() < OUT_OF_HOURS
    while True:
        at = start + timedelta(seconds=rng.randrange(365 * 86400))
        if want_ooh:
            if not calendar.is_working_time(at):
                return at.astimezone(UTC)
        elif calendar.is_working_day(at.date()):
            day = datetime.combine(at.date(), time(9), LONDON)
            return (day + timedelta(seconds=rng.randrange(8 * 3600))).astimezone(UTC)


def referral_rows(n: int, *, year: int = 2025, seed: int = 1, canary: str = "CANARY0") -> list[dict[str, Any]]:
    """`n` closed-out referrals received in `year` (London), as `intake_referrals` rows."""
    rng, calendar = random.Random(seed), WorkingCalendar()
    team = {"dummy-1": PrivateKey.generate().public_key}
    content = {"subject": {"given_names": f"{canary}-given"}, "concerns": f"{canary} narrative"}
    sealed = seal(json.dumps(content).encode(), referral_id="synthetic", recipients=team)  # one for all: fast
    ages, pathways, outcomes = _draw(rng, AGE_BANDS, n), _draw(rng, PATHWAYS, n), _draw(rng, OUTCOMES, n)
    first, second = _draw(rng, CONCERNS, n), _draw(rng, CONCERNS, n)
    rows = []
    for i in range(n):
        d = compute_deadlines(_received(rng, year, calendar), calendar)
        ack_window = (d.acknowledge_by - d.received_at).total_seconds()
        ack = d.received_at + timedelta(seconds=rng.uniform(0.05, 1) * ack_window) if rng.random() < ACK_ON_TIME \
            else d.acknowledge_by + timedelta(hours=rng.uniform(0.5, 48))
        chk_window = (d.checks_due_by - d.received_at).total_seconds()
        checks = d.received_at + timedelta(seconds=rng.uniform(0.1, 1) * chk_window) if rng.random() < CHECKS_ON_TIME \
            else d.checks_due_by + timedelta(days=rng.uniform(1, 20))
        concerns = sorted({first[i], second[i]}) if rng.random() < 0.1 else [first[i]]
        rows.append(intake_referral_row(
            d.received_at, reference=format_reference(year, i + 1), client_reference=f"{canary}-{i}",
            received_via="out_of_hours_control_room" if d.out_of_hours and rng.random() < 0.5 else "mash",
            immediate_risk=rng.random() < 0.04, age_band=ages[i], concern_types=concerns,
            out_of_hours=d.out_of_hours, acknowledge_by=d.acknowledge_by, checks_due_by=d.checks_due_by,
            status="closed", acknowledged_at=ack, acknowledged_by="dev-social-care",
            pathway=pathways[i], decided_at=ack, decided_by="dev-social-care",
            checks_outcome=outcomes[i], checks_at=checks, checks_by="dev-prevent",
            closed_at=max(ack, checks) + timedelta(days=1), closed_by="dev-social-care", content_sealed=sealed))
    return rows


async def insert(engine: Any, rows: list[dict[str, Any]], batch: int = 1000) -> None:
    """Bulk insert (executemany), a batch per statement."""
    async with engine.begin() as conn:
        for i in range(0, len(rows), batch):
            await conn.execute(referrals.insert(), rows[i:i + batch])


async def _main(argv: list[str] | None = None) -> None:
    from shared.storage import create_engine
    from shared.storage.migrate import upgrade

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", required=True, help="intake's database URL (migrated to head first)")
    p.add_argument("--count", type=int, default=5000)
    p.add_argument("--year", type=int, default=2025)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    engine = create_engine(args.url)
    try:
        await upgrade(engine, "intake")
        await insert(engine, referral_rows(args.count, year=args.year, seed=args.seed))
    finally:
        await engine.dispose()
    print(f"inserted {args.count} synthetic referrals received in {args.year}")


if __name__ == "__main__":
    asyncio.run(_main())
