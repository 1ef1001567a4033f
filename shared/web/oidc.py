"""OpenID Connect sign-in (authorisation code + PKCE) against a configured identity provider.

`Provider.authorisation_url` starts a sign-in (state, nonce and an S256 code challenge from
Authlib); `Provider.complete` exchanges the code at the token endpoint and verifies the ID
token (signature against the issuer's JWKS, `iss`, `aud`, `exp`, `nonce`) with joserfc, then
maps the identity's groups to a role and organisation (`[[identity_providers]].claims`).
Every refusal is a `SignInRefused` with a short reason code (audited; never the token).
"""
from __future__ import annotations

import os
import secrets
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

import aiohttp
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from shared.config import IdentityProvider
from shared.web.identity import Person

ALGORITHMS = ["RS256", "PS256", "ES256"]
DISCOVERY_TTL_S = 3600
TIMEOUT = aiohttp.ClientTimeout(total=10)


class SignInRefused(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Provider:
    def __init__(self, config: IdentityProvider, http: aiohttp.ClientSession,
                 env: Mapping[str, str] | None = None) -> None:
        self.config, self.http = config, http
        env = os.environ if env is None else env
        from_env = env.get(config.client_secret_env) if config.client_secret_env else None
        self.client_secret = from_env or config.client_secret
        self._metadata: dict[str, Any] | None = None
        self._fetched = 0.0
        self._keys: KeySet | None = None

    async def metadata(self) -> dict[str, Any]:
        if self._metadata is None or time.monotonic() - self._fetched > DISCOVERY_TTL_S:
            url = self.config.issuer.rstrip("/") + "/.well-known/openid-configuration"
            data = await self._get_json(url)
            if data.get("issuer") != self.config.issuer:
                raise SignInRefused("issuer_mismatch")
            self._metadata, self._fetched, self._keys = data, time.monotonic(), None
        return self._metadata

    async def _get_json(self, url: str) -> dict[str, Any]:
        try:
            async with self.http.get(url, timeout=TIMEOUT) as resp:
                if resp.status != 200:
                    raise SignInRefused("provider_unavailable")
                return await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError):
            raise SignInRefused("provider_unavailable") from None

    async def _keyset(self, refresh: bool = False) -> KeySet:
        if self._keys is None or refresh:
            self._keys = KeySet.import_key_set(await self._get_json((await self.metadata())["jwks_uri"]))
        return self._keys

    async def authorisation_url(self, redirect_uri: str) -> tuple[str, dict[str, str]]:
        """The provider's authorisation URL and what the callback must check (kept server-side)."""
        pending = {"provider": self.config.id, "state": secrets.token_urlsafe(24),
                   "nonce": secrets.token_urlsafe(24), "verifier": secrets.token_urlsafe(48)}
        query = {"response_type": "code", "client_id": self.config.client_id, "redirect_uri": redirect_uri,
                 "scope": " ".join(self.config.scopes), "state": pending["state"], "nonce": pending["nonce"],
                 "code_challenge": create_s256_code_challenge(pending["verifier"]),
                 "code_challenge_method": "S256"}
        return f"{(await self.metadata())['authorization_endpoint']}?{urlencode(query)}", pending

    async def complete(self, code: str, redirect_uri: str, pending: Mapping[str, str]) -> Person:
        """Exchange `code`, verify the ID token, and name the person; `SignInRefused` otherwise."""
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
                "code_verifier": pending["verifier"], "client_id": self.config.client_id}
        if self.client_secret:  # client_secret_post (Entra ID and most issuers take it); else a public client
            form["client_secret"] = self.client_secret
        try:
            async with self.http.post((await self.metadata())["token_endpoint"], data=form,
                                      timeout=TIMEOUT) as resp:
                tokens = await resp.json(content_type=None) if resp.status == 200 else None
        except (aiohttp.ClientError, TimeoutError, ValueError):
            raise SignInRefused("provider_unavailable") from None
        if not tokens or not isinstance(tokens.get("id_token"), str):
            raise SignInRefused("code_refused")
        claims = await self.verify_id_token(tokens["id_token"], pending["nonce"])
        return self.person(claims)

    async def verify_id_token(self, id_token: str, nonce: str) -> dict[str, Any]:
        try:
            try:
                token = jwt.decode(id_token, await self._keyset(), algorithms=ALGORITHMS)
            except (JoseError, ValueError):  # a key the provider rotated in since: fetch once more
                token = jwt.decode(id_token, await self._keyset(refresh=True), algorithms=ALGORITHMS)
            jwt.JWTClaimsRegistry(
                iss={"essential": True, "value": self.config.issuer},
                aud={"essential": True, "value": self.config.client_id},
                sub={"essential": True}, exp={"essential": True}, nonce={"essential": True, "value": nonce},
            ).validate(token.claims)
        except (JoseError, ValueError):
            raise SignInRefused("id_token_invalid") from None
        return dict(token.claims)

    def person(self, claims: Mapping[str, Any]) -> Person:
        """The first configured mapping whose group the identity holds gives the role."""
        groups = claims.get(self.config.groups_claim) or []
        groups = {groups} if isinstance(groups, str) else set(groups)
        mapping = next((m for m in self.config.claims if m.group in groups), None)
        if mapping is None:
            raise SignInRefused("no_role")
        name = str(claims.get("name") or claims.get("preferred_username") or claims.get("email") or claims["sub"])
        return Person(issuer=self.config.issuer, subject=str(claims["sub"]), name=name[:100],
                      role=mapping.role, organisation=mapping.organisation)
