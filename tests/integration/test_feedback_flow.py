"""CTP feedback reaches people (issue 16, DESIGN §4): a feedback release by CTP Prevent
causes one feedback email each to the LA MASH team, the referrer and — only when the
family-contact hold is lifted — the guardians, through the three real services, the real
broker and PostgreSQL and an aiosmtpd sink. With `family_contact: keep` the guardians
get nothing and the notifier's refusal is audited. A canary in every content and contact
field appears in no email (beyond each address in its own mail's envelope), card, log
line or bus message."""
from __future__ import annotations

import asyncio
import io
import json
from datetime import date, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from safeguard import trace
from shared.storage import create_engine
from tests.factories import canary_phone, new_canary, postcode_of, referral
from tests.integration.e2e import System, running_system, until

pytestmark = [pytest.mark.broker, pytest.mark.database]
MASH_EMAIL = "mash-team@dev-borough.example"


def a_weekday_at_ten() -> datetime:
    day = date.today() + timedelta(days=7)
    while day.weekday() != 2:
        day += timedelta(days=1)
    return datetime(day.year, day.month, day.day, 10).astimezone()


def requested(system: System, template: str) -> list[dict[str, Any]]:
    bodies = [json.loads(m.body) for m in system.tapped if m.routing_key == "notification.requested"]
    return [b for b in bodies if b["template"] == template]


async def notifier_audit(system: System) -> list[dict[str, Any]]:
    engine = create_engine(system.databases["notifier"])
    try:
        async with engine.connect() as conn:
            md = sa.MetaData()
            await conn.run_sync(md.reflect)
            [table] = [t for name, t in md.tables.items() if name.endswith("audit")]
            return [dict(r._mapping) for r in (await conn.execute(sa.select(table))).all()]
    finally:
        await engine.dispose()


def leaked(system: System, canaries: list[str], own: set[str]) -> dict[str, list[str]]:
    """Where a canary appears; a contact address may appear only in the envelope of its own mail."""
    mails = []
    for m in system.smtp.mails:
        raw = m.raw
        for address in own & set(m.to):
            raw = raw.replace(address, "")
        mails.append(raw + m.subject + m.text + m.html)
    places = {"emails": "".join(mails), "teams": json.dumps(system.teams.posts),
              "logs": system.logs.getvalue(), "bus": system.tapped_text()}
    return {w: [c for c in canaries if c in t] for w, t in places.items() if any(c in t for c in canaries)}


async def submit_and_check(system: System, doc: dict) -> str:
    resp = await system.submit(doc)
    reply = await resp.json()
    assert resp.status == 202, reply
    ref = reply["reference"]
    resp = await system.act("dev-prevent", ref, "checks", {"outcome": "suitable_for_prevent"})
    assert resp.status == 200, await resp.text()
    return ref


@pytest.mark.parametrize("family_contact", ["lift", "keep"])
async def test_feedback_reaches_the_team_the_referrer_and_only_unheld_guardians(tmp_path, amqp_url, family_contact):
    canary = new_canary()
    doc = referral(canary=canary, phone=canary_phone())
    referrer = doc["contacts"]["referrer"]["email"]
    guardian = doc["contacts"]["guardians"][0]["email"]
    canaries = [canary, doc["contacts"]["referrer"]["phone"], postcode_of(canary)]
    async with running_system(tmp_path, amqp_url, a_weekday_at_ten()) as system:
        ref = await submit_and_check(system, doc)
        body = None if family_contact == "lift" else {"family_contact": "keep"}
        resp = await system.act("dev-prevent", ref, "feedback", body)
        reply = await resp.json()
        assert resp.status == 200, reply
        assert reply["family_contact_lifted"] is (family_contact == "lift")
        # Before: the receipt (team email + card) and the referrer's acknowledgement, minimal
        # while no_further_sharing held; the checks outcome lifted it, so feedback is in full.
        mails = {MASH_EMAIL: 2, referrer: 2, guardian: 1 if family_contact == "lift" else 0}
        await until(lambda: all(len(system.smtp.to(a)) >= n for a, n in mails.items()), timeout=60)
        if family_contact == "keep":
            await until(lambda: "notification.failed" in system.tapped_keys(), timeout=30)
        sent = 3 + 3 + (family_contact == "lift")  # receipt 3; feedback: team email + card, referrer, guardian
        await until(lambda: system.tapped_keys().count("notification.sent") >= sent, timeout=30)
        repeat = await system.act("dev-prevent", ref, "feedback", body)  # a repeat changes nothing
        assert repeat.status == 200 and (await repeat.json())["feedback_at"] == reply["feedback_at"]
        audit = await notifier_audit(system)

    assert {a: len(system.smtp.to(a)) for a in mails} == mails  # each exactly once, guardians only if lifted
    assert all(ref in m.subject for a in mails for m in system.smtp.to(a))
    assert system.smtp.to(MASH_EMAIL)[0].subject == f"New referral: referral {ref}"  # minimal: held at receipt
    assert system.smtp.to(MASH_EMAIL)[1].subject == f"Feedback released for referral {ref}"
    assert system.smtp.to(referrer)[1].subject == f"Feedback on your referral {ref}"
    if family_contact == "lift":
        assert system.smtp.to(guardian)[0].subject == f"A message from your local Prevent team (reference {ref})"
    assert sorted(r["audience"] for r in requested(system, "feedback")) == ["guardians", "la:mash_team", "referrer"]
    refused = [a for a in audit if a["action"] == "notification_refused"]
    if family_contact == "lift":
        assert refused == []
    else:  # the family-contact hold stays on: the notifier refuses the guardians and says so
        assert len(refused) == 1 and "holding_instruction" in json.dumps(refused[0], default=str)
    assert leaked(system, canaries, {referrer, guardian}) == {}


async def test_the_la_closing_its_track_leaves_ctp_to_finish_and_trace_shows_both_tracks(tmp_path, amqp_url):
    """Issue 16 / DESIGN §3.3: the LA acknowledges, decides no further action and closes its
    track; CTP Prevent still records its checks and releases feedback (which reaches people),
    then closes its own track, which closes the referral. `safeguard trace` shows both."""
    canary = new_canary()
    doc = referral(canary=canary, phone=canary_phone())
    referrer, guardian = doc["contacts"]["referrer"]["email"], doc["contacts"]["guardians"][0]["email"]
    async with running_system(tmp_path, amqp_url, a_weekday_at_ten(), db="sqlite") as system:
        resp = await system.submit(doc)
        ref = (await resp.json())["reference"]
        for action, body in (("acknowledgement", None), ("decision", {"pathway": "no_further_action"}),
                             ("close", None)):
            resp = await system.act("dev-social-care", ref, action, body)
            assert resp.status == 200, await resp.text()
        la = await resp.json()
        assert (la["track"], la["referral_closed"], la["tracks"]["ctp"]["status"]) == ("la", False, "checks_pending")
        for action, body in (("checks", {"outcome": "not_suitable"}), ("feedback", None)):
            resp = await system.act("dev-prevent", ref, action, body)
            assert resp.status == 200, await resp.text()
        await until(lambda: len(system.smtp.to(MASH_EMAIL)) >= 2 and len(system.smtp.to(referrer)) >= 2
                    and len(system.smtp.to(guardian)) >= 1, timeout=60)
        resp = await system.act("dev-prevent", ref, "close")
        closed = await resp.json()
        assert (closed["status"], closed["track"], closed["referral_closed"]) == ("closed", "ctp", True)
        await until(lambda: system.tapped_keys().count("referral.track_closed") == 2, timeout=30)
        await until(lambda: system.tapped_keys().count("notification.sent") >= 7, timeout=30)
        await asyncio.sleep(0.5)  # escalation applies the second close
        out, err = io.StringIO(), io.StringIO()
        assert await trace.trace_command(system.settings["intake"], ref, out=out, err=err) == 0, err.getvalue()
    text = out.getvalue()
    print(text)  # the note shows it (pytest -s)
    lines = text.splitlines()
    step = lambda service, words: next(i for i, li in enumerate(lines) if service in li and words in li)  # noqa: E731
    assert step("intake", "closed its track") < step("intake", "checks") < step("intake", "feedback")
    assert len([li for li in lines if "escalation" in li and "track closed; its clocks stopped" in li]) == 2
    assert canary not in text
    assert "feedback" in "".join(m.subject.lower() for m in system.smtp.to(MASH_EMAIL))
