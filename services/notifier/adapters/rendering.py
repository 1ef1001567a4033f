"""Render a notification: subject, plain text, HTML (Jinja2, autoescaped) and a Teams card.

Inputs are the reference, the times (shown in Europe/London), the template and the
audience kind — never a name, narrative or contact. Each message is a small Jinja2
module `<template>.<kind>.j2` that sets `subject`, `headline`, `action`, `link_label`;
the layouts wrap it. A team message links to the referral's page in the intake workspace,
`{public_base_url}/referrals/{reference}`; a referrer's or family's never links (they
cannot sign in). The Adaptive Card (schema 1.4, `Action.OpenUrl` only) is built in Python
and serialised with `json.dumps`, so it is always valid JSON.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

import jinja2

from shared.clock import LONDON

CARD_LIMIT_BYTES = 20 * 1024
TIME_LABELS = {
    "received_at": "Received", "acknowledge_by": "Acknowledge by", "decide_by": "Decide by",
    "strategy_discussion_by": "Strategy discussion by",
    "checks_due_by": "CTP checks due by",
    "raised_at": "Raised", "due_at": "Due", "released_at": "Released",
}
_TIME_KEY = re.compile(r"^[a-z][a-z_]{0,39}$")
TEMPLATES: dict[str, tuple[str, ...]] = {
    "receipt": ("team",), "referral_acknowledgement": ("referrer",), "ack_reminder": ("team",),
    "ack_breach": ("team",), "ack_breach_escalated": ("team",), "decide_reminder": ("team",),
    "decide_breach": ("team",), "decide_breach_escalated": ("team",), "checks_reminder": ("team",),
    "checks_breach": ("team",), "hold_review": ("team",), "strategy_reminder": ("team",),
    "strategy_breach": ("team",),
    "immediate_safety": ("team",), "out_of_hours": ("team",), "feedback": ("team", "referrer", "guardians"),
    "alert_escalated": ("team",),  # escalation: a control-room alert nobody acknowledged, raised a level
}


# What each message is, in words that carry no content: the minimal message (while
# `no_further_sharing` holds) names its kind so that a duty manager can tell an urgent
# immediate-safety message from a routine reminder (DESIGN §4: reference, kind and times).
KIND_LABELS: dict[str, str] = {
    "receipt": "New referral", "referral_acknowledgement": "Referral received",
    "ack_reminder": "Reminder: acknowledge", "ack_breach": "Overdue: not acknowledged",
    "ack_breach_escalated": "Escalated: still not acknowledged", "decide_reminder": "Reminder: decide the next step",
    "decide_breach": "Overdue: no decision", "decide_breach_escalated": "Escalated: still no decision",
    "checks_reminder": "Reminder: CTP checks", "checks_breach": "Overdue: CTP checks",
    "immediate_safety": "Immediate safety concern", "out_of_hours": "Out-of-hours concern",
    "feedback": "Feedback", "alert_escalated": "Escalated control-room alert",
    "hold_review": "Review the holding instructions", "strategy_reminder": "Reminder: strategy discussion",
    "strategy_breach": "Overdue: strategy discussion",
}


class RenderError(Exception):
    """`reason` is a fixed code: unknown_template, template_data_missing, card_too_large."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str
    card: dict[str, Any]   # the whole Teams Workflows payload
    card_json: str


def human_time(value: datetime) -> str:
    """`Tuesday 29 December 2026 at 3:00pm` in Europe/London."""
    local = value.astimezone(LONDON)
    hour = local.hour % 12 or 12
    return f"{local:%A} {local.day} {local:%B %Y} at {hour}:{local:%M}{'am' if local.hour < 12 else 'pm'}"


class Renderer:
    def __init__(self, *, public_base_url: str) -> None:
        self.public_base_url = public_base_url.rstrip("/")
        self.env = jinja2.Environment(
            loader=jinja2.PackageLoader("services.notifier", "templates"),
            autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default_for_string=True),
            undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
        )

    def referral_url(self, reference: str) -> str:
        """The intake workspace page for one referral (DESIGN §3.7): `{public_base_url}/referrals/{reference}`.
        Only team messages link there; referrers and families cannot sign in."""
        return f"{self.public_base_url}/referrals/{quote(reference, safe='')}"

    @staticmethod
    def supports(template: str, kind: str) -> bool:
        return kind in TEMPLATES.get(template, ())

    def render(self, *, template: str, kind: str, reference: str, times: dict[str, datetime],
               minimal: bool = False, urgent: bool = False) -> Rendered:
        if not self.supports(template, kind):
            raise RenderError("unknown_template")
        shown = {k: human_time(v) for k, v in times.items() if _TIME_KEY.match(k)}
        name = "minimal.any.j2" if minimal else f"{template}.{kind}.j2"
        try:
            module = self.env.get_template(name).make_module({
                "reference": reference, "times": shown, "urgent": urgent, "team": kind == "team",
                "label": KIND_LABELS.get(template, "Update"), "immediate": template == "immediate_safety"})
            parts = {p: " ".join(str(getattr(module, p)).split()) for p in ("subject", "headline", "action", "link_label")}
        except jinja2.UndefinedError:
            raise RenderError("template_data_missing") from None
        link = self.referral_url(reference) if parts["link_label"] and kind == "team" else ""
        facts = [(TIME_LABELS.get(k, k.replace("_", " ").capitalize()), v) for k, v in shown.items()]
        context = {**parts, "reference": reference, "facts": facts, "link": link, "urgent": urgent}
        text = self.env.get_template("layout.txt.j2").render(context)
        html = self.env.get_template("layout.html.j2").render(context)
        card = teams_payload(adaptive_card(parts, reference, facts, link, urgent))
        card_json = json.dumps(card, separators=(",", ":"), ensure_ascii=False)
        if len(card_json.encode()) >= CARD_LIMIT_BYTES:
            raise RenderError("card_too_large")
        return Rendered(parts["subject"], text, html, card, card_json)


def adaptive_card(parts: dict[str, str], reference: str, facts: list[tuple[str, str]], link: str,
                  urgent: bool) -> dict[str, Any]:
    body: list[dict[str, Any]] = [
        {"type": "TextBlock", "text": parts["subject"], "weight": "Bolder", "size": "Medium", "wrap": True,
         **({"color": "Attention"} if urgent else {})},
        {"type": "TextBlock", "text": parts["headline"], "wrap": True},
        {"type": "FactSet", "facts": [{"title": "Reference", "value": reference},
                                      *({"title": t, "value": v} for t, v in facts)]},
        {"type": "TextBlock", "text": parts["action"], "wrap": True},
    ]
    card: dict[str, Any] = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard", "version": "1.4", "body": body,
    }
    if link:
        card["actions"] = [{"type": "Action.OpenUrl", "title": parts["link_label"], "url": link}]
    return card


def teams_payload(card: dict[str, Any]) -> dict[str, Any]:
    """The Teams Workflows webhook body: one Adaptive Card attachment."""
    return {"type": "message", "attachments": [
        {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card},
    ]}
