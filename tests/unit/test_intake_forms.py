"""The referral page's forms (services/intake/entrypoints/forms.py, pure): a posted form becomes
the signed API's body, its refusals a GOV.UK error summary linked to the fields; a note is
never kept for showing the form again."""
from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.intake.domain.errors import SchemaInvalid
from services.intake.entrypoints import forms

STRATEGY = {"held_at-day": "1", "held_at-month": "7", "held_at-year": "2026", "held_at-time": "9:05",
            "legal_advice_sought": "yes", "decision": "no_immediate_action", "parents_informed": "no",
            "notes": "a sealed note"}


def test_a_strategy_form_becomes_the_api_body_with_london_time():
    posted = forms.parse("strategy-discussion", STRATEGY, ["police", "local_authority"])
    body = posted.body
    assert body.held_at == datetime(2026, 7, 1, 8, 5, tzinfo=UTC)  # 09:05 BST
    assert body.agencies == ["local_authority", "police"] and body.legal_advice_sought is True
    assert posted.note == "a sealed note"
    assert forms.parse("acknowledgement", {}, []).body is None
    assert forms.parse("feedback", {}, []).body.family_contact == "lift"


@pytest.mark.parametrize("action, form, agencies, href", [
    ("decision", {"rationale": "x"}, [], "#decision-pathway"),
    ("decision", {"pathway": "section_99"}, [], "#decision-pathway"),
    ("checks", {"outcome": "police_led", "notes": "n" * 10001}, [], "#checks-notes"),
    ("strategy-discussion", {**STRATEGY, "held_at-month": "13"}, ["police"], "#strategy-held-at-day"),
    ("strategy-discussion", STRATEGY, [], "#strategy-agencies"),
    ("concerns", {}, [], "#concern-category"),
    ("close", {"confirm": "no"}, [], "#close-confirm"),
])
def test_refusals_link_each_message_to_its_field_and_drop_the_note(action, form, agencies, href):
    with pytest.raises(SchemaInvalid) as caught:
        forms.parse(action, form, agencies)
    refusal = forms.refusal(caught.value, action, form, agencies)
    assert [e["href"] for e in refusal.errors] == [href]
    assert "notes" not in refusal.values and "rationale" not in refusal.values
    assert refusal.values["note_dropped"] == any(form.get(n) for n in forms.NOTES)
