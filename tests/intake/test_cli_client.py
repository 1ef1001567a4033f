"""`safeguard submit` and `safeguard open` against a real `safeguard serve intake`."""
from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from safeguard import cli, keys
from tests.support.processes import ServiceProcess

pytestmark = pytest.mark.slow


async def test_submit_and_open_against_a_running_intake(tmp_path, amqp_url, pg_url, capsys):
    config = keys.init(tmp_path)
    intake = ServiceProcess.serve("intake", {
        "SAFEGUARD_CONFIG": str(config), "SAFEGUARD_DATA_DIR": str(tmp_path), "SAFEGUARD_AMQP_URL": amqp_url,
        "SAFEGUARD_DATABASE_URL": pg_url}, logs=tmp_path)
    await intake.start()
    url, k = intake.url, tmp_path / "keys"
    try:
        await intake.ready(timeout=60)
        code = await asyncio.to_thread(cli.main, ["submit", "examples/referral.json", "--client-id", "dev-mash",
                                                  "--key", str(k / "dev-mash.ed25519"), "--url", url])
        reply = json.loads(capsys.readouterr().out)
        assert code == 0 and reply["status"] == "received"
        code = await asyncio.to_thread(cli.main, [
            "open", reply["reference"], "--key", str(k / "E99999999.x25519"), "--client-id", "dev-social-care",
            "--client-key", str(k / "dev-social-care.ed25519"), "--url", url])
        content = json.loads(capsys.readouterr().out)
        assert code == 0
        example = json.loads(Path("examples/referral.json").read_text())
        assert content == {**example["content"], "holding_reason": example["holding_instructions"]["reason"]}
        code = await asyncio.to_thread(cli.main, [  # a referrer may not open content
            "open", reply["reference"], "--key", str(k / "dev-force.x25519"), "--client-id", "dev-mash",
            "--client-key", str(k / "dev-mash.ed25519"), "--url", url])
        out, err = capsys.readouterr()
        assert code == 1 and out == "" and err.startswith("safeguard open: 403 Not allowed for this client")
    finally:
        code = await intake.stop(grace=60)
    assert code == 0, intake.output_tail()
