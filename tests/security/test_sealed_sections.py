"""Issue 18 #10: a sealed envelope opens only as the section of the referral it was sealed for.

Before the fix the associated data bound only the referral id and key version and envelopes were
anonymous: a referral's contacts envelope stored in its content column (or a rationale in the
checks notes) opened as that section, and the reference client used a reply for another referral
as the one it asked for. Each attack runs against the real intake and the real reference client
(`safeguard open`'s `open_referral`, `safeguard referral status`'s `staff_client.status`)."""
from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from aiohttp import web

from services.intake.adapters import tables
from services.intake.entrypoints import staff_client
from services.intake.entrypoints.client import WrongReply, open_envelope, open_referral
from shared.crypto import CryptoError
from tests.factories import new_canary, referral
from tests.security.test_key_rotation import walk


def _open_args(intake, url: str) -> dict:
    keys = intake.dir / "keys"
    return {"team_key_file": keys / "E99999999.x25519", "client_id": "dev-social-care",
            "client_key_file": keys / "dev-social-care.ed25519", "url": url}


async def _swap(intake, ref: str, a: str, b: str) -> None:
    """What a database writer (or a bug) could do: two envelope columns of one row exchanged."""
    r = tables.referrals
    async with intake.engine.begin() as conn:
        row = (await conn.execute(sa.select(r).where(r.c.reference == ref))).one()
        await conn.execute(sa.update(r).where(r.c.id == row.id).values({a: getattr(row, b), b: getattr(row, a)}))


async def test_two_sections_swapped_within_a_referral_do_not_open(intake, reliability):
    canary = new_canary()
    ref, rid = await walk(intake, referral(canary), canary)
    url = str(intake.client.make_url("/")).rstrip("/")
    status, content = await open_referral(ref, **_open_args(intake, url))
    assert status == 200 and content["concerns"].startswith(canary)  # as sealed: opens

    await _swap(intake, ref, "content_sealed", "contacts_sealed")
    with pytest.raises(CryptoError, match="sealed as section 'contacts', not 'content'"):
        await open_referral(ref, **_open_args(intake, url))  # before the fix: the contacts, shown as the content

    await _swap(intake, ref, "rationale_sealed", "checks_notes_sealed")
    async with intake.engine.connect() as conn:
        row = (await conn.execute(sa.select(tables.referrals).where(tables.referrals.c.reference == ref))).one()
    key = intake.team_key("E99999999")
    with pytest.raises(CryptoError, match="sealed as section 'checks_notes', not 'rationale'"):
        open_envelope(row.rationale_sealed, rid, key, reference=ref, section="rationale")
    relabelled = {**row.rationale_sealed, "section": "rationale"}  # the clear label changed to match
    with pytest.raises(CryptoError, match="cannot open"):  # every key id tried: each fails authentication
        open_envelope(relabelled, rid, key, reference=ref, section="rationale")
    assert json.loads(open_envelope(row.checks_notes_sealed, rid, key, reference=ref, section="rationale")) \
        == f"{canary} why"  # where it belongs, it still opens
    reliability.row("attacks", finding="#10", attack="swap a referral's sealed columns in the database "
                    "(contacts_sealed into content_sealed, rationale into checks notes), then `safeguard open`",
                    before="opened: the guardians' contacts printed as the referral content",
                    after="refused: CryptoError \"envelope is sealed as section 'contacts', not 'content'\"; "
                    "relabelled envelope fails authentication")


async def test_a_reply_for_another_referral_is_not_used_by_the_reference_client(intake, aiohttp_server, reliability):
    canary = new_canary()
    mine = (await (await intake.submit(referral())).json())["reference"]
    theirs = (await (await intake.submit(referral(canary))).json())["reference"]
    their_sealed = await (await intake.call("GET", f"/v1/referrals/{theirs}/sealed", "dev-social-care")).json()
    their_status = await (await intake.call("GET", f"/v1/referrals/{theirs}", "dev-social-care")).json()

    async def misrouted(request: web.Request) -> web.Response:  # a proxy or cache mixing up replies
        return web.json_response(their_sealed if request.path.endswith("/sealed") else their_status)

    app = web.Application()
    app.router.add_get("/{tail:.*}", misrouted)
    url = str((await aiohttp_server(app)).make_url("/")).rstrip("/")
    with pytest.raises(WrongReply, match=f"reply is for referral '{theirs}', not '{mine}'"):
        await open_referral(mine, **_open_args(intake, url))  # before the fix: their content, as mine
    keys = intake.dir / "keys"
    caller = staff_client.Caller("dev-social-care", keys / "dev-social-care.ed25519", url)
    with pytest.raises(WrongReply):
        await staff_client.status(caller, mine)
    # the reply relabelled as mine: the content envelope still names its own referral
    relabelled = {**their_sealed, "reference": mine}
    their_sealed.clear()
    their_sealed.update(relabelled)
    with pytest.raises(CryptoError, match=f"sealed for referral '{theirs}', not '{mine}'"):
        await open_referral(mine, **_open_args(intake, url))
    reliability.row("attacks", finding="#10", attack="the reference client (`safeguard open`, `safeguard referral "
                    "status`) given another referral's reply, as is or relabelled with the reference asked for",
                    before="used: another child's referral content printed under the reference asked for",
                    after="refused: WrongReply (reply's reference) / CryptoError (envelope's bound reference); "
                    "nothing printed")
