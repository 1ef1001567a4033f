"""A staff system names the person it acts for (a signed `On-Behalf-Of` header, DESIGN §3.7):
the person is recorded like one signed in to the pages — in the `*_by` column, the audit,
the event's `by` and the timeline — acting with the system's role and organisation."""
from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from services.intake.adapters import tables
from shared.httpsig import authority_of, sign_request
from tests.factories import referral
from tests.intake.test_submit import bind_events, drain

pytestmark = [pytest.mark.broker, pytest.mark.database]
ISSUER = "https://login.microsoftonline.com/00000000-0000-0000-0000-000000000000/v2.0"
SAM = f'iss="{ISSUER}", sub="AAAAsam", name="Sam Patel"'


async def _post(intake, path: str, client_id: str, body: dict | None = None, *, covered: dict | None = None,
                extra: dict | None = None):
    raw = json.dumps(body).encode() if body is not None else None
    headers = sign_request(method="POST", path=path, body=raw, key_id=client_id, key=intake.key(client_id),
                           authority=authority_of(intake.client.make_url(path)), covered=covered)
    headers |= {"Content-Type": "application/json"} if raw else {}
    headers |= extra or {}
    return await intake.client.post(path, data=raw, headers=headers)


async def test_the_named_person_is_recorded_in_the_row_audit_event_and_timeline(intake):
    conn, queue = await bind_events(intake.settings)
    try:
        ref = (await (await intake.submit(referral())).json())["reference"]
        resp = await _post(intake, f"/v1/referrals/{ref}/acknowledgement", "dev-social-care",
                           covered={"On-Behalf-Of": SAM})
        assert resp.status == 200, await resp.text()
        messages = await drain(queue, 1.5)
    finally:
        await conn.close()
    async with intake.engine.connect() as db:
        by = await db.scalar(sa.select(tables.referrals.c.acknowledged_by).where(tables.referrals.c.reference == ref))
    assert by.startswith("person:")
    entry = [r for r in await intake.audit_rows() if r.action == "referral.acknowledgement"][-1]
    assert entry.actor == by and entry.detail["client_id"] == "dev-social-care"
    assert entry.detail["person"] == {"role": "social_care", "organisation": "E99999999", "issuer": ISSUER,
                                      "subject": "AAAAsam", "name": "Sam Patel"}
    event = next(json.loads(m.body) for m in messages if m.routing_key == "referral.acknowledged")
    assert event["by"]["name"] == "Sam Patel" and event["by"]["client_id"] == "dev-social-care"
    status = await (await intake.call("GET", f"/v1/referrals/{ref}", "dev-prevent")).json()
    step = next(s for s in status["timeline"] if s["event"] == "acknowledged")
    assert step["by"] == by and step["by_name"] == "Sam Patel (Social care, E99999999)"


async def test_an_uncovered_or_malformed_on_behalf_of_is_refused(intake):
    ref = (await (await intake.submit(referral())).json())["reference"]
    path = f"/v1/referrals/{ref}/acknowledgement"
    added_after_signing = await _post(intake, path, "dev-social-care", extra={"On-Behalf-Of": SAM})
    assert added_after_signing.status == 401
    assert (await added_after_signing.json())["reason"] == "missing_component"
    for bad in ('iss="x", sub="y"', 'iss="x", sub="y", name="z", role="ops"', "not a dictionary ("):
        resp = await _post(intake, path, "dev-social-care", covered={"On-Behalf-Of": bad})
        assert resp.status == 400, bad
        problem = await resp.json()
        assert problem["reason"] == "bad_on_behalf_of" and "z" not in problem.get("detail", "").split()
    async with intake.engine.connect() as db:
        acked = await db.scalar(sa.select(tables.referrals.c.acknowledged_at).where(tables.referrals.c.reference == ref))
    assert acked is None


@pytest.mark.parametrize("encoded", ['%"Zo%c3%ab %c3%93 Briain"',  # an RFC 9651 display string
                                     ":" + __import__("base64").b64encode("Zoë Ó Briain".encode()).decode() + ":"])
async def test_a_name_outside_ascii_travels_as_a_display_string_or_utf8_bytes(intake, encoded):
    ref = (await (await intake.submit(referral())).json())["reference"]
    resp = await _post(intake, f"/v1/referrals/{ref}/acknowledgement", "dev-social-care",
                       covered={"On-Behalf-Of": f'iss="{ISSUER}", sub="zoe", name={encoded}'})
    assert resp.status == 200, await resp.text()
    entry = [r for r in await intake.audit_rows() if r.action == "referral.acknowledgement"][-1]
    assert entry.detail["person"]["name"] == "Zoë Ó Briain"
