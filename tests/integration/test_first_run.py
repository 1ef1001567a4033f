"""A newcomer's first minute (issue 19): `safeguard up --init` on a fresh data directory, as
`make run` starts it, then the README's first steps (both example referrals submitted with the
reference client). After a minute: no traceback and no error in the output, every URL the banner
printed answers, and no message is parked in the data directory's own vhost."""
from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path

import aiohttp
import pytest

from safeguard import devbroker, devidp, keys
from tests.conftest import AMQP_HOST, _rabbitmqctl
from tests.support.processes import ServiceProcess, free_port, port_env, run_cli

pytestmark = [pytest.mark.broker, pytest.mark.slow]
SERVICES = ("intake", "escalation", "notifier")
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
FIRST_MINUTE_S = 60
URL = re.compile(r"https?://127\.0\.0\.1:\d+[^\s)\]'\",]*")


async def test_the_first_minute_of_make_run_is_clean(tmp_path):
    config = keys.init(tmp_path)
    idp_port = free_port()
    config.write_text(config.read_text().replace(devidp.issuer(), devidp.issuer(idp_port)))
    vhost = devbroker.dev_vhost(tmp_path)
    env = {"SAFEGUARD_DATA_DIR": str(tmp_path), "SAFEGUARD_AMQP_URL": f"amqp://guest:guest@{AMQP_HOST}:5672/",
           "SAFEGUARD_LOG_FORMAT": "console"}
    ports = {svc: free_port() for svc in SERVICES}
    for svc, port in ports.items():
        env |= port_env(svc, port, free_port())
    up = ServiceProcess.cli("up", "--init", env=env, logs=tmp_path)
    started = time.monotonic()
    await up.start()
    try:
        for port in ports.values():
            await up.ready(90, url=f"http://127.0.0.1:{port}")
        await up.ready(60, url=devidp.issuer(idp_port), path="/.well-known/openid-configuration")
        for example in ("referral.json", "referral-no-hold.json"):
            done = await asyncio.to_thread(
                run_cli, "submit", str(EXAMPLES / example), "--client-id", "dev-mash",
                "--key", str(tmp_path / "keys" / "dev-mash.ed25519"), "--url", f"http://127.0.0.1:{ports['intake']}",
                env=env)
            assert done.returncode == 0, done.stderr
            assert re.search(r"PRV-\d{4}-\d{6}", done.stdout), done.stdout
        urls = sorted(set(URL.findall(up.output())))
        assert len(urls) >= 8, up.output()[-3000:]  # the pages, the sink, the provider, the metrics
        answers = {}
        async with aiohttp.ClientSession() as session:
            for url in urls:
                async with session.get(url.rstrip("."), allow_redirects=False) as resp:
                    answers[url] = resp.status
        assert all(status < 400 for status in answers.values()), {u: s for u, s in answers.items() if s >= 400}
        await asyncio.sleep(max(0.0, FIRST_MINUTE_S - (time.monotonic() - started)))
        queues = _rabbitmqctl("list_queues", "-q", "-p", vhost, "name", "messages", "--no-table-headers")
    finally:
        code = await up.stop(grace=60)
        passwords = json.loads((tmp_path / devbroker.STATE).read_text())["passwords"] \
            if (tmp_path / devbroker.STATE).exists() else {}
        _rabbitmqctl("eval", f'rabbit_vhost:delete(<<"{vhost}">>, <<"tests">>), '
                     + f'[rabbit_auth_backend_internal:delete_user(<<"{vhost}-", U/binary>>, <<"tests">>) '
                     + f'|| U <- [{",".join(f"<<{chr(34)}{n}{chr(34)}>>" for n in passwords)}]].')
    text = up.output()
    assert code == 0, text[-3000:]
    assert "Traceback" not in text, text[text.index("Traceback") - 2000:][:5000]
    errors = [line for line in text.splitlines() if re.search(r"\[(error|critical)\s*\]|\"level\": \"error\"", line)]
    assert not errors, errors
    rows = [line.split("\t") for line in queues.splitlines() if "\t" in line]
    parked = {name: int(n) for name, n in rows if name.endswith(".parked")}
    assert parked and not any(parked.values()), parked  # every parking queue exists, and holds nothing
