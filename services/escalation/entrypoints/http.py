"""escalation's HTTP surface: the signed alert actions of a force control room (DESIGN §3.5).

- `POST /v1/alerts/{alert_id}/acknowledgement` stops the alert's re-escalation.
- `POST /v1/alerts/{alert_id}/outcome`, body `{"action", "notes"?}`, records once what the
  control room did (and acknowledges the alert if it was still open); `notes` are sealed to
  the LA's and the force's team keys and never stored, logged or echoed in clear. The same
  action again returns the recorded result; a different one is a 409.

Both are RFC 9421 signed, role `control_room`, and the client's organisation must be the
alert's force. Idempotent; audited (rejections too). Errors are RFC 9457 problems that echo
nothing of the request. The control-room console lives in `console.py`.
"""
from __future__ import annotations

import re
from typing import Any

from aiohttp import web
from nacl.signing import VerifyKey
from sqlalchemy import Row

from services.escalation import handlers, metrics
from services.escalation.adapters import repository as repo
from services.escalation.adapters import tables
from services.escalation.adapters.effects import audit
from services.escalation.context import Context
from services.escalation.domain import outcomes
from shared.config import Client
from shared.crypto import verify_key_from_b64
from shared.http import problem
from shared.httpsig import NonceCapture, SignatureRejected, verify_request
from shared.logging import sensitive_scope
from shared.runtime import RUNTIME
from shared.storage.nonces import claim_nonce

_NONCE = re.compile(r"[\x21-\x7e]{8,200}")

ACK_PATH = "/v1/alerts/{alert_id}/acknowledgement"
OUTCOME_PATH = "/v1/alerts/{alert_id}/outcome"
CONTEXT = web.AppKey("escalation_context", Context)


def alert_json(alert: Row[Any]) -> dict:
    return {
        "alert_id": alert.alert_id, "kind": alert.kind, "level": alert.level, "status": alert.status,
        "reference": alert.reference, "force": alert.force, "la_code": alert.la_code,
        "raised_at": alert.raised_at.isoformat(),
        "acknowledged_at": alert.acknowledged_at.isoformat() if alert.acknowledged_at else None,
        "acknowledged_by": alert.acknowledged_by,
    }


def outcome_json(alert: Row[Any]) -> dict:
    """The alert with its recorded outcome (whether there are notes, never the notes)."""
    return {**alert_json(alert), "outcome": {
        "action": alert.outcome_action, "recorded_at": alert.outcome_at.isoformat(),
        "recorded_by": alert.outcome_by, "notes": alert.outcome_notes_sealed is not None}}


async def _audit_rejection(request: web.Request, action: str, outcome: str, client_id: str | None,
                           path: str) -> None:
    rt, ctx = request.app[RUNTIME], request.app[CONTEXT]
    async with rt.engine.begin() as conn:
        await audit(conn, action, None, ctx.clock(), actor=(client_id or "unknown")[:100], outcome=outcome,
                    detail={"path": path})


async def _control_room(request: web.Request, body: bytes, action: str, path: str) -> Client | web.Response:
    """The signed `control_room` client, or the audited 401/403 problem."""
    settings = request.app[CONTEXT].settings

    def resolve(key_id: str) -> VerifyKey | None:
        client = settings.client(key_id)
        return verify_key_from_b64(client.verify_key) if client else None

    seen = NonceCapture(request.app[CONTEXT].nonces)
    try:
        key_id = verify_request(method=request.method, path=request.rel_url.raw_path,
                                query=request.rel_url.raw_query_string, headers=request.headers,
                                body=body or None, resolve_key=resolve, nonces=seen)
        if not _NONCE.fullmatch(seen.nonce or ""):  # as intake: 8–200 visible characters (the column's size)
            raise SignatureRejected("missing_nonce", key_id)
        # claimed in the database too: a replay after a restart or on another replica is refused
        if not await claim_nonce(request.app[RUNTIME].engine, tables.nonces, key_id, seen.nonce or "",
                                 request.app[CONTEXT].clock()):
            raise SignatureRejected("replayed_nonce", key_id)
    except SignatureRejected as exc:
        await _audit_rejection(request, "signature_rejected", exc.reason, exc.key_id, path)
        return problem(401, detail=f"signature rejected: {exc.reason}")
    client = settings.client(key_id)
    assert client is not None
    if client.role != "control_room":
        await _audit_rejection(request, action, "forbidden_role", client.id, path)
        return problem(403, detail="role control_room required")
    return client


async def acknowledge(request: web.Request) -> web.StreamResponse:
    rt, ctx = request.app[RUNTIME], request.app[CONTEXT]
    client = await _control_room(request, await request.read(), "alert.acknowledge", "alert_acknowledgement")
    if isinstance(client, web.Response):
        return client
    alert_id = request.match_info["alert_id"]
    now = ctx.clock()
    async with rt.engine.begin() as conn:
        alert = await repo.get_alert(conn, alert_id)
        if alert is None:
            return problem(404, detail="no such alert")
        if alert.force != client.organisation:
            await audit(conn, "alert.acknowledge", alert.reference, now, actor=client.id,
                        outcome="forbidden_force", detail={"alert_id": alert_id})
            return problem(403, detail="the alert belongs to another force")
        was_open = alert.status == "open"
        alert = await handlers.acknowledge_alert(conn, alert_id, client.id, now)
    if was_open:
        metrics.ALERTS_ACKNOWLEDGED.labels(via="api").inc()
        rt.relay.notify()
    return web.json_response(alert_json(alert))


async def record_outcome(request: web.Request) -> web.StreamResponse:
    """Signature, role, the alert (404), its force (403), then the body (415/400/422) and the
    once-only rule (409); every refusal audited as `alert.outcome` with its reason."""
    rt, ctx = request.app[RUNTIME], request.app[CONTEXT]
    body = await request.read()
    client = await _control_room(request, body, "alert.outcome", "alert_outcome")
    if isinstance(client, web.Response):
        return client
    alert_id = request.match_info["alert_id"]
    now = ctx.clock()
    async with rt.engine.begin() as conn:
        alert = await repo.get_alert(conn, alert_id)
        if alert is None:
            await audit(conn, "alert.outcome", None, now, actor=client.id, outcome="not_found")
            return problem(404, detail="no such alert")
        refused = {"alert_id": alert_id}
        if alert.force != client.organisation:
            await audit(conn, "alert.outcome", alert.reference, now, actor=client.id, outcome="forbidden_force",
                        detail=refused)
            return problem(403, detail="the alert belongs to another force")
        try:
            parsed = outcomes.parse(request.content_type, body)
            with sensitive_scope([parsed.notes] if parsed.notes else []):  # the notes reach no log line
                alert, new, acknowledged = await handlers.record_outcome(
                    conn, ctx, alert_id, parsed.action, parsed.notes, client.id, now)
        except outcomes.OutcomeRefused as err:
            fields = {"fields": [e["loc"] for e in err.errors]} if err.errors else {}
            await audit(conn, "alert.outcome", alert.reference, now, actor=client.id, outcome=err.reason,
                        detail={**refused, **fields})
            return problem(err.status, detail=err.detail, reason=err.reason,
                           **({"errors": err.errors} if err.errors is not None else {}))
    if acknowledged:
        metrics.ALERTS_ACKNOWLEDGED.labels(via="outcome").inc()
    if new:
        rt.relay.notify()
    return web.json_response(outcome_json(alert))


def add_routes(app: web.Application) -> None:
    app.router.add_post(ACK_PATH, acknowledge)
    app.router.add_post(OUTCOME_PATH, record_outcome)
