"""The referral clocks as the pages show them (services/intake/domain/clocks.py, pure): words
for time left and overdue, GOV.UK times in Europe/London, which clocks a referral has, the
case list's order, and which actions a role may take in a state (domain/labels.py)."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from services.intake.domain.clocks import Clock, clocks_of, duration, urgency_key, when
from services.intake.domain.labels import available_actions

T = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)  # Monday 2 March 2026, 14:00 in London (GMT)


def row(**kw):
    base = dict(received_at=T, acknowledge_by=T + timedelta(days=1), checks_due_by=T + timedelta(days=28),
                immediate_risk=False, pathway=None, acknowledged_at=None, decided_at=None, strategy_at=None,
                checks_at=None, checks_outcome=None, feedback_at=None, la_closed_at=None, ctp_closed_at=None)
    return SimpleNamespace(**{**base, **kw})


def test_durations_read_as_people_say_them():
    assert duration(timedelta(hours=2, minutes=5, seconds=59)) == "2 h 5 min"
    assert duration(timedelta(hours=3)) == "3 h"
    assert duration(timedelta(minutes=7)) == "7 min"
    assert duration(timedelta(seconds=30)) == "less than a minute"
    assert duration(timedelta(days=1, hours=4, minutes=9)) == "1 day 4 h"
    assert duration(timedelta(days=27, hours=23, minutes=59)) == "27 days 23 h"
    assert duration(timedelta(days=2)) == "2 days"


def test_times_are_gov_uk_style_in_london_across_summer_time():
    assert when(T) == "2 March 2026 at 2:00pm"
    assert when(datetime(2026, 7, 1, 11, 0, tzinfo=UTC)) == "1 July 2026 at midday"  # 12:00 BST
    assert when(datetime(2026, 7, 1, 23, 0, tzinfo=UTC)) == "2 July 2026 at midnight"
    assert when(datetime(2026, 7, 1, 8, 5, tzinfo=UTC)) == "1 July 2026 at 9:05am"


def test_a_clock_runs_goes_overdue_is_met_or_stops_with_its_track():
    c = Clock("acknowledge_by", "Acknowledge by", T)
    assert (c.state(T - timedelta(hours=2, minutes=5)), c.text(T - timedelta(hours=2, minutes=5))) == (
        "running", "2 h 5 min left")
    assert (c.state(T + timedelta(hours=2, minutes=5)), c.text(T + timedelta(hours=2, minutes=5))) == (
        "overdue", "Overdue by 2 h 5 min")
    met = Clock("acknowledge_by", "Acknowledge by", T, done_at=T - timedelta(hours=1))
    assert (met.state(T + timedelta(days=3)), met.text(T)) == ("met", "Done 2 March 2026 at 1:00pm")
    late = Clock("acknowledge_by", "Acknowledge by", T, done_at=T + timedelta(minutes=30))
    assert late.text(T) == "Done 2 March 2026 at 2:30pm, 30 min late"
    stopped = Clock("checks_due_by", "CTP checks due by", T, closed_at=T - timedelta(days=1))
    assert (stopped.state(T + timedelta(days=1)), stopped.overdue(T + timedelta(days=1))) == ("stopped", False)


def test_which_clocks_a_referral_has():
    assert [c.key for c in clocks_of(row(), 60)] == ["acknowledge_by", "decide_by", "checks_due_by"]
    urgent = clocks_of(row(immediate_risk=True), 60)
    assert urgent[2].key == "strategy_discussion_by" and urgent[2].due == T + timedelta(minutes=60)
    decided = row(pathway="immediate_protection", decided_at=T + timedelta(hours=3), acknowledged_at=T)
    strategy = clocks_of(decided, 45)[2]
    assert strategy.due == T + timedelta(hours=3, minutes=45) and strategy.running()
    closed = clocks_of(row(la_closed_at=T), 60)
    assert [c.running() for c in closed] == [False, False, True]  # closing the LA track leaves CTP's clock


def test_the_case_list_puts_overdue_first_then_the_nearest_deadline():
    now = T + timedelta(days=2)
    overdue = clocks_of(row(received_at=T), 60)  # acknowledge-by passed a day ago
    soon = clocks_of(row(received_at=now, acknowledge_by=now + timedelta(hours=2)), 60)
    later = clocks_of(row(received_at=now, acknowledge_by=now + timedelta(hours=5)), 60)
    done = clocks_of(row(acknowledged_at=T, decided_at=T, pathway="early_help", checks_at=T, checks_outcome="x"), 60)
    keys = {"done": urgency_key(done, T), "later": urgency_key(later, now), "soon": urgency_key(soon, now),
            "overdue": urgency_key(overdue, T)}
    assert sorted(keys, key=keys.get) == ["overdue", "soon", "later", "done"]


def test_the_actions_each_role_may_take_in_each_state():
    assert available_actions("social_care", row()) == ["acknowledgement", "concerns", "close"]
    assert available_actions("social_care", row(acknowledged_at=T)) == ["decision", "concerns", "close"]
    assert available_actions("social_care", row(acknowledged_at=T, pathway="section_17")) == ["concerns", "close"]
    assert available_actions("social_care", row(immediate_risk=True)) == [
        "acknowledgement", "strategy-discussion", "concerns", "close"]
    assert available_actions("social_care", row(la_closed_at=T)) == []
    assert available_actions("prevent", row()) == ["checks", "close"]
    assert available_actions("prevent", row(checks_outcome="police_led", checks_at=T)) == ["feedback", "close"]
    assert available_actions("prevent", row(checks_outcome="police_led", feedback_at=T)) == ["close"]
    assert available_actions("prevent", row(ctp_closed_at=T)) == []
    assert available_actions("control_room", row()) == []
