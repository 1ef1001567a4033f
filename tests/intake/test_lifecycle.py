"""Lifecycle actions: role and organisation checks, the state machine (409 for the
impossible), idempotent repeats (same result, no new event), events and audit;
the metadata view and performance statistics carry no content."""
from __future__ import annotations

import json

from services.intake.adapters import tables
from tests.factories import referral
from tests.intake.test_submit import bind_events, drain


async def test_the_whole_lifecycle(intake):
    conn, queue = await bind_events(intake.settings)
    try:
        ref = (await (await intake.submit(referral())).json())["reference"]
        base = f"/v1/referrals/{ref}"

        async def post(action, client_id, payload=None):
            resp = await intake.call("POST", f"{base}/{action}", client_id, payload)
            return resp.status, await resp.json()

        assert (await post("acknowledgement", "dev-prevent"))[0] == 403            # wrong role
        assert (await post("acknowledgement", "other-social-care"))[0] == 403      # wrong LA
        status, body = await post("decision", "dev-social-care", {"pathway": "section_47"})
        assert (status, body["reason"]) == (409, "not_acknowledged")
        assert (await post("decision", "dev-social-care", {"pathway": "nonsense"}))[0] == 422
        status, ack = await post("acknowledgement", "dev-social-care")
        assert status == 200 and ack["status"] == "acknowledged"
        assert await post("acknowledgement", "dev-social-care") == (200, ack)     # repeat: same, no event
        status, dec = await post("decision", "dev-social-care", {"pathway": "section_47", "rationale": "why"})
        assert (status, dec["pathway"], dec["status"]) == (200, "section_47", "decided")
        assert (await post("decision", "dev-social-care", {"pathway": "section_17"}))[0] == 409
        status, body = await post("feedback", "dev-prevent")
        assert (status, body["reason"]) == (409, "checks_pending")
        assert (await post("checks", "dev-social-care", {"outcome": "police_led"}))[0] == 403
        status, chk = await post("checks", "dev-prevent", {"outcome": "suitable_for_prevent", "notes": "n"})
        assert (status, chk["outcome"]) == (200, "suitable_for_prevent")
        status, fb = await post("feedback", "dev-prevent")
        assert (status, fb["family_contact_lifted"], fb["audiences"]) == (200, True, ["social_care", "referrer", "guardians"])
        assert await post("feedback", "dev-prevent") == (200, fb)
        status, ctp = await post("close", "dev-prevent")                          # CTP closes its own track
        assert (status, ctp["status"], ctp["track"], ctp["referral_closed"]) == (200, "decided", "ctp", False)
        assert ctp["tracks"]["ctp"]["status"] == "closed" and ctp["tracks"]["la"]["status"] == "decided"
        assert await post("close", "dev-prevent") == (200, ctp)                   # close twice: idempotent
        status, closed = await post("close", "dev-social-care")                  # the second track: closed
        assert (status, closed["status"], closed["track"], closed["referral_closed"]) == (200, "closed", "la", True)

        other = (await (await intake.submit(referral())).json())["reference"]
        assert (await intake.call("POST", f"/v1/referrals/{other}/close", "dev-social-care")).status == 200
        resp = await intake.call("POST", f"/v1/referrals/{other}/acknowledgement", "dev-social-care")
        assert resp.status == 409 and (await resp.json())["reason"] == "closed"  # the LA's track is closed
        resp = await intake.call("POST", f"/v1/referrals/{other}/checks", "dev-prevent", {"outcome": "not_suitable"})
        assert resp.status == 200  # ... and CTP still records its checks (DESIGN §3.3)
        resp = await intake.call("POST", f"/v1/referrals/{other}/feedback", "dev-prevent")
        assert resp.status == 200 and (await resp.json())["status"] == "received"
        view = await (await intake.call("GET", f"/v1/referrals/{other}", "dev-prevent")).json()
        assert view["tracks"]["la"]["status"] == "closed" and view["tracks"]["ctp"]["status"] == "feedback_released"
        assert [s["event"] for s in view["timeline"]][-1] == "feedback_released"
        assert "la_track_closed" in [s["event"] for s in view["timeline"]]
        assert (await intake.call("POST", "/v1/referrals/PRV-2000-000999/close", "dev-prevent")).status == 403

        events = [(m.routing_key, json.loads(m.body)) for m in await drain(queue, 2.0)]
    finally:
        await conn.close()
    assert [k for k, _ in events] == [
        "referral.received", "referral.acknowledged", "referral.decided", "referral.checks_completed",
        "referral.feedback_released", "referral.track_closed", "referral.track_closed", "referral.received",
        "referral.track_closed", "referral.checks_completed", "referral.feedback_released"]
    assert [(e["track"], e["referral_closed"]) for k, e in events if k == "referral.track_closed"] == [
        ("ctp", False), ("la", True), ("la", False)]
    fb_event = events[4][1]
    assert (fb_event["family_contact_lifted"], fb_event["audiences"]) == (True, ["social_care", "referrer", "guardians"])
    assert events[1][1]["client_id"] == "dev-social-care"
    assert fb_event["contacts_sealed"]["ciphertext"]  # the sealed contact section, for the notifier

    async with intake.engine.connect() as c:
        row = (await c.execute(tables.referrals.select().where(tables.referrals.c.reference == ref))).one()
    assert row.rationale_sealed["ciphertext"] and row.checks_notes_sealed["ciphertext"]
    audit = [(r.action, r.outcome) for r in await intake.audit_rows() if r.reference == ref]
    assert ("referral.acknowledgement", "repeated") in audit and ("referral.close", "repeated") in audit
    assert ("referral.decision", "rejected") in audit

    # the metadata view: any staff role of the LA or the force, never content
    for client_id in ("dev-social-care", "dev-prevent", "dev-control-room", "dev-mash"):
        resp = await intake.call("GET", f"/v1/referrals/{ref}", client_id)
        assert resp.status == 200, client_id
    view = await resp.json()
    assert view["status"] == "closed" and "content_sealed" not in view and "content" not in view
    assert [s["event"] for s in view["timeline"]] == [
        "received", "acknowledged", "decided", "checks_completed", "feedback_released", "ctp_track_closed",
        "la_track_closed", "closed"]
    assert view["tracks"] == {"la": {"status": "closed", "closed_at": view["timeline"][-1]["at"]},
                              "ctp": {"status": "closed", "closed_at": view["timeline"][-3]["at"]}}
    assert view["holding"]["no_family_contact"] is False
    for client_id in ("other-social-care", "dev-ops"):
        assert (await intake.call("GET", f"/v1/referrals/{ref}", client_id)).status == 403

    # performance data
    resp = await intake.call("GET", "/v1/stats", "dev-ops", query="from=2025-01-01&to=2030-12-31")
    stats = await resp.json()
    assert resp.status == 200
    # `other`: only the LA's track is closed, so the referral is not (its status is the LA's last step).
    assert (stats["total"], stats["by_status"], stats["by_pathway"]) == (
        2, {"closed": 1, "received": 1}, {"section_47": 1})
    assert stats["by_age_band"] == {"11-15": 2} and stats["by_concern_type"] == {"mixed_unclear_unstable": 2}
    assert stats["acknowledged_on_time"] == {"due": 1, "on_time": 1, "rate": 1.0}
    assert stats["decided_on_time"] == {"due": 1, "on_time": 1, "rate": 1.0}  # decided at once: within the day
    assert (await intake.call("GET", "/v1/stats", "other-social-care", query="from=2025-01-01")).status == 200
    assert (await (await intake.call("GET", "/v1/stats", "other-social-care", query="from=2025-01-01")).json())["total"] == 0
    assert (await intake.call("GET", "/v1/stats", "dev-ops", query="from=yesterday")).status == 422


async def test_feedback_that_keeps_the_family_contact_hold(intake):
    ref = (await (await intake.submit(referral())).json())["reference"]
    base = f"/v1/referrals/{ref}"
    assert (await intake.call("POST", f"{base}/checks", "dev-prevent", {"outcome": "not_suitable"})).status == 200
    resp = await intake.call("POST", f"{base}/feedback", "dev-prevent", {"family_contact": "sometimes"})
    assert resp.status == 422  # not lift or keep: refused, nothing released
    resp = await intake.call("POST", f"{base}/feedback", "dev-prevent", {"family_contact": "keep"})
    body = await resp.json()
    assert (resp.status, body["family_contact_lifted"], body["audiences"]) == (200, False, ["social_care", "referrer"])
    assert (await intake.call("POST", f"{base}/feedback", "dev-prevent", {"family_contact": "keep"})).status == 200
    resp = await intake.call("POST", f"{base}/feedback", "dev-prevent")  # now asks to lift: contradicts the release
    assert resp.status == 409 and (await resp.json())["reason"] == "already_released"
    status = await (await intake.call("GET", base, "dev-prevent")).json()
    assert status["holding"]["no_family_contact"] is True  # the hold stays on
    assert status["holding"]["no_further_sharing"] is False  # lifted by the checks outcome (DESIGN §4)


async def test_the_referrers_sector_and_gender_are_clear_reporting_codes(intake):
    """National referral form (issue 16): optional codes in the clear metadata, counted in
    /v1/stats and the report; anything but a known code is a 422."""
    for sector, gender in (("education", "female"), ("education", "male"), ("health", None)):
        doc = referral(referral_source_sector=sector, **({"gender": gender} if gender else {}))
        assert (await intake.submit(doc)).status == 202
    assert (await intake.submit(referral(gender="Sam"))).status == 422  # codes only, never free text
    stats = await (await intake.call("GET", "/v1/stats", "dev-ops", query="from=2025-01-01&to=2030-12-31")).json()
    assert stats["by_referral_source_sector"] == {"education": 2, "health": 1}
    assert stats["by_gender"] == {"female": 1, "male": 1}
    report = await (await intake.call("GET", "/v1/report", "dev-ops", query="from=2025-01-01&to=2030-12-31")).json()
    assert {c["key"] for c in report["tables"]["by_gender"]} == {"male", "female", "other", "not_known"}


async def test_stats_and_the_report_count_each_track(intake):
    refs = [(await (await intake.submit(referral())).json())["reference"] for _ in range(2)]
    assert (await intake.call("POST", f"/v1/referrals/{refs[0]}/close", "dev-social-care")).status == 200
    assert (await intake.call("POST", f"/v1/referrals/{refs[1]}/checks", "dev-prevent",
                              {"outcome": "not_suitable"})).status == 200
    stats = await (await intake.call("GET", "/v1/stats", "dev-ops", query="from=2025-01-01&to=2030-12-31")).json()
    assert stats["by_la_track"] == {"closed": 1, "received": 1}
    assert stats["by_ctp_track"] == {"checks_completed": 1, "checks_pending": 1}
