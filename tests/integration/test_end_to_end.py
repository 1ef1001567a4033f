"""intake, escalation and notifier together (issue 5): a signed referral posted to
intake reaches the MASH team by email and Teams with its acknowledge-by time, the
referrer gets an acknowledgement of receipt, an out-of-hours one alerts the control
room, and no content (a canary in every content and contact field) appears in any
email, Teams card, log line, bus message, database row (all three services), /metrics,
the ops dashboard or the performance report page."""
from __future__ import annotations

import json
from datetime import date, datetime, timedelta

import aiohttp
import holidays
import pytest
import sqlalchemy as sa

from shared.clock import LONDON
from shared.storage import create_engine
from shared.web.identity import Person
from shared.web.pages import WEB
from tests.factories import canary_phone, new_canary, postcode_of, referral
from tests.integration.e2e import System, running_system, until
from tests.support.metrics import metrics_page

pytestmark = [pytest.mark.broker, pytest.mark.database]
MASH_EMAIL, MASH_HOOK = "mash-team@dev-borough.example", "mash-team.dev-borough"
BANK_HOLIDAYS = holidays.country_holidays("GB", subdiv="ENG", years=range(date.today().year, date.today().year + 2))


def next_day(weekday: int, *, working_after: int) -> date:
    """The first `weekday` at least a week ahead such that it and the day `working_after`
    days later are not bank holidays (so the expected deadline is plain)."""
    day = date.today() + timedelta(days=7)
    while day.weekday() != weekday or day in BANK_HOLIDAYS or day + timedelta(days=working_after) in BANK_HOLIDAYS:
        day += timedelta(days=1)
    return day


def at(day: date, hour: int) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=LONDON)


def wall_clock(t: datetime) -> str:
    """How people read a time: `Thursday 10 December 2026 at 10:00am` (Europe/London)."""
    t = t.astimezone(LONDON)
    return f"{t:%A} {t.day} {t:%B %Y} at {t.hour % 12 or 12}:{t:%M}{'am' if t.hour < 12 else 'pm'}"


def canary_referral(canary: str, **overrides) -> dict:
    doc = referral(canary=canary, phone=canary_phone(), **overrides)
    doc["holding_instructions"]["reason"] = f"{canary}-reason"  # free text: treated as content here
    return doc


def leaks(system: System, canaries: list[str], referrer_email: str) -> dict[str, list[str]]:
    """Where any canary appears. The referrer's own address may appear only as its mail's recipient."""
    places = {
        "emails": "".join((m.raw.replace(referrer_email, "") if m.to == [referrer_email] else m.raw)
                          + m.subject + m.text + m.html for m in system.smtp.mails),
        "teams": json.dumps(system.teams.posts),
        "logs": system.logs.getvalue(),
        "bus": system.tapped_text(),
    }
    return {where: [c for c in canaries if c in text] for where, text in places.items() if any(c in text for c in canaries)}


async def database_text(url: str) -> str:
    """Every row of every table of one service's database, as text."""
    engine = create_engine(url)
    parts = []
    try:
        async with engine.connect() as conn:
            md = sa.MetaData()
            await conn.run_sync(md.reflect)
            for table in md.sorted_tables:
                parts.append(f"{table.name}: {(await conn.execute(sa.select(table))).all()!r}")
    finally:
        await engine.dispose()
    return "\n".join(parts)


async def pages_text(system: System) -> dict[str, str]:
    """What operators read: each service's /metrics, the ops dashboard and the report page."""
    out = {}
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        for svc, server in system.servers.items():
            async with http.get(server.make_url("/metrics")) as resp:
                assert resp.status == 404, svc  # not on the public port (issue 18 #14)
        out["/metrics"] = await metrics_page()  # the metrics listener's (one registry in this process)
        esc, intake = system.servers["escalation"], system.servers["intake"]
        # an ops person's session, as signing in makes it (tests/escalation and tests/web sign in for real)
        web = esc.app[WEB]
        ops = Person("http://127.0.0.1:9400", "ops@safeguard.example", "Alex Reid", "ops", None)
        session = await web.store.signed_in(web.config.clock(), ops)
        async with http.get(esc.make_url("/ops"), headers={"Cookie": f"{web.cookie}={session.id}"}) as resp:
            out["/ops"] = await resp.text()
        web = intake.app[WEB]  # an ops person signed in (the pages' own tests sign in at the provider)
        session = await web.store.signed_in(system.clock(), Person("https://idp.example", "ops", "Ops", "ops", None))
        async with http.get(intake.make_url("/report"), cookies={web.cookie: session.id}) as resp:
            out["/report"] = await resp.text()
    assert "intake.submissions" in out["/ops"] and "<svg" in out["/report"], "signed in to both pages"
    return out


@pytest.mark.parametrize("db", ["postgres", "sqlite"])
async def test_in_hours_referral_notifies_the_team_and_the_referrer_and_leaks_nothing(tmp_path, amqp_url, capfd, db):
    wednesday = next_day(2, working_after=1)
    received, ack_by = at(wednesday, 10), at(wednesday + timedelta(days=1), 10)
    canary = new_canary()
    doc = canary_referral(canary)
    referrer_email = doc["contacts"]["referrer"]["email"]
    canaries = [canary, doc["contacts"]["referrer"]["phone"], postcode_of(canary)]
    async with running_system(tmp_path, amqp_url, received, db=db) as system:
        resp = await system.submit(doc)
        reply = await resp.json()
        assert resp.status == 202, reply
        assert datetime.fromisoformat(reply["acknowledge_by"]) == ack_by and reply["out_of_hours"] is False
        ref = reply["reference"]

        await until(lambda: system.smtp.to(MASH_EMAIL) and system.teams.posts[MASH_HOOK]
                    and system.smtp.to(referrer_email))
        await until(lambda: system.tapped_keys().count("notification.sent") >= 3)
        [mail] = system.smtp.to(MASH_EMAIL)
        assert ref in mail.subject  # no_further_sharing holds: the reference and times only
        assert wall_clock(ack_by) in mail.text and wall_clock(ack_by) in mail.html and ref in mail.text
        [card] = system.teams.posts[MASH_HOOK]
        assert ref in json.dumps(card) and wall_clock(ack_by) in json.dumps(card)
        [ack] = system.smtp.to(referrer_email)
        assert ref in ack.subject and ref in ack.text
        assert {a for m in system.smtp.mails for a in m.to} == {MASH_EMAIL, referrer_email}  # no guardian mail
        assert "referral.received" in system.tapped_keys() and "notification.requested" in system.tapped_keys()
        assert await system.take("control-room.dev-force") == []  # in hours: no control-room alert
        assert canary not in json.dumps(reply)
        assert '"event": "service_ready"' in system.logs.getvalue()  # the log capture works
        stored = {svc: await database_text(url) for svc, url in system.databases.items()}
        assert ref in stored["intake"] and ref in stored["escalation"] and ref in stored["notifier"]
        pages = await pages_text(system)
    assert leaks(system, canaries, referrer_email) == {}
    everywhere = {**stored, **pages}
    assert {where: [c for c in canaries if c in text] for where, text in everywhere.items()
            if any(c in text for c in canaries)} == {}
    out, err = capfd.readouterr()
    assert not [c for c in canaries if c in out + err]


async def test_saturday_referral_alerts_the_control_room_and_leaks_nothing(tmp_path, amqp_url, capfd):
    saturday = next_day(5, working_after=2)
    received, ack_by = at(saturday, 10), at(saturday + timedelta(days=2), 17)
    canary = new_canary()
    doc = canary_referral(canary)
    referrer_email = doc["contacts"]["referrer"]["email"]
    async with running_system(tmp_path, amqp_url, received) as system:
        resp = await system.submit(doc)
        reply = await resp.json()
        assert resp.status == 202, reply
        assert reply["out_of_hours"] is True and datetime.fromisoformat(reply["acknowledge_by"]) == ack_by
        alerts: list[dict] = []

        async def alerted() -> None:
            alerts.extend(await system.take("control-room.dev-force"))

        await until(lambda: "control-room.dev-force" in system.tapped_keys())
        await alerted()
        [alert] = alerts
        assert (alert["kind"], alert["reference"], alert["force"], alert["la_code"]) == (
            "out_of_hours_concern", reply["reference"], "dev-force", "E99999999")
        assert datetime.fromisoformat(alert["raised_at"]) == received
        await until(lambda: system.smtp.to(MASH_EMAIL) and system.smtp.to(referrer_email))
        assert wall_clock(ack_by) in system.smtp.to(MASH_EMAIL)[0].text
        await until(lambda: system.tapped_keys().count("notification.sent") >= 3)
    assert leaks(system, [canary, postcode_of(canary)], referrer_email) == {}
    out, err = capfd.readouterr()
    assert canary not in out + err
