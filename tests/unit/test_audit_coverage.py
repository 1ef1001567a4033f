"""When `safeguard audit verify` requires a chain's head to be covered by a checkpoint in the
stream (issue 18 #2): always after a clean stop; never while the service runs, nor after a
stop without a final checkpoint (both reported)."""
from __future__ import annotations

import pytest

from safeguard.audit_verify import coverage
from shared.audit_store import Record


def rec(event: str, seq: int, replica: str = "a") -> Record:
    return Record("intake", replica, event, seq, "h", "2026-01-01T00:00:00+00:00", "s")


CLEAN = [rec("start", 0), rec("checkpoint", 3), rec("final", 5)]
CRASHED = [rec("start", 0), rec("checkpoint", 3)]
NO_FINAL = "the service stopped without a final checkpoint (a crash?); starting it signs its head"
TWO_REPLICAS = [rec("start", 0, "a"), rec("start", 0, "b"), rec("final", 4, "a"), rec("final", 6, "b")]


@pytest.mark.parametrize("records,head,running,expected", [
    (CLEAN, 5, False, (True, None)),
    (TWO_REPLICAS, 6, False, (True, None)),
    (CLEAN, 6, False, (False, "head 6 is not covered by a checkpoint after a clean stop (last checkpoint 5)")),
    (TWO_REPLICAS, 8, False, (False, "head 8 is not covered by a checkpoint after a clean stop (last checkpoint 6)")),
    ([], 2, False, (False, "head 2 is not covered by any checkpoint in safeguard.audit.checkpoints")),
    ([], 0, False, (True, None)),
    (CLEAN, 7, True, (True, "entries 6..7 not covered by a checkpoint yet (the service is running)")),
    (CLEAN + [rec("start", 5)], 6, False,
     (True, f"entry 6 not covered: {NO_FINAL}")),
    (CRASHED, 4, False,
     (True, f"entry 4 not covered: {NO_FINAL}")),
])
def test_head_coverage(records, head, running, expected):
    assert coverage(records, head, running) == expected
