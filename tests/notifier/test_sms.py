"""SMS through GOV.UK Notify, against a real local HTTP server standing in for Notify's API."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from datetime import UTC, datetime

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from services.notifier.adapters.channels.sms import KEY_ENV, TEMPLATE_ENV, NotifyConfig, SmsChannel, notify_jwt
from services.notifier.adapters.rendering import Renderer
from services.notifier.domain.lifecycle import Outcome
from shared.config import ConfigError
from tests.notifier.conftest import CANARY
from tests.notifier.test_flow import everything
from tests.support.processes import free_port

SERVICE_ID, SECRET, TEMPLATE = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
API_KEY = f"safeguard_live-{SERVICE_ID}-{SECRET}"


def _unb64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def claims_of(token: str, secret: str) -> dict:
    """Check the HS256 signature the way Notify does; return the claims."""
    header, claims, signature = token.split(".")
    expected = hmac.new(secret.encode(), f"{header}.{claims}".encode(), hashlib.sha256).digest()
    assert hmac.compare_digest(_unb64(signature), expected)
    assert json.loads(_unb64(header)) == {"typ": "JWT", "alg": "HS256"}
    return json.loads(_unb64(claims))


class NotifyStub:
    """POST /v2/notifications/sms: records requests, answers with the next queued status."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.answers: list[tuple[int, dict]] = []
        app = web.Application()
        app.router.add_post("/v2/notifications/sms", self.sms)
        self.server = TestServer(app)

    async def sms(self, request: web.Request) -> web.Response:
        self.requests.append({"auth": request.headers.get("Authorization", ""), "body": await request.json()})
        status, headers = self.answers.pop(0) if self.answers else (201, {})
        return web.json_response({"id": str(uuid.uuid4())} if status == 201 else {"errors": []},
                                 status=status, headers=headers)


@pytest.fixture
async def notify():
    stub = NotifyStub()
    await stub.server.start_server()
    yield stub
    await stub.server.close()


def rendered():
    return Renderer(public_base_url="http://p").render(
        template="immediate_safety", kind="team", reference="PRV-2026-000042",
        times={"acknowledge_by": datetime(2026, 12, 29, 15, tzinfo=UTC)}, urgent=True)


def config_for(stub: NotifyStub) -> NotifyConfig:
    return NotifyConfig.from_env({KEY_ENV: API_KEY, TEMPLATE_ENV: TEMPLATE,
                                  "SAFEGUARD_NOTIFY_URL": str(stub.server.make_url("/")).rstrip("/")})


def test_configuration_from_the_environment():
    assert NotifyConfig.from_env({}) is None  # SMS off
    cfg = NotifyConfig.from_env({KEY_ENV: API_KEY, TEMPLATE_ENV: TEMPLATE})
    assert (cfg.service_id, cfg.secret, cfg.template_id) == (SERVICE_ID, SECRET, TEMPLATE)
    assert SECRET not in repr(cfg)
    for env, key in (({KEY_ENV: "not-a-key", TEMPLATE_ENV: TEMPLATE}, KEY_ENV),
                     ({KEY_ENV: API_KEY}, TEMPLATE_ENV),
                     ({KEY_ENV: API_KEY, TEMPLATE_ENV: TEMPLATE, "SAFEGUARD_NOTIFY_URL": "http://notify.example"},
                      "SAFEGUARD_NOTIFY_URL")):
        with pytest.raises(ConfigError, match=key) as err:
            NotifyConfig.from_env(env)
        assert SECRET not in str(err.value)


def test_the_token_is_the_hs256_jwt_notify_expects():
    now = time.time()
    assert claims_of(notify_jwt(SERVICE_ID, SECRET, now), SECRET) == {"iss": SERVICE_ID, "iat": int(now)}


async def test_an_sms_is_sent_signed_with_the_subject_only(notify):
    channel = SmsChannel(config_for(notify))
    try:
        msg = rendered()
        result = await channel.send(msg, "07700900123", "send-n1-sms")
    finally:
        await channel.close()
    assert result.outcome == Outcome.DELIVERED
    [req] = notify.requests
    assert req["auth"].startswith("Bearer ")
    assert claims_of(req["auth"].removeprefix("Bearer "), SECRET)["iss"] == SERVICE_ID
    assert req["body"] == {"phone_number": "07700900123", "template_id": TEMPLATE,
                           "personalisation": {"body": msg.subject}, "reference": "send-n1-sms"}
    assert "PRV-2026-000042" in msg.subject


@pytest.mark.parametrize("status,headers,outcome,reason,retry_after", [
    (400, {}, Outcome.PERMANENT, "notify_400", None),
    (403, {}, Outcome.TECHNICAL, "notify_403", None),
    (429, {"Retry-After": "3"}, Outcome.TEMPORARY, "notify_429", 3.0),
    (500, {}, Outcome.TEMPORARY, "notify_500", None),
])
async def test_notify_answers_are_classified(notify, status, headers, outcome, reason, retry_after):
    notify.answers.append((status, headers))
    channel = SmsChannel(config_for(notify))
    try:
        result = await channel.send(rendered(), "07700900123", "send-n2-sms")
    finally:
        await channel.close()
    assert (result.outcome, result.reason, result.retry_after_s) == (outcome, reason, retry_after)


async def test_notify_unreachable_is_temporary():
    cfg = NotifyConfig.from_env({KEY_ENV: API_KEY, TEMPLATE_ENV: TEMPLATE,
                                 "SAFEGUARD_NOTIFY_URL": f"http://127.0.0.1:{free_port()}"})
    channel = SmsChannel(cfg)
    try:
        result = await channel.send(rendered(), "07700900123", "send-n3-sms")
    finally:
        await channel.close()
    assert (result.outcome, result.reason) == (Outcome.TEMPORARY, "connection_error")


@pytest.fixture
async def sms_enabled(notify, monkeypatch):
    """Notify configured in the environment the notifier reads at start (before `world`)."""
    monkeypatch.setenv(KEY_ENV, API_KEY)
    monkeypatch.setenv(TEMPLATE_ENV, TEMPLATE)
    monkeypatch.setenv("SAFEGUARD_NOTIFY_URL", str(notify.server.make_url("/")).rstrip("/"))
    return notify


@pytest.mark.broker
@pytest.mark.database
async def test_a_referrer_with_a_phone_gets_an_email_and_an_sms_once_each(sms_enabled, world):
    await world.received()
    contacts = {"referrer": {"name": CANARY, "email": "referrer@mash.example", "phone": "07700900456"}}
    req = world.request("referral_acknowledgement", "referrer", contacts=world.sealed_contacts(contacts))
    await world.publish(req, "escalation")
    await world.publish(req, "escalation")  # a redelivered copy sends nothing twice
    rows = await world.settled(req, count=2)
    assert (rows["email"].status, rows["sms"].status) == ("delivered", "delivered")
    [sms] = sms_enabled.requests
    assert sms["body"]["phone_number"] == "07700900456"
    assert world.reference in sms["body"]["personalisation"]["body"]
    assert CANARY not in json.dumps(sms_enabled.requests) and CANARY not in everything(world)
