"""mime.email_bytes against the standard library's parser: what went in comes back out."""
from __future__ import annotations

import email
from email import policy

import pytest

from services.notifier.adapters.channels.mime import HeaderInjection, email_bytes

TRICKY = ("Line one\nFrom the start of a line\n.a dot first\ntrailing spaces   \n"
          + "x" * 300 + "\nnon-ASCII: café — £5 ✓\n=3D looks encoded\n\nlast")


def _parse(raw: bytes):
    return email.message_from_bytes(raw, policy=policy.default)


def test_round_trip_through_the_standard_parser():
    raw = email_bytes(sender="safeguard-relay@localhost", to="mash@dev-borough.example",
                      subject="New referral PRV-2026-000001", text=TRICKY, html=f"<p>{TRICKY}</p>",
                      message_id="abc123", date="Fri, 04 Dec 2026 18:00:00 -0000")
    msg = _parse(raw)
    assert msg.defects == [] and all(part.defects == [] for part in msg.walk())
    assert msg["From"] == "safeguard-relay@localhost" and msg["To"] == "mash@dev-borough.example"
    assert msg["Subject"] == "New referral PRV-2026-000001"
    assert msg["Message-ID"] == "<abc123@safeguard-relay>" and msg["Auto-Submitted"] == "auto-generated"
    assert msg["Date"] == "Fri, 04 Dec 2026 18:00:00 -0000"
    assert msg.get_content_type() == "multipart/alternative"
    plain, html = msg.get_body(("plain",)), msg.get_body(("html",))
    assert plain.get_content().replace("\r\n", "\n") == TRICKY
    assert html.get_content().replace("\r\n", "\n") == f"<p>{TRICKY}</p>"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    # SMTP needs CRLF line ends and lines of at most 998 octets; quoted-printable keeps them at 76.
    lines = raw.split(b"\r\n")
    assert b"\n" not in b"".join(lines) and max(len(li) for li in lines) <= 998
    assert raw.isascii()


def test_a_non_ascii_subject_is_an_encoded_word():
    msg = _parse(email_bytes(sender="s@localhost", to="t@example.org", subject="Référral — due £",
                             text="t", html="h", message_id="m"))
    assert msg["Subject"] == "Référral — due £"


@pytest.mark.parametrize("field", ["to", "subject"])
def test_a_line_break_in_a_header_is_refused(field):
    values = {"sender": "s@localhost", "to": "t@example.org", "subject": "s", "text": "t", "html": "h",
              "message_id": "m"}
    values[field] += "\r\nBcc: victim@example.org"
    with pytest.raises(HeaderInjection):
        email_bytes(**values)


def test_each_message_has_its_own_boundary():
    one, two = (_parse(email_bytes(sender="s@localhost", to="t@example.org", subject="s", text="t", html="h",
                                   message_id="m")) for _ in range(2))
    assert one.get_boundary() != two.get_boundary()
