"""The notifier's pure rules: holding guard, lifecycle, back-off, recipients."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.notifier.domain.guard import HoldRecord, decide
from services.notifier.domain.lifecycle import InvalidTransition, Status, check_transition, is_final, may_attempt
from services.notifier.domain.recipients import (
    ResolutionError, audience_kind, contact_targets, fallback_channel, route_targets,
)
from services.notifier.domain.retry import RetryPolicy, parse_retry_after
from shared.config import Route

T0 = datetime(2026, 11, 24, 10, tzinfo=UTC)
HELD = HoldRecord.on_received("r1", no_further_sharing=True, no_family_contact=True)


def verdict(audience="guardians", template="feedback", record=HELD, nfc=False, nfs=False):
    return decide(audience=audience, template=template, record=record,
                  request_no_family_contact=nfc, request_no_further_sharing=nfs)


def test_guardians_refused_while_the_hold_is_on_whoever_asks():
    assert not verdict().allowed and verdict().reason == "holding_instruction"
    assert not verdict(record=None).allowed  # no record of the referral: fail closed
    assert not verdict(template="receipt").allowed


def test_guardians_allowed_only_after_a_release_that_lifted_the_hold_for_them():
    released = HELD.on_feedback_released(family_contact_lifted=True, audiences=("social_care", "referrer", "guardians"))
    assert verdict(record=released).allowed
    assert not verdict(record=released, nfc=True).allowed          # the request still claims the hold
    assert not verdict(record=released, template="ack_reminder").allowed
    not_lifted = HELD.on_feedback_released(family_contact_lifted=False, audiences=("social_care", "referrer"))
    assert not verdict(record=not_lifted).allowed
    no_guardians = HELD.on_feedback_released(family_contact_lifted=True, audiences=("referrer",))
    assert not verdict(record=no_guardians).allowed


def test_a_refusal_waits_only_when_the_record_may_be_behind_the_request():
    assert verdict().wait  # no release seen yet, the request says the hold is off
    assert not verdict(nfc=True).wait and not verdict(template="receipt").wait and not verdict(record=None).wait
    kept = HELD.on_feedback_released(family_contact_lifted=False, audiences=("social_care", "referrer"))
    assert not verdict(record=kept).allowed and not verdict(record=kept).wait  # a release kept the hold: final


def test_a_qualifying_strategy_discussion_lifts_the_family_hold_and_a_later_release_tells_guardians():
    assert HELD.on_strategy_discussion(family_contact_lifted=False) == HELD
    lifted = HELD.on_strategy_discussion(family_contact_lifted=True)
    assert (lifted.no_family_contact, lifted.no_further_sharing) == (False, True)
    assert not verdict(record=lifted).allowed  # no feedback released yet
    released = lifted.on_feedback_released(family_contact_lifted=False, audiences=("social_care", "referrer", "guardians"))
    assert verdict(record=released).allowed


def test_the_checks_outcome_lifts_no_further_sharing_and_nothing_else():
    after = HELD.on_checks_completed()
    assert (after.no_further_sharing, after.no_family_contact, after.guardians_released) == (False, True, False)
    assert not verdict(audience="la:mash_team", record=after).minimal
    assert not verdict(record=after).allowed  # guardians: the family-contact hold is another matter


def test_release_before_receipt_assumes_every_hold():
    rec = HoldRecord("r1", True, True).on_feedback_released(family_contact_lifted=False, audiences=("referrer",))
    assert rec.no_family_contact and rec.no_further_sharing and rec.feedback_released


def test_no_further_sharing_from_record_or_request_means_minimal():
    open_rec = HoldRecord.on_received("r1", no_further_sharing=False, no_family_contact=False)
    assert verdict(audience="la:mash_team", record=HELD).minimal
    assert verdict(audience="la:mash_team", record=open_rec, nfs=True).minimal
    assert not verdict(audience="la:mash_team", record=open_rec).minimal
    assert verdict(audience="la:mash_team", record=HELD).allowed


@pytest.mark.parametrize("status,row_attempts,msg_attempt,expected", [
    (Status.CREATED, 0, 0, True), (Status.CREATED, 0, 1, False),
    (Status.SENDING, 1, 0, True), (Status.SENDING, 2, 0, False),
    (Status.TEMPORARY_FAILURE, 1, 1, True), (Status.TEMPORARY_FAILURE, 1, 0, False),
    (Status.DELIVERED, 1, 0, False), (Status.PERMANENT_FAILURE, 1, 1, False), (Status.REFUSED, 0, 0, False),
])
def test_may_attempt(status, row_attempts, msg_attempt, expected):
    assert may_attempt(status, row_attempts, msg_attempt) is expected


def test_transitions():
    check_transition(Status.CREATED, Status.SENDING)
    check_transition(Status.SENDING, Status.TEMPORARY_FAILURE)
    check_transition(Status.TEMPORARY_FAILURE, Status.SENDING)
    for bad in [(Status.DELIVERED, Status.SENDING), (Status.REFUSED, Status.SENDING), (Status.CREATED, Status.DELIVERED)]:
        with pytest.raises(InvalidTransition):
            check_transition(*bad)
    assert is_final("delivered") and is_final("refused") and not is_final("temporary-failure")


def test_backoff_grows_and_honours_retry_after():
    p = RetryPolicy(delays_s=(5, 30, 120), max_attempts=10)
    assert [p.delay_for(n) for n in (1, 2, 3, 4)] == [5, 30, 120, 120]
    assert p.delay_for(1, retry_after_s=2) == 5
    assert p.delay_for(1, retry_after_s=20) == 30
    assert p.delay_for(1, retry_after_s=5000) == 120


def test_a_deferred_message_comes_back_by_half_its_place_in_line():
    p = RetryPolicy(delays_s=(5, 30, 120, 600))
    assert [p.deferral_delay(s) for s in (0.5, 9.9, 10, 59, 60, 250, 10_000)] == [5, 5, 5, 5, 30, 120, 600]


def test_backoff_gives_up_on_age_attempts_and_sooner_when_urgent():
    p = RetryPolicy(delays_s=(5, 30), max_attempts=3, max_age=timedelta(minutes=10), urgent_max_age=timedelta(seconds=20))
    assert p.next_delay(attempts=1, first_attempt_at=T0, now=T0) == 5
    assert p.next_delay(attempts=3, first_attempt_at=T0, now=T0) is None
    assert p.next_delay(attempts=1, first_attempt_at=T0, now=T0 + timedelta(minutes=10)) is None
    assert p.next_delay(attempts=2, first_attempt_at=T0, now=T0, urgent=True) is None
    with pytest.raises(ValueError):
        RetryPolicy(delays_s=(30, 5))


def test_parse_retry_after():
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after("Tue, 24 Nov 2026 10:00:30 GMT", T0) == 30.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def test_recipients_from_routes_and_contacts():
    route = Route(email="mash@x.example", teams_webhook="https://hook.example/1")
    assert [t.key for t in route_targets(route, {"email", "teams"})] == ["teams", "email"]
    assert [t.key for t in route_targets(route, {"email"})] == ["email"]
    with pytest.raises(ResolutionError) as err:
        route_targets(Route(sms="+447700900000"), {"email", "teams"})
    assert (err.value.kind, err.value.reason) == ("permanent", "no_channel")
    with pytest.raises(ResolutionError) as err:
        route_targets(None, {"email"})
    assert err.value.reason == "unknown_audience"
    contacts = {"referrer": {"email": "ref@x.example"}, "guardians": [{"email": "g1@x.example"}, {"email": "g2@x.example"}]}
    assert [(t.key, t.address) for t in contact_targets("guardians", contacts, {"email", "teams"})] == [
        ("email", "g1@x.example"), ("email.2", "g2@x.example")]
    assert "ref@x.example" not in repr(contact_targets("referrer", contacts, {"email"}))
    with pytest.raises(ResolutionError):
        contact_targets("guardians", {}, {"email"})
    assert audience_kind("force:ctp_prevent") == "team" and audience_kind("referrer") == "referrer"
    with pytest.raises(ResolutionError):
        audience_kind("ops")
    assert fallback_channel("teams", {"teams", "email"}) == "email"
    assert fallback_channel("email", {"email"}) is None


def test_a_release_naming_guardians_means_the_hold_is_off_in_whichever_order_events_come():
    # intake names guardians only once the family hold is off (here: a strategy discussion
    # the notifier has not applied yet)
    released = HELD.on_feedback_released(family_contact_lifted=False, audiences=("social_care", "referrer", "guardians"))
    assert not released.no_family_contact and verdict(record=released).allowed
    assert released.on_strategy_discussion(family_contact_lifted=True) == released
