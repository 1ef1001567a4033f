"""intake's pages for signed-in people (DESIGN §3.7): `/referrals`, my organisation's case list
with both tracks and every clock (overdue and nearest deadline first); `/referrals/{reference}`,
the referral's status, clocks, holding instructions, strategy discussion, concerns, timeline
and the forms of the actions my role may take (entrypoints/actions.py); and
`/referrals/{reference}/sealed.json`, the sealed envelopes that page's script opens in the
browser. The server renders metadata only: nothing about the child is ever in these pages."""
from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from services.intake.adapters import queries, worklist
from services.intake.adapters.effects import audit_rejection
from services.intake.context import Context
from services.intake.domain import clocks, labels, tracks
from services.intake.domain.errors import Forbidden, IntakeError, NotFound
from services.intake.domain.labels import PAGE_ROLES, available_actions
from services.intake.domain.lifecycle import is_reference
from services.intake.entrypoints.forms import Refusal
from services.intake.entrypoints.http import CONTEXT
from shared.http import problem
from shared.web.identity import Person
from shared.web.pages import person_of, render, signed_in

STATIC = Path(__file__).parent / "static"
STATIC_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}


def organisation_name(ctx: Context, code: str | None) -> str:
    org = (ctx.settings.local_authority(code) or ctx.settings.force(code)) if code else None
    return org.name if org else (code or "")


def common(ctx: Context) -> dict[str, Any]:
    """What every intake page template may use: words for codes, times, organisation names."""
    return {"L": labels, "word": labels.word, "when": clocks.when, "now": ctx.clock(), "months": clocks.MONTHS,
            "parse_time": datetime.fromisoformat, "next_due": clocks.next_due, "track_statuses": tracks.statuses,
            "choices": lambda table: [{"value": k, "text": v} for k, v in table.items()],
            "organisation_name": lambda code: organisation_name(ctx, code)}


def me(request: web.Request) -> tuple[Context, Person]:
    person = person_of(request)
    assert person is not None  # @signed_in
    return request.app[CONTEXT], person


def not_found(request: web.Request) -> web.Response:
    """The one answer for an absent referral and another organisation's (no enumeration)."""
    return render(request, "message.html", 404, title="Referral not found",
                  body="There is no referral with this reference for your organisation. Check the link or "
                       "the reference, or find the referral in your list of referrals.")


async def refused(request: web.Request, ctx: Context, person: Person, action: str, err: IntakeError) -> None:
    """Audit a refusal (the reference only when it is one: the path is the client's text)."""
    given = request.match_info.get("reference", "")
    await audit_rejection(ctx, actor=person.id, action=action, reference=given if is_reference(given) else None,
                          err=err, via="page")


def reference_of(request: web.Request) -> str:
    ref = request.match_info["reference"]
    if not is_reference(ref):
        raise NotFound("No such referral")
    return ref


async def home(_request: web.Request) -> web.Response:
    raise web.HTTPSeeOther("/referrals")


@signed_in(PAGE_ROLES)
async def case_list(request: web.Request) -> web.Response:
    ctx, person = me(request)
    closed = request.query.get("show") == "closed"
    rows = await worklist.case_list(ctx, person, closed=closed)
    now = ctx.clock()
    minutes = ctx.settings.file.escalation.strategy_discussion_minutes
    items = [(r, clocks.clocks_of(r, minutes)) for r in rows]
    items.sort(key=lambda item: clocks.urgency_key(item[1], item[0].received_at))
    return render(request, "referrals.html", title="Referrals", items=items, closed=closed,
                  overdue=sum(any(c.overdue(now) for c in cs) for _, cs in items), **common(ctx))


async def referral_response(request: web.Request, status: int = 200, *, done: str | None = None,
                            already: bool = False, refusal: Refusal | None = None) -> web.Response:
    """The referral page (also shown again, with an error summary, after a refused form)."""
    ctx, person = me(request)
    try:
        ref = reference_of(request)
        summary, meta = await worklist.referral_page(ctx, person, ref)
    except (Forbidden, NotFound) as err:
        await refused(request, ctx, person, "referral.read", err)
        return not_found(request)
    org = ctx.settings.local_authority(person.organisation or "") or ctx.settings.force(person.organisation or "")
    return render(
        request, "referral.html", status, title=f"Referral {ref}", r=summary, m=meta,
        clocks=clocks.clocks_of(meta, ctx.settings.file.escalation.strategy_discussion_minutes),
        actions=available_actions(person.role, meta), done=done, already=already,
        error_summary=refusal.errors if refusal else None, errors=refusal.by_id if refusal else {},
        form=refusal.values if refusal else {}, key_ids=[k.key_id for k in org.active_keys] if org else [],
        names={s["by"]: s.get("by_name", s["by"]) for s in summary["timeline"]}, **common(ctx))


@signed_in(PAGE_ROLES)
async def referral(request: web.Request) -> web.Response:
    done = request.query.get("done")
    return await referral_response(request, done=done if done in labels.DONE else None,
                                   already=request.query.get("already") == "1")


@signed_in(PAGE_ROLES)
async def sealed_json(request: web.Request) -> web.Response:
    """The sealed envelopes for the person's browser to open (audited `referral.sealed_read`)."""
    ctx, person = me(request)
    headers = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
    try:
        ref = reference_of(request)
        reply = await queries.get_sealed(ctx, person.id, ref, person=person)
    except IntakeError as err:
        await refused(request, ctx, person, "referral.sealed_read", err)
        return problem(410 if err.status == 410 else 404, headers=headers)  # absent or not theirs: the same
    return web.json_response(reply, headers=headers)


async def static(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    file = STATIC / name
    if "/" in name or file.suffix not in STATIC_TYPES or not file.is_file():
        raise web.HTTPNotFound()
    return web.FileResponse(file, headers={"Content-Type": STATIC_TYPES[file.suffix],
                                           "Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", home)
    app.router.add_get("/referrals", case_list)
    app.router.add_get("/referrals/{reference}", referral)
    app.router.add_get("/referrals/{reference}/sealed.json", sealed_json)
    app.router.add_get("/static/{name}", static)
