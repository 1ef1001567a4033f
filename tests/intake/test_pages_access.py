"""Who may open which page (DESIGN §3.7, §3.3): every page of intake × each dev person and a
person of another LA and of another force, signed in at the real development identity provider.
Social care of the referral's LA and CTP Prevent of its force open it; other roles get the 403
page; another organisation's referral answers exactly as an absent one (no enumeration). The
welfare check is the control room's of the referral's force only, and no other page is."""
from __future__ import annotations

import re

import sqlalchemy as sa

from services.intake.adapters import tables
from tests.factories import referral
from tests.intake.conftest import OTHER_PEOPLE, csrf_of
from tests.support.oidc import person

PEOPLE = {"sam": person("social.worker").sub, "jo": person("team.manager").sub, "dana": person("ctp.officer").sub,
          "lee": person("control.room").sub, "alex": person("ops").sub,
          "robin": OTHER_PEOPLE[0]["sub"], "kit": OTHER_PEOPLE[1]["sub"], "nico": OTHER_PEOPLE[2]["sub"]}
ABSENT = "PRV-2026-999999"
OK = "ok"  # reached the referral: a 303 back to it, or its page with a form error (422) or a conflict (409)
LA_ACTIONS = ("acknowledgement", "decision", "strategy-discussion", "concerns")
CTP_ACTIONS = ("checks", "feedback")
# person -> (GET /referrals, the referral page and its sealed.json, an LA action, a CTP action, close)
EXPECTED = {
    "sam": (200, 200, OK, 403, OK), "jo": (200, 200, OK, 403, OK), "dana": (200, 200, 403, OK, OK),
    "lee": (403, 403, 403, 403, 403), "alex": (403, 403, 403, 403, 403),
    "robin": (200, 404, 404, 403, 404), "kit": (200, 404, 403, 404, 404), "nico": (403, 403, 403, 403, 403),
}
WELFARE = ("GET /welfare-check", "POST /welfare-check", "GET /welfare-check/open", "GET /welfare-check/sealed.json")
# person -> the welfare-check routes in that order (the POST with a reason): the control room of the
# referral's force opens it; another force's control room gets "not found" (as for an absent
# referral); every other role the 403 page
WELFARE_EXPECTED = {name: (403,) * 4 for name in EXPECTED} | {"lee": (200, 303, 200, 200), "nico": (404,) * 4}


def _main(html: str) -> str:
    """The page's <main> (the identity bar and the nonce differ from page to page)."""
    return re.search(r"<main.*?</main>", html, re.S).group(0)


async def _welfare(pages, http, ref: str, token: str) -> list[tuple[int, str]]:
    """Each welfare-check route for `ref`: (status, the page's <main> or the body)."""
    out = []
    for route in WELFARE:
        method, path = route.split(" ")
        data = {"csrf_token": token, "reason": "welfare_check"} if method == "POST" else None
        async with http.request(method, f"{pages.url}/referrals/{ref}{path}", data=data, allow_redirects=False,
                                headers={"Origin": pages.url}) as resp:
            text = await resp.text()
            out.append((resp.status, _main(text) if "<main" in text else text))
    return out


ROLE_OF = {"sam": "social care E99999999", "jo": "social care E99999999 (manager)", "dana": "prevent dev-force",
           "lee": "control room dev-force", "alex": "ops", "robin": "social care (other LA)",
           "kit": "prevent (other force)", "nico": "control room (other force)"}
COLUMNS = ("GET /referrals", "GET /referrals/{reference} and sealed.json",
           "POST /referrals/{reference}/{acknowledgement,decision,strategy-discussion,concerns}",
           "POST /referrals/{reference}/{checks,feedback}", "POST /referrals/{reference}/close")


def record_pages(reliability) -> None:
    """The pages' rows of docs/reliability.md, from the expectations the test has just met."""
    table = {col: {n: EXPECTED[n][i] for n in EXPECTED} for i, col in enumerate(COLUMNS)}
    table |= {f"{r} (welfare check)": {n: WELFARE_EXPECTED[n][i] for n in WELFARE_EXPECTED}
              for i, r in enumerate(WELFARE)}
    for col, got in table.items():
        reliability.row("pages", service="intake", page=col, people=len(got),
                        allowed=", ".join(ROLE_OF[n] for n, s in got.items() if s in (200, 303, OK)),
                        refused=", ".join(f"{ROLE_OF[n]} {s}" for n, s in got.items() if s in (403, 404)))


async def test_every_page_for_every_person(pages, reliability):
    ref = (await (await pages.submit(referral())).json())["reference"]
    sessions, tokens = {}, {}
    try:
        for name, sub in PEOPLE.items():
            sessions[name] = http = pages.session()
            tokens[name] = csrf_of(await pages.signed_in(http, sub, "/report"))
        for name, (listing, page, la_action, ctp_action, close) in EXPECTED.items():
            http = sessions[name]
            async with http.get(f"{pages.url}/referrals") as resp:
                assert resp.status == listing, name
                assert (ref in await resp.text()) == (name in ("sam", "jo", "dana")), name
            pages_seen = {}
            for path in (f"/referrals/{ref}", f"/referrals/{ABSENT}", f"/referrals/{ref}/sealed.json",
                         f"/referrals/{ABSENT}/sealed.json"):
                async with http.get(f"{pages.url}{path}", allow_redirects=False) as resp:
                    text = await resp.text()
                    pages_seen[path] = (resp.status, _main(text) if "<main" in text else text)
            own, absent = pages_seen[f"/referrals/{ref}"], pages_seen[f"/referrals/{ABSENT}"]
            sealed, sealed_absent = (pages_seen[f"/referrals/{ref}/sealed.json"],
                                     pages_seen[f"/referrals/{ABSENT}/sealed.json"])
            assert (own[0], sealed[0]) == (page, page), name
            if page == 404:  # another organisation's referral: the same answer as none at all
                assert own == absent and sealed == sealed_absent, name
                assert "Referral not found" in own[1] and ref not in own[1]
            if page == 200:
                assert absent[0] == 404 and sealed_absent[0] == 404
                assert "content_sealed" in sealed[1] and "Referral details" in own[1]
            for actions, expected in ((LA_ACTIONS, la_action), (CTP_ACTIONS, ctp_action), (("close",), close)):
                for action in actions:
                    async with http.post(f"{pages.url}/referrals/{ref}/{action}", allow_redirects=False,
                                         data={"csrf_token": tokens[name]}, headers={"Origin": pages.url}) as resp:
                        got = OK if resp.status in (303, 409, 422) else resp.status
                        assert got == expected, (name, action, resp.status)
            seen = {ref_: await _welfare(pages, http, ref_, tokens[name]) for ref_ in (ref, ABSENT)}
            assert tuple(status for status, _ in seen[ref]) == WELFARE_EXPECTED[name], (name, seen[ref])
            if name == "nico":  # another force's referral: the same answer as none at all
                assert seen[ref] == seen[ABSENT] and ref not in str(seen[ref])
            if name == "lee":
                assert [status for status, _ in seen[ABSENT]] == [404] * 4
            async with http.get(f"{pages.url}/report") as resp:
                assert resp.status == 200, name
                assert ("all organisations" in await resp.text()) == (name == "alex"), name
    finally:
        for http in sessions.values():
            await http.close()
    async with pages.engine.connect() as conn:
        row = (await conn.execute(sa.select(tables.referrals).where(tables.referrals.c.reference == ref))).one()
        refusals = (await conn.execute(sa.select(tables.audit).where(
            tables.audit.c.outcome == "rejected", tables.audit.c.reference == ref))).all()
    # only the allowed persons' (empty) forms reached the referral: sam's acknowledgement (jo's a repeat)
    assert row.acknowledged_at is not None and row.pathway is None and row.checks_outcome is None
    assert row.la_closed_at is None and row.ctp_closed_at is None
    assert {r.detail["via"] for r in refusals} == {"page"} and len(refusals) >= 20
    record_pages(reliability)
