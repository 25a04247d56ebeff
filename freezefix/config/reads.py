"""Which top-level names a config file reads as variables.

A top-level name that code reads is a variable, not a setting: ``total_epochs = 24`` followed by
``train_cfg = dict(max_epochs=total_epochs)`` takes effect through ``train_cfg``, whatever the
Runner does with a top-level ``total_epochs``.  A file reads its own names (``max_epochs=total_epochs``,
``backbone = model['backbone']``) and its bases' (``_base_.total_epochs``, ``_base_['model']``,
``{{_base_.total_epochs}}``).  One analysis for every rule that asks whether a name is read.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from freezefix.config.errors import BASE_KEY
from freezefix.config.preprocess import BASE_VAR_RE


@dataclass(frozen=True)
class NameReads:
    """The top-level names one file reads: its own (a name loaded anywhere in the file) and its
    bases' (through ``_base_``)."""

    own: frozenset[str]
    from_bases: frozenset[str]

    def __contains__(self, name: object) -> bool:
        return name in self.own or name in self.from_bases


@lru_cache(maxsize=4096)  # a shared base is read once per config that inherits it
def name_reads(path: Path, text: str, tree: ast.Module) -> NameReads:
    """What ``tree`` (the file at ``path``, parsed from ``text``) reads."""
    own: set[str] = set()
    # mmengine's `{{_base_.a.b}}` placeholder, quoted or not, reads the base's top-level `a`.
    from_bases: set[str] = {dotted.split(".")[0] for dotted in BASE_VAR_RE.findall(text)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            own.add(node.id)
        elif isinstance(node, ast.Attribute) and _is_base(node.value):
            from_bases.add(node.attr)
        elif isinstance(node, ast.Subscript) and _is_base(node.value):
            index = node.slice.value if isinstance(node.slice, _INDEX) else node.slice  # type: ignore[attr-defined]
            if isinstance(index, ast.Constant) and isinstance(index.value, str):
                from_bases.add(index.value)
    own.discard(BASE_KEY)
    return NameReads(frozenset(own), frozenset(from_bases))


# Python 3.8 wraps a subscript's index in ast.Index; later versions do not (and drop the class).
_INDEX = getattr(ast, "Index", ())


def _is_base(node: ast.expr) -> bool:
    return isinstance(node, ast.Name) and node.id == BASE_KEY
