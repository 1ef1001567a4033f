"""A small app with the shared web package on the real PostgreSQL, signing in at the real
development identity provider (a child process): what every page of intake and escalation
stands on. `site(...)` serves it on a free port; its clock is the test's to move."""
from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp import web
from sqlalchemy import MetaData, Table
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from safeguard import devidp, keys
from shared.config import Settings, load_settings
from shared.audit import GENESIS
from shared.storage.tables import common_tables
from shared.web import pages
from shared.web.sessions import session_table
from shared.web.signin import setup
from tests.support.oidc import identity_provider
from tests.support.processes import free_port

HERE = Path(__file__).parent


def dev_settings(tmp_path: Path, idp_port: int, *, trusted_proxies: tuple[str, ...] = ()) -> Settings:
    """The `safeguard keys init` development set-up, signing in at the provider on `idp_port`."""
    config = keys.init(tmp_path / "var")
    text = config.read_text().replace(devidp.issuer(), devidp.issuer(idp_port))
    if trusted_proxies:
        listed = ", ".join(f'"{p}"' for p in trusted_proxies)
        text = text.replace("[system]\n", f"[system]\ntrusted_proxies = [{listed}]\n", 1)
    config.write_text(text)
    return load_settings({"SAFEGUARD_CONFIG": str(config), "SAFEGUARD_DATA_DIR": str(tmp_path / "var")})


@dataclass
class Site:
    url: str
    engine: AsyncEngine
    audit: Table
    sessions: Table
    app: web.Application
    now: list[datetime] = field(default_factory=lambda: [datetime.now(UTC)])


@pages.signed_in({"social_care"})
async def private(request: web.Request) -> web.Response:
    person = pages.person_of(request)
    assert person is not None
    return pages.render(request, "message.html", title="Private", body=f"Hello {person.name}")


@pages.signed_in({"social_care"})
async def private_form(request: web.Request) -> web.Response:
    await pages.form_of(request)  # checked by @signed_in: a refused form never reaches the view
    return pages.render(request, "message.html", title="Done", body="Form accepted")


@pytest.fixture
async def idp(tmp_path) -> AsyncIterator[str]:
    async with identity_provider(tmp_path) as issuer:
        yield issuer


@pytest.fixture
def site(tmp_path, idp, pg_url):
    @contextlib.asynccontextmanager
    async def run(*, trusted_proxies: tuple[str, ...] = ()) -> AsyncIterator[Site]:
        settings = dev_settings(tmp_path, int(idp.rsplit(":", 1)[1]), trusted_proxies=trusted_proxies)
        engine = create_async_engine(pg_url)
        metadata = MetaData()
        audit = common_tables(metadata, "webtest")[2]
        sessions = session_table(metadata, "webtest")
        async with engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
            head = common_tables(MetaData(), "webtest")[3]
            if (await conn.execute(head.select())).first() is None:
                await conn.execute(head.insert().values(id=1, seq=0, hash=GENESIS))
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        app = web.Application()
        the_site = Site(url, engine, audit, sessions, app)
        setup(app, pages.WebConfig(
            service="webtest", settings=settings, base_url=url, home="/private", service_name="Test pages",
            templates=HERE, sessions=sessions, audit=audit, clock=lambda: the_site.now[0], engine=engine))
        app.router.add_get("/private", private)
        app.router.add_post("/private/form", private_form)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            yield the_site
        finally:
            await runner.cleanup()
            await engine.dispose()
    return run
