"""`safeguard submit` and `safeguard open` against a real `safeguard serve intake`."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from pathlib import Path

import aiohttp
import pytest

from safeguard import cli, keys

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def wait_ready(url: str, timeout: float = 60) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.get(url) as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            assert asyncio.get_running_loop().time() < deadline, "intake did not become ready"
            await asyncio.sleep(0.25)


async def test_submit_and_open_against_a_running_intake(tmp_path, amqp_url, pg_url, capsys):
    config = keys.init(tmp_path)
    port = free_port()
    env = {**os.environ, "SAFEGUARD_CONFIG": str(config), "SAFEGUARD_DATA_DIR": str(tmp_path),
           "SAFEGUARD_AMQP_URL": amqp_url, "SAFEGUARD_DATABASE_URL": pg_url, "SAFEGUARD_INTAKE_PORT": str(port)}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "safeguard", "serve", "intake", env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    url, k = f"http://127.0.0.1:{port}", tmp_path / "keys"
    try:
        await wait_ready(f"{url}/readyz")
        code = await asyncio.to_thread(cli.main, ["submit", "examples/referral.json", "--client-id", "dev-mash",
                                                  "--key", str(k / "dev-mash.ed25519"), "--url", url])
        reply = json.loads(capsys.readouterr().out)
        assert code == 0 and reply["status"] == "received"
        code = await asyncio.to_thread(cli.main, [
            "open", reply["reference"], "--key", str(k / "E99999999.x25519"), "--client-id", "dev-social-care",
            "--client-key", str(k / "dev-social-care.ed25519"), "--url", url])
        content = json.loads(capsys.readouterr().out)
        assert code == 0
        assert content == json.loads(Path("examples/referral.json").read_text())["content"]
        code = await asyncio.to_thread(cli.main, [  # a referrer may not open content
            "open", reply["reference"], "--key", str(k / "dev-force.x25519"), "--client-id", "dev-mash",
            "--client-key", str(k / "dev-mash.ed25519"), "--url", url])
        assert code == 1 and json.loads(capsys.readouterr().out)["status"] == 403
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, out.decode()[-2000:]
