"""W3C traceparent helpers."""
from __future__ import annotations

from shared import tracing


def test_child_keeps_the_trace_and_makes_a_new_span():
    parent = tracing.new_traceparent()
    child = tracing.child_of(parent)
    assert tracing.trace_id(child) == tracing.trace_id(parent)
    assert tracing.parse(child)[1] != tracing.parse(parent)[1]
    assert child.startswith("00-") and child.endswith("-01")


def test_invalid_or_missing_parent_starts_a_new_trace():
    for bad in (None, "", "garbage", b"00-xyz", "00-" + "0" * 32 + "-" + "1" * 16 + "-01",
                "00-" + "a" * 32 + "-" + "0" * 16 + "-01", 42):
        assert tracing.parse(bad) is None
        assert tracing.parse(tracing.child_of(bad)) is not None


def test_bytes_header_values_are_accepted():
    tp = tracing.new_traceparent()
    assert tracing.trace_id(tp.encode()) == tracing.trace_id(tp)
