"""Walking JSON documents (OpenAPI, AsyncAPI, Adaptive Cards): every object, every `$ref`."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def objects(node: Any) -> Iterator[dict[str, Any]]:
    """Every JSON object in `node`, depth first, each before the ones inside it."""
    if isinstance(node, dict):
        yield node
        for v in node.values():
            yield from objects(v)
    elif isinstance(node, list):
        for v in node:
            yield from objects(v)


def refs(node: Any) -> list[Any]:
    """The value of every `$ref` key in `node`, in document order."""
    return [obj["$ref"] for obj in objects(node) if "$ref" in obj]
