"""escalation's HTTP surface: the signed alert-acknowledgement API (DESIGN §3.5).

`POST /v1/alerts/{alert_id}/acknowledgement` — RFC 9421 signed, role `control_room`,
and the client's organisation must be the alert's force. Idempotent; audited
(rejections too). Errors are RFC 9457 problems that echo nothing of the request.
The control-room console lives in `console.py`.
"""
from __future__ import annotations

from typing import Any

from aiohttp import web
from nacl.signing import VerifyKey
from sqlalchemy import Row

from services.escalation import handlers, metrics
from services.escalation.adapters import repository as repo
from services.escalation.adapters.effects import audit
from services.escalation.context import Context
from shared.crypto import verify_key_from_b64
from shared.http import problem
from shared.httpsig import SignatureRejected, verify_request
from shared.runtime import RUNTIME

ACK_PATH = "/v1/alerts/{alert_id}/acknowledgement"
CONTEXT = web.AppKey("escalation_context", Context)


def alert_json(alert: Row[Any]) -> dict:
    return {
        "alert_id": alert.alert_id, "kind": alert.kind, "level": alert.level, "status": alert.status,
        "reference": alert.reference, "force": alert.force, "la_code": alert.la_code,
        "raised_at": alert.raised_at.isoformat(),
        "acknowledged_at": alert.acknowledged_at.isoformat() if alert.acknowledged_at else None,
        "acknowledged_by": alert.acknowledged_by,
    }


async def _audit_rejection(request: web.Request, action: str, outcome: str, client_id: str | None) -> None:
    rt, ctx = request.app[RUNTIME], request.app[CONTEXT]
    async with rt.engine.begin() as conn:
        await audit(conn, action, None, ctx.clock(), actor=(client_id or "unknown")[:100], outcome=outcome,
                    detail={"path": "alert_acknowledgement"})


async def acknowledge(request: web.Request) -> web.StreamResponse:
    rt, ctx = request.app[RUNTIME], request.app[CONTEXT]
    settings = ctx.settings
    body = await request.read()

    def resolve(key_id: str) -> VerifyKey | None:
        client = settings.client(key_id)
        return verify_key_from_b64(client.verify_key) if client else None

    try:
        key_id = verify_request(method=request.method, path=request.rel_url.raw_path,
                                query=request.rel_url.raw_query_string, headers=request.headers,
                                body=body or None, resolve_key=resolve, nonces=ctx.nonces)
    except SignatureRejected as exc:
        await _audit_rejection(request, "signature_rejected", exc.reason, exc.key_id)
        return problem(401, detail=f"signature rejected: {exc.reason}")
    client = settings.client(key_id)
    assert client is not None
    if client.role != "control_room":
        await _audit_rejection(request, "alert.acknowledge", "forbidden_role", client.id)
        return problem(403, detail="role control_room required")
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


def add_routes(app: web.Application) -> None:
    app.router.add_post(ACK_PATH, acknowledge)
