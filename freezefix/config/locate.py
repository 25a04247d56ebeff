"""Where each dotted key of a config file is written, read statically from its ``ast``.

For every module-level name the file binds, the walk follows ``dict(k=v)`` keywords, ``{'k': v}``
literal entries and module-level variables (``model = dict(img_backbone=img_backbone)``) down to
the leaves, and records the span of the expression that writes each key.  Anything else (a call, a
comprehension, arithmetic, ``_base_.x``, a name mutated after its assignment) is recorded as
``computed``: freezefix reports such values but never edits them.

Columns are character offsets (``ast`` gives UTF-8 byte offsets; configs often carry Chinese
comments and strings, so the two differ).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, replace
from typing import Any, Dict, Tuple

# A dotted key of a resolved config, e.g. ('model', 'img_backbone', 'frozen_stages').
# typing.Tuple, not tuple[...]: a module-level alias is evaluated at import, and Python 3.8 has no tuple[...].
Key = Tuple[str, ...]
_NOT_LITERAL = object()


@dataclass(frozen=True)
class Location:
    line: int
    col: int
    end_line: int
    end_col: int
    how: str  # 'dict-call' | 'dict-literal' | 'assignment' | 'computed'
    container: str | None = None  # the value itself is 'dict-call' / 'dict-literal'
    via: str | None = None  # module-level variable the walk went through
    literal: Any = _NOT_LITERAL

    def matches(self, value: Any) -> bool:
        if self.container is not None:
            return isinstance(value, dict)
        return self.literal is not _NOT_LITERAL and _same(self.literal, value)

    def as_computed(self) -> Location:
        return replace(self, how="computed", literal=_NOT_LITERAL)


def _same(a: Any, b: Any) -> bool:
    # 0 and 0.0 and False are equal in Python but not the same config value.
    return type(a) is type(b) and a == b


LocationMap = Dict[Key, Location]


class _Columns:
    """UTF-8 byte offsets → character offsets, per line."""

    def __init__(self, text: str):
        self.lines = text.splitlines(keepends=True)

    def char_col(self, line: int, byte_col: int) -> int:
        if line - 1 >= len(self.lines):
            return byte_col
        return len(self.lines[line - 1].encode("utf-8")[:byte_col].decode("utf-8", "replace"))


def build_location_map(tree: ast.Module, text: str) -> LocationMap:
    columns = _Columns(text)
    assignments: dict[str, list[tuple[int, ast.expr]]] = {}
    mutated: set[str] = set()
    for index, stmt in enumerate(tree.body):
        if isinstance(stmt, ast.Assign):
            for target in stmt.targets:
                if isinstance(target, ast.Name):
                    assignments.setdefault(target.id, []).append((index, stmt.value))
                else:
                    mutated.update(_root_names(target))
        elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.value:
            assignments.setdefault(stmt.target.id, []).append((index, stmt.value))
        elif isinstance(stmt, (ast.AugAssign, ast.AnnAssign)):
            mutated.update(_root_names(stmt.target))
        elif isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
            # `model.update(...)`, `cfg['x'].append(...)`: the value is no longer what was written.
            mutated.update(_root_names(stmt.value.func))
        elif isinstance(stmt, (ast.For, ast.While, ast.If, ast.With, ast.Try)):
            for node in ast.walk(stmt):
                if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                    mutated.add(node.id)
                elif isinstance(node, (ast.Subscript, ast.Attribute)) and isinstance(
                    node.ctx, ast.Store
                ):
                    mutated.update(_root_names(node))
                elif isinstance(node, ast.Call):
                    mutated.update(_root_names(node.func))

    locations: LocationMap = {}

    def span(node: ast.AST, how: str, via: str | None, container: str | None) -> Location:
        literal = _NOT_LITERAL
        if container is None:
            try:
                literal = ast.literal_eval(node)
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                how = "computed"
        return Location(
            line=node.lineno,
            col=columns.char_col(node.lineno, node.col_offset),
            end_line=node.end_lineno or node.lineno,
            end_col=columns.char_col(node.end_lineno or node.lineno, node.end_col_offset or 0),
            how=how,
            container=container,
            via=via,
            literal=literal,
        )

    def variable(name: str, before: int) -> tuple[int, ast.expr] | None:
        if name in mutated:
            return None
        earlier = [a for a in assignments.get(name, ()) if a[0] < before]
        return earlier[-1] if earlier else None

    def walk(node: ast.expr, key: Key, how: str, via: str | None, stmt: int, depth: int) -> None:
        if depth > 50:
            return
        if isinstance(node, ast.Name) and node.id not in ("None", "True", "False"):
            found = variable(node.id, stmt)
            if found is None:
                locations[key] = span(node, "computed", via, None)
                return
            walk(found[1], key, how, node.id, found[0], depth + 1)
            return
        container = _container_kind(node)
        locations[key] = span(node, how, via, container)
        if container == "dict-call":
            assert isinstance(node, ast.Call)
            for keyword in node.keywords:
                if keyword.arg is None:
                    continue  # **spread: its keys are computed (absent from this map)
                walk(keyword.value, (*key, keyword.arg), "dict-call", via, stmt, depth + 1)
        elif container == "dict-literal":
            assert isinstance(node, ast.Dict)
            for k, v in zip(node.keys, node.values):
                if isinstance(k, ast.Constant) and isinstance(k.value, str):
                    walk(v, (*key, k.value), "dict-literal", via, stmt, depth + 1)

    for name, assigned in assignments.items():
        index, value = assigned[-1]
        if name in mutated:
            locations[(name,)] = span(value, "computed", None, None)
            continue
        walk(value, (name,), "assignment", None, index, 0)
    return locations


def _container_kind(node: ast.expr) -> str | None:
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "dict"
        and not node.args
    ):
        return "dict-call"
    if isinstance(node, ast.Dict):
        return "dict-literal"
    return None


def _root_names(node: ast.AST) -> set[str]:
    while isinstance(node, (ast.Subscript, ast.Attribute, ast.Call)):
        node = node.func if isinstance(node, ast.Call) else node.value
    if isinstance(node, ast.Name):
        return {node.id}
    if isinstance(node, (ast.Tuple, ast.List)):
        return set().union(*(_root_names(e) for e in node.elts))
    return set()
