"""One email's bytes, built once: a multipart/alternative (plain text, then HTML) message.

The standard library's `EmailMessage` parses every header it is given through its header
registry and is flattened again by aiosmtplib: about 5 ms of CPU an email here, the largest
single cost of a notification (issue 20's profile). Our messages have one fixed shape, so
they are written directly: ASCII headers as they are (RFC 2047 encoded-words otherwise),
each body part quoted-printable in UTF-8 with CRLF line ends (`binascii.b2a_qp`, C code),
a random boundary. `tests/notifier/test_mime.py` reads the result back with the standard
library's parser and compares it with what went in.
"""
from __future__ import annotations

import binascii
import secrets
from email.header import Header
from email.utils import formatdate


class HeaderInjection(ValueError):
    """A header value with a line break: refused rather than sent."""


def _header(value: str) -> str:
    if "\r" in value or "\n" in value:
        raise HeaderInjection("a header value holds a line break")
    return value if value.isascii() and len(value) < 900 else Header(value, "utf-8").encode()


def _part(subtype: str, text: str) -> bytes:
    crlf = text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\r\n")
    return (f'Content-Type: text/{subtype}; charset="utf-8"\r\n'
            "Content-Transfer-Encoding: quoted-printable\r\n\r\n").encode() + binascii.b2a_qp(crlf.encode())


def email_bytes(*, sender: str, to: str, subject: str, text: str, html: str, message_id: str,
                date: str | None = None) -> bytes:
    """The whole message (headers and body) as sent with SMTP DATA."""
    boundary = "=_sg_" + secrets.token_hex(16)  # "=_" never appears in quoted-printable text
    headers = (("From", sender), ("To", to), ("Subject", subject),
               ("Date", date or formatdate(localtime=False)), ("Message-ID", f"<{message_id}@safeguard-relay>"),
               ("Auto-Submitted", "auto-generated"), ("MIME-Version", "1.0"))
    head = "".join(f"{name}: {_header(value)}\r\n" for name, value in headers)
    head += f'Content-Type: multipart/alternative; boundary="{boundary}"\r\n\r\n'
    delimiter = f"\r\n--{boundary}\r\n".encode()
    return (head.encode() + delimiter[2:] + _part("plain", text) + delimiter + _part("html", html)
            + f"\r\n--{boundary}--\r\n".encode())
