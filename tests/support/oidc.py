"""The real development identity provider (`oidc-provider-mock`, safeguard/devidp.py) as a
child process on a free port, and a browser-free sign-in: what its authorisation form
does when a person clicks their name (POST `sub`), followed through the redirects."""
from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Sequence
from urllib.parse import urljoin

import aiohttp

from safeguard import devidp
from tests.support.processes import ServiceProcess, free_port


@contextlib.asynccontextmanager
async def identity_provider(tmp_path, extra_people: Sequence[dict] = ()) -> AsyncIterator[str]:
    """The provider's issuer URL while it runs; `extra_people` (claims: sub, name, groups)
    are listed beside the dev people."""
    port = free_port()
    argv = devidp.command(port)
    for claims in extra_people:
        argv += ["--user-claims", json.dumps(claims)]
    proc = ServiceProcess(argv, name="idp", port=port, logs=tmp_path)
    await proc.start()
    try:
        await proc.ready(timeout=60, path="/.well-known/openid-configuration")
        yield devidp.issuer(port)
    finally:
        await proc.stop(grace=5)


def person(sub_prefix: str) -> devidp.DevPerson:
    return next(p for p in devidp.DEV_PEOPLE if p.sub.startswith(sub_prefix))


async def sign_in(http: aiohttp.ClientSession, base_url: str, sub: str, next_path: str = "/") -> aiohttp.ClientResponse:
    """Sign in to the service at `base_url` as `sub` (a cookie jar session); the response
    of the page the service finally sends the browser to."""
    async with http.get(f"{base_url}/sign-in", params={"next": next_path}) as page:
        assert page.status == 200, await page.text()
    async with http.post(f"{base_url}/sign-in", data={"provider": devidp.DEV_PROVIDER_ID, "next": next_path},
                         headers={"Origin": base_url}, allow_redirects=False) as start:
        assert start.status == 303, await start.text()
        authorise = start.headers["Location"]
    async with http.post(authorise, data={"sub": sub}, allow_redirects=False) as granted:
        assert granted.status in (302, 303), await granted.text()
        callback = urljoin(authorise, granted.headers["Location"])
    return await http.get(callback)
