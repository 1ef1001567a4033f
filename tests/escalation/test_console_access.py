"""Who may use escalation's pages (DESIGN §3.7), over real HTTP with the real development
identity provider: every page and action × each dev person, a control-room operator of
another force and nobody signed in; CSRF and cross-site refusals."""
from __future__ import annotations

import asyncio
import re

import aiohttp
import pytest
from sqlalchemy import select

from safeguard import devidp
from services.escalation.adapters.tables import alerts, audit
from tests.escalation.conftest import OTHER, OTHER_OPERATOR
from tests.factories import london, referral_received
from tests.support.oidc import sign_in

pytestmark = [pytest.mark.broker, pytest.mark.database]
PEOPLE = {p.sub: p.role for p in devidp.DEV_PEOPLE} | {OTHER_OPERATOR["sub"]: "control_room (other force)"}
DEV_OPERATOR = "control.room@dev-force.example"
# (method, path) -> who gets what; "A" is the dev-force alert. Redirects are not followed.
ROUTES = (("GET", "/console"), ("GET", "/console/events"), ("GET", "/console/alerts/A/acknowledge"),
          ("POST", "/console/alerts/A/acknowledgement"), ("POST", "/console/alerts/A/outcome"),
          ("POST", "/console/alerts/A/welfare-check"), ("GET", "/ops"))


def expected(who: str | None, method: str, path: str) -> int:
    if who is None:
        return 303 if method == "GET" else 401  # GET: to the sign-in page
    role = PEOPLE[who]
    if path == "/ops":
        return 200 if role == "ops" else 403
    if path == "/console" and role == "ops":
        return 303  # to /ops
    if role == "control_room (other force)":
        return 200 if path in ("/console", "/console/events") else 404  # another force's alert: as absent
    if role != "control_room":
        return 403
    return 303 if method == "POST" and not path.endswith("welfare-check") else 200


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    return match.group(1) if match else ""


async def _try(http: aiohttp.ClientSession, base: str, method: str, path: str, token: str, **data: str) -> int:
    if path == "/console/events":  # the stream: its status, then hang up
        async with http.get(base + path, allow_redirects=False) as resp:
            return resp.status
    form = {"csrf_token": token, **data} if method == "POST" else None
    async with http.request(method, base + path, data=form, allow_redirects=False,
                            headers={"Origin": base} if method == "POST" else None) as resp:
        return resp.status


async def _alerts(esc, n: int) -> dict[str, str]:
    async with asyncio.timeout(10):
        while len(rows := await esc.rows(select(alerts.c.force, alerts.c.alert_id))) < n:
            await asyncio.sleep(0.05)
    return dict(rows)


def _jar() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


async def test_each_person_gets_only_what_their_role_and_force_allow(esc_web, reliability):
    esc = esc_web
    async with esc.app() as server:
        base = str(server.make_url("")).rstrip("/")
        for ev in (referral_received(london(2026, 11, 7, 9), immediate_risk=True),
                   referral_received(london(2026, 11, 7, 9), immediate_risk=True, force=OTHER)):
            await esc.publish(ev)
        ids = await _alerts(esc, 2)
        seen, want = {}, {}
        # the dev-force operator last: their POSTs change the alert
        for who in [None, *sorted(set(PEOPLE) - {DEV_OPERATOR}), DEV_OPERATOR]:
            async with _jar() as http:
                token = ""
                if who is not None:
                    page = await sign_in(http, base, who, "/console")
                    token = _csrf(await page.text())
                    page.release()
                if who is not None and PEOPLE[who].startswith("control_room"):
                    async with http.get(base + "/console") as resp:  # only their own force's alert is listed
                        html = await resp.text()
                    mine, theirs = ((ids[OTHER], ids["dev-force"]) if who == OTHER_OPERATOR["sub"]
                                    else (ids["dev-force"], ids[OTHER]))
                    assert f'data-alert-id="{mine}"' in html and theirs not in html
                    # another force's alert and an absent one: the same refusal
                    for alert_id in (theirs, "no-such-alert"):
                        status = await _try(http, base, "POST", f"/console/alerts/{alert_id}/acknowledgement", token)
                        assert status == 404
                for method, path in ROUTES:
                    real = path.replace("/A/", f"/{ids['dev-force']}/")
                    seen[who, method, path] = await _try(http, base, method, real, token, action="no_action_needed")
                    want[who, method, path] = expected(who, method, path)
        assert seen == want
        [row] = await esc.rows(select(alerts).where(alerts.c.alert_id == ids[OTHER]))
        assert row.status == "open"  # nobody of dev-force could touch it
        refused = await esc.rows(select(audit.c.action, audit.c.outcome).where(audit.c.outcome == "not_found"))
        assert ("alert.acknowledge", "not_found") in refused
    for method, path in ROUTES:
        got = {who: seen[who, method, path] for who in [None, *PEOPLE]}
        ok = {w for w, st in got.items() if w and (st == 200 or (method == "POST" and st == 303))}
        reliability.row("pages", service="escalation", page=f"{method} {path.replace('/A/', '/{alert}/')}",
                        people=len(got), allowed=", ".join(sorted(PEOPLE[w] for w in ok)),
                        refused=", ".join(sorted(f"{PEOPLE[w] if w else 'nobody'} {st}" for w, st in got.items()
                                                 if w not in ok)))


async def test_a_form_without_the_token_or_from_another_site_is_refused(esc_web):
    esc = esc_web
    async with esc.app() as server, _jar() as http:
        base = str(server.make_url("")).rstrip("/")
        await esc.publish(referral_received(london(2026, 11, 7, 9), immediate_risk=True))
        alert_id = (await _alerts(esc, 1))["dev-force"]
        page = await sign_in(http, base, DEV_OPERATOR, "/console")
        token = _csrf(await page.text())
        page.release()
        path = f"{base}/console/alerts/{alert_id}/acknowledgement"
        for data, headers in (({}, {"Origin": base}), ({"csrf_token": "x" * 43}, {"Origin": base}),
                              ({"csrf_token": token}, {"Origin": "https://evil.example"}),
                              ({"csrf_token": token}, {"Sec-Fetch-Site": "cross-site"})):
            async with http.post(path, data=data, headers=headers, allow_redirects=False) as resp:
                assert resp.status == 403, (data, headers)
        async with http.get(path, allow_redirects=False) as resp:
            assert resp.status == 405  # a GET never changes state
        [row] = await esc.rows(select(alerts).where(alerts.c.alert_id == alert_id))
        assert row.status == "open"
        async with http.post(path, data={"csrf_token": token}, headers={"Origin": base}, allow_redirects=False) as resp:
            assert resp.status == 303 and resp.headers["Location"].startswith("/console?done=acknowledged")
