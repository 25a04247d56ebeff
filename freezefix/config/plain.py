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


def differing_keys(a: Any, b: Any, prefix: tuple = ()) -> list[tuple]:
    """The dotted keys (tuples) where two config values differ: a key only one side has, or the
    deepest key whose values are unequal; sorted, so that reports are the same every run."""
    if isinstance(a, dict) and isinstance(b, dict):
        keys: list[tuple] = []
        for k in sorted(a.keys() | b.keys(), key=str):
            if k not in a or k not in b:
                keys.append((*prefix, k))
            else:
                keys.extend(differing_keys(a[k], b[k], (*prefix, k)))
        return keys
    return [] if a == b else [prefix]
