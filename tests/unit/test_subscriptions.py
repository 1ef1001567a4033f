"""Status-callback subscriptions (DESIGN §3.6): config, secrets, who gets what, what the body says."""
from __future__ import annotations

import base64
import os
from datetime import UTC, datetime, timedelta

import pytest

from safeguard import keys
from services.notifier.adapters.channels.webhook import endpoints_from, signed_headers
from services.notifier.domain.callbacks import body, callback_data, callbacks_for, matching
from shared.config import ConfigError, load_settings
from shared.messages import (
    CALLBACK_EVENTS, Actor, AlertRaised, ChecksCompleted, DeadlineBreached, FeedbackReleased, Holding,
    NotificationRequested, ReferralAcknowledged, ReferralDecided, RetryCopy, StrategyDiscussionRecorded, TrackClosed,
)
from tests.factories import referral_received

NOW = datetime(2026, 12, 1, 10, tzinfo=UTC)
IDS = dict(referral_id="r-1", reference="PRV-2026-000001", la_code="E99999999", force="dev-force", at=NOW)
SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()


def with_subscription(tmp_path, body_toml: str):
    path = keys.init(tmp_path)
    path.write_text(path.read_text() + "\n[[subscriptions]]\n" + body_toml)
    return load_settings({"SAFEGUARD_CONFIG": str(path), "SAFEGUARD_DATA_DIR": str(tmp_path)})


GOOD = ('id = "cms"\norganisation = "E99999999"\nurl = "https://cms.example/hooks"\n'
        'events = ["referral.received", "deadline.breached"]\nsecret_env = "CMS_SECRET"\n')


def test_a_subscription_loads_and_its_secret_comes_from_the_environment(tmp_path):
    settings = with_subscription(tmp_path, GOOD)
    sub = settings.subscription("cms")
    assert (sub.organisation, sub.events) == ("E99999999", ("referral.received", "deadline.breached"))
    endpoint = endpoints_from(settings, {"CMS_SECRET": SECRET})["cms"]
    assert "cms.example" not in repr(endpoint)  # the URL and secret never printed
    headers = signed_headers(endpoint, "msg_1", b"{}", NOW)
    assert headers["webhook-id"] == "msg_1" and headers["webhook-timestamp"] == str(int(NOW.timestamp()))
    assert headers["webhook-signature"].startswith("v1,")


@pytest.mark.parametrize(("change", "key", "words"), [
    (("https://cms.example/hooks", "http://cms.example/hooks"), "subscriptions[0].url", "must be https"),
    (("https://cms.example/hooks", "http://127.0.0.1@cms.example/"), "subscriptions[0].url", "must be https"),
    (('"deadline.breached"', '"referral.closed"'), "subscriptions[0].events", "unknown event 'referral.closed'"),
    (('organisation = "E99999999"', 'organisation = "E12345678"'), "subscriptions[0].organisation",
     "unknown organisation"),
    (('id = "cms"', 'id = "CMS system"'), "subscriptions[0].id", "pattern"),
])
def test_bad_subscriptions_fail_at_start_naming_the_key(tmp_path, change, key, words):
    with pytest.raises(ConfigError) as err:
        with_subscription(tmp_path, GOOD.replace(*change))
    assert key in str(err.value) and words in str(err.value)


def test_duplicate_subscription_ids_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="subscriptions: duplicate ids"):
        with_subscription(tmp_path, GOOD + "[[subscriptions]]\n" + GOOD)


def test_loopback_http_is_allowed(tmp_path):
    settings = with_subscription(tmp_path, GOOD.replace("https://cms.example/hooks", "http://127.0.0.1:9000/h"))
    assert settings.subscription("cms").url == "http://127.0.0.1:9000/h"


@pytest.mark.parametrize(("env", "words"), [
    ({}, "environment variable CMS_SECRET is not set"),
    ({"CMS_SECRET": "not-a-secret"}, "no whsec_ prefix"),
    ({"CMS_SECRET": "whsec_!!!!"}, "not base64"),
    ({"CMS_SECRET": "whsec_" + base64.b64encode(b"short").decode()}, "24 to 64 bytes"),
])
def test_a_missing_or_malformed_secret_stops_the_start_naming_the_key(tmp_path, env, words):
    settings = with_subscription(tmp_path, GOOD)
    with pytest.raises(ConfigError) as err:
        endpoints_from(settings, env)
    message = str(err.value)
    assert "subscriptions[0].secret_env" in message and str(settings.config_path) in message and words in message
    assert all(v not in message for v in env.values())


def test_only_the_subscriber_s_own_organisation_and_events_match(tmp_path):
    sub = with_subscription(tmp_path, GOOD).subscription("cms")
    assert matching([sub], "referral.received", "E99999999", "north-force") == [sub]
    assert matching([sub], "referral.received", "E88888888", "dev-force") == []
    assert matching([sub], "referral.acknowledged", "E99999999", "dev-force") == []
    police = sub.model_copy(update={"organisation": "dev-force"})
    assert matching([police], "deadline.breached", "E88888888", "dev-force") == [police]


def test_the_body_says_only_what_the_event_carries():
    person = Actor(id="person:1", role="social_care", name="Ann Example")
    received = referral_received(NOW, referral_id="r-1", reference="PRV-2026-000001")
    assert callback_data(received) == {
        "reference": "PRV-2026-000001", "la_code": "E99999999", "force": "dev-force", "status": "received",
        "tracks": {"la": "received", "ctp": "checks_pending"},
        "clocks": {"acknowledge_by": received.acknowledge_by.isoformat(),
                   "checks_due_by": received.checks_due_by.isoformat()}}
    base = {"reference": "PRV-2026-000001", "la_code": "E99999999", "force": "dev-force"}
    cases = [
        (ReferralAcknowledged(**IDS, client_id="c", by=person), {"status": "acknowledged", "tracks": {"la": "acknowledged"},
                                                                 "clocks": {}}),
        (ReferralDecided(**IDS, pathway="section_17"), {"status": "decided", "tracks": {"la": "decided"}, "clocks": {},
                                                        "pathway": "section_17"}),
        (StrategyDiscussionRecorded(**IDS, held_at=NOW, agencies=("police",), legal_advice_sought=False,
                                    decision="no_immediate_action", parents_informed=True, family_contact_lifted=True),
         {"status": None, "tracks": {}, "clocks": {}}),
        (ChecksCompleted(**IDS, outcome="not_suitable"), {"status": None, "tracks": {"ctp": "checks_completed"},
                                                          "clocks": {}, "outcome": "not_suitable"}),
        (FeedbackReleased(**IDS, family_contact_lifted=True, audiences=("guardians",)),
         {"status": None, "tracks": {"ctp": "feedback_released"}, "clocks": {}}),
        (TrackClosed(**IDS, track="ctp", referral_closed=True), {"status": "closed", "tracks": {"ctp": "closed"},
                                                                  "clocks": {}}),
        (DeadlineBreached(**IDS, timer_id=1, kind="ack_breach", clock="acknowledge_by", due_at=NOW,
                          deadline=NOW - timedelta(hours=1)),
         {"status": None, "tracks": {}, "clocks": {"acknowledge_by": (NOW - timedelta(hours=1)).isoformat()}}),
        (AlertRaised(**IDS, alert_id="a-1", kind="immediate_safety", level="control_room"),
         {"status": None, "tracks": {}, "clocks": {}}),
    ]
    for event, expected in cases:
        assert callback_data(event) == base | expected, event.routing_key


def test_a_callback_travels_in_a_retry_copy_and_a_request_still_does(tmp_path):
    sub = with_subscription(tmp_path, GOOD.replace('"deadline.breached"', '"referral.decided"')).subscription("cms")
    [cb] = callbacks_for([sub], ReferralDecided(**IDS, pathway="section_47"), "n-1")
    assert (cb.template, cb.audience, cb.priority) == ("referral.decided", "subscription:cms", "normal")
    copy = RetryCopy.from_bytes(RetryCopy(channel="webhook:cms", attempt=1, request=cb).to_bytes())
    assert copy.request == cb
    assert body(cb).startswith(b'{"type":"referral.decided","timestamp":"2026-12-01T10:00:00+00:00","data":{')
    req = NotificationRequested(notification_id="n", referral_id="r", reference="x", template="receipt",
                                audience="la:mash_team", la_code="E99999999", force="dev-force",
                                holding=Holding(no_further_sharing=True, no_family_contact=True), requested_at=NOW)
    assert RetryCopy.from_bytes(RetryCopy(channel="email", attempt=1, request=req).to_bytes()).request == req


def test_the_callback_event_list_is_the_contract_s():
    assert CALLBACK_EVENTS == (
        "referral.received", "referral.acknowledged", "referral.decided", "referral.strategy_discussion_recorded",
        "referral.checks_completed", "referral.feedback_released", "referral.track_closed", "deadline.reminder",
        "deadline.breached", "alert.raised", "alert.acknowledged")
    assert os.environ.get("CMS_SECRET") is None  # the tests above pass their environment explicitly
