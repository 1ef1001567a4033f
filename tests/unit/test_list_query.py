"""The list API's query (services/intake/domain/listing.py, pure): parameters, defaults,
the opaque cursor and its filters' fingerprint."""
from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.intake.domain.errors import SchemaInvalid
from services.intake.domain.listing import DEFAULT_LIMIT, ListQuery, Position, parse


def test_defaults_and_every_parameter() -> None:
    assert parse([]) == ListQuery(limit=DEFAULT_LIMIT)
    q = parse([("status", "decided"), ("overdue", "true"), ("updated_since", "2026-03-02T09:00:00+01:00"),
               ("limit", "200")])
    assert q == ListQuery(status="decided", overdue=True, updated_since=datetime(2026, 3, 2, 8, tzinfo=UTC),
                          limit=200)


def test_an_unencoded_plus_read_as_a_space_is_an_offset() -> None:
    q = parse([("updated_since", "2026-03-02T09:00:00 01:00")])
    assert q.updated_since == datetime(2026, 3, 2, 8, tzinfo=UTC)


def test_a_cursor_round_trips_with_its_filters_only() -> None:
    q = parse([("status", "received"), ("limit", "5")])
    at = datetime(2026, 3, 2, 8, 0, 0, 123456, tzinfo=UTC)
    cursor = q.cursor_after(at, "b1f6c0de-0000-4000-8000-000000000001")
    assert "=" not in cursor
    again = parse([("status", "received"), ("limit", "7"), ("cursor", cursor)])  # another limit is fine
    assert again.after == Position(at, "b1f6c0de-0000-4000-8000-000000000001")
    with pytest.raises(SchemaInvalid) as exc:
        parse([("cursor", cursor)])
    assert exc.value.fields == ["cursor"]
    assert parse([("cursor", "")]).after is None


@pytest.mark.parametrize("pairs", [[("cursor", "x" * 401)], [("cursor", "e30")], [("cursor", "!!")],
                                   [("updated_since", "9999-12-31T23:59:59-23:59")], [("limit", "-1")],
                                   [("limit", "²")], [("overdue", "1")]])
def test_bad_values_are_422_on_their_parameter(pairs) -> None:
    with pytest.raises(SchemaInvalid) as exc:
        parse(pairs)
    assert exc.value.fields == [pairs[0][0]]
