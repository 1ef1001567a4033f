"""The attacks of the security review (issue 18), each tried against the real service.

Every test tries one attack, asserts that it now fails safely, and records a row for
docs/reliability.md: the attack, what it got before the fix (from the review: the
tests cannot run the old code) and what it got in this run (`after`, observed)."""
from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
import socket
import ssl
import subprocess
import time
import uuid
from collections import deque
from datetime import UTC, datetime
from pathlib import Path

import aio_pika
import aiohttp
import pytest
from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from safeguard.sink import sink_app
from services.intake.adapters import tables
from services.intake.bootstrap import create_app
from services.intake.entrypoints.client import signed_request
from services.notifier.adapters.channels.email import EmailChannel, SmtpConfig
from services.notifier.adapters.channels.sms import KEY_ENV, TEMPLATE_ENV, URL_ENV, NotifyConfig
from services.notifier.adapters.rendering import Renderer
from services.notifier.domain.lifecycle import Outcome
from shared import httpsig
from shared.config import ConfigError
from tests.factories import referral, referral_body
from tests.intake.conftest import Intake
from tests.intake.test_amqp import DirectReplies, get_one, signed_message
from tests.security.test_authz_intake import FORCE, LA, POLICY, REF, allowed, with_other_force

DEEP_ARRAY = b"[" * 50_000 + b"]" * 50_000  # json.loads itself gives up (RecursionError)
DEEP_OBJECT = b'{"a":' * 600 + b"1" + b"}" * 600  # parses, but deep enough to exhaust the stack later


async def test_deeply_nested_json_is_a_400_on_http_and_parked_at_once_on_amqp(intake, aiohttp_client,
                                                                              reliability):
    seen = []
    for body in (DEEP_ARRAY, DEEP_OBJECT):
        for path, client_id in (("/v1/referrals", "dev-mash"),
                                ("/v1/referrals/PRV-2026-000001/decision", "dev-social-care")):
            resp = await intake.call("POST", path, client_id, raw=body)
            problem = await resp.json(content_type=None)
            assert (resp.status, resp.content_type) == (400, "application/problem+json"), (path, problem)
            assert (problem["status"], problem["reason"]) == (400, "json_too_deep")
            seen.append(f"{resp.status} {problem['reason']}")
    conn = await aio_pika.connect(intake.settings.amqp_url)
    try:
        channel = await conn.channel()
        replies = await channel.declare_queue(f"reply.dev-mash.{uuid.uuid4().hex}", exclusive=True)
        exchange = await channel.get_exchange("safeguard.submissions")
        parked_queue = await channel.declare_queue("intake.submissions.parked", passive=True)
        for body in (DEEP_ARRAY, DEEP_OBJECT):
            await exchange.publish(signed_message(intake, body, replies.name), "referral")
            problem = json.loads((await get_one(replies, timeout=10)).body)
            assert (problem["status"], problem["reason"]) == (400, "json_too_deep")
            parked = await get_one(parked_queue, timeout=10)
            assert parked.headers["x-parked-reason"] == "json_too_deep"  # at once: not `delivery_limit: ...`
            assert int(parked.headers.get("x-delivery-count", 0)) == 0
    finally:
        await conn.close()
    sink = await aiohttp_client(sink_app(deque(), "127.0.0.1:8025"))  # the dev sink's Teams webhook
    resp = await sink.post("/teams/dev", data=b"[" * 20_000 + b"]" * 20_000)
    assert resp.status == 400
    rows = [(r.action, r.outcome, (r.detail or {}).get("reason"), (r.detail or {}).get("via"))
            for r in await intake.audit_rows()]
    assert rows.count(("referral.submit", "rejected", "json_too_deep", "http")) == 2
    assert rows.count(("referral.decision", "rejected", "json_too_deep", "http")) == 2
    assert rows.count(("referral.submit", "rejected", "json_too_deep", "amqp")) == 2
    reliability.row("attacks", finding="#12", attack="JSON nested 50,000 and 600 deep (POST /v1/referrals, "
                    "a lifecycle action, the AMQP submissions queue, the dev sink's Teams webhook)",
                    before="HTTP 500 (RecursionError); AMQP RecursionError, retried, the retry then parked as "
                           "replayed_nonce with a 401 reply",
                    after=f"HTTP {', '.join(sorted(set(seen)))} problem+json, audited; AMQP problem reply "
                          "and parked at once (json_too_deep); dev sink 400")


async def test_invented_field_names_never_reach_the_422_or_the_audit(intake, reliability):
    doc = referral()  # ten known top-level fields, then the invented ones
    doc["sam_example_dob"] = "x"  # a snake_case name was echoed before
    doc["content"]["subject"]["jane_smith"] = "x"  # the 8th key of content.subject
    doc["content"]["parents_guardians"][0]["alex_example_mobile"] = "x"  # 5th key of the guardian
    doc["Jane Smith"] = "x"  # not snake_case: was withheld, now counted too
    resp = await intake.submit(doc)
    text = await resp.text()
    problem = json.loads(text)
    assert (resp.status, problem["reason"]) == (422, "schema_invalid")
    assert all(set(e) == {"loc", "type", "msg"} for e in problem["errors"])  # the documented shape
    locs = sorted(e["loc"] for e in problem["errors"])
    assert locs == ["(unknown field #11)", "(unknown field #12)",
                    "content.parents_guardians[0].(unknown field #5)", "content.subject.(unknown field #8)"]
    assert {e["type"] for e in problem["errors"]} == {"extra_forbidden"}
    resp = await intake.call("POST", "/v1/referrals/PRV-2026-000001/decision", "dev-social-care",
                             {"pathway": "section_17", "sam_example": "x"})
    decision = await resp.json(content_type=None)
    assert (resp.status, [e["loc"] for e in decision["errors"]]) == (422, ["(unknown field #2)"])
    audit = [json.dumps(r.detail) for r in await intake.audit_rows()]
    invented = ("sam_example", "jane_smith", "alex_example", "Jane Smith")
    assert not [name for name in invented if name in text or name in json.dumps(decision) or name in str(audit)]
    assert "content.subject.(unknown field #8)" in audit[0]
    reliability.row("attacks", finding="#15", attack="invented field names (a child's name as a JSON key) "
                    "in a referral and a decision",
                    before="422 errors[].loc and the audit's fields named snake_case keys "
                           "(e.g. content.subject.jane_smith)",
                    after=f"{resp.status}, loc by position only: " + ", ".join(locs[2:]) + "; none of the "
                          f"{len(invented)} names in any reply or audit row")


NOTIFY_KEY = "safeguard_live-3d1c1f0e-8a7b-4c6d-9e5f-0a1b2c3d4e5f-6f5e4d3c-2b1a-4c0d-9e8f-7a6b5c4d3e2f"
NOTIFY_TEMPLATE = "0f1e2d3c-4b5a-4968-8776-655443322110"


def test_the_notify_url_must_be_https_or_http_to_a_loopback_host(reliability):
    def accepted(url: str) -> bool:
        try:
            return NotifyConfig.from_env({KEY_ENV: NOTIFY_KEY, TEMPLATE_ENV: NOTIFY_TEMPLATE, URL_ENV: url}) is not None
        except ConfigError:
            return False

    attacks = ["http://localhost.attacker.example", "http://127.0.0.1.attacker.example:8000",
               "http://127.0.0.1@attacker.example", "http://localhost:80@attacker.example/v2",
               "http://localhostattacker.example", "http://127.0.0.1:notaport"]
    allowed = ["https://api.notifications.service.gov.uk", "http://127.0.0.1:8000", "http://127.9.9.9",
               "http://localhost:9000/", "http://[::1]:8000", "http://LOCALHOST:9000"]
    assert [u for u in attacks if accepted(u)] == []
    assert [u for u in allowed if not accepted(u)] == []
    reliability.row("attacks", finding="#13", attack="SAFEGUARD_NOTIFY_URL pointing elsewhere over plain http: "
                    + ", ".join(attacks[:4]),
                    before="accepted (prefix check): the Notify bearer token would go in clear to that host",
                    after=f"refused at start (ConfigError): {len(attacks)} of {len(attacks)}; "
                          f"https and http to 127.0.0.0/8, ::1, localhost still accepted ({len(allowed)} of "
                          f"{len(allowed)})")


def _non_loopback_address() -> str | None:
    """An address of this machine that is not loopback (the one a route out leaves from)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the outgoing interface
            address = s.getsockname()[0]
        except OSError:
            return None
    return None if ipaddress.ip_address(address).is_loopback else address


class _Relay:
    """A real aiosmtpd relay on `host`: offers STARTTLS only when given `tls`, and AUTH in clear
    (as a careless relay, or an attacker who stripped STARTTLS, would); records what it got."""

    def __init__(self, host: str, tls: ssl.SSLContext | None = None) -> None:
        self.host, self.port = host, _free_port(host)
        self.logins: list[tuple[str, bool]] = []  # (user, over TLS)
        self.mails: list[tuple[list[str], bool]] = []  # (recipients, over TLS)
        self.controller = Controller(self, hostname=host, port=self.port, tls_context=tls,
                                     authenticator=self._authenticate, auth_require_tls=False)

    def _authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        self.logins.append((auth_data.login.decode(), session.ssl is not None))
        return AuthResult(success=True)

    async def handle_DATA(self, server, session, envelope) -> str:
        self.mails.append((list(envelope.rcpt_tos), session.ssl is not None))
        return "250 OK"

    def __enter__(self) -> "_Relay":
        self.controller.start()
        return self

    def __exit__(self, *exc) -> None:
        self.controller.stop()


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _self_signed(tmp_path: Path, address: str) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A certificate for `address` (openssl): the relay's TLS context and a client's that trusts it."""
    cert, key = tmp_path / "relay.crt", tmp_path / "relay.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "1", "-subj", "/CN=relay", "-addext", f"subjectAltName=IP:{address}",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True, timeout=60)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert, key)
    return server, ssl.create_default_context(cafile=str(cert))


def test_starttls_is_required_except_to_loopback_hosts():
    required = {url: SmtpConfig.from_url(url).starttls_required for url in (
        "smtp://mail.example.gov.uk:587", "smtp://192.0.2.2:25", "smtp://localhost.attacker.example",
        "smtp://127.0.0.1.attacker.example:25", "smtp://[fd00::2]:25",
        "smtp://127.0.0.1:8025", "smtp://127.5.6.7", "smtp://localhost:8025", "smtp://[::1]:25",
        "smtps://mail.example.gov.uk")}
    assert [u for u, r in required.items() if r] == [
        "smtp://mail.example.gov.uk:587", "smtp://192.0.2.2:25", "smtp://localhost.attacker.example",
        "smtp://127.0.0.1.attacker.example:25", "smtp://[fd00::2]:25"]  # smtps: TLS from the first byte


async def test_a_relay_that_does_not_offer_starttls_gets_no_credentials_and_no_mail(tmp_path, reliability):
    address = _non_loopback_address()
    if address is None:
        pytest.skip("this machine has no non-loopback address to run a relay on")
    rendered = Renderer(public_base_url="https://relay.example").render(
        template="receipt", kind="team", reference="PRV-2026-000001",
        times={"acknowledge_by": datetime(2026, 12, 29, 15, tzinfo=UTC)})
    with _Relay(address) as stripped:  # STARTTLS not offered (stripped by an attacker, or never there)
        channel = EmailChannel(f"smtp://relay-user:relay-secret@{address}:{stripped.port}", timeout_s=5)
        try:
            result = await channel.send(rendered, "mash-team@dev-borough.example", "m-1")
        finally:
            await channel.close()
    assert (result.outcome, result.reason) == (Outcome.TEMPORARY, "smtp_tls_unavailable")
    assert (stripped.logins, stripped.mails) == ([], [])  # nothing sent in clear: no AUTH, no MAIL/RCPT
    server_tls, client_tls = _self_signed(tmp_path, address)
    with _Relay(address, server_tls) as relay:  # the same relay offering STARTTLS: delivered over TLS
        channel = EmailChannel(f"smtp://relay-user:relay-secret@{address}:{relay.port}", timeout_s=5,
                               tls_context=client_tls)
        try:
            delivered = await channel.send(rendered, "mash-team@dev-borough.example", "m-2")
        finally:
            await channel.close()
    assert delivered.outcome == Outcome.DELIVERED
    assert (relay.logins, relay.mails) == ([("relay-user", True)], [(["mash-team@dev-borough.example"], True)])
    reliability.row("attacks", finding="#5", attack=f"STARTTLS stripped: smtp:// relay on a non-loopback "
                    "address that does not offer STARTTLS, with AUTH in clear",
                    before="sent AUTH (relay user and password) and the recipient address in clear, delivered",
                    after=f"{result.outcome.value} {result.reason} (retried per policy, then permanent-failure "
                          f"and ops alert); logins {len(stripped.logins)}, mails {len(stripped.mails)}; "
                          f"with STARTTLS offered: {delivered.outcome.value} over TLS")


async def test_absent_and_not_yours_get_the_same_answer_on_every_referral_endpoint(intake_settings, aiohttp_client,
                                                                                   tmp_path, reliability):
    settings = with_other_force(intake_settings, tmp_path / "keys")
    intake = Intake(await aiohttp_client(create_app(settings)), settings, tmp_path)
    reply = await intake.submit(referral())
    assert reply.status == 202
    existing, absent = (await reply.json())["reference"], "PRV-2031-000777"
    routes = [(m, r) for (m, r) in POLICY if r.startswith(REF)]
    compared, statuses, probes = 0, set(), []
    for method, route in routes:
        rule, body = POLICY[(method, route)]
        for client in settings.file.clients:
            own = allowed(rule, client, {LA: "E99999999", FORCE: "dev-force"})
            if own:
                continue  # it may see the existing referral: only its answer for an absent one is compared
            answers = []
            for reference in (existing, absent):
                resp = await intake.call(method, route.format(reference=reference), client.id, body)
                answers.append((resp.status, resp.content_type, await resp.text()))
            assert answers[0] == answers[1], (method, route, client.id)  # nothing tells them apart
            statuses.add(answers[0][0])
            compared += 1
            if client.role in rule:  # the right role of another organisation: the enumeration probe
                probes.append(answers[0][0])
    for method, route in routes:  # an allowed client asking for an absent referral: the same answer again
        rule, body = POLICY[(method, route)]
        role = next(iter(rule))
        own_client = next(c for c in settings.file.clients if c.role == role
                          and c.organisation in ("E99999999", "dev-force"))
        other_client = next(c for c in settings.file.clients if c.role == role
                            and c.organisation not in ("E99999999", "dev-force"))
        mine = await intake.call(method, route.format(reference=absent), own_client.id, body)
        theirs = await intake.call(method, route.format(reference=existing), other_client.id, body)
        assert (mine.status, await mine.json()) == (theirs.status, await theirs.json()) \
            == (403, {"type": "/problems/forbidden", "title": "Not allowed for this client", "status": 403,
                      "detail": "No referral with this reference for this client's organisation",
                      "reason": "wrong_organisation"}), (method, route)
    assert set(probes) == {403}
    reliability.row("attacks", finding="#11", attack="enumerate references: another organisation's staff "
                    "(and every other client) ask for an existing and an absent reference on "
                    f"{len(routes)} referral endpoints",
                    before="absent: 404 before any authorisation; existing but not yours: 403",
                    after=f"identical status and problem body in {compared} of {compared} pairs "
                          f"({'/'.join(map(str, sorted(statuses)))}); an absent reference is the same 403 "
                          "wrong_organisation as another organisation's referral, for its own staff too")


def _signed_without_authority(key, path: str, body: bytes, client_id: str) -> dict[str, str]:
    """An RFC 9421 signature as clients made them before: @method, @path, content-digest only."""
    components = ["@method", "@path", "content-digest"]
    headers = {"Content-Digest": httpsig.content_digest(body)}
    params = httpsig.serialize_signature_params(components, {
        "created": int(time.time()), "keyid": client_id, "alg": "ed25519", "nonce": uuid.uuid4().hex})
    base = httpsig.signature_base(components, params, method="POST", authority=None, path=path, query="",
                                  headers=headers)
    signature = base64.b64encode(key.sign(base.encode()).signature).decode()
    return headers | {"Signature-Input": f"sig1={params}", "Signature": f"sig1=:{signature}:",
                      "Content-Type": "application/json"}


async def test_a_signature_made_for_one_environment_is_refused_by_another(intake, aiohttp_client, reliability):
    captured: list[tuple[dict[str, str], bytes]] = []

    async def staging(request: web.Request) -> web.Response:  # another environment (or a log of it)
        captured.append((dict(request.headers), await request.read()))
        return web.json_response({}, status=202)

    app = web.Application()
    app.router.add_post("/v1/referrals", staging)
    staging_server = await aiohttp_client(app)
    key_file = intake.dir / "keys" / "dev-mash.ed25519"
    body = json.dumps(referral()).encode()
    status, _ = await signed_request("POST", str(staging_server.make_url("")), "/v1/referrals",
                                     client_id="dev-mash", key_file=key_file, body=body)  # the reference client
    assert status == 202
    [(headers, sent)] = captured
    assert '"@authority"' in headers["Signature-Input"]
    replay = {k: v for k, v in headers.items() if k in ("Signature-Input", "Signature", "Content-Digest",
                                                         "Content-Type")}
    replayed = await intake.client.post("/v1/referrals", data=sent, headers=replay)  # the same bytes, elsewhere
    assert (replayed.status, (await replayed.json())["reason"]) == (401, "bad_signature")
    legacy = await intake.client.post("/v1/referrals", data=body, headers=_signed_without_authority(
        intake.key("dev-mash"), "/v1/referrals", body, "dev-mash"))
    assert (legacy.status, (await legacy.json())["reason"]) == (401, "missing_component")
    status, reply = await signed_request("POST", str(intake.client.make_url("")), "/v1/referrals",
                                         client_id="dev-mash", key_file=key_file, body=body)
    assert status == 202, reply  # the reference client, addressing this environment: accepted
    assert await intake.count(tables.referrals) == 1
    reliability.row("attacks", finding="#17", attack="replay a request signed by the reference client for "
                    "another environment (captured there) against intake; a signature without @authority",
                    before="202 accepted: no client covered @authority and it was not required",
                    after=f"replay {replayed.status} bad_signature; without @authority {legacy.status} "
                          "missing_component; the reference client to this environment 202")


async def test_escalation_requires_and_checks_the_authority(esc, reliability):
    key = esc.client_key("dev-control-room")
    path = "/v1/alerts/no-such-alert/acknowledgement"
    async with esc.app() as server, aiohttp.ClientSession() as session:
        async def post(headers: dict[str, str]) -> tuple[int, str | None]:
            async with session.post(server.make_url(path), data=b"{}", headers=headers) as resp:
                return resp.status, (await resp.json(content_type=None)).get("detail")

        def signed(authority: str) -> dict[str, str]:
            return {**httpsig.sign_request(method="POST", path=path, body=b"{}", key_id="dev-control-room",
                                           key=key, authority=authority), "Content-Type": "application/json"}

        legacy = await post(_signed_without_authority(key, path, b"{}", "dev-control-room"))
        assert legacy == (401, "signature rejected: missing_component")
        elsewhere = await post(signed("escalation.prod.example.gov.uk"))
        assert elsewhere == (401, "signature rejected: bad_signature")
        here = await post(signed(httpsig.authority_of(server.make_url(path))))
    assert here == (404, "no such alert")  # the signature is good: on to the alert
    reliability.row("attacks", finding="#17", attack="escalation alert acknowledgement signed without "
                    "@authority, and signed for another environment's authority",
                    before="without @authority: accepted (on to the alert)",
                    after=f"{legacy[0]} missing_component; {elsewhere[0]} bad_signature; signed for this "
                          f"host: {here[0]} (no such alert)")


async def test_a_rejected_amqp_submission_is_never_parked_in_clear(intake, amqp_vhost, rabbitmqctl, reliability):
    """#1: with broker credentials, read what intake parks for four rejected submissions, then
    try every sealing key of the set-up on each: only its recipient teams' keys open it."""
    from shared.bus.parked import open_parked
    from shared.crypto import CryptoError
    from tests.bus.test_topology import list_queues
    from tests.factories import canary_phone, new_canary, postcode_of, referral_body
    from tests.intake.conftest import OTHER_LA

    # case -> (the body, tamper the signature, the key files that must open it)
    cases = {"unknown LA, validly signed": (lambda c, p: referral_body(c, p, la_code="E11111111"), False,
                                            ["dev-force"]),
             "schema-invalid, validly signed": (lambda c, p: referral_body(c, p, age_band="99-100"), False,
                                                ["E99999999", "dev-force"]),
             "bad signature": (lambda c, p: referral_body(c, p), True, ["E99999999", "dev-force"]),
             "not JSON": (lambda c, p: f"{c} {p}".encode(), False, [])}
    leaked, reasons, kept = [], [], []
    conn = await aio_pika.connect(intake.settings.amqp_url)
    try:
        channel = await conn.channel()
        direct = await DirectReplies.on(channel)
        exchange = await channel.get_exchange("safeguard.submissions")
        parked_queue = await channel.declare_queue("intake.submissions.parked", passive=True)
        for make_body, tamper, _ in cases.values():
            canary, phone = new_canary(), canary_phone()
            message = signed_message(intake, make_body(canary, phone), DirectReplies.NAME, tamper=tamper)
            await exchange.publish(message, "referral")
            reasons.append(json.loads((await direct.get()).body)["reason"])
            parked = await get_one(parked_queue)
            seen = (parked.body.decode("utf-8", "replace") + repr(parked.headers) + repr(parked.info())
                    + str(parked.message_id) + str(parked.correlation_id))
            leaked += [m for m in (canary, postcode_of(canary), phone[1:]) if m in seen]
            kept.append((canary, parked.body))
    finally:
        await conn.close()
    assert leaked == []
    every_key = ("E99999999", "dev-force", OTHER_LA, "notifier")
    opened_by = []
    for (canary, body), (_, _, teams) in zip(kept, cases.values()):
        opens = []
        for org in every_key:
            try:
                opened = open_parked(body, intake.team_key(org))
            except CryptoError:
                continue
            assert canary.encode() in opened.body
            opens.append(org)
        opened_by.append(opens)
    assert opened_by == [teams for _, _, teams in cases.values()]
    ttls = {name: args.get("x-message-ttl") for name, (_, _, args) in list_queues(rabbitmqctl, amqp_vhost).items()
            if name.endswith(".parked")}
    assert ttls and set(ttls.values()) == {14 * 86400 * 1000}
    reliability.row("attacks", finding="#1", attack="read intake.submissions.parked with broker credentials "
                    "after " + ", ".join(f"{c} ({r})" for c, r in zip(cases, reasons)) + " AMQP submissions "
                    "carrying canaries in the child's name, address and school, the narrative and the guardians' "
                    "contacts; then try every sealing key of the set-up on each",
                    before="the full submission in clear (name, date of birth, narrative, guardian contacts) "
                           "with its signature headers; no TTL: kept forever (later: sealed to an ops-held "
                           "parking key, not to the recipient teams)",
                    after=f"canaries found in parked bodies, headers or properties: {len(leaked)}; metadata only "
                          "(id, client, reason, size, SHA-256) with the message sealed to its recipient teams — "
                          "opened by: " + "; ".join(f"{c}: {', '.join(o) or 'none (body dropped)'}"
                                                    for c, o in zip(cases, opened_by))
                          + f" (of {len(every_key)} keys tried); x-message-ttl 14 days on all {len(ttls)} parking "
                          "queues; retention re-parks the broker's own dead letters safely and deletes expired ones")


async def test_a_parked_bus_message_keeps_no_sealed_section(intake, reliability):
    """#3: a notifier-bound message with the sealed contacts, parked by the notifier's dispatch table."""
    from services.notifier.entrypoints.amqp import DISPATCH
    from shared import bus
    from shared.crypto import load_private_sealing_key, open_sealed, public_key_from_b64, seal
    from shared.runtime import service_signing_key, service_verify_keys
    from tests.bus.helpers import Recorder
    from tests.bus.helpers import get_one as take
    from tests.factories import new_canary, referral_received

    settings, canary = intake.settings, new_canary()
    svc = settings.file.services["notifier"]
    contacts = seal(json.dumps({"guardians": [{"email": f"{canary}@example.org"}]}).encode(), referral_id="r1",
                    recipients={svc.sealing_key_id: public_key_from_b64(svc.sealing_public_key)})
    notifier_key = load_private_sealing_key(settings.resolve_path(svc.sealing_key_file))
    assert canary.encode() in open_sealed(contacts, referral_id="r1", key_id=svc.sealing_key_id,
                                          private_key=notifier_key)  # what a kept copy would still give away
    connection = await bus.connect(settings.amqp_url, name="attack-parked")
    publisher = bus.Publisher(connection, producer="intake", signing_key=service_signing_key(settings, "intake"))
    liar = bus.Publisher(connection, producer="escalation", signing_key=service_signing_key(settings, "escalation"))
    consumer = bus.Consumer(connection, bus.queue_spec(bus.NOTIFIER_REQUESTS), Recorder(lambda m, n: DISPATCH(m)),
                            publisher=publisher, verify_keys=service_verify_keys(settings),
                            allowed_producers=DISPATCH.producers)
    await consumer.start()
    try:  # escalation may not send referral.received: parked producer_not_allowed_for_key
        body = referral_received(datetime.now(UTC), referral_id="r1", contacts_sealed=contacts).to_bytes()
        await liar.publish(bus.EVENTS, "referral.received", body, message_id=str(uuid.uuid4()))
        parked = await take(connection, "notifier.requests.parked")
    finally:
        await consumer.stop()
        await liar.close()
        await publisher.close()
        await connection.close()
    assert parked.headers["x-parked-reason"] == "producer_not_allowed_for_key"
    kept = [k for k in ("contacts_sealed", "ciphertext", "sealed_key") if k.encode() in parked.body]
    assert kept == [] and parked.headers["x-parked-stripped"] == "contacts_sealed"
    reliability.row("attacks", finding="#3", attack="read a parked notifier.requests message that carried the "
                    "sealed contacts (parked producer_not_allowed_for_key), then open it with the notifier's "
                    "key (retired or not)",
                    before="the parked copy kept contacts_sealed: the notifier key, even after rotation and "
                           "rewrap, still opened the guardians' contacts",
                    after=f"sealed fields kept in the parked copy: {len(kept)} (x-parked-stripped: "
                          f"{parked.headers['x-parked-stripped']}); such a copy is never replayed; ids and codes "
                          "stay for the operator")


async def test_a_submission_cannot_make_intake_write_into_another_queue(intake, reliability):
    """Issue 18 #8: `reply_to` went to any queue (a garbage message put a problem document into
    `control-room.dev-force`), and each name became a metrics label."""
    from prometheus_client import REGISTRY
    conn = await aio_pika.connect(intake.settings.amqp_url)
    try:
        channel = await conn.channel()
        victim = await channel.declare_queue(f"victim-{uuid.uuid4().hex}", exclusive=True)
        mine = await channel.declare_queue(f"reply.dev-mash.{uuid.uuid4().hex}", exclusive=True)
        exchange = await channel.get_exchange("safeguard.submissions")
        for body in (b'{"not": "a referral"}', referral_body()):
            await exchange.publish(signed_message(intake, body, victim.name), "referral")
        await exchange.publish(signed_message(intake, b'{"not": "a referral"}', mine.name), "referral")
        assert json.loads((await get_one(mine)).body)["status"] == 422  # its own reply queue: answered
        await asyncio.sleep(1.0)
        assert await victim.get(fail=False) is None  # any other queue: never written to
    finally:
        await conn.close()
    labels = {s.labels.get("routing_key") for m in REGISTRY.collect() if m.name == "safeguard_messages_published"
              for s in m.samples}
    assert victim.name not in labels and mine.name not in labels
    reliability.row("attacks", finding="#8", attack="AMQP submissions (valid and invalid) whose reply_to names "
                    "another queue",
                    before="intake published its reply or problem document into that queue; each name a metrics label",
                    after="no reply (logged submission_reply_refused); replies only to amq.rabbitmq.reply-to or "
                          "reply.<client id>.…; reply queues share one label ('reply')")
