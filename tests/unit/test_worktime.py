"""Working time and statutory clocks (DESIGN §4): worked examples and properties."""
from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import holidays
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.clock import LONDON
from shared.worktime import (
    Deadlines,
    WorkingCalendar,
    WorkingHours,
    ack_breach_steps,
    ack_reminder_times,
    checks_reminder_times,
    compute_deadlines,
    parse_instant,
)

CAL = WorkingCalendar()
H = timedelta(hours=1)
BANK_HOLIDAYS = holidays.country_holidays("GB", subdiv="ENG", years=range(2024, 2034))


def ldn(y: int, mo: int, d: int, h: int = 0, mi: int = 0, fold: int = 0) -> datetime:
    """Europe/London wall clock as an aware datetime."""
    return datetime(y, mo, d, h, mi, fold=fold, tzinfo=LONDON)


def local_iso(at: datetime) -> str:
    return at.astimezone(LONDON).isoformat()


# --- Worked examples (DESIGN §4 "Acknowledge-by") ---------------------------------

@pytest.mark.parametrize(
    ("received", "expected"),
    [
        (ldn(2026, 11, 2, 14), ldn(2026, 11, 3, 14)),  # Mon 14:00 -> Tue 14:00
        (ldn(2026, 11, 6, 16), ldn(2026, 11, 9, 16)),  # Fri 16:00 -> Mon 16:00
        (ldn(2026, 11, 7, 10), ldn(2026, 11, 9, 17)),  # Sat 10:00 -> Mon 17:00
        (ldn(2026, 11, 2, 8), ldn(2026, 11, 2, 17)),  # Mon 08:00 -> Mon 17:00
        (ldn(2026, 12, 24, 15), ldn(2026, 12, 29, 15)),  # Christmas, Boxing Day observed
    ],
)
def test_acknowledge_by_worked_examples(received, expected):
    deadlines = compute_deadlines(received, CAL)
    assert deadlines.acknowledge_by == expected
    assert deadlines.acknowledge_by.tzinfo is UTC
    assert CAL.working_time_between(received, deadlines.acknowledge_by) == 8 * H


def test_count_ending_at_close_gives_that_close_not_next_morning():
    assert CAL.add_working_time(ldn(2026, 11, 2, 9), 8 * H) == ldn(2026, 11, 2, 17)
    assert CAL.add_working_time(ldn(2026, 11, 6, 13), 4 * H) == ldn(2026, 11, 6, 17)
    assert CAL.add_working_time(ldn(2026, 11, 6, 13), 4 * H + timedelta(minutes=1)) == ldn(
        2026, 11, 9, 9, 1
    )


@pytest.mark.parametrize(
    ("received", "out_of_hours"),
    [
        (ldn(2026, 11, 7, 10), True),  # Saturday
        (ldn(2026, 11, 2, 14), False),  # Monday afternoon
        (ldn(2026, 11, 2, 17), True),  # close is exclusive
        (ldn(2026, 11, 2, 9), False),  # opening is inclusive
        (ldn(2026, 12, 28, 11), True),  # Boxing Day (observed)
    ],
)
def test_out_of_hours_flag(received, out_of_hours):
    assert compute_deadlines(received, CAL).out_of_hours is out_of_hours
    assert CAL.is_working_time(received) is not out_of_hours


def test_is_working_time_converts_other_zones_to_london_wall_clock():
    # 08:30 UTC in summer is 09:30 BST (working); 16:30 UTC is 17:30 BST (closed).
    assert CAL.is_working_time(datetime(2026, 7, 1, 8, 30, tzinfo=UTC))
    assert not CAL.is_working_time(datetime(2026, 7, 1, 16, 30, tzinfo=UTC))


@pytest.mark.parametrize(
    ("day", "working"),
    [
        (date(2026, 12, 24), True),
        (date(2026, 12, 25), False),  # Christmas Day
        (date(2026, 12, 26), False),  # Boxing Day on a Saturday
        (date(2026, 12, 28), False),  # Boxing Day observed
        (date(2026, 12, 29), True),
        (date(2027, 1, 1), False),  # New Year's Day
        (date(2027, 3, 26), False),  # Good Friday
        (date(2027, 3, 29), False),  # Easter Monday
        (date(2027, 3, 30), True),
        (date(2031, 5, 5), False),  # early May bank holiday, years load lazily
    ],
)
def test_bank_holidays_england_and_wales(day, working):
    assert CAL.is_working_day(day) is working


def test_easter_2027_skipped_and_clock_crosses_start_of_dst():
    # Thu 25 Mar 10:00 GMT: 7 h left that day, Fri/Mon are Easter, so Tue 10:00 BST.
    deadlines = compute_deadlines(ldn(2027, 3, 25, 10), CAL)
    assert local_iso(deadlines.acknowledge_by) == "2027-03-30T10:00:00+01:00"


def test_new_years_day_2027_skipped():
    deadlines = compute_deadlines(ldn(2026, 12, 31, 12), CAL)
    assert local_iso(deadlines.acknowledge_by) == "2027-01-04T12:00:00+00:00"


def test_configured_closure_day_skipped():
    cal = WorkingCalendar(WorkingHours(closures=frozenset({date(2026, 11, 3)})))
    assert not cal.is_working_day(date(2026, 11, 3))
    assert compute_deadlines(ldn(2026, 11, 2, 14), cal).acknowledge_by == ldn(2026, 11, 4, 14)


def test_custom_hours_keep_one_working_day():
    cal = WorkingCalendar(WorkingHours(start=time(8, 30), end=time(16, 30)))
    assert cal.hours.day_length == 8 * H
    assert compute_deadlines(ldn(2026, 11, 2, 14), cal).acknowledge_by == ldn(2026, 11, 3, 14)
    assert compute_deadlines(ldn(2026, 11, 6, 16), cal).acknowledge_by == ldn(2026, 11, 9, 16)
    assert compute_deadlines(ldn(2026, 11, 7, 10), cal).acknowledge_by == ldn(2026, 11, 9, 16, 30)
    assert not compute_deadlines(ldn(2026, 11, 2, 8, 30), cal).out_of_hours
    assert compute_deadlines(ldn(2026, 11, 2, 16, 30), cal).out_of_hours


def test_custom_short_day_and_weekdays():
    cal = WorkingCalendar(WorkingHours(start=time(10), end=time(14), weekdays=frozenset({1, 2, 3, 4, 5})))
    assert cal.is_working_day(date(2026, 11, 7))  # Saturday
    assert not cal.is_working_day(date(2026, 11, 9))  # Monday
    # Fri 13:00 -> 1 h Fri + 3 h Sat; the "day" is 4 h.
    assert compute_deadlines(ldn(2026, 11, 6, 13), cal).acknowledge_by == ldn(2026, 11, 7, 13)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"start": time(17), "end": time(9)},
        {"start": time(9), "end": time(9)},
        {"weekdays": frozenset()},
        {"weekdays": frozenset({0, 7})},
        {"tz": "Europe/Nowhere"},
    ],
)
def test_working_hours_rejects_bad_config(kwargs):
    with pytest.raises(ValueError):
        WorkingHours(**kwargs)


def test_working_hours_accepts_config_tuples():
    hours = WorkingHours(weekdays=(0, 1), closures=(date(2026, 11, 2),))
    assert hours.weekdays == frozenset({0, 1})
    assert hours.closures == frozenset({date(2026, 11, 2)})


# --- Checks-due-by (DST-aware wall clock) -----------------------------------------

def test_checks_due_by_across_end_of_dst():
    deadlines = compute_deadlines(ldn(2026, 10, 10, 12), CAL)
    assert local_iso(deadlines.received_at) == "2026-10-10T12:00:00+01:00"
    assert local_iso(deadlines.checks_due_by) == "2026-11-07T12:00:00+00:00"
    assert deadlines.checks_due_by - deadlines.received_at == timedelta(days=28, hours=1)


def test_checks_due_by_across_start_of_dst():
    deadlines = compute_deadlines(ldn(2027, 3, 6, 12), CAL)
    assert local_iso(deadlines.checks_due_by) == "2027-04-03T12:00:00+01:00"
    assert deadlines.checks_due_by - deadlines.received_at == timedelta(days=28) - H


def test_checks_due_by_in_spring_gap_moves_forward_by_the_gap():
    # 01:30 on Sun 28 Mar 2027 does not exist: it becomes 02:30 BST.
    deadlines = compute_deadlines(ldn(2027, 2, 28, 1, 30), CAL)
    assert local_iso(deadlines.checks_due_by) == "2027-03-28T02:30:00+01:00"


def test_checks_due_by_in_autumn_fold_takes_first_occurrence():
    # 01:30 on Sun 25 Oct 2026 happens twice: the BST one (00:30 UTC) is used.
    deadlines = compute_deadlines(ldn(2026, 9, 27, 1, 30), CAL)
    assert local_iso(deadlines.checks_due_by) == "2026-10-25T01:30:00+01:00"
    assert deadlines.checks_due_by == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
    # Received in the second 01:30 (GMT): still the same wall clock 28 days on.
    later = compute_deadlines(ldn(2026, 10, 25, 1, 30, fold=1), CAL)
    assert local_iso(later.checks_due_by) == "2026-11-22T01:30:00+00:00"


def test_as_json_shape():
    deadlines = compute_deadlines(datetime(2026, 12, 24, 15, tzinfo=UTC), CAL)
    payload = deadlines.as_json()
    assert payload == {
        "received_at": "2026-12-24T15:00:00+00:00",
        "out_of_hours": False,
        "acknowledge_by": "2026-12-29T15:00:00+00:00",
        "decide_by": "2026-12-29T15:00:00+00:00",
        "checks_due_by": "2027-01-21T15:00:00+00:00",
    }
    assert list(payload) == ["received_at", "out_of_hours", "acknowledge_by", "decide_by", "checks_due_by"]
    assert json.loads(json.dumps(payload)) == payload


def test_as_json_uses_summer_offset_whatever_the_input_zone():
    received = datetime(2026, 7, 1, 12, tzinfo=ZoneInfo("America/New_York"))  # 17:00 BST
    deadlines = compute_deadlines(received, CAL)
    assert isinstance(deadlines, Deadlines)
    assert deadlines.as_json() == {
        "received_at": "2026-07-01T17:00:00+01:00",
        "out_of_hours": True,
        "acknowledge_by": "2026-07-02T17:00:00+01:00",
        "decide_by": "2026-07-02T17:00:00+01:00",
        "checks_due_by": "2026-07-29T17:00:00+01:00",
    }


# --- parse_instant -----------------------------------------------------------------

@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-02T14:00:00+00:00", datetime(2026, 11, 2, 14, tzinfo=UTC)),
        ("2026-11-02T14:00:00Z", datetime(2026, 11, 2, 14, tzinfo=UTC)),
        ("2026-07-01T14:00:00+01:00", datetime(2026, 7, 1, 13, tzinfo=UTC)),
        ("2026-07-01T14:00", datetime(2026, 7, 1, 13, tzinfo=UTC)),  # naive = London BST
        ("2026-12-24 15:00", datetime(2026, 12, 24, 15, tzinfo=UTC)),  # naive = London GMT
        ("  2026-11-02T14:00:00+05:30 ", datetime(2026, 11, 2, 8, 30, tzinfo=UTC)),
    ],
)
def test_parse_instant(text, expected):
    parsed = parse_instant(text)
    assert parsed == expected
    assert parsed.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "ISO 8601"),
        ("yesterday", "not an ISO 8601"),
        ("2026-13-01T10:00", "not an ISO 8601"),
        ("2026-11-02", "a date, not an instant"),
    ],
)
def test_parse_instant_rejects_bad_input(text, message):
    with pytest.raises(ValueError, match=message):
        parse_instant(text)


# --- Working-time arithmetic -------------------------------------------------------

def test_naive_datetimes_are_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        CAL.add_working_time(datetime(2026, 11, 2, 14), H)
    with pytest.raises(ValueError, match="timezone-aware"):
        CAL.is_working_time(datetime(2026, 11, 2, 14))
    with pytest.raises(ValueError, match="timezone-aware"):
        compute_deadlines(datetime(2026, 11, 2, 14), CAL)


def test_zero_and_negative_amounts():
    sat = ldn(2026, 11, 7, 10)
    assert CAL.add_working_time(sat, timedelta(0)) == sat
    assert CAL.subtract_working_time(sat, timedelta(0)) == sat
    with pytest.raises(ValueError):
        CAL.add_working_time(sat, -H)
    with pytest.raises(ValueError):
        CAL.subtract_working_time(sat, -H)


def test_working_time_between():
    assert CAL.working_time_between(ldn(2026, 11, 6, 16), ldn(2026, 11, 9, 10)) == 2 * H
    assert CAL.working_time_between(ldn(2026, 11, 7, 0), ldn(2026, 11, 8, 23)) == timedelta(0)
    assert CAL.working_time_between(ldn(2026, 11, 2, 0), ldn(2026, 11, 9, 0)) == 40 * H
    assert CAL.working_time_between(ldn(2026, 11, 3), ldn(2026, 11, 2)) == timedelta(0)


def test_subtract_working_time():
    # Back across a weekend.
    assert CAL.subtract_working_time(ldn(2026, 11, 9, 9, 30), H) == ldn(2026, 11, 6, 16, 30)
    # Reaching back exactly to a day's start gives that start, not the previous close.
    assert CAL.subtract_working_time(ldn(2026, 11, 9, 10), H) == ldn(2026, 11, 9, 9)
    assert CAL.subtract_working_time(ldn(2026, 11, 2, 17), 8 * H) == ldn(2026, 11, 2, 9)
    # From outside working time: the last working hour before Christmas.
    assert CAL.subtract_working_time(ldn(2026, 12, 27, 12), H) == ldn(2026, 12, 24, 16)


# --- Escalation ladder ---------------------------------------------------------------

def test_ack_reminders_default():
    assert ack_reminder_times(ldn(2026, 11, 2, 14), CAL) == [ldn(2026, 11, 3, 10), ldn(2026, 11, 3, 13)]
    assert ack_reminder_times(ldn(2026, 11, 7, 10), CAL) == [ldn(2026, 11, 9, 13), ldn(2026, 11, 9, 16)]
    assert ack_reminder_times(ldn(2026, 12, 24, 15), CAL) == [
        ldn(2026, 12, 29, 11),
        ldn(2026, 12, 29, 14),
    ]


def test_ack_reminders_sorted_deduplicated_never_before_receipt():
    received = ldn(2026, 11, 2, 14)
    # 87.5 % of 8 h is 7 h, which is also 1 working hour before acknowledge-by.
    assert ack_reminder_times(received, CAL, fractions=(0.875, 0.25)) == [
        ldn(2026, 11, 2, 16),
        ldn(2026, 11, 3, 13),
    ]
    # 9 working hours before acknowledge-by precedes receipt, so it is dropped.
    assert ack_reminder_times(received, CAL, fractions=(0.5,), before=9 * H) == [ldn(2026, 11, 3, 10)]
    assert ack_reminder_times(received, CAL, fractions=(0,), before=H)[0] == received
    with pytest.raises(ValueError):
        ack_reminder_times(received, CAL, fractions=(1.5,))


def test_ack_breach_steps():
    assert ack_breach_steps(ldn(2026, 11, 3, 14), CAL) == [ldn(2026, 11, 3, 14), ldn(2026, 11, 3, 15)]
    assert ack_breach_steps(ldn(2026, 11, 6, 16, 30), CAL) == [
        ldn(2026, 11, 6, 16, 30),
        ldn(2026, 11, 9, 9, 30),
    ]
    assert ack_breach_steps(ldn(2026, 12, 24, 17), CAL, after=2 * H) == [
        ldn(2026, 12, 24, 17),
        ldn(2026, 12, 29, 11),
    ]


def test_checks_reminder_times_keep_wall_clock_across_dst():
    reminders = checks_reminder_times(ldn(2026, 10, 10, 12))
    assert [local_iso(t) for t in reminders] == [
        "2026-10-31T12:00:00+00:00",
        "2026-11-06T12:00:00+00:00",
    ]
    assert checks_reminder_times(ldn(2026, 11, 2, 14), days=(27, 21, 27)) == [
        ldn(2026, 11, 23, 14),
        ldn(2026, 11, 29, 14),
    ]


# --- Properties ----------------------------------------------------------------------

EPOCH = datetime(2024, 1, 1, tzinfo=UTC)
SPAN_MINUTES = int((datetime(2032, 12, 31, 23, 59, tzinfo=UTC) - EPOCH).total_seconds() // 60)


def _last_sunday(year: int, month: int) -> date:
    d = date(year, month, 31)
    return d - timedelta(days=(d.weekday() + 1) % 7)


DST_DAYS = [_last_sunday(y, m) for y in range(2024, 2033) for m in (3, 10)]

any_minute = st.integers(0, SPAN_MINUTES).map(lambda m: EPOCH + timedelta(minutes=m))
# From the Friday before each DST change to the Tuesday after, any minute.
dst_runs = st.builds(
    lambda day, m: datetime.combine(day - timedelta(days=2), time(), UTC) + timedelta(minutes=m),
    st.sampled_from(DST_DAYS),
    st.integers(0, 5 * 24 * 60),
)
# 20 December to 5 January, any minute.
christmas_runs = st.builds(
    lambda year, m: datetime(year, 12, 20, tzinfo=UTC) + timedelta(minutes=m),
    st.integers(2024, 2031),
    st.integers(0, 17 * 24 * 60 - 1),
)
instants = st.one_of(any_minute, dst_runs, christmas_runs)


def test_dst_days_are_the_real_transition_days():
    for day in DST_DAYS:
        before, after = ldn(day.year, day.month, day.day, 0), ldn(day.year, day.month, day.day, 4)
        assert before.utcoffset() != after.utcoffset()


@settings(max_examples=400, deadline=None)
@given(instants)
def test_deadline_properties(received):
    d = compute_deadlines(received, CAL)
    ack_local = d.acknowledge_by.astimezone(LONDON)
    assert CAL.is_working_day(ack_local.date())
    assert ack_local.weekday() < 5
    assert ack_local.date() not in BANK_HOLIDAYS
    assert time(9) <= ack_local.time() <= time(17)
    assert d.acknowledge_by > received
    assert CAL.working_time_between(received, d.acknowledge_by) == 8 * H
    one_before = CAL.subtract_working_time(d.acknowledge_by, H)
    assert one_before < d.acknowledge_by
    assert CAL.working_time_between(one_before, d.acknowledge_by) == H
    received_local = received.astimezone(LONDON)
    due_local = d.checks_due_by.astimezone(LONDON)
    assert due_local.date() == received_local.date() + timedelta(days=28)
    shift = datetime.combine(date.min, due_local.time()) - datetime.combine(date.min, received_local.time())
    assert shift in (timedelta(0), H)  # +1 h only inside the spring-forward gap
    assert d.out_of_hours is not CAL.is_working_time(received)
    reminders = ack_reminder_times(received, CAL)
    assert all(received <= t < d.acknowledge_by for t in reminders)
    assert reminders == sorted(set(reminders))


@settings(max_examples=250, deadline=None)
@given(instants, st.integers(1, 60 * 60).map(lambda m: timedelta(minutes=m)))
def test_add_and_subtract_are_consistent(start, amount):
    end = CAL.add_working_time(start, amount)
    assert end > start
    assert CAL.working_time_between(start, end) == amount
    # Nothing earlier would do: one second less of elapsed time is short of the amount.
    assert CAL.working_time_between(start, end - timedelta(seconds=1)) < amount
    back = CAL.subtract_working_time(start, amount)
    assert back < start
    assert CAL.working_time_between(back, start) == amount
    # Latest such instant: a second later leaves less than the amount.
    assert CAL.working_time_between(back + timedelta(seconds=1), start) < amount
