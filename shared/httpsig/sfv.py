"""RFC 8941 structured fields: the subset RFC 9421 signatures need.

Dictionaries whose members are items or inner lists with parameters; items are
integers, strings, tokens, byte sequences and booleans. Anything else, and any
malformed input, raises ValueError (callers turn it into a stable rejection).
"""
from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import Any

class Token(str):
    """An unquoted structured-field token."""


_LC = "abcdefghijklmnopqrstuvwxyz"
_KEY_FIRST = frozenset(_LC + "*")
_KEY = frozenset(_LC + "0123456789_-.*")
_TOKEN = frozenset(_LC + _LC.upper() + "0123456789!#$%&'*+-.^_`|~:/")
_B64 = frozenset(_LC + _LC.upper() + "0123456789+/=")
Params = dict[str, Any]


class _Parser:
    def __init__(self, text: str) -> None:
        self.s, self.i = text.strip(" "), 0

    def peek(self) -> str:
        return self.s[self.i] if self.i < len(self.s) else ""

    def take(self, char: str) -> None:
        if self.peek() != char:
            raise ValueError("unexpected character")
        self.i += 1

    def skip(self, chars: str) -> None:
        while self.peek() and self.peek() in chars:
            self.i += 1

    def key(self) -> str:
        start = self.i
        if self.peek() not in _KEY_FIRST:
            raise ValueError("bad key")
        while self.peek() in _KEY:
            self.i += 1
        return self.s[start:self.i]

    def bare(self) -> Any:
        c = self.peek()
        if c == '"':
            self.i += 1
            out: list[str] = []
            while True:
                c = self.peek()
                self.i += 1
                if c == "\\" and self.peek() in ('"', "\\"):
                    out.append(self.peek())
                    self.i += 1
                elif c == '"':
                    return "".join(out)
                elif c and " " <= c <= "~" and c != "\\":
                    out.append(c)
                else:
                    raise ValueError("bad string")
        if c == ":":
            end = self.s.find(":", self.i + 1)
            text = self.s[self.i + 1:end]
            if end < 0 or not set(text) <= _B64:
                raise ValueError("bad byte sequence")
            self.i = end + 1
            return base64.b64decode(text, validate=True)
        if c == "?":
            flag = self.s[self.i + 1:self.i + 2]
            if flag not in ("0", "1"):
                raise ValueError("bad boolean")
            self.i += 2
            return flag == "1"
        if c and (c == "-" or c.isdigit()):
            start = self.i
            self.i += 1 if c == "-" else 0
            self.skip("0123456789")
            digits = self.s[start:self.i]
            if not 0 < len(digits.lstrip("-")) <= 15 or self.peek() == ".":
                raise ValueError("bad integer")
            return int(digits)
        if c and (c == "*" or c in _LC or c in _LC.upper()):
            start = self.i
            while self.peek() in _TOKEN:
                self.i += 1
            return Token(self.s[start:self.i])
        raise ValueError("bad item")

    def params(self) -> Params:
        out: Params = {}
        while self.peek() == ";":
            self.i += 1
            self.skip(" ")
            name = self.key()
            out[name] = True
            if self.peek() == "=":
                self.i += 1
                out[name] = self.bare()
        return out

    def member(self) -> tuple[Any, Params]:
        if self.peek() != "(":
            return self.bare(), self.params()
        self.i += 1
        items: list[tuple[Any, Params]] = []
        while True:
            self.skip(" ")
            if self.peek() == ")":
                self.i += 1
                return items, self.params()
            items.append((self.bare(), self.params()))
            if self.peek() not in (" ", ")"):
                raise ValueError("bad inner list")


def parse_dictionary(text: str) -> dict[str, tuple[Any, Params]]:
    """Parse an RFC 8941 dictionary; ValueError on anything malformed."""
    if not text.isascii():
        raise ValueError("non-ASCII field")
    p, out = _Parser(text), {}
    while p.peek():
        name = p.key()
        if p.peek() == "=":
            p.i += 1
            out[name] = p.member()
        else:
            out[name] = (True, p.params())
        p.skip(" \t")
        if not p.peek():
            break
        p.take(",")
        p.skip(" \t")
        if not p.peek():
            raise ValueError("trailing comma")
    return out


def serialize_item(value: Any) -> str:
    if isinstance(value, bool):
        return "?1" if value else "?0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, bytes):
        return f":{base64.b64encode(value).decode()}:"
    if isinstance(value, Token):
        return str(value)
    if not (isinstance(value, str) and all(" " <= c <= "~" for c in value)):
        raise ValueError("value cannot be serialised")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _params(params: Mapping[str, Any]) -> str:
    return "".join(f";{k}" if v is True else f";{k}={serialize_item(v)}" for k, v in params.items())


def serialize_signature_params(components: Sequence[str], params: Mapping[str, Any]) -> str:
    """`("@method" "@path");created=...;keyid="..."` (an inner list with parameters)."""
    return "(" + " ".join(serialize_item(c) for c in components) + ")" + _params(params)
