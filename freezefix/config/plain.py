"""Config values as plain data."""

from __future__ import annotations

from typing import Any


def to_plain(value: Any) -> Any:
    """ConfigDict / nested containers → plain dicts, lists and tuples (for comparison and rules)."""
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_plain(v) for v in value]
    if isinstance(value, tuple):
        return tuple(to_plain(v) for v in value)
    return value
