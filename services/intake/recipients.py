"""Who a submission is sealed to: its recipient teams (DESIGN §3.4, §5).

A referral's content is sealed to the local authority's social-care team and the force's
Prevent team — every active sealing key of the LA its `la_code` names and of the force its
`force` names (`team_keys`; `Context.team_keys` refuses a referral naming an unknown one).

A rejected `intake.submissions` message is parked with its body sealed to the same teams
(`parked_recipients`, given to the consumer and to `safeguard retention run` as `seal_to`;
shared/bus/parked.py): the LA the body names, and the force — the submitting client's own
when its signature verified (intake accepts a referral only for that force), else the one the
body names. It is sealed to those that are configured; to none — the body is dropped — when
the body is over `max_body_bytes`, is not a JSON object, or names nothing known.
"""
from __future__ import annotations

from typing import Any

from nacl.public import PublicKey

from services.intake.domain.errors import MalformedJson
from services.intake.domain.parsing import parse_json
from shared.config import Settings
from shared.crypto import public_key_from_b64


def team_keys(settings: Settings, la_code: Any, force: Any) -> tuple[dict[str, PublicKey], tuple[str, ...]]:
    """The active sealing keys of the recipient teams that `la_code` and `force` name, and the
    field names (`la_code`, `force`) of those that name no configured organisation."""
    la = settings.local_authority(la_code) if isinstance(la_code, str) else None
    fo = settings.force(force) if isinstance(force, str) else None
    keys = [*(la.active_keys if la else ()), *(fo.active_keys if fo else ())]
    unknown = tuple(name for name, org in (("la_code", la), ("force", fo)) if org is None)
    return {k.key_id: public_key_from_b64(k.public_key) for k in keys}, unknown


def parked_recipients(settings: Settings, body: bytes, client: str | None, verified: bool
                      ) -> dict[str, PublicKey]:
    """The recipient teams' keys a rejected submission's `body` is sealed to when parked
    (`client`: who sent it, `verified`: its signature checked); {} drops the body."""
    if len(body) > settings.file.system.max_body_bytes:
        return {}
    try:
        data = parse_json(body)
    except MalformedJson:
        return {}
    if not isinstance(data, dict):
        return {}
    force = data.get("force")
    sender = settings.client(client) if client and verified else None
    if sender is not None and sender.role == "referrer" and sender.organisation:
        force = sender.organisation
    return team_keys(settings, data.get("la_code"), force)[0]
