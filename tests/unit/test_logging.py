"""The redaction processor keeps content out of every log line, stdlib loggers included."""
from __future__ import annotations

import io
import json
import logging

import pytest
import structlog
from structlog.testing import capture_logs

from shared.logging import Sensitive, bind_contextvars, configure, get_logger, redact, sensitive_scope

CANARY = "CANARY-7f3a-narrative-of-a-child"


@pytest.fixture
def log_stream():
    stream = io.StringIO()
    configure("intake", "json", stream=stream)
    yield stream
    structlog.reset_defaults()
    logging.getLogger().handlers.clear()


def lines(stream) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_sensitive_field_names_are_redacted(log_stream):
    get_logger("t").info("referral_received", narrative=CANARY, subject={"name": CANARY}, reference="PRV-2026-000001")
    [entry] = lines(log_stream)
    assert CANARY not in log_stream.getvalue()
    assert entry["reference"] == "PRV-2026-000001"
    assert entry["narrative"] == "[redacted]"
    assert entry["service"] == "intake"


def test_sensitive_wrapper_and_marked_values_are_scrubbed(log_stream):
    log = get_logger("t")
    log.info("wrapped", value=Sensitive(CANARY))
    with sensitive_scope([CANARY]):
        log.info(f"free text that quotes {CANARY} by mistake", detail=[f"x{CANARY}y"])
    assert CANARY not in log_stream.getvalue()
    assert len(lines(log_stream)) == 2


@pytest.mark.parametrize("logger_name", ["aio_pika", "aiormq.connection", "aiohttp.server", "root"])
def test_stdlib_library_loggers_are_redacted(log_stream, logger_name):
    std = logging.getLogger(None if logger_name == "root" else logger_name)
    with sensitive_scope([CANARY]):
        std.warning("returned message body=%r", {"narrative": CANARY})
        try:
            raise ValueError(f"bad value {CANARY}")
        except ValueError:
            std.exception("handler failed")
    text = log_stream.getvalue()
    assert CANARY not in text
    entries = lines(log_stream)
    assert [e["event"].startswith(("returned", "handler")) for e in entries] == [True, True]
    assert "ValueError" in entries[1]["exception"]


def test_user_and_password_in_a_url_never_reach_a_line(log_stream):
    """A library's repr of its connection (aiormq: `<Connection: "amqp://user:******@host:port/">`)."""
    logging.getLogger("aio_pika.tools").error('<Connection: "amqp://svc-%s:******@10.0.0.7:5672/v"> closed', CANARY)
    get_logger("t").warning("x", url=f"postgresql+asyncpg://app:{CANARY}@db:5432/intake", hosts=["amqps://a:b@h/"])
    text = log_stream.getvalue()
    assert CANARY not in text and "a:b@" not in text
    assert "amqp://[redacted]@10.0.0.7:5672/v" in text and "postgresql+asyncpg://[redacted]@db:5432/intake" in text


def test_context_ids_are_bound(log_stream):
    bind_contextvars(message_id="m-1", correlation_id="c-1")
    get_logger("t").info("consumed")
    [entry] = lines(log_stream)
    assert (entry["message_id"], entry["correlation_id"], entry["service"]) == ("m-1", "c-1", "intake")


def test_redact_processor_directly_with_capture_logs():
    with capture_logs(processors=[redact]) as captured:
        get_logger("t").info("x", email="a@b.example", reference="PRV-1")
    assert captured[0]["email"] == "[redacted]"
    assert captured[0]["reference"] == "PRV-1"
