"""Authorisation matrix of escalation's control-room alert actions (acknowledgement, outcome):
every configured client (each role of the alert's force and of another force) plus an
unsigned caller. Only the alert's own force's `control_room` client succeeds; refusals are
audited and change nothing."""
from __future__ import annotations

import json

import aiohttp
from sqlalchemy import select

from services.escalation.adapters.tables import alerts, audit
from shared.config import Client
from shared.crypto import b64e, generate_signing_key
from shared.httpsig import authority_of, sign_request
from shared.messages import ControlRoomAlert
from tests.escalation.conftest import OTHER
from tests.factories import london, referral_received

# DESIGN §3.5: route -> (its body, the audit action of its refusals)
ROUTES = {"/v1/alerts/{alert_id}/acknowledgement": ({}, "alert.acknowledge"),
          "/v1/alerts/{alert_id}/outcome": ({"action": "no_action_needed"}, "alert.outcome")}
EXTRA = (("other-mash", "referrer"), ("other-prevent", "prevent"), ("other-social-care", "social_care"))


def add_other_force_clients(esc) -> dict:
    """Clients of every staff role in the other force; their signing keys by id."""
    keys, clients = {}, []
    for client_id, role in EXTRA:
        keys[client_id] = generate_signing_key()
        clients.append(Client(id=client_id, role=role, organisation=OTHER,
                              verify_key=b64e(bytes(keys[client_id].verify_key))))
    f = esc.settings.file
    esc.settings = esc.settings.model_copy(update={"file": f.model_copy(update={"clients": (*f.clients, *clients)})})
    return keys


async def _post(session, server, route: str, alert_id: str, client_id: str | None, key) -> int:
    path, body = route.format(alert_id=alert_id), json.dumps(ROUTES[route][0]).encode()
    headers = {"Content-Type": "application/json"}
    if client_id:
        headers |= sign_request(method="POST", path=path, body=body, key_id=client_id, key=key,
                                authority=authority_of(server.make_url(path)))
    async with session.post(server.make_url(path), data=body, headers=headers) as resp:
        assert resp.content_type == ("application/json" if resp.status == 200 else "application/problem+json")
        return resp.status


async def test_only_the_forces_own_control_room_acts_on_its_alerts(esc, reliability):
    keys = add_other_force_clients(esc)
    keys["other-control-room"] = esc.other_key
    async with esc.app() as server:
        routes = {r.resource.canonical for r in server.app.router.routes()
                  if r.resource is not None and r.resource.canonical.startswith("/v1/")}
        assert routes == set(ROUTES)  # a new route must get a row in ROUTES
        await esc.publish(referral_received(london(2026, 11, 7, 10)))
        [message] = await esc.take("control-room.dev-force", timeout=5)
        alert = ControlRoomAlert.model_validate_json(message.body)
        clients = sorted(esc.settings.file.clients, key=lambda c: c.role == "control_room")  # refusals first
        relation = {c.id: "-" if c.organisation is None else ("own" if c.organisation == alert.force else "other")
                    for c in clients}
        for route, (_, action) in ROUTES.items():
            expected, actual = {}, {}
            async with aiohttp.ClientSession() as session:
                actual["unsigned"] = await _post(session, server, route, alert.alert_id, None, None)
                expected["unsigned"] = 401
                for c in clients:
                    key = keys.get(c.id) or esc.client_key(c.id)
                    own = (c.role, c.organisation) == ("control_room", alert.force)
                    if own:  # the refusals before changed nothing
                        [row] = await esc.rows(select(alerts).where(alerts.c.alert_id == alert.alert_id))
                        assert row.outcome_action is None and (row.status == "open") == route.endswith("ment")
                    actual[c.id] = await _post(session, server, route, alert.alert_id, c.id, key)
                    expected[c.id] = 200 if own else 403
            assert actual == expected, route
            outcomes = [r.outcome for r in await esc.rows(select(audit).where(audit.c.action == action))]
            assert outcomes.count("forbidden_role") == sum(c.role != "control_room" for c in clients)
            assert outcomes.count("forbidden_force") == 1
            reliability.row("authorisation", service="escalation", endpoint=f"POST {route}", cells=len(actual),
                            succeeded=sum(s == 200 for s in actual.values()),
                            refused_403=sum(s == 403 for s in actual.values()),
                            refused_401=sum(s == 401 for s in actual.values()),
                            allowed=", ".join(f"{esc.settings.client(i).role} ({relation[i]})"
                                              for i, s in actual.items() if s == 200))
        [row] = await esc.rows(select(alerts).where(alerts.c.alert_id == alert.alert_id))
        assert (row.status, row.acknowledged_by) == ("acknowledged", "dev-control-room")
        assert (row.outcome_action, row.outcome_by) == ("no_action_needed", "dev-control-room")
