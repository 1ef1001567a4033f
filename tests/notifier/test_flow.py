"""The notifier end to end on the real RabbitMQ and PostgreSQL, delivering to a real
aiosmtpd server and a real HTTP server standing in for Teams."""
from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime

import pytest
from prometheus_client import REGISTRY

from services.notifier.bootstrap import NOTIFIER
from shared.crypto import b64e, generate_sealing_key
from shared.messages import ChecksCompleted, FeedbackReleased, StrategyDiscussionRecorded
from tests.notifier.conftest import ACK_BY_TEXT, CANARY, FORCE, LA

pytestmark = [pytest.mark.broker, pytest.mark.database]
MASH_EMAIL, MASH_HOOK = "mash-team@dev-borough.example", "mash-team.dev-borough"


def everything(world) -> str:
    mails = "".join(m.raw + m.text + m.html for m in world.smtp.mails)
    return mails + json.dumps(world.teams.posts)


async def test_receipt_reaches_the_mash_team_by_email_and_teams(world):
    await world.received()
    req = world.request("receipt", "la:mash_team",
                        contacts=world.sealed_contacts({"referrer": {"name": CANARY, "email": f"{CANARY}@x.example"}}))
    await world.publish(req, "escalation")
    rows = await world.settled(req, count=2)
    assert {k: r.status for k, r in rows.items()} == {"teams": "delivered", "email": "delivered"}
    [mail] = world.smtp.to(MASH_EMAIL)
    assert world.reference in mail.subject and ACK_BY_TEXT in mail.text and ACK_BY_TEXT in mail.html
    [card] = world.teams.posts[MASH_HOOK]
    assert ACK_BY_TEXT in json.dumps(card) and card["attachments"][0]["content"]["version"] == "1.4"
    assert CANARY not in everything(world)
    events = await world.events(2)
    assert sorted((e["channel"], e["status"]) for e in events) == [("email", "delivered"), ("teams", "delivered")]
    assert all(e["notification_id"] == req.notification_id for e in events)
    assert ("notification_sent", "delivered") in await world.audit_actions()


async def test_referrer_is_acknowledged_from_the_sealed_contact_section(world):
    await world.received()
    contacts = {"referrer": {"name": CANARY, "organisation": CANARY, "email": "referrer@mash.example"},
                "guardians": [{"name": CANARY, "email": "parent@home.example"}]}
    req = world.request("referral_acknowledgement", "referrer", contacts=world.sealed_contacts(contacts))
    await world.publish(req, "escalation")
    rows = await world.settled(req, count=1)
    assert rows["email"].status == "delivered"
    [mail] = world.smtp.to("referrer@mash.example")
    assert world.reference in mail.text and world.reference in mail.subject
    assert world.smtp.to("parent@home.example") == []
    assert CANARY not in everything(world)


async def test_no_guardian_message_while_the_hold_is_on_then_exactly_one_after_release(world):
    await world.received(nfc=True)
    contacts = world.sealed_contacts({"guardians": [{"name": CANARY, "email": "parent@home.example"}]})
    early = world.request("feedback", "guardians", nfc=False, contacts=contacts)  # escalation claims it is fine
    await world.publish(early, "escalation")
    rows = await world.settled(early, count=1)
    assert (rows["none"].status, rows["none"].reason) == ("refused", "holding_instruction")
    refused = await world.events(1)
    assert (refused[0]["status"], refused[0]["reason"]) == ("refused", "holding_instruction")
    assert ("notification_refused", "refused") in await world.audit_actions()

    await world.released(lifted=True)
    after = world.request("feedback", "guardians", nfc=False, contacts=contacts)
    for _ in range(2):  # the same request delivered twice
        await world.publish(after, "escalation")
    await world.publish(early, "escalation")  # the refused one again: still refused
    rows = await world.settled(after, count=1)
    assert rows["email"].status == "delivered"
    await asyncio.sleep(1.0)
    [mail] = world.smtp.to("parent@home.example")
    assert world.reference in mail.text and CANARY not in everything(world)
    assert (await world.settled(early))["none"].status == "refused"


async def test_a_guardians_feedback_request_that_overtakes_the_release_waits_for_it(world):
    """escalation's request and intake's release travel separately: a request that arrives
    first is handed back to the queue, not refused, and is delivered once the release lands."""
    await world.received(nfc=True)
    contacts = world.sealed_contacts({"guardians": [{"email": "parent@home.example"}]})
    req = world.request("feedback", "guardians", nfc=False, contacts=contacts)
    await world.publish(req, "escalation")
    await asyncio.sleep(0.3)  # handled once already: handed back, nothing final
    await world.refresh(req.notification_id)
    assert world._rows.get(req.notification_id, []) == []
    await world.released(lifted=True)
    assert (await world.settled(req, count=1))["email"].status == "delivered"
    assert len(world.smtp.to("parent@home.example")) == 1


async def test_the_checks_outcome_lifts_no_further_sharing_for_later_messages(world):
    await world.received(nfc=True, nfs=True)
    before = world.request("checks_reminder", "force:ctp_prevent", nfs=False)  # the request alone cannot lift it
    await world.publish(before, "escalation")
    await world.settled(before)
    await world.publish(ChecksCompleted(
        referral_id=world.referral_id, reference=world.reference, force=FORCE, la_code=LA, at=datetime.now(UTC),
        outcome="suitable_for_prevent"), "intake")
    await world.wait(lambda: (h := world.hold()) is not None and not h.no_further_sharing)
    after = world.request("feedback", "la:mash_team", nfs=False)
    await world.publish(after, "escalation")
    await world.settled(after)
    subjects = [m.subject for m in world.smtp.mails]
    assert any(s.startswith("Reminder: CTP checks: referral") for s in subjects)  # minimal: kind and reference
    assert f"Feedback released for referral {world.reference}" in subjects  # the full message
    assert world.hold().no_family_contact  # still on


async def test_hold_events_arriving_together_are_all_applied(world):
    await _hold_events_together(world)


async def test_hold_events_arriving_together_are_all_applied_on_sqlite(world_sqlite):
    await _hold_events_together(world_sqlite)


async def _hold_events_together(world) -> None:
    """The checks outcome, a strategy discussion and the feedback release published back to
    back (as `make run` showed they arrive): each update reads what the one before wrote."""
    await world.received(nfc=True, nfs=True)
    base = dict(referral_id=world.referral_id, reference=world.reference, force=FORCE, la_code=LA, at=datetime.now(UTC))
    for message in (ChecksCompleted(**base, outcome="suitable_for_prevent"),
                    StrategyDiscussionRecorded(**base, held_at=base["at"], agencies=("ctp_prevent",),
                                               legal_advice_sought=False, decision="no_immediate_action",
                                               parents_informed=True, family_contact_lifted=True),
                    FeedbackReleased(**base, family_contact_lifted=False,
                                     audiences=("social_care", "referrer", "guardians"))):
        await world.publish(message, "intake")
    await world.wait(lambda: (h := world.hold()) is not None and h.feedback_released)
    await asyncio.sleep(0.5)
    await world.refresh()
    h = world.hold()
    assert (h.no_further_sharing, h.no_family_contact, h.feedback_released, h.guardians_released) == (
        False, False, True, True)


async def test_release_that_does_not_lift_the_hold_still_refuses_guardians(world):
    await world.received(nfc=True)
    await world.released(lifted=False, audiences=("social_care", "referrer"))
    contacts = world.sealed_contacts({"guardians": [{"email": "parent@home.example"}]})
    req = world.request("feedback", "guardians", nfc=False, contacts=contacts)
    await world.publish(req, "escalation")
    assert (await world.settled(req))["none"].status == "refused"
    assert world.smtp.mails == []


async def test_a_redelivered_request_sends_nothing_twice(world):
    await world.received()
    req = world.request("ack_reminder", "la:mash_team")
    await world.publish(req, "escalation", message_id="same-id")
    await world.publish(req, "escalation", message_id="same-id")
    await world.publish(req, "escalation")  # a re-send under another message id
    await world.settled(req, count=2)
    await asyncio.sleep(1.5)
    assert len(world.smtp.to(MASH_EMAIL)) == 1 and len(world.teams.posts[MASH_HOOK]) == 1


async def test_on_the_embedded_sqlite_default_a_request_is_delivered_once(world_sqlite):
    world = world_sqlite
    await world.received()
    req = world.request("receipt", "la:mash_team")
    for _ in range(3):
        await world.publish(req, "escalation")
    rows = await world.settled(req, count=2)
    assert {r.status for r in rows.values()} == {"delivered"}
    await asyncio.sleep(1.0)
    assert len(world.smtp.to(MASH_EMAIL)) == 1 and len(world.teams.posts[MASH_HOOK]) == 1


async def test_smtp_down_then_back_is_delivered_once(world):
    await world.received()
    world.smtp.stop()
    req = world.request("ack_breach", "la:team_manager")
    await world.publish(req, "escalation")
    await world.wait(lambda: any(r.channel == "email" and r.status == "temporary-failure"
                                 for r in world._rows.get(req.notification_id, [])),
                     notification_id=req.notification_id)
    world.smtp.start()
    rows = await world.settled(req, count=2)
    assert rows["email"].status == "delivered" and rows["email"].attempts >= 2
    assert len(world.smtp.to("team-manager@dev-borough.example")) == 1


async def test_teams_429_retry_after_is_honoured_and_delivered_once(world):
    await world.received()
    world.teams.script[MASH_HOOK].append((429, {"Retry-After": "2"}))
    req = world.request("ack_reminder", "la:mash_team")
    await world.publish(req, "escalation")
    rows = await world.settled(req, count=2)
    assert rows["teams"].status == "delivered" and rows["teams"].attempts == 2
    times = world.teams.times[MASH_HOOK]
    assert len(times) == 2 and times[1] - times[0] >= 2.0
    assert len(world.teams.posts[MASH_HOOK]) == 1


async def test_smtp_550_is_a_permanent_failure_with_reason_event_and_alert(world):
    await world.received()
    world.smtp.rcpt_replies = {"team-manager@": "550 5.1.1 Mailbox unavailable"}
    req = world.request("ack_breach", "la:team_manager")
    await world.publish(req, "escalation")
    rows = await world.settled(req, count=2)
    assert (rows["email"].status, rows["email"].reason, rows["email"].attempts) == ("permanent-failure", "smtp_550", 1)
    assert rows["teams"].status == "delivered"
    failed = [e for e in await world.events(2) if e["status"] != "delivered"]
    assert [(e["channel"], e["status"], e["reason"]) for e in failed] == [("email", "permanent-failure", "smtp_550")]
    [alert] = await world.drain("ops.alerts")
    assert alert.routing_key == "ops.notification_failed"
    assert json.loads(alert.body)["reason"] == "smtp_550"
    assert ("notification_failed", "permanent-failure") in await world.audit_actions()


async def test_teams_400_413_and_5xx_are_classified(world):
    await world.received()
    world.teams.script["team-manager.dev-borough"].append((400, {}))
    world.teams.script["head-of-service.dev-borough"].append((413, {}))
    world.teams.script["duty-manager.dev-borough"].extend([(503, {})] * 5)
    reqs = [world.request("ack_breach", "la:team_manager"), world.request("ack_breach", "la:head_of_service"),
            world.request("ack_breach", "la:duty_manager")]
    for req in reqs:
        await world.publish(req, "escalation")
    got = [await world.settled(r, count=2) for r in reqs]
    assert [(g["teams"].status, g["teams"].reason) for g in got] == [
        ("permanent-failure", "http_400"), ("permanent-failure", "http_413"), ("permanent-failure", "gave_up:http_503")]
    assert got[2]["teams"].attempts == 3  # TEST_POLICY.max_attempts, through the delay queues
    assert all(g["email"].status == "delivered" for g in got)


async def test_invalid_webhook_and_missing_channel_fail_permanently(world):
    await world.received()
    bad_hook = world.request("ack_breach", "la:emergency_duty_team")
    no_channel = world.request("immediate_safety", "force:duty_inspector", priority="urgent")
    await world.publish(bad_hook, "escalation")
    await world.publish(no_channel, "escalation")
    rows = await world.settled(bad_hook, count=2)
    assert (rows["teams"].status, rows["teams"].reason) == ("permanent-failure", "invalid_webhook_url")
    assert rows["email"].status == "delivered"
    rows = await world.settled(no_channel, count=1)
    assert (rows["none"].status, rows["none"].reason) == ("permanent-failure", "no_channel")


async def test_contacts_that_cannot_be_opened_are_a_technical_failure(world):
    await world.received()
    other = b64e(bytes(generate_sealing_key().public_key))
    wrong_key = world.request("referral_acknowledgement", "referrer",
                              contacts=world.sealed_contacts({"referrer": {"email": "r@x.example"}}, key_b64=other))
    missing = world.request("referral_acknowledgement", "referrer")
    unknown = world.request("no_such_template", "la:mash_team")
    for req in (wrong_key, missing, unknown):
        await world.publish(req, "escalation")
    reasons = [(await world.settled(r, count=1))["none"] for r in (wrong_key, missing, unknown)]
    assert [(r.status, r.reason) for r in reasons] == [
        ("technical-failure", "contacts_unopenable"), ("technical-failure", "contacts_missing"),
        ("technical-failure", "unknown_template")]
    assert world.smtp.mails == []


async def test_urgent_message_falls_back_to_the_other_channel(world):
    await world.received()
    world.smtp.rcpt_replies = {"police-mash@": "451 4.3.0 Try later"}
    world.teams.script["police-mash.dev-force"].append((400, {}))
    req = world.request("immediate_safety", "force:police_mash", priority="urgent")
    await world.publish(req, "escalation")
    rows = await world.settled(req, count=3, timeout=30)
    assert (rows["teams"].status, rows["teams"].reason) == ("permanent-failure", "http_400")
    assert (rows["email"].status, rows["email"].reason) == ("permanent-failure", "gave_up:smtp_451")
    assert (rows["teams+fallback"].status, rows["teams+fallback"].fallback_of) == ("delivered", None)
    [card] = world.teams.posts["police-mash.dev-force"]
    assert "URGENT" in json.dumps(card)
    alerts = [json.loads(m.body) for m in await world.drain("ops.alerts")]
    assert {(a["channel"], a["fallback"]) for a in alerts} == {("teams", None), ("email", "teams+fallback")}


async def test_bad_messages_are_parked_with_a_reason_not_retried(world):
    await world.publish(world.request("receipt", "la:mash_team"), "escalation", body=b'{"not": "a request"}')
    await world.publish(world.request("receipt", "la:mash_team"), "intake")  # intake may not request
    parked = []
    async with asyncio.timeout(15):
        while len(parked) < 2:
            parked += await world.drain("notifier.requests.parked")
            await asyncio.sleep(0.1)
    assert sorted(m.headers["x-parked-reason"] for m in parked) == ["producer_not_allowed_for_key", "schema_invalid"]
    assert world.smtp.mails == [] and uuid.UUID(parked[0].message_id)


async def test_a_burst_of_cards_does_not_hold_the_emails_behind_teams_pacing(world):
    """More routine requests than the consumer takes at once, each for email and Teams. The
    webhook is paced (4 a second), so cards would keep every prefetch slot waiting and the
    emails would trickle out at the cards' pace; instead a card whose slot is further off than
    `defer_after_s` goes back through the shortest delay queue without an attempt."""
    notifier = world.app[NOTIFIER]
    notifier.defer_after_s = 0.5
    deferred = REGISTRY.get_sample_value("safeguard_notifications_deferred_total", {"channel": "teams"}) or 0.0
    await world.received()
    n = 40  # the consumer's prefetch is 16
    reqs = [world.request("receipt", "la:mash_team") for _ in range(n)]
    for req in reqs:
        await world.publish(req, "escalation")
    async with asyncio.timeout(30):
        while len(world.smtp.to(MASH_EMAIL)) < n:
            await asyncio.sleep(0.05)
    cards_when_emails_done = len(world.teams.posts[MASH_HOOK])
    assert cards_when_emails_done < n / 2  # the emails did not wait for the cards
    for req in reqs:
        rows = await world.settled(req, count=2, timeout=60)
        assert rows["teams"].status == "delivered" and rows["teams"].attempts == 1  # deferral is no attempt
        assert rows["email"].status == "delivered" and rows["email"].attempts == 1
    assert len(world.teams.posts[MASH_HOOK]) == n and len(world.smtp.to(MASH_EMAIL)) == n  # once each
    assert REGISTRY.get_sample_value("safeguard_notifications_deferred_total", {"channel": "teams"}) > deferred
