"""Re-seal the per-referral data keys in intake's database from a team's retired
sealing keys to its active ones (`safeguard keys rewrap`); then the control room's outcome
notes in escalation's, and count what every service's outbox still holds under a retired
key (safeguard/rewrap_stores.py). The report names each store and what remains in it.

Run by the holder of the old team private key (intake has none). For each envelope
naming a retired key id, the data key is opened with the old private key and sealed
to the active public keys, and the retired entries are removed. A version 2 envelope's
ciphertext is copied untouched; a version 1 envelope (sealed before the associated data
bound the reference and section) is upgraded to version 2: its content is decrypted in
this process's memory only and encrypted again under the same data key, bound to the
row's reference and the column's section. An envelope that fails authentication, or is
sealed for another referral or section, is left as it is and reported (`refused`). One transaction and one audit entry
(`referral.rewrapped`, key ids only) per referral, with the row locked, so it can
run while intake is serving.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from nacl.public import PrivateKey

from safeguard.keys import find_org, key_file
from safeguard.rewrap_stores import StoreCount, outbox_residue, rewrap_alert_notes, rewrap_envelope
from services.intake.adapters import repository as repo
from services.intake.adapters import tables
from shared import audit
from shared.config import LocalAuthority, Settings
from shared.crypto import CryptoError, b64e, envelope_key_ids, load_private_sealing_key, public_key_from_b64
from shared.storage import create_engine

COLUMNS = tables.SEALED_COLUMNS
ACTOR = "safeguard-keys-rewrap"


class RewrapError(Exception):
    """Nothing was changed; the message says why (never a key or content)."""


@dataclass(frozen=True)
class Rewrapped:
    referrals: int
    envelopes: int
    to: list[str]
    remaining: int  # envelopes that still name a retired key (no private key for it, or refused)
    refused: list[str] = field(default_factory=list)  # "<reference> <section>": failed authentication or
    #                                                  sealed for another referral or section; left as they were
    stores: tuple[StoreCount, ...] = ()  # every store, intake's referrals first

    @property
    def clean(self) -> bool:
        """Nothing left anywhere under a retired key."""
        return all(s.remaining == 0 for s in self.stores)


def private_keys(settings: Settings, code: str, retired: dict[str, str], files: list[Path]) -> dict[str, PrivateKey]:
    """Retired key id -> private key, from `files` or the default key files; matched by public key."""
    paths = files or [key_file(settings.config_path, code, kid) for kid in retired]
    found: dict[str, PrivateKey] = {}
    for path in paths:
        if not path.exists():
            if files:
                raise RewrapError(f"no such key file {path}")
            continue
        key = load_private_sealing_key(path)
        kid = next((k for k, pub in retired.items() if pub == b64e(bytes(key.public_key))), None)
        if kid is None and files:
            raise RewrapError(f"{path} is not a retired sealing key of {code}")
        if kid is not None:
            found[kid] = key
    return found


def _remaining(rows: list[Any], retired: set[str]) -> int:
    return sum(1 for r in rows for c in COLUMNS if getattr(r, c) and set(envelope_key_ids(getattr(r, c))) & retired)


async def rewrap_org(settings: Settings, code: str, files: list[Path]) -> Rewrapped:
    org = find_org(settings.file, code)
    if org is None:
        raise RewrapError(f"no local authority or force {code}")
    active = {k.key_id: public_key_from_b64(k.public_key) for k in org.active_keys}
    retired = {k.key_id: k.public_key for k in org.sealing_keys if k.status == "retired"}
    if not active or not retired:
        raise RewrapError(f"{code} needs an active and a retired key (run `safeguard keys rotate` first)")
    privs = private_keys(settings, code, retired, files)
    column = tables.referrals.c.la_code if isinstance(org, LocalAuthority) else tables.referrals.c.force
    engine = create_engine(settings.database_url_for("intake"))
    referrals = envelopes = 0
    refused: list[str] = []
    try:
        async with engine.connect() as conn:
            refs = (await conn.execute(sa.select(tables.referrals.c.reference).where(
                column == code, tables.referrals.c.shredded_at.is_(None)).order_by(tables.referrals.c.received_at))
            ).scalars().all()
        for ref in refs:
            async with engine.begin() as conn:
                await repo.begin_write(conn)
                row = await repo.get_referral(conn, ref, for_update=True)
                values, bad = {}, []
                for c in COLUMNS:
                    try:
                        new = rewrap_envelope(getattr(row, c), privs, set(retired), active, row=row, column=c)
                    except CryptoError:  # tampered, or moved here from another column or referral: left as is
                        bad.append(c)
                        continue
                    if new is not None:
                        values[c] = new
                refused += [f"{ref} {tables.section_of(c)}" for c in bad]
                if not values:
                    continue
                await repo.update_referral(conn, row.id, values, at=None)  # envelopes only: not a listed change
                await audit.record(conn, tables.audit, actor=ACTOR, action="referral.rewrapped", reference=ref,
                                   detail={"from": sorted(privs), "to": sorted(active), "envelopes": len(values),
                                           "upgraded": sum(getattr(row, c).get("v") == 1 for c in values)},
                                   at=datetime.now(UTC))
                referrals, envelopes = referrals + 1, envelopes + len(values)
        async with engine.connect() as conn:
            rows = (await conn.execute(sa.select(tables.referrals).where(column == code))).all()
    finally:
        await engine.dispose()
    remaining = _remaining(rows, set(retired))
    stores = [StoreCount("intake referrals", "envelopes", envelopes, remaining)]
    if (notes := await rewrap_alert_notes(settings, code, isinstance(org, LocalAuthority), privs, set(retired),
                                          active)) is not None:
        stores.append(notes)
    stores += await outbox_residue(settings, set(retired))
    return Rewrapped(referrals, envelopes, sorted(active), remaining, refused, tuple(stores))
