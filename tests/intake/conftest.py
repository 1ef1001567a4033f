"""An intake app on the real RabbitMQ (fresh vhost) and PostgreSQL (fresh database),
built from a `safeguard keys init` set-up, and helpers to sign requests as its clients."""
from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import sqlalchemy as sa

from safeguard import keys
from services.intake.adapters import tables
from services.intake.bootstrap import create_app
from shared.config import ClaimMapping, Client, Force, LocalAuthority, SealingKey, Settings, load_settings
from shared.crypto import (
    b64e, generate_sealing_key, generate_signing_key, load_private_sealing_key, load_signing_key,
    write_private_key,
)
from shared.httpsig import authority_of, sign_request
from shared.runtime import RUNTIME
from tests.conftest import mark_directory
from tests.support.oidc import identity_provider, sign_in
from tests.support.processes import free_port


def pytest_collection_modifyitems(config, items):
    mark_directory(items, Path(__file__).parent, "broker", "database")


OTHER_LA = "E88888888"


def _with_other_la(settings: Settings, keys_dir: Path) -> Settings:
    """Add a second local authority and its social-care client `other-social-care`."""
    seal_key, sign_key = generate_sealing_key(), generate_signing_key()
    write_private_key(keys_dir / f"{OTHER_LA}.x25519", bytes(seal_key))
    write_private_key(keys_dir / "other-social-care.ed25519", bytes(sign_key))
    la = LocalAuthority(code=OTHER_LA, name="Other Borough", sealing_keys=(SealingKey(
        key_id=f"{OTHER_LA}-1", public_key=b64e(bytes(seal_key.public_key))),))
    client = Client(id="other-social-care", role="social_care", organisation=OTHER_LA,
                    verify_key=b64e(bytes(sign_key.verify_key)))
    f = settings.file
    return settings.model_copy(update={"file": f.model_copy(update={
        "local_authorities": (*f.local_authorities, la), "clients": (*f.clients, client)})})


def make_settings(tmp_path: Path, amqp_url: str, pg_url: str, **system: Any) -> Settings:
    config = keys.init(tmp_path)
    settings = load_settings({"SAFEGUARD_CONFIG": str(config), "SAFEGUARD_DATA_DIR": str(tmp_path),
                              "SAFEGUARD_AMQP_URL": amqp_url, "SAFEGUARD_DATABASE_URL": pg_url})
    settings = _with_other_la(settings, tmp_path / "keys")
    if system:
        sys_cfg = settings.file.system.model_copy(update=system)
        settings = settings.model_copy(update={"file": settings.file.model_copy(update={"system": sys_cfg})})
    return settings


@dataclass
class Intake:
    client: Any  # aiohttp TestClient
    settings: Settings
    dir: Path

    @property
    def app(self):
        return self.client.server.app

    @property
    def engine(self):
        return self.app[RUNTIME].engine

    def key(self, name: str):
        return load_signing_key(self.dir / "keys" / f"{name}.ed25519")

    def team_key(self, org: str):
        return load_private_sealing_key(self.dir / "keys" / f"{org}.x25519")

    def signed(self, method: str, path: str, client_id: str, body: bytes | None = None, *, query: str = "",
               key_as: str | None = None, **kw: Any) -> dict[str, str]:
        kw.setdefault("authority", authority_of(self.client.make_url(path)))  # the Host the client sends
        return sign_request(method=method, path=path, query=query, body=body, key_id=client_id,
                            key=self.key(key_as or client_id), **kw)

    async def call(self, method: str, path: str, client_id: str, payload: Any = None, *, raw: bytes | None = None,
                   headers: dict[str, str] | None = None, query: str = "", content_type: str = "application/json"):
        body = raw if raw is not None else (json.dumps(payload).encode() if payload is not None else None)
        h = self.signed(method, path, client_id, body, query=query)
        if body is not None:
            h["Content-Type"] = content_type
        h.update(headers or {})
        url = path + (f"?{query}" if query else "")
        return await self.client.request(method, url, data=body, headers=h)

    async def submit(self, doc: dict, client_id: str = "dev-mash", **kw: Any):
        return await self.call("POST", "/v1/referrals", client_id, doc, **kw)

    async def count(self, table: sa.Table) -> int:
        async with self.engine.connect() as conn:
            return int(await conn.scalar(sa.select(sa.func.count()).select_from(table)))

    async def audit_rows(self) -> list[Any]:
        async with self.engine.connect() as conn:
            return list((await conn.execute(sa.select(tables.audit).order_by(tables.audit.c.seq))).all())


@pytest.fixture
def intake_settings(tmp_path, amqp_url, pg_url) -> Settings:
    return make_settings(tmp_path, amqp_url, pg_url)


@pytest.fixture
async def intake(intake_settings, aiohttp_client, tmp_path) -> Intake:
    client = await aiohttp_client(create_app(intake_settings))
    return Intake(client, intake_settings, tmp_path)


# --- the pages: signed-in people at the real development identity provider (DESIGN §3.7) ---

OTHER_FORCE = "other-force"
# Beside the dev people: a social worker of the other LA, a CTP officer and a control-room
# operator of another force.
OTHER_PEOPLE = (
    {"sub": "social.worker@other-borough.example", "name": "Robin Hale", "groups": [f"sg-social-care-{OTHER_LA}"]},
    {"sub": "ctp.officer@other-force.example", "name": "Kit Marsh", "groups": ["sg-prevent-other-force"]},
    {"sub": "control.room@other-force.example", "name": "Nico Vale", "groups": ["sg-control-room-other-force"]},
)


def with_pages(settings: Settings, issuer: str, base_url: str, keys_dir: Path) -> Settings:
    """Sign in at the test's provider (`issuer`), links at `base_url`; another force, and the
    groups of OTHER_PEOPLE mapped to the other LA and the other force."""
    seal_key = generate_sealing_key()
    write_private_key(keys_dir / f"{OTHER_FORCE}.x25519", bytes(seal_key))
    force = Force(slug=OTHER_FORCE, name="Other Force", sealing_keys=(SealingKey(
        key_id=f"{OTHER_FORCE}-1", public_key=b64e(bytes(seal_key.public_key))),))
    f = settings.file
    (idp,) = f.identity_providers
    claims = (*idp.claims, ClaimMapping(group=f"sg-social-care-{OTHER_LA}", role="social_care", organisation=OTHER_LA),
              ClaimMapping(group="sg-prevent-other-force", role="prevent", organisation=OTHER_FORCE),
              ClaimMapping(group="sg-control-room-other-force", role="control_room", organisation=OTHER_FORCE))
    idp = idp.model_copy(update={"issuer": issuer, "claims": claims})
    system = f.system.model_copy(update={"public_base_url": base_url})
    return settings.model_copy(update={"file": f.model_copy(update={
        "identity_providers": (idp,), "system": system, "forces": (*f.forces, force)})})


@dataclass
class Pages(Intake):
    url: str = ""

    def session(self) -> aiohttp.ClientSession:
        """A browser-like client (cookie jar for 127.0.0.1)."""
        return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))

    async def signed_in(self, http: aiohttp.ClientSession, sub: str, next_path: str = "/referrals") -> str:
        """Sign `http` in as `sub`; the HTML of the page it lands on."""
        async with await sign_in(http, self.url, sub, next_path) as page:
            assert page.status == 200, (sub, page.status)
            return await page.text()


@pytest.fixture
async def idp(tmp_path) -> AsyncIterator[str]:
    async with identity_provider(tmp_path, OTHER_PEOPLE) as issuer:
        yield issuer


@pytest.fixture
async def pages(intake_settings, idp, tmp_path, aiohttp_server, aiohttp_client) -> Pages:
    """intake served on a free port that is its public_base_url (the OIDC redirect URI is
    `{public_base_url}/auth/callback`), signing in at the real development provider."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    settings = with_pages(intake_settings, idp, url, tmp_path / "keys")
    server = await aiohttp_server(create_app(settings), port=port)
    return Pages(await aiohttp_client(server), settings, tmp_path, url=url)


def csrf_of(html: str) -> str:
    return html.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
