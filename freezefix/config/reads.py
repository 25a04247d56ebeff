"""Which top-level names a config file reads as variables.

A top-level name that code reads is a variable, not a setting: ``total_epochs = 24`` followed by
``train_cfg = dict(max_epochs=total_epochs)`` takes effect through ``train_cfg``, whatever the
Runner does with a top-level ``total_epochs``.  A file reads its own names (``max_epochs=total_epochs``,
``backbone = model['backbone']``) and its bases' (``_base_.total_epochs``, ``_base_['model']``,
``{{_base_.total_epochs}}``; in a new-style config, a name its ``from .base import *`` brought in).
One analysis for every rule that asks whether a name is read.
"""

from __future__ import annotations

import ast
import re
from functools import cached_property, lru_cache
from pathlib import Path

from freezefix.config.errors import BASE_KEY
from freezefix.config.preprocess import BASE_VAR_RE

# `_base_.x` and `_base_['x']` as written anywhere in the text (a mention in a comment or a string
# counts too: a name wrongly taken for read costs a finding, never a false one).
_BASE_ATTRIBUTE = re.compile(BASE_KEY + r"""\s*(?:\.\s*(\w+)|\[\s*['"](\w+)['"]\s*\])""")


class NameReads:
    """The top-level names one file reads: its own (a name loaded anywhere in the file: an AST walk,
    done when first asked) and its bases' (through ``_base_``: read off the text)."""

    def __init__(self, text: str, tree: ast.Module, new_style: bool):
        self._text = text
        self._tree = tree
        self.new_style = new_style

    @cached_property
    def own(self) -> frozenset[str]:
        found = {node.id for node in ast.walk(self._tree) if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)}
        found.discard(BASE_KEY)
        return frozenset(found)

    @cached_property
    def from_bases(self) -> frozenset[str]:
        # mmengine's `{{_base_.a.b}}` placeholder, quoted or not, reads the base's top-level `a`.
        found = {dotted.split(".")[0] for dotted in BASE_VAR_RE.findall(self._text)}
        found.update(attribute or item for attribute, item in _BASE_ATTRIBUTE.findall(self._text))
        return frozenset(found)

    @property
    def of_bases(self) -> frozenset[str]:
        """The names this file reads that a base binds: through ``_base_``, or, in a new-style config
        (whose bases' names are imported into it), any name it reads."""
        return self.from_bases | self.own if self.new_style else self.from_bases

    def __contains__(self, name: object) -> bool:
        return name in self.from_bases or name in self.own


@lru_cache(maxsize=4096)  # a shared base is read once per config that inherits it
def name_reads(path: Path, text: str, tree: ast.Module, new_style: bool = False) -> NameReads:
    """What the file at ``path`` (``tree``, parsed from ``text``) reads."""
    return NameReads(text, tree, new_style)
