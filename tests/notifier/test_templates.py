"""Every template renders for every audience kind it serves; cards are valid, small
Adaptive Cards 1.4 with Action.OpenUrl only; nothing but the reference and times shows."""
from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from services.notifier.adapters.rendering import CARD_LIMIT_BYTES, TEMPLATES, Renderer, RenderError, human_time
from tests.support.documents import objects

TIMES = {"received_at": datetime(2026, 12, 24, 15, tzinfo=UTC), "acknowledge_by": datetime(2026, 12, 29, 15, tzinfo=UTC),
         "decide_by": datetime(2026, 12, 29, 15, tzinfo=UTC),
         "strategy_discussion_by": datetime(2026, 12, 24, 16, tzinfo=UTC),
         "checks_due_by": datetime(2027, 1, 21, 15, tzinfo=UTC)}
PAIRS = [(t, k) for t, kinds in TEMPLATES.items() for k in kinds]


@pytest.fixture
def renderer():
    return Renderer(public_base_url="https://relay.example/")  # a trailing slash is harmless


@pytest.mark.parametrize("minimal", [False, True])
@pytest.mark.parametrize("template,kind", PAIRS)
def test_renders_with_reference_times_and_a_valid_card(renderer, template, kind, minimal):
    out = renderer.render(template=template, kind=kind, reference="SR-2026-000123", times=TIMES, minimal=minimal,
                          urgent=template == "immediate_safety")
    for part in (out.subject, out.text, out.html):
        assert "SR-2026-000123" in part
    assert "Tuesday 29 December 2026 at 3:00pm" in out.text
    payload = json.loads(out.card_json)
    assert payload == out.card and len(out.card_json.encode()) < CARD_LIMIT_BYTES
    assert payload["type"] == "message"
    [attachment] = payload["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert (card["type"], card["version"]) == ("AdaptiveCard", "1.4")
    actions = [n for n in objects(card) if str(n.get("type", "")).startswith("Action.")]
    assert all(a["type"] == "Action.OpenUrl" for a in actions)
    if kind == "team":
        url = "https://relay.example/referrals/SR-2026-000123"  # the intake workspace page
        assert [a["url"] for a in actions] == [url]
        assert f"Open the referral: {url}" in out.text and f'href="{url}"' in out.html
        assert "changes nothing" in out.text
    else:  # referrers and families cannot sign in: no link, and no "sign in" either
        assert actions == [] and "http" not in out.text and "href" not in out.html
        assert "sign in" not in (out.text + out.html).lower()


def test_minimal_shows_the_reference_the_kind_and_the_times_only(renderer):
    """DESIGN §4: while no_further_sharing holds, messages carry the reference, kind and
    times only — and an urgent one still says "immediate safety", so that a duty manager
    can tell it from a routine reminder."""
    full = renderer.render(template="immediate_safety", kind="team", reference="SR-1", times=TIMES, urgent=True)
    minimal = renderer.render(template="immediate_safety", kind="team", reference="SR-1", times=TIMES, minimal=True,
                              urgent=True)
    reminder = renderer.render(template="ack_reminder", kind="team", reference="SR-1", times=TIMES, minimal=True)
    assert minimal.subject == "URGENT: Immediate safety concern: referral SR-1"
    assert "immediate safety" in minimal.text.lower() and "strategy discussion is needed now" in minimal.text
    assert "immediate safety" in minimal.card_json.lower()
    assert reminder.subject == "Reminder: acknowledge: referral SR-1" and "safety" not in reminder.text.lower()
    assert "a concern about a child" in full.text and "child" not in minimal.text  # the kind, not the full wording
    for label, value in [("Received", human_time(TIMES["received_at"]))]:
        assert label in minimal.text and value in minimal.text


def test_the_reference_is_quoted_in_the_link(renderer):
    out = renderer.render(template="receipt", kind="team", reference="SR 1/2?x=<y>", times=TIMES)
    url = "https://relay.example/referrals/SR%201%2F2%3Fx%3D%3Cy%3E"
    assert out.card["attachments"][0]["content"]["actions"][0]["url"] == url
    assert f'href="{url}"' in out.html and f": {url}" in out.text


def test_markup_in_inputs_is_escaped_in_html_and_json(renderer):
    ref = '<script>alert("x")</script>'
    out = renderer.render(template="receipt", kind="team", reference=ref, times=TIMES)
    assert ref not in out.html and "&lt;script&gt;" in out.html
    assert json.loads(out.card_json)["attachments"][0]["content"]["body"][2]["facts"][0]["value"] == ref


def test_unknown_pairs_and_missing_times_are_render_errors(renderer):
    for template, kind in [("receipt", "guardians"), ("nope", "team"), ("ack_breach", "referrer")]:
        with pytest.raises(RenderError) as err:
            renderer.render(template=template, kind=kind, reference="SR-1", times=TIMES)
        assert err.value.reason == "unknown_template"
    with pytest.raises(RenderError) as err:
        renderer.render(template="receipt", kind="team", reference="SR-1", times={})
    assert err.value.reason == "template_data_missing"


def test_times_are_europe_london_and_dst_aware():
    assert human_time(datetime(2026, 7, 1, 8, 5, tzinfo=UTC)) == "Wednesday 1 July 2026 at 9:05am"
    assert human_time(datetime(2026, 1, 5, 0, 0, tzinfo=UTC)) == "Monday 5 January 2026 at 12:00am"
