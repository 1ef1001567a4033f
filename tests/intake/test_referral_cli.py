"""The reference client for staff systems (`safeguard referral …`) and `safeguard submit` against
a real intake: every command's happy path, readable lines or `--json`, a named person
(`--on-behalf-of`), the default Idempotency-Key; and every failure — an unreachable service, a
missing key or note file, a 403 or 409 problem — is one line on stderr and exit status 1."""
from __future__ import annotations

import asyncio
import io
import json
import sys
import threading
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from safeguard import cli
from services.intake.adapters import tables
from tests.factories import referral

SAM = 'iss="https://idp.example/", sub="AAAAsam", name="Sam Patel"'


class PerThread(io.TextIOBase):
    """sys.stdout / sys.stderr routed by thread: the command's own thread writes to its buffer,
    the in-process intake's log lines (the test's thread) go where they went before."""

    def __init__(self, default) -> None:
        self.default, self.buffers = default, {}

    def write(self, text: str) -> int:
        return self.buffers.get(threading.get_ident(), self.default).write(text)

    def flush(self) -> None:
        self.buffers.get(threading.get_ident(), self.default).flush()


class Cli:
    def __init__(self, intake, tmp_path) -> None:
        self.intake, self.tmp = intake, tmp_path
        self.url = str(intake.client.make_url("/")).rstrip("/")

    @staticmethod
    def _main(args: list[str], routes: tuple[PerThread, PerThread]) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        routes[0].buffers[threading.get_ident()], routes[1].buffers[threading.get_ident()] = out, err
        return cli.main(args), out.getvalue(), err.getvalue()

    async def __call__(self, *argv: str, client_id: str = "dev-social-care", url: str | None = None):
        args = [*argv, "--client-id", client_id, "--key", str(self.tmp / "keys" / f"{client_id}.ed25519"),
                "--url", url or self.url]
        saved = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = routes = PerThread(sys.stdout), PerThread(sys.stderr)
        try:
            return await asyncio.to_thread(self._main, args, routes)
        finally:
            sys.stdout, sys.stderr = saved

    async def submit(self, doc: dict, *extra: str) -> tuple[int, str, str]:
        path = self.tmp / f"referral-{len(list(self.tmp.glob('referral-*')))}.json"
        path.write_text(json.dumps(doc))
        return await self("submit", str(path), *extra, client_id="dev-mash")


@pytest.fixture
def run(intake, tmp_path) -> Cli:
    return Cli(intake, tmp_path)


def one_line_failure(code: int, out: str, err: str, prog: str) -> str:
    assert code == 1 and out == "" and "Traceback" not in err, (code, out, err)
    assert err.count("\n") == 1 and err.startswith(f"safeguard {prog}: "), err
    return err


async def test_every_command_against_a_real_intake(run, tmp_path):
    code, out, err = await run.submit(referral(immediate_risk=True))
    assert code == 0, err
    ref = json.loads(out)["reference"]
    async with run.intake.engine.connect() as conn:  # an Idempotency-Key by default
        assert await conn.scalar(sa.select(sa.func.count()).select_from(tables.idempotency_keys)) == 1
    (tmp_path / "why.txt").write_text("A sealed rationale.\n")

    code, out, _ = await run("referral", "list")
    assert code == 0 and out.startswith(f"{ref}  received") and "immediate risk" in out
    steps = [
        (("ack", ref, "--on-behalf-of", SAM), "dev-social-care", "acknowledgement recorded; status acknowledged"),
        (("decide", ref, "--pathway", "section_47", "--rationale-file", str(tmp_path / "why.txt")),
         "dev-social-care", "pathway section_47"),
        (("strategy", ref, "--held-at", datetime.now(UTC).isoformat(), "--agencies", "police,ctp_prevent",
          "--decision", "section_47_enquiry", "--legal-advice", "no", "--parents-informed", "no"),
         "dev-social-care", "strategy-discussion recorded"),
        (("checks", ref, "--outcome", "not_suitable", "--notes-file", str(tmp_path / "why.txt")), "dev-prevent",
         "outcome not_suitable"),
        (("feedback", ref, "--keep-family-hold"), "dev-prevent", "family_contact_lifted false"),
        (("close", ref), "dev-prevent", "track ctp"),
        (("close", ref), "dev-social-care", "status closed, track la, referral_closed true"),
    ]
    for argv, client_id, expected in steps:
        code, out, err = await run("referral", *argv, client_id=client_id)
        assert code == 0 and expected in out and out.count("\n") == 1, (argv, out, err)
    code, out, _ = await run("referral", "status", ref)
    assert code == 0 and out.startswith(f"{ref}  closed") and "acknowledged  by Sam Patel" in out
    code, out, _ = await run("referral", "status", ref, "--json")
    assert json.loads(out)["tracks"]["la"]["status"] == "closed"


async def test_list_pages_filters_and_json(run):
    refs = [json.loads((await run.submit(referral()))[1])["reference"] for _ in range(3)]
    code, out, _ = await run("referral", "list", "--limit", "2")
    assert code == 0 and out.splitlines()[-1].startswith("(more: --cursor ")
    code, out, _ = await run("referral", "list", "--limit", "1", "--all-pages", "--json")
    reply = json.loads(out)
    assert [i["reference"] for i in reply["items"]] == refs[::-1] and reply["next_cursor"] is None
    code, out, _ = await run("referral", "list", "--status", "closed", "--overdue",
                             "--updated-since", datetime.now(UTC).isoformat())
    assert (code, out) == (0, "\n")  # nothing matches: an empty page
    code, out, _ = await run("referral", "list", client_id="other-social-care")
    assert code == 0 and not any(r in out for r in refs)


async def test_idempotency_key_given_or_not(run):
    doc = referral()
    first = await run.submit(doc, "--idempotency-key", "mash-42")
    again = await run.submit(doc, "--idempotency-key", "mash-42")
    assert first[0] == again[0] == 0 and json.loads(first[1]) == json.loads(again[1])
    other = await run.submit(referral(client_reference="MASH-OTHER"), "--idempotency-key", "mash-42")
    assert "409 Conflict (idempotency_conflict)" in one_line_failure(*other, "submit")
    fresh = await run.submit(doc)  # no key given: a new one, so a second referral
    assert json.loads(fresh[1])["reference"] != json.loads(first[1])["reference"]


async def test_failures_are_one_line_and_exit_1(run, tmp_path):
    ref = json.loads((await run.submit(referral()))[1])["reference"]
    err = one_line_failure(*await run("referral", "ack", ref, client_id="dev-mash"), "referral ack")
    assert "403 Not allowed for this client (wrong_role)" in err
    assert (await run("referral", "close", ref))[0] == 0
    err = one_line_failure(*await run("referral", "decide", ref, "--pathway", "early_help"), "referral decide")
    assert "409 Conflict (closed)" in err
    err = one_line_failure(*await run("referral", "list", url="http://127.0.0.1:9"), "referral list")
    assert "cannot reach intake at http://127.0.0.1:9" in err
    err = one_line_failure(*await run("referral", "status", ref, client_id="nobody"), "referral status")
    assert "cannot read private key file" in err and "No such file or directory" in err
    err = one_line_failure(*await run("referral", "checks", ref, "--outcome", "police_led", "--notes-file",
                                      str(tmp_path / "absent.txt"), client_id="dev-prevent"), "referral checks")
    assert "absent.txt: No such file or directory" in err
    err = one_line_failure(*await run("referral", "list", "--updated-since", "yesterday"), "referral list")
    assert "422" in err and "updated_since" in err and "yesterday" not in err
    (tmp_path / "keys" / "bad.ed25519").write_text("not a key\n")
    err = one_line_failure(*await run("referral", "list", client_id="bad"), "referral list")
    assert "cannot read private key file" in err
    err = one_line_failure(*await run("open", ref, "--client-key", str(tmp_path / "keys" / "dev-mash.ed25519"),
                                      client_id="dev-mash"), "open")
    assert "403" in err
