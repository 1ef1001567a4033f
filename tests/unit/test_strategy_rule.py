"""The strategy-discussion rule of intake's lifecycle (pure) and its body model: held_at
bounds, one record per referral, close, and the family-contact hold (DESIGN §4)."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from services.intake.adapters import tables
from services.intake.domain import lifecycle as rules
from services.intake.domain.commands import StrategyBody
from services.intake.domain.errors import Conflict, SchemaInvalid

NOW = datetime(2026, 12, 4, 14, 0, tzinfo=UTC)
RECEIVED = NOW - timedelta(hours=2)
OPEN = rules.State(status="received", family_contact_hold=True, received_at=RECEIVED)


def details(**overrides) -> dict:
    return {"held_at": NOW - timedelta(minutes=10), "agencies": ("local_authority", "police", "ctp_prevent"),
            "legal_advice_sought": True, "decision": "section_47_enquiry", "parents_informed": True, **overrides}


def test_the_first_record_writes_every_field_and_lifts_the_hold():
    change = rules.record_strategy(OPEN, details(), NOW)
    assert change.new and change.values == {
        "strategy_at": NOW, "strategy_held_at": NOW - timedelta(minutes=10),
        "strategy_agencies": ["local_authority", "police", "ctp_prevent"], "strategy_legal_advice_sought": True,
        "strategy_decision": "section_47_enquiry", "strategy_parents_informed": True,
        "strategy_family_contact_lifted": True, "family_contact_hold": False}
    assert "status" not in change.values  # the LA track's status does not move


@pytest.mark.parametrize(("agencies", "informed", "hold", "lifted"), [
    (("ctp_prevent",), True, True, True),
    (("ctp_prevent", "police"), False, True, False),
    (("local_authority", "police", "health", "nspcc", "other"), True, True, False),
    (("ctp_prevent",), True, False, False),  # no hold (never set, or lifted before): nothing to lift
])
def test_the_hold_is_lifted_only_by_ctp_prevent_with_the_parents_informed(agencies, informed, hold, lifted):
    state = rules.State(status="acknowledged", family_contact_hold=hold, received_at=RECEIVED)
    values = rules.record_strategy(state, details(agencies=agencies, parents_informed=informed), NOW).values
    assert (values["strategy_family_contact_lifted"], values["family_contact_hold"]) == (lifted, hold and not lifted)


def test_held_at_may_be_a_little_ahead_of_our_clock_and_up_to_a_day_before_receipt():
    for held_at in (NOW + rules.HELD_AT_SKEW, RECEIVED - rules.HELD_AT_EARLIEST):
        assert rules.record_strategy(OPEN, details(held_at=held_at), NOW).new
    for held_at, kind in ((NOW + rules.HELD_AT_SKEW + timedelta(seconds=1), "future"),
                          (RECEIVED - rules.HELD_AT_EARLIEST - timedelta(seconds=1), "too_early")):
        with pytest.raises(SchemaInvalid) as err:
            rules.record_strategy(OPEN, details(held_at=held_at), NOW)
        assert err.value.fields == ["held_at"] and err.value.extensions["errors"][0]["type"] == kind


def test_one_record_per_referral_the_same_again_is_a_repeat():
    recorded = rules.State(status="closed", received_at=RECEIVED, strategy=details(), la_closed_at=NOW)
    london = (NOW - timedelta(minutes=10)).astimezone(ZoneInfo("Europe/London"))
    assert rules.record_strategy(recorded, details(held_at=london, agencies=list(details()["agencies"])), NOW) \
        == rules.Change(False)  # even after close
    for change in ({"decision": "no_immediate_action"}, {"parents_informed": False}, {"legal_advice_sought": False},
                   {"agencies": ("ctp_prevent",)}, {"held_at": NOW - timedelta(minutes=11)}):
        with pytest.raises(Conflict) as err:
            rules.record_strategy(recorded, details(**change), NOW)
        assert err.value.reason == "already_recorded"


def test_no_record_after_close_and_no_acknowledgement_needed():
    with pytest.raises(Conflict) as err:
        rules.record_strategy(rules.State(status="decided", received_at=RECEIVED, la_closed_at=NOW), details(), NOW)
    assert err.value.reason == "closed"  # the LA's track is closed
    assert rules.record_strategy(rules.State(status="decided", received_at=RECEIVED, ctp_closed_at=NOW), details(),
                                 NOW).new  # CTP's closed track does not stop the LA's work
    assert rules.record_strategy(rules.State(status="received", received_at=RECEIVED), details(), NOW).new


def test_the_body_keeps_held_at_in_utc_and_agencies_in_one_order():
    body = StrategyBody.model_validate({
        "held_at": "2026-07-01T10:00:00+01:00", "agencies": ["nspcc", "local_authority"],
        "legal_advice_sought": False, "decision": "no_immediate_action", "parents_informed": False})
    assert body.held_at == datetime(2026, 7, 1, 9, 0, tzinfo=UTC) and body.held_at.utcoffset() == timedelta(0)
    assert body.agencies == ["local_authority", "nspcc"]
    for bad in ({"held_at": "2026-07-01T10:00:00"}, {"held_at": 1782900000}, {"agencies": []},
                {"agencies": ["police", "police"]}, {"agencies": ["social_services"]},
                {"parents_informed": "yes"}, {"legal_advice_sought": 1}, {"decision": "section_17"},
                {"held_at": "0001-01-01T00:00:00+01:00"}, {"notes": "x" * 10001}, {"extra": 1}):
        with pytest.raises(ValidationError):
            StrategyBody.model_validate({"held_at": "2026-07-01T10:00:00Z", "agencies": ["police"],
                                         "legal_advice_sought": False, "decision": "no_immediate_action",
                                         "parents_informed": False, **bad})


def test_every_sealed_column_of_a_referral_is_shredded_and_rewrapped():
    sealed = {c.name for c in tables.referrals.columns if c.name.endswith("_sealed")}
    assert set(tables.SEALED_COLUMNS) == sealed and "strategy_notes_sealed" in sealed
