"""Who is calling: RFC 9421 request signatures (HTTP), the §3.4 signature headers
(AMQP), replay protection, and the limit per client address before authentication.

Nonces are checked in memory first and then claimed in the `intake_nonces` table,
so a replay is refused across replicas too. `RateLimiter` is a token bucket kept in memory,
used for the limit per client address: each replica enforces its own (the per-client limit,
after authentication, is shared by all replicas: services/intake/ratelimit.py).
"""
from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from nacl.signing import VerifyKey
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.intake.adapters import repository
from services.intake.domain.errors import RateLimited, Unauthenticated
from services.intake.ratelimit import SharedRateLimiter
from shared.config import Client, Settings
from shared.crypto import CryptoError, b64d, verify, verify_key_from_b64
from shared.httpsig import NonceCache, NonceCapture, SignatureRejected, verify_request
from shared.httpsig.reasons import in_words
from shared.storage.group import GroupCommit

MAX_SKEW_S = 300
SUBMISSION_MAX_AGE_S = 86_400
_CLIENT_ID = re.compile(r"[A-Za-z0-9._-]{1,100}")
_NONCE = re.compile(r"[\x21-\x7e]{8,200}")


def safe_actor(key_id: Any) -> str | None:
    """A key id fit for the audit log (attacker-supplied text is not copied)."""
    text = key_id.decode("utf-8", "replace") if isinstance(key_id, bytes) else key_id
    return text if isinstance(text, str) and _CLIENT_ID.fullmatch(text) else None


class Authenticator:
    def __init__(self, settings: Settings, engine: AsyncEngine) -> None:
        self.settings, self.engine = settings, engine
        self.keys: dict[str, VerifyKey] = {c.id: verify_key_from_b64(c.verify_key) for c in settings.file.clients}
        self.cache = NonceCache(window=2 * MAX_SKEW_S)
        # Concurrent requests' nonce claims (and rate-limit counts) share their transactions.
        self.claims = GroupCommit(engine, "intake.nonces", workers=2)

    async def claim(self, client_id: str, nonce: str, now: float, window: float = 2 * MAX_SKEW_S) -> Client:
        """Refuse a nonce this client already used within `window` (on any replica)."""
        client, _ = await self._claim(client_id, nonce, now, window, None)
        return client

    async def _claim(self, client_id: str, nonce: str, now: float, window: float,
                     limiter: SharedRateLimiter | None) -> tuple[Client, RateLimited | None]:
        """The nonce claim and (with `limiter`) the request counted against the client's limit,
        in one transaction: one commit for both, shared with the other requests of the moment
        (`shared.storage.group`). A refusal by the limit is returned, to raise
        once the claim has committed (a refused request's nonce stays used)."""
        if not _NONCE.fullmatch(nonce):
            raise Unauthenticated(in_words("missing_nonce"), reason="missing_nonce", actor=client_id)

        async def take(conn: AsyncConnection) -> tuple[bool, RateLimited | None]:
            if not await repository.claim_nonce_in(conn, client_id, nonce, datetime.fromtimestamp(now, UTC),
                                                   timedelta(seconds=window)):
                return False, None  # raised below: an exception here would roll back the whole group
            return True, (await limiter.take_in(conn, client_id) if limiter is not None else None)

        claimed, refusal = await self.claims.run(take)
        if not claimed:
            raise Unauthenticated(in_words("replayed_nonce"), reason="replayed_nonce", actor=client_id)
        client = self.settings.client(client_id)
        assert client is not None
        return client, refusal

    async def verify_http(self, *, method: str, path: str, query: str, headers: Mapping[str, str],
                          body: bytes | None, limiter: SharedRateLimiter | None = None
                          ) -> tuple[Client, RateLimited | None]:
        """The signed client, and (with `limiter`, the per-client limit shared by the replicas)
        the refusal to raise when it is over its limit."""
        now, capture = time.time(), NonceCapture(self.cache)
        try:
            key_id = verify_request(method=method, path=path, query=query, headers=headers, body=body,
                                    resolve_key=self.keys.get, nonces=capture, now=now, max_skew=MAX_SKEW_S)
        except SignatureRejected as exc:  # the detail says which check failed; a sandbox adds the base
            sandbox = self.settings.file.system.sandbox and exc.signature_base is not None
            raise Unauthenticated(in_words(exc.reason), reason=exc.reason, actor=safe_actor(exc.key_id),
                                  **({"signature_base": exc.signature_base} if sandbox else {})) from None
        return await self._claim(key_id, capture.nonce or "", now, 2 * MAX_SKEW_S, limiter)

    def verify_submission(self, headers: Mapping[str, Any], body: bytes) -> tuple[str, str]:
        """§3.4: Ed25519 over body + b"\\n" + created + b"\\n" + nonce, keyed by `keyid`.

        Returns (client id, nonce); the caller claims the nonce (`claim`, with
        `SUBMISSION_MAX_AGE_S`) once it knows the message is not a redelivery.
        A queued message may wait for intake, so it may be up to a day old.
        """
        text = {k: (v.decode("utf-8", "replace") if isinstance(v, bytes) else v)
                for k, v in headers.items() if k in ("keyid", "created", "nonce", "signature")}
        key_id, created, nonce, signature = (text.get(k) for k in ("keyid", "created", "nonce", "signature"))
        actor = safe_actor(key_id)
        if not all(isinstance(v, (str, int)) and str(v) for v in (key_id, created, nonce, signature)):
            raise Unauthenticated("Missing signature headers", reason="missing_signature", actor=actor)
        key = self.keys.get(str(key_id))
        if key is None:
            raise Unauthenticated("Unknown key id", reason="unknown_keyid", actor=actor)
        created_s, nonce_s = str(created), str(nonce)
        try:
            verify(key, body + b"\n" + created_s.encode() + b"\n" + nonce_s.encode(), b64d(str(signature)))
        except (CryptoError, UnicodeEncodeError):
            raise Unauthenticated("Bad signature", reason="bad_signature", actor=actor) from None
        age = time.time() - int(created_s) if created_s.isdigit() else None
        if age is None or not -MAX_SKEW_S <= age <= SUBMISSION_MAX_AGE_S:
            raise Unauthenticated("Stale signature", reason="stale_created", actor=actor)
        return str(key_id), nonce_s


class RateLimiter:
    """Token bucket per key (a client address): `per_minute` tokens, refilled continuously."""

    def __init__(self, per_minute: int) -> None:
        self.capacity, self.rate = float(per_minute), per_minute / 60.0
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, client_id: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        tokens, last = self._buckets.get(client_id, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - last) * self.rate)
        if tokens < 1:
            self._buckets[client_id] = (tokens, now)
            raise RateLimited(max(1, math.ceil((1 - tokens) / self.rate)), actor=client_id)
        self._buckets[client_id] = (tokens - 1, now)
