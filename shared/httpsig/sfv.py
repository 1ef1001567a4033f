"""RFC 9651 structured fields, through the `http-sf` library (Mark Nottingham's): the
dictionary parse and the item and inner-list serialisations RFC 9421 signatures need.

Callers get plain values: strings (`str`), tokens (`Token`), display strings
(`DisplayString`, RFC 9651 `%"…"`), integers, booleans, byte sequences and inner lists of
`(value, params)`. Any malformed input raises ValueError (callers turn it into a stable
rejection), never the library's own exception.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import http_sf
from http_sf import DisplayString, Token
from http_sf.innerlist import ser_innerlist
from http_sf.item import ser_item

__all__ = ["DisplayString", "Params", "Token", "parse_dictionary", "serialize_item", "serialize_signature_params"]
Params = dict[str, Any]


def parse_dictionary(text: str) -> dict[str, tuple[Any, Params]]:
    """Parse an RFC 9651 dictionary; ValueError on anything malformed (also non-ASCII)."""
    try:
        parsed = http_sf.parse(text.encode("ascii"), tltype="dictionary")
    except (http_sf.StructuredFieldError, UnicodeEncodeError, ValueError) as exc:
        raise ValueError(f"malformed structured field: {type(exc).__name__}") from None
    return {name: (value, dict(params)) for name, (value, params) in parsed.items()}  # type: ignore[union-attr]


def serialize_item(value: Any) -> str:
    """One bare item (string, token, integer, boolean or byte sequence); ValueError otherwise."""
    if isinstance(value, float):
        raise ValueError("value cannot be serialised")
    try:
        return ser_item((value, {}))
    except (ValueError, TypeError):
        raise ValueError("value cannot be serialised") from None


def serialize_signature_params(components: Sequence[str], params: Mapping[str, Any]) -> str:
    """`("@method" "@path");created=...;keyid="..."` (an inner list with parameters)."""
    return ser_innerlist(([(c, {}) for c in components], dict(params)))
