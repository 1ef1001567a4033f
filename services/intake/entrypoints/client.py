"""The reference client for MASH and staff systems (`safeguard submit`, `safeguard open`).

Signs every request with RFC 9421 (`shared.httpsig.sign_request`, covering the host and
port it addresses as `@authority`) and, for `open`,
decrypts the sealed content locally with the team's X25519 key: the key never
leaves the machine it is on. `open` uses nothing of a reply for another referral than the
one asked for, nor an envelope sealed for another referral or section.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
from nacl.public import PrivateKey
from yarl import URL

from shared.crypto import (CryptoError, check_label, envelope_key_ids, load_private_sealing_key, load_signing_key,
                           open_sealed)
from shared.httpsig import authority_of, sign_request

DEFAULT_URL = "http://127.0.0.1:8080"
TIMEOUT_S = 30


async def signed_request(method: str, base_url: str, path: str, *, client_id: str, key_file: str | Path,
                         body: bytes | None = None, query: str = "",
                         headers: dict[str, str] | None = None,
                         covered: dict[str, str] | None = None) -> tuple[int, Any]:
    """Send one signed request; return (status, parsed JSON reply). `covered`: header fields
    sent and covered by the signature (e.g. On-Behalf-Of)."""
    key = load_signing_key(key_file)
    url = URL(base_url.rstrip("/") + path + (f"?{query}" if query else ""), encoded=True)
    all_headers = dict(headers or {})
    all_headers |= sign_request(method=method, path=path, query=query, body=body, key_id=client_id, key=key,
                                authority=authority_of(url), covered=covered)
    if body is not None:
        all_headers.setdefault("Content-Type", "application/json")
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT_S)) as session:
        async with session.request(method, url, data=body, headers=all_headers) as resp:
            text = await resp.text()
            try:
                return resp.status, json.loads(text)
            except ValueError:
                return resp.status, {"status": resp.status, "title": "Non-JSON reply"}


async def submit(file: str | Path, *, client_id: str, key_file: str | Path, url: str = DEFAULT_URL,
                 idempotency_key: str | None = None) -> tuple[int, Any]:
    body = Path(file).read_bytes()
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
    return await signed_request("POST", url, "/v1/referrals", client_id=client_id, key_file=key_file,
                                body=body, headers=headers)


class WrongReply(ValueError):
    """Intake's reply is not about what was asked (another referral's): nothing of it is used."""


def check_reference(reply: Any, reference: str) -> None:
    """WrongReply unless a 2xx reply names the referral that was asked for."""
    got = reply.get("reference") if isinstance(reply, dict) else None
    if got != reference:
        raise WrongReply(f"intake's reply is for referral {got!r}, not {reference!r}; nothing of it was used")


def open_envelope(envelope: dict[str, Any], referral_id: str, team_key: PrivateKey, *,
                  reference: str | None = None, section: str | None = None) -> bytes:
    """Try each key id the envelope names; the team key opens only its own. Given `reference`
    and `section`, an envelope sealed for another referral or as another section is refused."""
    check_label(envelope, reference=reference, section=section)
    for key_id in envelope_key_ids(envelope):
        try:
            return open_sealed(envelope, referral_id=referral_id, key_id=key_id, private_key=team_key,
                               reference=reference, section=section)
        except CryptoError:
            continue
    raise CryptoError("this key cannot open the envelope")


async def open_referral(reference: str, *, team_key_file: str | Path, client_id: str,
                        client_key_file: str | Path, url: str = DEFAULT_URL) -> tuple[int, Any]:
    """(200, content) or (status, problem document). The reply must be the referral asked for
    and its content envelope must be that referral's `content` section (else WrongReply or
    CryptoError: nothing is shown)."""
    status, reply = await signed_request("GET", url, f"/v1/referrals/{quote(reference, safe='')}/sealed",
                                         client_id=client_id, key_file=client_key_file)
    if status != 200:
        return status, reply
    check_reference(reply, reference)
    team_key = load_private_sealing_key(team_key_file)
    content = open_envelope(reply["content_sealed"], reply["referral_id"], team_key, reference=reference,
                            section="content")
    return status, json.loads(content)
