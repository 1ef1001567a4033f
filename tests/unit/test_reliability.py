"""docs/reliability.md rendering: fresh tables replace only changed blocks; unchanged
figures keep their old time stamp, so a reproducing run leaves the file as it was."""
from __future__ import annotations

from tests.reliability import _table, render


def test_a_changed_table_is_rewritten_and_others_are_kept() -> None:
    first = render("", {"tamper": _table([{"case": "edit", "detected": "yes"}]),
                        "keys": _table([{"check": "a", "result": 1}])}, "_stamp 1_")
    assert first.index("## Tamper evidence") < first.index("## Key rotation")
    assert render(first, {"tamper": _table([{"case": "edit", "detected": "yes"}])}, "_stamp 2_") == first
    second = render(first, {"keys": _table([{"check": "a", "result": 2}])}, "_stamp 2_")
    assert second.count("_stamp 1_") == 1 and second.count("_stamp 2_") == 1
    assert "| a | 2 |" in second and "| edit | yes |" in second
    assert render(second, {}, "_stamp 3_") == second


def test_cells_are_escaped_and_missing_values_blank() -> None:
    assert _table([{"a": "x|y"}, {"b": None}]).splitlines()[2:] == ["| x\\|y |  |", "|  |  |"]
