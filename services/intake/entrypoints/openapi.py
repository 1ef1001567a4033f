"""OpenAPI 3.1 for intake: schemas from the pydantic models, paths written by hand."""
from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from services.intake.domain.commands import ChecksBody, ConcernBody, DecisionBody, FeedbackBody, StrategyBody
from services.intake.domain.listing import DEFAULT_LIMIT, MAX_LIMIT, STATUSES
from services.intake.domain.referral import Referral
from services.intake.entrypoints.replies import Accepted, ConcernRaised, Problem, ReferralList
from services.intake.entrypoints.replies_referral import ACTION_REPLIES, ReferralStatus, Sealed

REF = "#/components/schemas/{model}"


BODIES: tuple[type[BaseModel], ...] = (Referral, DecisionBody, ChecksBody, FeedbackBody, StrategyBody, ConcernBody)
REPLIES: tuple[type[BaseModel], ...] = (Accepted, ConcernRaised, Problem, ReferralStatus, Sealed, ReferralList,
                                        *ACTION_REPLIES.values())


def _schemas() -> dict[str, Any]:
    _, top = models_json_schema([(m, "validation") for m in (*BODIES, *REPLIES)], ref_template=REF)
    return top["$defs"]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": REF.format(model=name)}


def _problems(*codes: int) -> dict[str, Any]:
    out = {}
    for code in codes:
        out[str(code)] = {"description": "Problem", "content": {"application/problem+json": {"schema": _ref("Problem")}}}
        if code == 429:
            out[str(code)]["headers"] = {"Retry-After": {"schema": {"type": "integer"}}}
    return out


def _json(description: str, schema: dict | None = None) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema or {"type": "object"}}}}


REF_PARAM = {"name": "reference", "in": "path", "required": True,
             "schema": {"type": "string", "pattern": r"^PRV-\d{4}-\d{6,11}$"}}
COMMON = (400, 401, 403, 404, 409, 413, 415, 422, 429)


def _action(action: str, summary: str, body: str | None, *, body_required: bool = True) -> dict[str, Any]:
    reply = _json("The action's result (a repeat returns the same)", _ref(ACTION_REPLIES[action].__name__))
    op: dict[str, Any] = {"summary": summary, "parameters": [REF_PARAM], "security": [{"httpsig": []}],
                          "responses": {"200": reply, **_problems(*COMMON)}}
    if body:
        op["requestBody"] = {"required": body_required, "content": {"application/json": {"schema": _ref(body)}}}
    return {"post": op}


LIST = {
    "summary": "My organisation's referrals (social_care: its LA's; prevent: its force's), metadata only, newest "
               "first, one page at a time: pass `next_cursor` back as `cursor` with the same filters; referrals "
               "received after the first page are not in later pages, none is skipped or repeated. Audited.",
    "security": [{"httpsig": []}],
    "parameters": [
        {"name": "status", "in": "query", "schema": {"type": "string", "enum": list(STATUSES)}},
        {"name": "overdue", "in": "query", "description": "true: only referrals with a running clock past due",
         "schema": {"type": "string", "enum": ["true", "false"]}},
        {"name": "updated_since", "in": "query", "description": "ISO 8601 with an offset (encode + as %2B): "
         "referrals whose metadata changed at or after it", "schema": {"type": "string", "format": "date-time"}},
        {"name": "cursor", "in": "query", "schema": {"type": "string", "maxLength": 400}},
        {"name": "limit", "in": "query",
         "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT}}],
    "responses": {"200": _json("One page", _ref("ReferralList")), **_problems(401, 403, 422, 429)}}


def spec() -> dict[str, Any]:
    health = {"get": {"summary": "Health", "responses": {"200": _json("OK")}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Safeguard Relay intake", "version": "1"},
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {"httpsig": {
                "type": "apiKey", "in": "header", "name": "Signature",
                "description": "RFC 9421 HTTP Message Signatures, Ed25519, label sig1; covers @method, @authority "
                               "(the Host the client addressed), @path, @query (if any) and content-digest "
                               "(RFC 9530) with created, keyid, alg, nonce."}},
        },
        "paths": {
            "/v1/referrals": {"post": {
                "summary": "Submit a referral (role referrer)", "security": [{"httpsig": []}],
                "parameters": [{"name": "Idempotency-Key", "in": "header", "schema": {"type": "string"}}],
                "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("Referral")}}},
                "responses": {"202": _json("Accepted", _ref("Accepted")), **_problems(*COMMON)}},
                "get": LIST},
            "/v1/referrals/{reference}": {"get": {
                "summary": "Status and timeline (no content)", "parameters": [REF_PARAM],
                "security": [{"httpsig": []}], "responses": {"200": _json("Referral metadata", _ref("ReferralStatus")),
                                                              **_problems(401, 403, 404, 429)}}},
            "/v1/referrals/{reference}/sealed": {"get": {
                "summary": "Sealed content and contacts (recipient teams only; audited)",
                "parameters": [REF_PARAM], "security": [{"httpsig": []}],
                "responses": {"200": _json("Envelopes", _ref("Sealed")), **_problems(401, 403, 404, 410, 429)}}},
            "/v1/referrals/{reference}/acknowledgement": _action(
                "acknowledgement", "Acknowledge (social_care)", None),
            "/v1/referrals/{reference}/decision": _action(
                "decision", "Decide the pathway (social_care)", "DecisionBody"),
            "/v1/referrals/{reference}/checks": _action(
                "checks", "Record the CTP checks outcome (prevent)", "ChecksBody"),
            "/v1/referrals/{reference}/feedback": _action("feedback",
                "Release feedback (prevent); body optional: `family_contact` lift (default) or keep",
                "FeedbackBody", body_required=False),
            "/v1/referrals/{reference}/strategy-discussion": _action("strategy-discussion", 
                "Record the strategy discussion (social_care); `notes` is sealed to the teams; with `ctp_prevent` "
                "among the agencies and the parents informed it lifts the family-contact hold", "StrategyBody"),
            "/v1/referrals/{reference}/close": _action("close", "Close (social_care or prevent)", None),
            "/v1/referrals/{reference}/concerns": {"post": {
                "summary": "Raise an out-of-hours concern for the force's control room (social_care of the "
                           "referral's LA): each call raises a new `out_of_hours_concern` alert; the same "
                           "Idempotency-Key and body give the first reply again, another body a 409; 409 once "
                           "the LA track is closed",
                "parameters": [REF_PARAM, {"name": "Idempotency-Key", "in": "header", "schema": {"type": "string"}}],
                "security": [{"httpsig": []}],
                "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("ConcernBody")}}},
                "responses": {"201": _json("The concern raised", _ref("ConcernRaised")), **_problems(*COMMON)}}},
            "/v1/stats": {"get": {
                "summary": "Performance data (no personal data)", "security": [{"httpsig": []}],
                "parameters": [{"name": n, "in": "query", "schema": {"type": "string", "format": "date"}}
                               for n in ("from", "to")],
                "responses": {"200": _json("Counts"), **_problems(401, 403, 422, 429)}}},
            "/v1/report": {"get": {
                "summary": "Performance data report, small numbers suppressed (roles as /v1/stats)",
                "security": [{"httpsig": []}],
                "parameters": [{"name": n, "in": "query", "schema": {"type": "string", "format": "date"}}
                               for n in ("from", "to")],
                "responses": {"200": _json("The report"), **_problems(401, 403, 422, 429)}}},
            "/openapi.json": {"get": {"summary": "This document", "responses": {"200": _json("OpenAPI")}}},
            "/docs/api": {"get": {"summary": "This document in Swagger UI (served locally, reading only)",
                                  "responses": {"200": _html("The viewer"),
                                                "503": {"description": "The viewer's assets are not installed",
                                                        "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
            "/healthz": health, "/readyz": health,
            **pages(),
        },
    }


def _html(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"text/html": {"schema": {"type": "string"}}}}


SEE_OTHER = {"303": {"description": "Redirect (to sign in first, or back to the page)"}}
PAGE_ACTIONS = ("acknowledgement", "decision", "strategy-discussion", "concerns", "checks", "feedback", "close")


def _page(summary: str, *statuses: int, params: list | None = None, problems: tuple[int, ...] = ()) -> dict:
    """A page for a signed-in person (OpenID Connect session cookie, not a signed request)."""
    responses = {**SEE_OTHER, **{str(s): _html("Page") for s in statuses}, **_problems(*problems)}
    return {"summary": summary, "parameters": params or [], "responses": responses}


def pages() -> dict[str, Any]:
    """The HTML pages (DESIGN §3.7): sign-in (shared/web), the case list, the referral page and
    its forms, the performance report; and the front-end assets they load."""
    ref = [{**REF_PARAM, "schema": {"type": "string"}}]
    file = [{"name": n, "in": "path", "required": True, "schema": {"type": "string"}} for n in ("path",)]
    actions = {f"/referrals/{{reference}}/{a}": {"post": _page(
        f"The referral page's form: {a} (CSRF token, same origin; 303 back to the page, or the page with an "
        "error summary)", 401, 403, 404, 409, 422, params=ref, problems=(413,))} for a in PAGE_ACTIONS}
    return {
        "/": {"get": {"summary": "Home: redirects to /referrals", "responses": SEE_OTHER}},
        "/sign-in": {"get": _page("Sign in: the identity providers", 200),
                     "post": _page("Start signing in at the chosen provider", 400, 401, 403, 429, problems=(413,))},
        "/auth/callback": {"get": _page("The identity provider's redirect back (OpenID Connect)", 401, 403, 429)},
        "/sign-out": {"post": _page("Sign out", 200, 403, problems=(413,))},
        "/referrals": {"get": _page("My organisation's referrals (social_care, prevent)", 200, 403)},
        "/referrals/{reference}": {"get": _page("A referral: status, clocks, timeline and my role's actions",
                                                200, 403, 404, params=ref)},
        "/referrals/{reference}/sealed.json": {"get": {
            "summary": "The sealed envelopes for the signed-in person's browser to open (audited)",
            "parameters": ref, "responses": {**SEE_OTHER, "200": _json("Envelopes"), "403": _html("Role"),
                                             **_problems(404, 410)}}},
        **actions,
        "/referrals/{reference}/welfare-check": {
            "get": _page("The welfare check's warning and reason form (control_room of the referral's force)",
                         200, 403, 404, params=ref),
            "post": _page("Open the welfare check (reason; CSRF token, same origin): audited, 15 minutes for this "
                          "session, 303 to the opened page", 401, 403, 404, 422, params=ref, problems=(413,))},
        "/referrals/{reference}/welfare-check/open": {"get": _page(
            "The welfare check, opened: the child's identity and address, decrypted in the browser with the "
            "force key (303 back to the warning without a live grant)", 200, 403, 404, params=ref)},
        "/referrals/{reference}/welfare-check/sealed.json": {"get": {
            "summary": "The sealed content for the welfare check page's script (a live grant only; audited)",
            "parameters": ref, "responses": {**SEE_OTHER, "200": _json("Envelope"),
                                             **_problems(403, 404, 410)}}},
        "/report": {"get": _page("The performance report page (any staff role; ops: all organisations)",
                                 200, 403, 422)},
        "/report/report.csv": {"get": {
            "summary": "The report as CSV (signed-in person)",
            "responses": {**SEE_OTHER, "200": {"description": "CSV", "content": {"text/csv": {}}},
                          "403": _html("Role"), **_problems(422)}}},
        "/assets/{path}": {"get": {"summary": "Front-end assets (GOV.UK Frontend, MOJ Frontend, libsodium)",
                                   "parameters": file, "responses": {"200": {"description": "A file"},
                                                                     **_problems(404)}}},
        "/static/{name}": {"get": {"summary": "intake's own page scripts and styles",
                                   "parameters": [{**file[0], "name": "name"}],
                                   "responses": {"200": {"description": "A file"}, **_problems(404)}}},
    }


def add_route(app: web.Application) -> None:
    document = spec()

    async def serve(_request: web.Request) -> web.Response:
        return web.json_response(document)

    app.router.add_get("/openapi.json", serve)
