"""The referral page's actions: `POST /referrals/{reference}/<action>` (acknowledgement, decision,
strategy-discussion, concerns, checks, feedback, close) from a signed-in person, with the
session's CSRF token, from this site. Each builds the command the signed API builds
(`handlers.act` / `handlers.raise_concern`, the person as the principal) and answers 303 back to
the page with a success banner; a refusal shows the page again with a GOV.UK error summary
(422 for the form, 409 for a state that does not allow it). Every refusal is audited; a note
(rationale, notes) is sealed by the handler and reaches no log line."""
from __future__ import annotations

import uuid

from aiohttp import web

from services.intake import handlers
from services.intake.adapters import worklist
from services.intake.domain.commands import LifecycleCommand, RaiseConcern
from services.intake.domain.errors import Conflict, Forbidden, IntakeError, NotFound, SchemaInvalid
from services.intake.domain.labels import PAGE_ROLES
from services.intake.entrypoints import forms
from services.intake.entrypoints.http import SEALED_FIELDS
from services.intake.entrypoints.pages import me, not_found, reference_of, referral_response, refused
from shared.logging import bound_contextvars, sensitive_scope
from shared.web.pages import form_of, render, signed_in


async def _run(request: web.Request, posted: forms.Posted, ref: str, corr: str) -> None:
    ctx, person = me(request)
    body = posted.body
    if posted.action == "concerns":
        cmd = RaiseConcern(person.id, ref, posted.raw, None, corr, person=person)
        await handlers.raise_concern(cmd, body, ctx)  # type: ignore[arg-type]  # a ConcernBody
        return
    await handlers.act(LifecycleCommand(
        posted.action, person.id, ref, pathway=getattr(body, "pathway", None),  # type: ignore[arg-type]
        outcome=getattr(body, "outcome", None), sensitive_note=posted.note,
        family_contact=getattr(body, "family_contact", "lift"), correlation_id=corr,
        details=body.model_dump(exclude=SEALED_FIELDS) if body else {}, person=person), ctx)


def action_view(action: str):
    audit_action = "referral.concern" if action == "concerns" else f"referral.{action}"

    @signed_in(PAGE_ROLES)
    async def view(request: web.Request) -> web.StreamResponse:
        ctx, person = me(request)
        form = await form_of(request)  # checked by @signed_in
        agencies = [str(a) for a in form.getall("agencies", [])]
        notes = [str(form[n]) for n in forms.NOTES if form.get(n)]
        corr = str(uuid.uuid4())
        with sensitive_scope(notes), bound_contextvars(correlation_id=corr):  # a note reaches no log line
            try:
                ref = reference_of(request)
                already = await worklist.check_action(ctx, person, ref, action)  # role, then organisation
                posted = forms.parse(action, form, agencies)  # type: ignore[arg-type]
                await _run(request, posted, ref, corr)
            except IntakeError as err:
                await refused(request, ctx, person, audit_action, err)
                return await _refusal(request, action, err, form, agencies)
        query = f"done={action}" + ("&already=1" if already else "")
        raise web.HTTPSeeOther(f"/referrals/{ref}?{query}")
    return view


async def _refusal(request: web.Request, action: str, err: IntakeError, form, agencies: list[str]) -> web.Response:
    if isinstance(err, NotFound) or (isinstance(err, Forbidden) and err.reason != "wrong_role"):
        return not_found(request)  # absent, or another organisation's: the same page
    if isinstance(err, Forbidden):
        return render(request, "message.html", 403, title="You cannot do this",
                      body="Your role does not allow this action on a referral.")
    if isinstance(err, SchemaInvalid):
        return await referral_response(request, 422, refusal=forms.refusal(err, action, form, agencies))
    if isinstance(err, Conflict):
        return await referral_response(request, 409, refusal=forms.conflict(err.detail))
    return await referral_response(request, err.status, refusal=forms.conflict(err.detail or err.title))


def add_routes(app: web.Application) -> None:
    for action in forms.BODIES:
        app.router.add_post(f"/referrals/{{reference}}/{action}", action_view(action))
