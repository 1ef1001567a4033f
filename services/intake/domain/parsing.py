"""Parsing and validating what clients send (pure). Error replies name field locations and
say what was wrong, never the value: a key the client made up (an unknown field, whose name
may be a person's name) is named by its position in its object, never by its name."""
from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import date, timedelta
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from services.intake.domain.errors import MalformedJson, SchemaInvalid

M = TypeVar("M", bound=BaseModel)
_KEY = re.compile(r"[\x21-\x7e]{1,200}")
_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
UNKNOWN_NAME = "(field name withheld)"


MAX_DEPTH = 32  # a referral nests 5 deep; far deeper JSON would exhaust the stack later (a 500)


def _depth(value: Any) -> int:
    """How deeply arrays and objects nest in a parsed JSON value (iterative: no recursion)."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, depth + 1)
            if deepest > MAX_DEPTH:
                break
            stack.extend((v, depth + 1) for v in (item.values() if isinstance(item, dict) else item))
    return deepest


def parse_json(body: bytes) -> Any:
    """The JSON value of a request body (HTTP or AMQP); MalformedJson (400) if it is not JSON
    or nests more than MAX_DEPTH deep."""
    try:
        value = json.loads(body)
    except RecursionError:  # the parser's own stack ran out
        raise MalformedJson(f"The body nests more than {MAX_DEPTH} deep", reason="json_too_deep") from None
    except (ValueError, UnicodeDecodeError):
        raise MalformedJson("The body is not valid JSON") from None
    if _depth(value) > MAX_DEPTH:
        raise MalformedJson(f"The body nests more than {MAX_DEPTH} deep", reason="json_too_deep")
    return value


def check_idempotency_key(key: str | None) -> None:
    if key is not None and not _KEY.fullmatch(key):
        raise MalformedJson("Idempotency-Key must be 1-200 visible ASCII characters", reason="bad_idempotency_key")


def _position(data: Any, parts: tuple[Any, ...]) -> str:
    """`(unknown field #n)`: the n-th key (from 1) of the object at `parts[:-1]` is `parts[-1]`."""
    parent = data
    try:
        for p in parts[:-1]:
            parent = parent[p]
        return f"(unknown field #{list(parent).index(parts[-1]) + 1})"
    except (KeyError, IndexError, TypeError, ValueError):
        return UNKNOWN_NAME


def _loc(parts: tuple[Any, ...], error_type: str, data: Any) -> str:
    """A field location for an error reply and the audit. An unknown field (`extra_forbidden`:
    a key the client made up, e.g. a person's name) is named by its position in its object;
    any other name the client sent that is not a plain snake_case identifier is withheld."""
    known = parts[:-1] if error_type == "extra_forbidden" and parts else parts
    out = ""
    for p in known:
        out += f"[{p}]" if isinstance(p, int) else f".{p if _NAME.fullmatch(str(p)) else UNKNOWN_NAME}"
    if known is not parts:
        out += "." + _position(data, parts)
    return out.lstrip(".") or "(body)"


def validate(model: type[M], data: Any) -> M:
    """Validate; on failure list field locations and messages, never the values."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = [{"loc": _loc(e["loc"], e["type"], data), "type": e["type"], "msg": e["msg"]}
                  for e in exc.errors(include_input=False, include_url=False, include_context=False)[:50]]
        raise SchemaInvalid(errors) from None


AGE_BANDS = {"0-10": (0, 10), "11-15": (11, 15), "16-17": (16, 17)}


def age_on(born: date, day: date) -> int:
    return day.year - born.year - ((day.month, day.day) < (born.month, born.day))


def check_age(age_band: str, date_of_birth: date | None, today: date) -> None:
    """The clear `age_band` must agree with the sealed date of birth, when one is given, on
    the day of receipt; a referral is about a child (under 18). The 422 names the field,
    never the value (DESIGN §4)."""
    if date_of_birth is None:
        return
    dob = "content.subject.date_of_birth"
    if date_of_birth > today:
        raise SchemaInvalid([{"loc": dob, "type": "date_in_future", "msg": "The date of birth is in the future"}])
    age = age_on(date_of_birth, today)
    if age >= 18:
        raise SchemaInvalid([{"loc": dob, "type": "not_a_child",
                              "msg": "The subject is 18 or over on the day of receipt; a referral is about a child"}])
    low, high = AGE_BANDS[age_band]
    if not low <= age <= high:
        raise SchemaInvalid([{"loc": "age_band", "type": "age_band_mismatch",
                              "msg": "The age band does not match the date of birth on the day of receipt"}])


def strings_of(value: Any) -> list[str]:
    """Every string inside a JSON-like value (to scrub them from any log line)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings_of(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings_of(v)]
    return []


def query_date(query: Mapping[str, str], name: str, default: date) -> date:
    text = query.get(name)
    if text is None:
        return default
    try:
        value = date.fromisoformat(text)
    except ValueError:
        raise SchemaInvalid([{"loc": name, "type": "date_parsing", "msg": "Expected a date YYYY-MM-DD"}]) from None
    if not 1900 <= value.year <= 9998:  # the range arithmetic must not overflow date (a 500, found by fuzzing)
        raise SchemaInvalid([{"loc": name, "type": "date_range", "msg": "Expected a year from 1900 to 9998"}])
    return value


def period(query: Mapping[str, str], today: date, days_back: int) -> tuple[date, date]:
    """The `from`/`to` dates of a query: `to` defaults to today, `from` to `days_back` days before
    `to`; at most ten years."""
    end = query_date(query, "to", today)
    start = query_date(query, "from", end - timedelta(days=days_back))
    if start > end or (end - start).days > 3660:
        raise SchemaInvalid([{"loc": "from", "type": "range", "msg": "from must be on or before to"}])
    return start, end
