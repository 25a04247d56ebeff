"""Config values as plain data, and the one way freezefix walks a config tree: get, has, map."""

from __future__ import annotations

from typing import Any, Callable, Sequence

MISSING: Any = object()  # what get_in answers for a key a tree does not have


def get_in(tree: Any, key: Sequence[Any], default: Any = MISSING) -> Any:
    """The value at dotted ``key`` (a tuple) in nested dicts; ``default`` where some part of it is
    not there (MISSING unless given)."""
    node = tree
    for part in key:
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def has_in(tree: Any, key: Sequence[Any]) -> bool:
    return get_in(tree, key) is not MISSING


def map_tree(value: Any, leaf: Callable[[Any], Any] | None = None,
             on_dict: Callable[[dict, Callable[[Any], Any]], Any] | None = None) -> Any:
    """``value`` rebuilt: lists and tuples as lists and tuples, a dict by ``on_dict(d, recurse)``
    (by default a plain dict of what its ``items()`` gives: a lazy config's ConfigDict builds its
    lazy objects there), every other value as ``leaf`` makes it (by default, itself)."""
    def recurse(node: Any) -> Any:
        if isinstance(node, dict):
            return on_dict(node, recurse) if on_dict is not None else {k: recurse(v) for k, v in node.items()}
        if isinstance(node, list):
            return [recurse(v) for v in node]
        if isinstance(node, tuple):
            return tuple(recurse(v) for v in node)
        return leaf(node) if leaf is not None else node

    return recurse(value)


def to_plain(value: Any) -> Any:
    """ConfigDict / nested containers → plain dicts, lists and tuples (for comparison and rules)."""
    return map_tree(value)


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
