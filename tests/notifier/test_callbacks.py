"""Status callbacks (DESIGN §3.6) end to end: the notifier on the real RabbitMQ and
PostgreSQL delivering to real local receivers — HTTPS with a CA made by the test (trusted
through SSL_CERT_FILE) and plain http to 127.0.0.1 — each request checked with
`standardwebhooks`."""
from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp import web
from prometheus_client import REGISTRY
from standardwebhooks import Webhook

from safeguard import keys
from safeguard.trace import trace_command
from safeguard.webhooks import send_test_event
from services.notifier.adapters.channels.webhook import Endpoint, WebhookChannel
from services.notifier.adapters.effects import message_id
from services.notifier.domain.callbacks import encode_body
from shared.config import ConfigError, load_settings
from shared.crypto import b64e, generate_sealing_key
from shared.messages import (
    CALLBACK_EVENTS, Actor, AlertAcknowledged, AlertRaised, ChecksCompleted, DeadlineBreached, DeadlineReminder,
    FeedbackReleased, Message, ReferralAcknowledged, ReferralDecided, StrategyDiscussionRecorded, TrackClosed,
)
from tests.factories import referral_received
from tests.notifier.conftest import CANARY, FORCE, LA, World, running_world
from tests.notifier.receiver import LocalCa, Received, Receiver
from tests.support.processes import free_port

pytestmark = [pytest.mark.broker, pytest.mark.database]
OTHER_LA, OTHER_FORCE = "E88888888", "north-force"
POLICE_EVENTS = ("referral.received", "deadline.breached", "alert.raised", "alert.acknowledged")


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


def subscriptions_toml(https: Receiver, http: Receiver) -> str:
    every = json.dumps(list(CALLBACK_EVENTS))
    return "\n".join([
        "[[local_authorities]]", f'code = "{OTHER_LA}"', 'name = "Other Borough"',
        f'sealing_keys = [{{ key_id = "{OTHER_LA}-1", public_key = "{b64e(bytes(generate_sealing_key().public_key))}" }}]',
        "[[subscriptions]]", 'id = "la-cms"', f'organisation = "{LA}"', f'url = "{https.url("la")}"',
        f"events = {every}", 'secret_env = "SG_TEST_CB_LA"',
        "[[subscriptions]]", 'id = "police"', f'organisation = "{FORCE}"', f'url = "{http.url("police")}"',
        f"events = {json.dumps(list(POLICE_EVENTS))}", 'secret_env = "SG_TEST_CB_POLICE"',
        "[[subscriptions]]", 'id = "other-la"', f'organisation = "{OTHER_LA}"', f'url = "{https.url("other")}"',
        f"events = {every}", 'secret_env = "SG_TEST_CB_OTHER"', ""])


@dataclass
class Callbacks:
    world: World
    https: Receiver
    http: Receiver
    secrets: dict[str, str]  # subscription id -> its secret

    def verified(self, sub: str, request: Received) -> dict:
        return Webhook(self.secrets[sub]).verify(request.body, request.headers)

    async def rows(self, mid: str) -> dict:
        nid = message_id("callback", mid)
        await self.world.refresh(nid)
        return {r.channel: r for r in self.world._rows.get(nid, [])}

    async def row_status(self, mid: str, key: str, statuses: set[str], timeout: float = 20.0):
        async with asyncio.timeout(timeout):
            while (row := (await self.rows(mid)).get(key)) is None or row.status not in statuses:
                await asyncio.sleep(0.1)
        return row


@pytest.fixture
async def cb(tmp_path, amqp_url, pg_url, monkeypatch):
    ca = LocalCa(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(ca.ca_file))  # the notifier trusts the test CA
    secrets = {"la-cms": new_secret(), "police": new_secret(), "other-la": new_secret()}
    for sub, env in (("la-cms", "SG_TEST_CB_LA"), ("police", "SG_TEST_CB_POLICE"), ("other-la", "SG_TEST_CB_OTHER")):
        monkeypatch.setenv(env, secrets[sub])
    async with Receiver(ca) as https, Receiver() as http:
        async with running_world(tmp_path, amqp_url, pg_url, subscriptions_toml(https, http)) as world:
            yield Callbacks(world, https, http, secrets)


def referral_events(rid: str, ref: str, la: str, force: str) -> list[tuple[Message, str]]:
    """Every event of the §3.6 list about one referral, with its producer; names, concern
    types, contacts and who acted carry the canary."""
    now = datetime.now(UTC)
    ids = dict(referral_id=rid, reference=ref, la_code=la, force=force, at=now)
    person = Actor(id="person:x", role="social_care", organisation=la, name=CANARY)
    clock = dict(referral_id=rid, reference=ref, la_code=la, force=force, clock="acknowledge_by", at=now,
                 due_at=now, deadline=now + timedelta(hours=2))
    alert = dict(alert_id=str(uuid.uuid4()), referral_id=rid, reference=ref, la_code=la, force=force,
                 kind="immediate_safety", level="control_room", at=now)
    return [
        (referral_received(now, referral_id=rid, reference=ref, la_code=la, force=force, concern_types=(CANARY,),
                           contacts_sealed={"canary": CANARY}), "intake"),
        (ReferralAcknowledged(**ids, client_id="dev-social-care", by=person), "intake"),
        (ReferralDecided(**ids, pathway="section_47", by=person), "intake"),
        (StrategyDiscussionRecorded(**ids, held_at=now, agencies=("local_authority", "police"),
                                    legal_advice_sought=True, decision="section_47_enquiry", parents_informed=False,
                                    family_contact_lifted=False), "intake"),
        (ChecksCompleted(**ids, outcome="suitable_for_prevent"), "intake"),
        (FeedbackReleased(**ids, family_contact_lifted=False, audiences=("social_care",),
                          contacts_sealed={"canary": CANARY}), "intake"),
        (TrackClosed(**ids, track="la", referral_closed=False), "intake"),
        (DeadlineReminder(timer_id=1, kind="ack_reminder", **clock), "escalation"),
        (DeadlineBreached(timer_id=2, kind="ack_breach", **clock), "escalation"),
        (AlertRaised(**alert), "escalation"),
        (AlertAcknowledged(**alert, acknowledged_by=CANARY), "escalation"),
    ]


async def test_every_event_is_delivered_once_signed_and_only_to_its_own_organisation(cb):
    w = cb.world
    other_rid, other_ref = str(uuid.uuid4()), "SR-2026-000999"
    ours = referral_events(w.referral_id, w.reference, LA, FORCE)
    theirs = referral_events(other_rid, other_ref, OTHER_LA, OTHER_FORCE)
    for event, producer in ours + theirs:
        await w.publish(event, producer, message_id=f"ev-{event.reference}-{event.routing_key}")
    again, producer = ours[1]  # a redelivered event (the same message id) sends nothing twice
    await w.publish(again, producer, message_id=f"ev-{again.reference}-{again.routing_key}")
    la, other = await cb.https.wait_for("la", 11), await cb.https.wait_for("other", 11)
    police = await cb.http.wait_for("police", 4)
    await asyncio.sleep(1.0)
    assert (len(cb.https.at("la")), len(cb.https.at("other")), len(cb.http.at("police"))) == (11, 11, 4)

    bodies = {sub: [cb.verified(sub, r) for r in reqs] for sub, reqs in
              (("la-cms", la), ("other-la", other), ("police", police))}
    assert sorted(b["type"] for b in bodies["la-cms"]) == sorted(CALLBACK_EVENTS)
    assert sorted(b["type"] for b in bodies["other-la"]) == sorted(CALLBACK_EVENTS)
    assert sorted(b["type"] for b in bodies["police"]) == sorted(POLICE_EVENTS)
    assert {b["data"]["reference"] for b in bodies["la-cms"] + bodies["police"]} == {w.reference}
    assert {b["data"]["reference"] for b in bodies["other-la"]} == {other_ref}
    ids = [r.headers["webhook-id"] for r in la + other + police]
    assert len(set(ids)) == len(ids) == 26
    everything = "".join(r.body.decode() + json.dumps(r.headers) for r in la + other + police)
    assert CANARY not in everything and "person:x" not in everything

    by_type = {b["type"]: b["data"] for b in bodies["la-cms"]}
    assert by_type["referral.received"]["status"] == "received"
    assert set(by_type["referral.received"]["clocks"]) == {"acknowledge_by", "checks_due_by"}
    assert (by_type["referral.decided"]["status"], by_type["referral.decided"]["pathway"]) == ("decided", "section_47")
    assert by_type["referral.checks_completed"]["outcome"] == "suitable_for_prevent"
    assert by_type["referral.track_closed"]["tracks"] == {"la": "closed"}
    assert set(by_type["deadline.breached"]["clocks"]) == {"acknowledge_by"}
    assert all(set(d) <= {"reference", "la_code", "force", "status", "tracks", "clocks", "pathway", "outcome"}
               for d in by_type.values())
    audited = await w.audit_actions()
    assert audited.count(("callback_sent", "delivered")) == 26


async def test_receiver_down_then_up_is_delivered_once_and_retry_after_is_honoured(cb):
    w = cb.world
    (ack, _), (decided, _) = referral_events(w.referral_id, w.reference, LA, FORCE)[1:3]
    await cb.https.stop()
    await w.publish(ack, "intake", message_id="ack-1")
    row = await cb.row_status("ack-1", "webhook:la-cms", {"temporary-failure"})
    assert row.reason == "connection_error"
    out = io.StringIO()
    assert await trace_command(w.settings, w.reference, as_json=True, out=out) == 0
    pending = [e for e in json.loads(out.getvalue())["entries"] if e["action"] == "delivery.pending"]
    assert [(e["detail"]["channel"], e["outcome"]) for e in pending] == [("webhook:la-cms", "temporary-failure")]
    await cb.https.start()
    row = await cb.row_status("ack-1", "webhook:la-cms", {"delivered"})
    assert row.attempts >= 2 and len(cb.https.at("la")) == 1
    assert cb.verified("la-cms", cb.https.at("la")[0])["type"] == "referral.acknowledged"

    cb.https.script["/la"].append((429, {"Retry-After": "2"}))
    await w.publish(decided, "intake", message_id="decided-1")
    row = await cb.row_status("decided-1", "webhook:la-cms", {"delivered"})
    first, second = cb.https.at("la")[1:]
    assert row.attempts == 2 and second.at - first.at >= 2.0
    assert first.headers["webhook-id"] == second.headers["webhook-id"]  # stable: the receiver can dedupe
    assert cb.verified("la-cms", second)["type"] == "referral.decided"


async def test_410_gone_is_a_permanent_failure_at_once_with_event_alert_audit_and_trace(cb):
    w = cb.world
    before = REGISTRY.get_sample_value("safeguard_callbacks_total",
                                       {"subscription": "la-cms", "outcome": "permanent-failure"}) or 0.0
    decided, _ = referral_events(w.referral_id, w.reference, LA, FORCE)[2]
    cb.https.script["/la"].append((410, {}))
    await w.publish(decided, "intake", message_id="decided-410")
    row = await cb.row_status("decided-410", "webhook:la-cms", {"permanent-failure"})
    assert (row.reason, row.attempts) == ("http_410", 1)
    [failed] = [e for e in await w.events(1) if e["channel"] == "webhook:la-cms"]
    assert (failed["status"], failed["reason"]) == ("permanent-failure", "http_410")
    [alert] = [json.loads(m.body) for m in await w.drain("ops.alerts")]
    assert (alert["channel"], alert["reason"], alert["template"], alert["audience"]) == (
        "webhook:la-cms", "http_410", "referral.decided", "subscription:la-cms")
    assert ("callback_failed", "permanent-failure") in await w.audit_actions()
    assert REGISTRY.get_sample_value("safeguard_callbacks_total",
                                     {"subscription": "la-cms", "outcome": "permanent-failure"}) == before + 1
    out = io.StringIO()
    assert await trace_command(w.settings, w.reference, out=out) == 0
    assert "status callback failed" in out.getvalue() and "webhook:la-cms" in out.getvalue()
    await asyncio.sleep(2.5)  # longer than the test policy's delays: no retry of a 410
    assert len(cb.https.at("la")) == 1


async def test_webhooks_test_sends_one_signed_test_event_and_prints_one_line(tmp_path, monkeypatch):
    ca = LocalCa(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(ca.ca_file))
    secret = new_secret()
    async with Receiver(ca) as https:
        config = keys.init(tmp_path)
        config.write_text(config.read_text() + "\n" + "\n".join([
            "[[subscriptions]]", 'id = "la-cms"', f'organisation = "{LA}"', f'url = "{https.url("la")}"',
            'events = ["referral.received"]', 'secret_env = "SG_TEST_CB_LA"', ""]))
        settings = load_settings({"SAFEGUARD_CONFIG": str(config), "SAFEGUARD_DATA_DIR": str(tmp_path)})
        out, err = io.StringIO(), io.StringIO()
        assert await send_test_event(settings, "la-cms", env={"SG_TEST_CB_LA": secret}, out=out, err=err) == 0
        [line] = out.getvalue().splitlines()
        assert line.startswith("webhooks test la-cms: delivered (HTTP 204) in ")
        [request] = https.at("la")
        doc = Webhook(secret).verify(request.body, request.headers)
        assert doc["type"] == "webhook.test" and doc["data"] == {"subscription": "la-cms", "organisation": LA}

        https.script["/la"].append((503, {}))
        out = io.StringIO()
        assert await send_test_event(settings, "la-cms", env={"SG_TEST_CB_LA": secret}, out=out) == 1
        assert "not delivered: temporary failure (http_503)" in out.getvalue()
        assert await send_test_event(settings, "nope", env={}, out=out, err=err) == 2
        assert "no subscription 'nope'" in err.getvalue() and "known: la-cms" in err.getvalue()
        with pytest.raises(ConfigError, match="SG_TEST_CB_LA is not set"):
            await send_test_event(settings, "la-cms", env={}, out=out)
        monkeypatch.delenv("SSL_CERT_FILE")  # the system CAs do not know the test CA: refused, nothing sent
        out = io.StringIO()
        assert await send_test_event(settings, "la-cms", env={"SG_TEST_CB_LA": secret}, out=out) == 1
        assert "not delivered: temporary failure (tls_error)" in out.getvalue() and len(https.at("la")) == 2
    out = io.StringIO()  # the receiver is gone: one readable line, no traceback
    assert await send_test_event(settings, "la-cms", env={"SG_TEST_CB_LA": secret}, out=out) == 1
    assert "not delivered: temporary failure (connection_error)" in out.getvalue()


async def test_the_receiver_example_in_docs_integration_accepts_our_requests_and_refuses_forged_ones(monkeypatch):
    text = (Path(__file__).resolve().parents[2] / "docs" / "integration.md").read_text()
    code = text.split("### Verifying a request", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    secret = new_secret()
    monkeypatch.setenv("SAFEGUARD_WEBHOOK_SECRET", secret)
    example: dict = {"__name__": "receiver_example"}
    exec(compile(code, "docs/integration.md", "exec"), example)  # noqa: S102 - our own documentation
    port = free_port()
    runner = web.AppRunner(example["app"], access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    url = f"http://127.0.0.1:{port}/safeguard/events"
    channel = WebhookChannel({})
    try:
        ours, forged = Endpoint("x", url, Webhook(secret)), Endpoint("x", url, Webhook(new_secret()))
        payload = encode_body("referral.acknowledged", datetime.now(UTC), {"reference": "PRV-2026-000001",
                                                                           "status": "acknowledged"})
        assert (await channel.post(ours, "msg_1", payload))[1] == 204
        assert (await channel.post(ours, "msg_1", payload))[1] == 204  # a repeat: taken, not handled twice
        assert (await channel.post(forged, "msg_2", payload))[1] == 401
        assert example["seen"] == {"msg_1"}
    finally:
        await channel.close()
        await runner.cleanup()
