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
import sys
from dataclasses import dataclass, replace
from typing import Any, Dict

from freezefix.ftypes import Key  # re-exported: the resolver's keys

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
        return self.literal is not _NOT_LITERAL and same_value(self.literal, value)

    def as_computed(self) -> Location:
        return replace(self, how="computed", literal=_NOT_LITERAL)


def same_value(a: Any, b: Any) -> bool:
    # 0 and 0.0 and False are equal in Python but not the same config value.
    return type(a) is type(b) and a == b


def same_setting(a: Any, b: Any) -> bool:
    """``same_value``, except that a list and a tuple with the same items are one setting (configs
    write either; what reads them iterates)."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return list(a) == list(b)
    return same_value(a, b)


LocationMap = Dict[Key, Location]


class _Columns:
    """UTF-8 byte offsets → character offsets, per line."""

    def __init__(self, text: str):
        self.lines = text.splitlines(keepends=True)

    def char_col(self, line: int, byte_col: int) -> int:
        if line - 1 >= len(self.lines):
            return byte_col
        return len(self.lines[line - 1].encode("utf-8")[:byte_col].decode("utf-8", "replace"))


class _Walker:
    """Follows a value expression down to its leaves, recording where each dotted key is written."""

    def __init__(self, text: str, locations: LocationMap, variable):
        self.columns = _Columns(text)
        self.locations = locations
        # name, statement index → (statement index, expression) of the binding in force, or None
        self.variable = variable

    def span(self, node: ast.AST, how: str, via: str | None, container: str | None) -> Location:
        literal = _NOT_LITERAL
        if container is None:
            try:
                literal = ast.literal_eval(node)
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                how = "computed"
        columns = self.columns
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

    def walk(self, node: ast.expr, key: Key, how: str, via: str | None, stmt: int, depth: int = 0) -> None:
        if depth > 50:
            return
        if isinstance(node, ast.Name) and node.id not in ("None", "True", "False"):
            found = self.variable(node.id, stmt)
            if found is None:
                self.locations[key] = self.span(node, "computed", via, None)
                return
            self.walk(found[1], key, how, node.id, found[0], depth + 1)
            return
        container = _container_kind(node)
        self.locations[key] = self.span(node, how, via, container)
        self.entries(node, key, via, stmt, depth)

    def entries(self, node: ast.expr, key: Key, via: str | None, stmt: int, depth: int) -> None:
        """The entries of a ``dict(...)`` call or ``{...}`` literal, one level below ``key``."""
        container = _container_kind(node)
        if container == "dict-call":
            assert isinstance(node, ast.Call)
            for keyword in node.keywords:
                if keyword.arg is None:
                    continue  # **spread: its keys are computed (absent from this map)
                self.walk(keyword.value, (*key, keyword.arg), "dict-call", via, stmt, depth + 1)
        elif container == "dict-literal":
            assert isinstance(node, ast.Dict)
            for k, v in zip(node.keys, node.values):
                if isinstance(k, ast.Constant) and isinstance(k.value, str):
                    self.walk(v, (*key, k.value), "dict-literal", via, stmt, depth + 1)


def _scan(tree: ast.Module) -> tuple[dict[str, list[tuple[int, ast.expr]]], set[str]]:
    """Module-level name bindings, and the names something other than a plain binding touches."""
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
    return assignments, mutated


def build_location_map(tree: ast.Module, text: str) -> LocationMap:
    """Old-style configs: the last binding of each module-level name; a mutated name is computed."""
    assignments, mutated = _scan(tree)
    locations: LocationMap = {}

    def variable(name: str, before: int) -> tuple[int, ast.expr] | None:
        if name in mutated:
            return None
        earlier = [a for a in assignments.get(name, ()) if a[0] < before]
        return earlier[-1] if earlier else None

    walker = _Walker(text, locations, variable)
    for name, assigned in assignments.items():
        index, value = assigned[-1]
        if name in mutated:
            locations[(name,)] = walker.span(value, "computed", None, None)
            continue
        walker.walk(value, (name,), "assignment", None, index)
    return locations


def build_mutation_map(tree: ast.Module, text: str) -> LocationMap:
    """New-style configs, whose code mutates what the bases gave it, statement by statement:
    ``model = dict(...)`` (re)binds, ``model.update(dict(...))`` / ``model.k.update(k=...)`` merge
    into a key, ``model['k'] = v`` / ``model.k = v`` set one.  Each write replaces the locations
    under the keys it writes; anything else that touches a name makes the whole name computed.

    ``.update`` merges recursively on mmengine's ConfigDict but not on a plain dict; the map assumes
    a merge, and locations are only ever claimed where the literal equals the resolved value, so a
    key left behind by an update that replaced its parent is never pointed at."""
    assignments, mutated = _scan(tree)
    locations: LocationMap = {}

    def variable(name: str, before: int) -> tuple[int, ast.expr] | None:
        # Followed only when bound once and never touched otherwise: else the value is computed.
        bindings = assignments.get(name, ())
        if name in mutated or len(bindings) != 1 or bindings[0][0] >= before:
            return None
        return bindings[0]

    walker = _Walker(text, locations, variable)

    def forget(prefix: Key) -> None:
        for key in [k for k in locations if k[:len(prefix)] == prefix]:
            del locations[key]

    for index, stmt in enumerate(tree.body):
        if isinstance(stmt, (ast.Import, ast.ImportFrom, ast.With, ast.FunctionDef, ast.ClassDef)):
            continue  # imports and `with read_base()` bring names in; they write no config key
        targets = stmt.targets if isinstance(stmt, ast.Assign) else []
        if isinstance(stmt, ast.Assign) and all(_key_path(t) for t in targets):
            for target in targets:
                key = _key_path(target)
                forget(key)
                walker.walk(stmt.value, key, "assignment", None, index)
            continue
        update = _update_call(stmt)
        if update is not None:
            key, call = update
            for argument in call.args[:1]:
                if _container_kind(argument) is None:
                    forget(key)
                    locations[key] = walker.span(argument, "computed", None, None)
                    break
                _merge(walker, argument, key, index, forget)
            for keyword in call.keywords:
                if keyword.arg is None:
                    forget(key)
                    locations[key] = walker.span(call, "computed", None, None)
                    break
                sub = (*key, keyword.arg)
                if _container_kind(keyword.value) is None:
                    forget(sub)
                    walker.walk(keyword.value, sub, "dict-call", None, index)
                else:
                    _merge(walker, keyword.value, sub, index, forget)
            continue
        for name in _touched_names(stmt):
            forget((name,))
            locations[(name,)] = walker.span(stmt, "computed", None, None)
    return locations


def _merge(walker: _Walker, node: ast.expr, key: Key, stmt: int, forget) -> None:
    """``key.update(<node>)``: each entry merges into the key (a dict) or replaces it (a leaf)."""
    how = "dict-call" if _container_kind(node) == "dict-call" else "dict-literal"
    pairs = []
    if isinstance(node, ast.Call):
        pairs = [(kw.arg, kw.value) for kw in node.keywords if kw.arg is not None]
    elif isinstance(node, ast.Dict):
        pairs = [(k.value, v) for k, v in zip(node.keys, node.values)
                 if isinstance(k, ast.Constant) and isinstance(k.value, str)]
    if len(key) > 1:
        walker.locations.setdefault(key, walker.span(node, how, None, _container_kind(node)))
    for name, value in pairs:
        sub = (*key, name)
        if _container_kind(value) is not None:
            walker.locations[sub] = walker.span(value, how, None, _container_kind(value))
            _merge(walker, value, sub, stmt, forget)
        else:
            forget(sub)
            walker.walk(value, sub, how, None, stmt)


def _key_path(node: ast.expr) -> Key | None:
    """``model``, ``model['k']``, ``model.k``, ``model.k['j']`` → the dotted key they name."""
    parts: list[str] = []
    while True:
        if isinstance(node, ast.Name):
            return (node.id, *reversed(parts))
        if isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        elif isinstance(node, ast.Subscript) and isinstance(_index(node), str):
            parts.append(_index(node))
            node = node.value
        else:
            return None


def _index(node: ast.Subscript) -> Any:
    """The constant a subscript reads (``model['backbone']`` → 'backbone'); Python 3.8 wraps it in
    ``ast.Index``."""
    index = node.slice
    if sys.version_info < (3, 9) and isinstance(index, ast.Index):  # pragma: no cover - Python 3.8
        index = index.value
    return index.value if isinstance(index, ast.Constant) else None


def _update_call(stmt: ast.stmt) -> tuple[Key, ast.Call] | None:
    if not (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call)):
        return None
    func = stmt.value.func
    if not (isinstance(func, ast.Attribute) and func.attr == "update") or len(stmt.value.args) > 1:
        return None
    key = _key_path(func.value)
    return (key, stmt.value) if key else None


def _touched_names(stmt: ast.stmt) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(stmt):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(node.id)
        elif isinstance(node, (ast.Subscript, ast.Attribute)) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.update(_root_names(node))
        elif isinstance(node, ast.Call):
            names.update(_root_names(node.func))
    return names


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


CONTAINER = object()  # literal_leaves: the key holds a dict written as a literal
COMPUTED = object()  # literal_leaves: the key holds something that is not a literal


def literal_leaves(node: ast.expr, text: str) -> dict[Key, Any]:
    """What one dict expression writes, by dotted key below it, without following variables.

    Each key maps to its literal value, to ``CONTAINER`` for a nested ``dict(...)`` / ``{...}``, or to
    ``COMPUTED`` for anything else (a name, a call, arithmetic).
    """
    locations: LocationMap = {}
    _Walker(text, locations, lambda name, before: None).entries(node, (), None, 0, 0)
    return {
        key: CONTAINER if loc.container is not None else COMPUTED if loc.how == "computed" else loc.literal
        for key, loc in locations.items()
    }
