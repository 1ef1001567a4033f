"""Hypothesis strategies for bad AMQP messages: bodies that break a schema and header
sets that break a signature, plus `collect` to draw a fixed, derandomized batch.

A body strategy starts from a valid message (a JSON object) and breaks it one way:
not JSON at all, JSON but not an object, a required field missing, an extra field, a
field of the wrong type, or a huge string where it does not belong.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

T = TypeVar("T")
HUGE = (5_000, 70_000, 300_000)  # the last is over intake's 256 KiB body limit
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
JSON_LEAF = st.one_of(st.none(), st.booleans(), st.integers(-2**40, 2**40),
                      st.floats(allow_nan=False, allow_infinity=False), TEXT)
JSON = st.recursive(JSON_LEAF, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(TEXT, inner, max_size=3)), max_leaves=8)
ODD = st.one_of(st.none(), st.just([]), st.just({}), st.integers(-2**40, 2**40), st.just({"$ne": 1}),
                st.just("not-a-date"), st.sampled_from(HUGE).map(lambda n: "x" * n), JSON)
# AMQP header values of every type the client can encode (AMQP tables, arrays, bytes...).
HEADER_VALUE = st.one_of(st.none(), st.booleans(), st.integers(-2**31, 2**31 - 1), TEXT,
                         st.binary(max_size=40).map(bytearray), st.floats(allow_nan=False, allow_infinity=False),
                         st.lists(st.integers(0, 9), max_size=3), st.dictionaries(st.text("abc", max_size=3),
                                                                                   st.integers(0, 9), max_size=2))


def _dump(doc: Any) -> bytes:
    return json.dumps(doc).encode()


BODY_KINDS = ("not_json", "not_object", "missing", "extra", "wrong_type", "huge")


@st.composite
def broken_body(draw, base: dict[str, Any], required: tuple[str, ...], kinds: tuple[str, ...]) -> tuple[str, bytes]:
    """(how it is broken, body bytes) for the valid JSON object `base`."""
    kind = draw(st.sampled_from(kinds))
    doc = dict(base)
    if kind == "not_json":
        text = _dump(base)
        cut = draw(st.integers(1, len(text) - 2))
        raw = draw(st.sampled_from([text[:cut], b"\xff\xfe" + text, text + b"}", b"", b"{'single': 1}"]))
        return kind, raw
    if kind == "not_object":
        return kind, _dump(draw(st.one_of(JSON_LEAF, st.lists(JSON, max_size=3))))
    if kind == "missing":
        for name in draw(st.lists(st.sampled_from(required), min_size=1, max_size=3, unique=True)):
            doc.pop(name, None)
    elif kind == "extra":
        doc[draw(TEXT.filter(lambda k: k not in base)) or "unexpected"] = draw(ODD)
    elif kind == "wrong_type":
        doc[draw(st.sampled_from(sorted(base)))] = draw(ODD)
    else:
        doc[draw(st.sampled_from(sorted(base)))] = "x" * draw(st.sampled_from(HUGE))
    return kind, _dump(doc)


def accepts(model: type[BaseModel], body: bytes) -> bool:
    try:
        model.model_validate_json(body)
    except ValidationError:
        return False
    return True


def invalid_body(model: type[BaseModel], base: BaseModel,
                 kinds: tuple[str, ...] = BODY_KINDS) -> st.SearchStrategy[tuple[str, bytes]]:
    """Bodies `model` refuses (the rare break that still validates is filtered out)."""
    required = tuple(n for n, f in model.model_fields.items() if f.is_required())
    doc = base.model_dump(mode="json")
    return broken_body(doc, required, kinds).filter(lambda kb: not accepts(model, kb[1]))


def stratified(make: Callable[[str], st.SearchStrategy[T]], kinds: tuple[str, ...], per_kind: int) -> list[T]:
    """`per_kind` examples of each kind (fewer if hypothesis exhausts a small kind)."""
    return [x for kind in kinds for x in collect(make(kind), per_kind)]


def collect(strategy: st.SearchStrategy[T], n: int) -> list[T]:
    """`n` examples of `strategy`, the same ones every run (derandomized, no database)."""
    out: list[T] = []

    @settings(max_examples=n, derandomize=True, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def draw(value: T) -> None:
        out.append(value)

    draw()
    return out[:n]


def tally(items: list[Any], key: Callable[[Any], str]) -> str:
    counts: dict[str, int] = {}
    for item in items:
        counts[key(item)] = counts.get(key(item), 0) + 1
    return ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
