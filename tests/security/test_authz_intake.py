"""Authorisation matrix of intake: every route × every configured client (each role,
of the referral's own organisations and of others) plus an unsigned caller. Only the
cells DESIGN §3.3 allows succeed; every other one is a 403 (401 unsigned) problem
that echoes no content. One app, one referral walked through its lifecycle."""
from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiohttp import web

from services.intake.bootstrap import create_app
from shared.config import Client, Force, SealingKey, Settings
from shared.crypto import b64e, generate_sealing_key, generate_signing_key, write_private_key
from tests.factories import new_canary, referral
from tests.intake.conftest import Intake

OTHER_FORCE = "other-force"
EXTRA_CLIENTS = (("other-mash", "referrer"), ("other-prevent", "prevent"), ("other-control-room", "control_room"))
LA, FORCE, EITHER, ANY = "la_code", "force", "either", "any"
STAFF = ("referrer", "social_care", "prevent", "control_room")
REF = "/v1/referrals/{reference}"
# DESIGN §3.3, in lifecycle order: route -> (role -> organisation of the referral it must belong to, body)
POLICY: dict[tuple[str, str], tuple[dict[str, str], dict | None]] = {
    ("POST", "/v1/referrals"): ({"referrer": FORCE}, None),
    ("GET", "/v1/referrals"): ({"social_care": ANY, "prevent": ANY}, None),  # the list: own organisation's only
    ("GET", REF): (dict.fromkeys(STAFF, EITHER), None),
    ("GET", REF + "/sealed"): ({"social_care": LA, "prevent": FORCE}, None),
    ("GET", "/v1/stats"): (dict.fromkeys((*STAFF, "ops"), ANY), None),
    ("GET", "/v1/report"): (dict.fromkeys((*STAFF, "ops"), ANY), None),
    ("POST", REF + "/acknowledgement"): ({"social_care": LA}, None),
    ("POST", REF + "/decision"): ({"social_care": LA}, {"pathway": "section_17"}),
    ("POST", REF + "/checks"): ({"prevent": FORCE}, {"outcome": "not_suitable"}),
    ("POST", REF + "/feedback"): ({"prevent": FORCE}, None),
    ("POST", REF + "/strategy-discussion"): ({"social_care": LA}, {
        "held_at": (datetime.now(UTC) - timedelta(hours=1)).isoformat(), "agencies": ["local_authority", "police"], "legal_advice_sought": False,
        "decision": "no_immediate_action", "parents_informed": False}),
    ("POST", REF + "/concerns"): ({"social_care": LA}, {"category": "welfare"}),  # not once-only: 201 each
    ("POST", REF + "/close"): ({"social_care": LA, "prevent": FORCE}, None),
}
CREATED = {("POST", "/v1/referrals"): 202, ("POST", REF + "/concerns"): 201}  # else 200 when allowed


def with_other_force(settings: Settings, keys_dir: Path) -> Settings:
    """Add a second force with a referrer, a prevent and a control-room client."""
    seal_key = generate_sealing_key()
    write_private_key(keys_dir / f"{OTHER_FORCE}.x25519", bytes(seal_key))
    force = Force(slug=OTHER_FORCE, name="Other Force", sealing_keys=(SealingKey(
        key_id=f"{OTHER_FORCE}-1", public_key=b64e(bytes(seal_key.public_key))),))
    clients = []
    for client_id, role in EXTRA_CLIENTS:
        key = generate_signing_key()
        write_private_key(keys_dir / f"{client_id}.ed25519", bytes(key))
        clients.append(Client(id=client_id, role=role, organisation=OTHER_FORCE,
                              verify_key=b64e(bytes(key.verify_key))))
    f = settings.file
    return settings.model_copy(update={"file": f.model_copy(update={
        "forces": (*f.forces, force), "clients": (*f.clients, *clients)})})


def allowed(rule: dict[str, str], client: Client, row: dict[str, str]) -> bool:
    where = rule.get(client.role)
    if where is None:
        return False
    if where == ANY:
        return True
    if where == EITHER:
        return client.organisation in (row[LA], row[FORCE])
    return client.organisation == row[where]


def relation(client: Client, row: dict[str, str]) -> str:
    return "-" if client.organisation is None else (
        "own" if client.organisation in (row[LA], row[FORCE]) else "other")


def app_routes(app: web.Application) -> set[tuple[str, str]]:
    return {(r.method, r.resource.canonical) for r in app.router.routes()
            if r.resource is not None and r.resource.canonical.startswith("/v1/") and r.method != "HEAD"}


async def test_only_the_allowed_cells_of_the_matrix_succeed(intake_settings, aiohttp_client, tmp_path,
                                                            reliability):
    settings = with_other_force(intake_settings, tmp_path / "keys")
    intake = Intake(await aiohttp_client(create_app(settings)), settings, tmp_path)
    assert app_routes(intake.app) == set(POLICY)  # a new route must get a row in POLICY
    canary = new_canary()
    doc = referral(canary)
    reply = await intake.submit(doc)
    assert reply.status == 202
    reference = (await reply.json())["reference"]
    row = {LA: doc["la_code"], FORCE: doc["force"]}
    clients = settings.file.clients
    assert {(c.role, relation(c, row)) for c in clients} >= {(r, o) for r in STAFF for o in ("own", "other")}
    expected, actual, replies = {}, {}, 0
    for (method, route), (rule, body) in POLICY.items():
        path = route.format(reference=reference)
        payload = doc if (method, route) == ("POST", "/v1/referrals") else body
        for client in (None, *clients):
            cell = (method, route, client.id if client else "unsigned")
            if client is None:
                raw = json.dumps(payload).encode() if payload is not None else None
                resp = await intake.client.request(method, path, data=raw, headers={"Content-Type": "application/json"})
                expected[cell] = 401
            else:
                resp = await intake.call(method, path, client.id, payload)
                expected[cell] = CREATED.get((method, route), 200) if allowed(rule, client, row) else 403
            actual[cell] = resp.status
            text = await resp.text()
            replies += 1
            assert canary not in text, cell
            if resp.status >= 400:
                assert resp.content_type == "application/problem+json", cell
            elif (method, route) == ("GET", "/v1/referrals"):  # listed only to its own LA's and force's teams
                listed = [item["reference"] for item in (await resp.json())["items"]]
                assert (reference in listed) == (client.organisation in (row[LA], row[FORCE])), cell
            elif route == "/v1/stats":  # staff see only their own organisation's referrals
                seen = (await resp.json())["total"]
                assert (seen > 0) == (client.organisation in (None, row[LA], row[FORCE])), cell
            elif route == "/v1/report":  # the same, and one referral is a small number: suppressed
                seen = (await resp.json())["total"]["suppressed"]
                assert seen == (client.organisation in (None, row[LA], row[FORCE])), cell
    assert actual == expected
    for (method, route), (rule, _) in POLICY.items():
        cells = {c: s for c, s in actual.items() if c[:2] == (method, route)}
        ok = sorted({settings.client(c[2]).role + ("" if rule[settings.client(c[2]).role] == ANY
                                                   else f" ({relation(settings.client(c[2]), row)})")
                     for c, s in cells.items() if s < 300})
        reliability.row("authorisation", service="intake", endpoint=f"{method} {route}", cells=len(cells),
                        succeeded=sum(s < 300 for s in cells.values()),
                        refused_403=sum(s == 403 for s in cells.values()),
                        refused_401=sum(s == 401 for s in cells.values()), allowed=", ".join(ok))
    reliability.row("leaks", check="intake replies to every authorisation cell (canary in every content field)",
                    inspected=f"{replies} replies",
                    canary_found=0)
