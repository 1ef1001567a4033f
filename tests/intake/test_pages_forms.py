"""The referral page's forms over real HTTP (plain aiohttp sessions signed in at the real dev
identity provider): the case list's order and clocks, each social-care action with its success
banner, a repeat that says so, refusals with a GOV.UK error summary, CSRF; the person named in
the row, the audit and the events; a note sealed and never shown, logged or stored in clear."""
from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
import sqlalchemy as sa

from services.intake.adapters import tables
from services.intake.entrypoints.http import CONTEXT
from shared.clock import ManualClock
from shared.web.identity import Person
from tests.factories import london, new_canary, referral
from tests.intake.conftest import csrf_of
from tests.intake.test_sealing import log_stream  # noqa: F401  (fixture)
from tests.intake.test_submit import bind_events, drain
from tests.support.oidc import person

SAM = person("social.worker")


def rows_of(html: str) -> list[str]:
    return re.findall(r'<tr class="govuk-table__row" data-reference="([^"]+)"', html)


async def _post(pages, http, path: str, token: str, **form) -> tuple[int, str, str]:
    """POST the form (a list value as repeated fields, as checkboxes send it)."""
    fields = [("csrf_token", token)] + [(k, x) for k, v in form.items() for x in (v if isinstance(v, list) else [v])]
    async with http.post(f"{pages.url}{path}", data=fields, allow_redirects=False,
                         headers={"Origin": pages.url}) as resp:
        return resp.status, resp.headers.get("Location", ""), await resp.text()


async def _get(pages, http, path: str) -> tuple[int, str]:
    async with http.get(f"{pages.url}{path}") as resp:
        return resp.status, await resp.text()


@pytest.fixture
def clock(pages) -> ManualClock:
    clock = ManualClock(london(2026, 3, 2, 9, 30))  # a Monday morning
    pages.app[CONTEXT].clock = clock
    return clock


async def test_the_case_list_shows_overdue_first_then_the_nearest_deadline(pages, clock):
    canary = new_canary()
    urgent = (await (await pages.submit(referral(canary, immediate_risk=True))).json())["reference"]
    clock.advance(timedelta(days=1, hours=3))  # Tuesday 12:30: acknowledge-by (Tue 09:30) has passed
    later = []
    for _ in range(2):
        later.append((await (await pages.submit(referral())).json())["reference"])
        clock.advance(timedelta(minutes=1))
    async with pages.session() as http:
        html = await pages.signed_in(http, SAM.sub)
        assert rows_of(html) == [urgent, *later]
        row = html.split(f'data-reference="{urgent}"', 1)[1].split("</tr>", 1)[0]
        assert "Overdue by 3 h" in row and "Immediate risk" in row and "Strategy discussion by:" in row
        assert "Overdue by 1 day 2 h" in row  # the strategy discussion was due at 10:30 on Monday
        assert "Acknowledge by:</span> 23 h 58 min left" in html.split(f'data-reference="{later[0]}"', 1)[1]
        assert "2 referrals have a deadline that has passed" not in html and "1 referral has a deadline" in html
        assert canary not in html
        status, closed = await _get(pages, http, "/referrals?show=closed")
        assert status == 200 and "There are no closed referrals for Dev Borough" in closed
    audit = [r for r in await pages.audit_rows() if r.action == "referral.list"]
    assert [(r.detail["person"]["name"], r.detail["state"], r.detail["count"]) for r in audit] == [
        ("Sam Patel", "open", 3), ("Sam Patel", "closed", 0)]


async def test_a_social_worker_acts_through_the_forms_and_is_named_everywhere(pages, clock, log_stream):  # noqa: F811
    canary, note = new_canary(), new_canary()
    ref = (await (await pages.submit(referral(canary, immediate_risk=True))).json())["reference"]
    conn, queue = await bind_events(pages.settings)
    try:
        async with pages.session() as http:
            html = await pages.signed_in(http, SAM.sub, f"/referrals/{ref}")
            token = csrf_of(html)
            for form in ("acknowledgement", "strategy-discussion", "concerns", "close"):
                assert f'id="{form}-form"' in html
            assert 'id="decision-form"' not in html and 'id="checks-form"' not in html
            base = f"/referrals/{ref}"
            assert (await _post(pages, http, f"{base}/acknowledgement", token))[:2] == (
                303, f"{base}?done=acknowledgement")
            status, page = await _get(pages, http, f"{base}?done=acknowledgement")
            assert "govuk-notification-banner--success" in page and "Referral acknowledged" in page
            assert (await _post(pages, http, f"{base}/acknowledgement", token))[1] == (
                f"{base}?done=acknowledgement&already=1")
            status, page = await _get(pages, http, f"{base}?done=acknowledgement&already=1")
            assert status == 200 and "had already been acknowledged. Nothing was changed." in page
            assert "govuk-notification-banner--success" not in page

            status, _, page = await _post(pages, http, f"{base}/decision", token, rationale=note)
            assert status == 422 and "govuk-error-summary" in page and 'href="#decision-pathway"' in page
            assert "Select the next step for this referral" in page and "Your notes were not kept" in page
            assert note not in page
            assert (await _post(pages, http, f"{base}/decision", token, pathway="immediate_protection",
                                rationale=note))[:2] == (303, f"{base}?done=decision")
            status, page = await _get(pages, http, f"{base}?done=decision")
            assert "Next step: Immediate protection." in page and note not in page

            held = {"held_at-day": "2", "held_at-month": "3", "held_at-year": "2026", "held_at-time": "09:20",
                    "agencies": ["local_authority", "police", "ctp_prevent"], "legal_advice_sought": "no",
                    "decision": "section_47_enquiry", "parents_informed": "yes", "notes": note}
            status, _, page = await _post(pages, http, f"{base}/strategy-discussion", token,
                                          **{**held, "held_at-day": "9"})
            assert status == 422 and "must be in the past" in page and 'href="#strategy-held-at-day"' in page
            assert 'value="9"' in page and note not in page  # the date is kept, the note is not
            assert (await _post(pages, http, f"{base}/strategy-discussion", token, **held))[0] == 303
            status, page = await _get(pages, http, f"{base}?done=strategy-discussion")
            assert "Strategy discussion recorded" in page and "Section 47 enquiry" in page
            assert 'id="strategy-discussion-form"' not in page  # its clock has stopped

            assert (await _post(pages, http, f"{base}/concerns", token, category="welfare"))[0] == 303
            status, _, page = await _post(pages, http, f"{base}/close", token)
            assert status == 422 and "Confirm that you want to close your track" in page
            assert (await _post(pages, http, f"{base}/close", token, confirm="yes"))[0] == 303
            status, page = await _get(pages, http, f"{base}?done=close")
            assert "The local authority track is closed" in page and "nothing for your team to do" in page
            timeline = page.split('id="timeline"', 1)[1]
            assert timeline.count("by Sam Patel (Social care, E99999999)") == 5
            assert canary not in page and note not in page
        events = [json.loads(m.body) for m in await drain(queue)]
    finally:
        await conn.close()
    sam = Person(pages.settings.file.identity_providers[0].issuer, SAM.sub, "Sam Patel", "social_care", "E99999999")
    async with pages.engine.connect() as db:
        row = (await db.execute(sa.select(tables.referrals).where(tables.referrals.c.reference == ref))).one()
    assert (row.acknowledged_by, row.decided_by, row.strategy_by, row.la_closed_by) == (sam.id,) * 4
    assert row.strategy_family_contact_lifted and row.strategy_agencies == ["local_authority", "police", "ctp_prevent"]
    assert row.strategy_held_at == london(2026, 3, 2, 9, 20)
    audit = {r.action: r for r in await pages.audit_rows() if r.outcome == "ok" and r.actor == sam.id}
    for action in ("referral.acknowledgement", "referral.decision", "referral.strategy-discussion",
                   "referral.concern", "referral.close"):
        assert audit[action].detail["person"]["name"] == "Sam Patel", action
    by = [e["by"] for e in events if e.get("by") and e.get("reference") == ref]
    assert len(by) == 5 and {b["name"] for b in by} == {"Sam Patel"}
    stored = json.dumps([list(r) for r in await pages.audit_rows()], default=str) + repr(row)
    for secret in (canary, note):
        assert secret not in log_stream.getvalue() and secret not in stored


async def test_refusals_show_an_error_summary_and_a_form_without_its_token_is_refused(pages):
    ref = (await (await pages.submit(referral())).json())["reference"]
    async with pages.session() as http:
        token = csrf_of(await pages.signed_in(http, SAM.sub, f"/referrals/{ref}"))
        base = f"/referrals/{ref}"
        assert (await _post(pages, http, f"{base}/close", token, confirm="yes"))[0] == 303
        status, _, page = await _post(pages, http, f"{base}/acknowledgement", token)
        assert status == 409 and "govuk-error-summary" in page and 'href="#actions"' in page
        assert "The local authority track is closed: acknowledgement is no longer possible" in page
        status, _, page = await _post(pages, http, f"{base}/decision", token, pathway="early_help")
        assert status == 409 and "The local authority track is closed" in page
        status, _, page = await _post(pages, http, f"{base}/concerns", token, category="missing")
        assert status == 409 and "raising a concern is no longer possible" in page
        async with http.post(f"{pages.url}{base}/acknowledgement", data={}, headers={"Origin": pages.url}) as resp:
            assert resp.status == 403 and "This form has expired" in await resp.text()
        async with http.post(f"{pages.url}{base}/acknowledgement", data={"csrf_token": token},
                             headers={"Origin": "https://evil.example"}) as resp:
            assert resp.status == 403
    async with pages.session() as stranger:
        async with stranger.post(f"{pages.url}{base}/acknowledgement", data={"csrf_token": token}) as resp:
            assert resp.status == 401 and "Your session has ended" in await resp.text()
    refused = [r for r in await pages.audit_rows() if r.outcome == "rejected"]
    assert [(r.action, r.detail["reason"], r.detail["via"]) for r in refused] == [
        ("referral.acknowledgement", "closed", "page"), ("referral.decision", "closed", "page"),
        ("referral.concern", "closed", "page")]
