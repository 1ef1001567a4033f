"""Email and Teams channels against real local servers: results are classified right."""
from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from services.notifier.adapters.channels.email import EmailChannel, SmtpConfig
from services.notifier.adapters.channels.teams import TeamsChannel, valid_webhook
from services.notifier.adapters.rendering import Renderer
from services.notifier.domain.lifecycle import Outcome
from tests.notifier.servers import SmtpSink, TeamsStub
from tests.support.processes import free_port

TIMES = {"acknowledge_by": datetime(2026, 12, 29, 15, tzinfo=UTC)}


@pytest.fixture
def rendered():
    return Renderer(public_base_url="http://p").render(
        template="receipt", kind="team", reference="SR-1", times=TIMES)


@pytest.fixture
def smtp():
    with SmtpSink() as sink:
        yield sink


@pytest.fixture
async def teams():
    async with TeamsStub() as stub:
        yield stub


def test_smtp_url_parsing():
    c = SmtpConfig.from_url("smtps://user%40x:p%3Ass@mail.example?from=relay@x.example")
    assert (c.host, c.port, c.implicit_tls, c.username, c.password, c.sender) == (
        "mail.example", 465, True, "user@x", "p:ss", "relay@x.example")
    c = SmtpConfig.from_url("smtp://127.0.0.1:8025")
    assert (c.port, c.implicit_tls, c.username) == (8025, False, None)
    with pytest.raises(ValueError):
        SmtpConfig.from_url("http://x")


async def test_email_delivered_with_text_html_and_stable_message_id(smtp, rendered):
    channel = EmailChannel(smtp.url)
    result = await channel.send(rendered, "mash@x.example", "abc-1")
    await channel.close()
    assert result.outcome == Outcome.DELIVERED
    [mail] = smtp.to("mash@x.example")
    assert mail.subject == rendered.subject and "SR-1" in mail.text and "<html" in mail.html
    assert "Message-ID: <abc-1@safeguard-relay>" in mail.raw


async def test_email_550_is_permanent_and_451_temporary(smtp, rendered):
    smtp.rcpt_replies = {"gone": "550 5.1.1 Mailbox unavailable", "busy": "451 4.3.0 Try later"}
    channel = EmailChannel(smtp.url)
    result = await channel.send(rendered, "gone@x.example", "m1")
    assert (result.outcome, result.reason) == (Outcome.PERMANENT, "smtp_550")
    result = await channel.send(rendered, "busy@x.example", "m2")
    assert (result.outcome, result.reason) == (Outcome.TEMPORARY, "smtp_451")
    assert smtp.mails == []


async def test_emails_share_one_connection_and_a_dropped_one_is_replaced(smtp, rendered):
    channel = EmailChannel(smtp.url)
    try:
        for i in range(5):
            assert (await channel.send(rendered, "mash@x.example", f"m{i}")).outcome == Outcome.DELIVERED
        assert len({m.peer for m in smtp.mails}) == 1  # one handshake for five emails
        smtp.stop()  # the server goes away (and with it the kept connection) and comes back
        smtp.start()
        assert (await channel.send(rendered, "mash@x.example", "m5")).outcome == Outcome.DELIVERED
        assert len(smtp.mails) == 6 and len({m.peer for m in smtp.mails}) == 2
    finally:
        await channel.close()


async def test_a_refused_message_does_not_leave_its_connection_kept(smtp, rendered):
    smtp.rcpt_replies = {"gone": "550 5.1.1 Mailbox unavailable"}
    channel = EmailChannel(smtp.url)
    try:
        assert (await channel.send(rendered, "gone@x.example", "m1")).outcome == Outcome.PERMANENT
        assert channel._idle == []
        assert (await channel.send(rendered, "mash@x.example", "m2")).outcome == Outcome.DELIVERED
        assert len(channel._idle) == 1
    finally:
        await channel.close()
    assert channel._idle == []


async def test_email_server_down_is_temporary(rendered):
    result = await EmailChannel(f"smtp://127.0.0.1:{free_port()}", timeout_s=2).send(rendered, "a@x.example", "m")
    assert (result.outcome, result.reason) == (Outcome.TEMPORARY, "smtp_unavailable")


@pytest.mark.parametrize("status,headers,outcome,reason,retry_after", [
    (429, {"Retry-After": "2"}, Outcome.TEMPORARY, "http_429", 2.0),
    (503, {}, Outcome.TEMPORARY, "http_503", None),
    (500, {}, Outcome.TEMPORARY, "http_500", None),
    (400, {}, Outcome.PERMANENT, "http_400", None),
    (413, {}, Outcome.PERMANENT, "http_413", None),
    (404, {}, Outcome.PERMANENT, "http_404", None),
])
async def test_teams_statuses_are_classified(teams, rendered, status, headers, outcome, reason, retry_after):
    teams.script["t"].append((status, headers))
    channel = TeamsChannel()
    try:
        result = await channel.send(rendered, f"{teams.base}/teams/t", "m")
    finally:
        await channel.close()
    assert (result.outcome, result.reason, result.retry_after_s) == (outcome, reason, retry_after)


async def test_teams_delivered_posts_the_card(teams, rendered):
    channel = TeamsChannel()
    try:
        assert (await channel.send(rendered, f"{teams.base}/teams/t", "m")).outcome == Outcome.DELIVERED
    finally:
        await channel.close()
    assert teams.posts["t"] == [rendered.card]


async def test_teams_paces_four_per_second_per_webhook(teams, rendered):
    channel = TeamsChannel()
    try:
        await asyncio.gather(*(channel.send(rendered, f"{teams.base}/teams/t", "m") for _ in range(6)))
    finally:
        await channel.close()
    times = teams.times["t"]
    assert len(times) == 6 and times[-1] - times[0] >= 5 * 0.25 - 0.05


async def test_teams_timeout_and_connection_refused_are_temporary(teams, rendered):
    teams.delay_s = 1.0
    channel = TeamsChannel(timeout_s=0.3)
    try:
        assert (await channel.send(rendered, f"{teams.base}/teams/t", "m")).reason == "timeout"
        result = await channel.send(rendered, f"http://127.0.0.1:{free_port()}/teams/t", "m")
        assert (result.outcome, result.reason) == (Outcome.TEMPORARY, "connection_error")
    finally:
        await channel.close()


@pytest.mark.parametrize("url,ok", [
    ("https://prod-00.westeurope.logic.azure.com/workflows/abc", True), ("http://127.0.0.1:8026/teams/x", True),
    ("http://example.com/hook", False), ("ftp://x/y", False), ("not a url", False), ("https://u:p@x.example/", False),
    ("https://x.example:99999/", False),
])
def test_webhook_url_validation(url, ok):
    assert valid_webhook(url) is ok


async def test_invalid_webhook_is_permanent_without_a_request(rendered):
    result = await TeamsChannel().send(rendered, "http://example.com/hook", "m")
    assert (result.outcome, result.reason) == (Outcome.PERMANENT, "invalid_webhook_url")


async def test_team_messages_link_to_the_workspace_and_referrers_and_families_get_no_link(smtp, teams):
    """DESIGN §3.7: links in emails and Teams cards open `{public_base_url}/referrals/{reference}`
    (the intake workspace page), in the text part, the HTML part and the card; a referrer's or a
    family's message, as delivered, carries no link (they cannot sign in)."""
    renderer = Renderer(public_base_url="http://127.0.0.1:8080/")
    url = "http://127.0.0.1:8080/referrals/PRV-2026-000042"
    team = renderer.render(template="receipt", kind="team", reference="PRV-2026-000042", times=TIMES)
    email_channel, teams_channel = EmailChannel(smtp.url), TeamsChannel()
    try:
        assert (await email_channel.send(team, "mash@x.example", "t-1")).outcome == Outcome.DELIVERED
        assert (await teams_channel.send(team, f"{teams.base}/teams/mash", "t-2")).outcome == Outcome.DELIVERED
        for kind, minimal in [("referrer", False), ("guardians", False), ("referrer", True), ("guardians", True)]:
            out = renderer.render(template="feedback", kind=kind, reference="PRV-2026-000042", times={},
                                  minimal=minimal)
            assert (await email_channel.send(out, f"{kind}@x.example", f"{kind}-{minimal}")).outcome == Outcome.DELIVERED
    finally:
        await email_channel.close()
        await teams_channel.close()
    [mail] = smtp.to("mash@x.example")
    assert f"Open the referral: {url}" in mail.text
    assert f'<a href="{url}"' in mail.html
    [card] = teams.posts["mash"]
    assert card["attachments"][0]["content"]["actions"] == [
        {"type": "Action.OpenUrl", "title": "Open the referral", "url": url}]
    assert "8081" not in mail.text + mail.html + str(card)  # not the escalation console
    for kind in ("referrer", "guardians"):
        mails = smtp.to(f"{kind}@x.example")
        assert len(mails) == 2
        for m in mails:
            assert "PRV-2026-000042" in m.text
            assert "http" not in m.text and "<a " not in m.html and "/referrals/" not in m.raw
