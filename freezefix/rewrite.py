"""Edit one config file with libcst, leaving every byte outside the edited spans as it was.

The planner says *what* to change in terms of :class:`~freezefix.config.locate.Location` spans
(found by the fast ``ast`` reader); this module finds the same nodes in the concrete syntax tree by
position and changes only them.  New entries copy the layout of their siblings: one per line when
the dict is written one per line (keeping or omitting the trailing comma as the file does), inline
otherwise.
"""

from __future__ import annotations

import ast
import keyword
from dataclasses import dataclass
from typing import Any, Sequence, Union

import libcst as cst
from libcst.metadata import MetadataWrapper, PositionProvider

from freezefix.config.locate import Location


@dataclass(frozen=True)
class ReplaceValue:
    """Replace the expression at ``at`` with ``value``."""

    at: Location
    value: Any


@dataclass(frozen=True)
class InsertEntry:
    """Add ``key: value`` to the ``dict(...)`` / ``{...}`` whose span is ``container``."""

    container: Location
    key: str
    value: Any


@dataclass(frozen=True)
class RemoveEntry:
    """Remove the entry ``key`` from the container at ``container``."""

    container: Location
    key: str


@dataclass(frozen=True)
class AppendAssignment:
    """Append ``name = value`` at the end of the module (an override in a child config); with
    ``merge``, ``name.update(value)`` (a new-style config, whose ``name`` came from its bases:
    rebinding it would drop everything else the bases set)."""

    name: str
    value: Any
    merge: bool = False


FileEdit = Union[ReplaceValue, InsertEntry, RemoveEntry, AppendAssignment]  # typing.Union: Python 3.8


class RewriteError(Exception):
    pass


def format_value(value: Any, style: str = "dict-call", literal: bool = False) -> str:
    """Python source for a config value, in the file's own style for nested dicts.

    ``custom_keys`` maps parameter-name substrings, which are conventionally (and, with dots,
    necessarily) written as a ``{'key': ...}`` literal whatever the file's style.
    """
    if isinstance(value, dict):
        if style == "dict-call" and not literal and all(_is_identifier(k) for k in value):
            return "dict(" + ", ".join(
                f"{k}={format_value(v, style, literal=k == 'custom_keys')}" for k, v in value.items()
            ) + ")"
        inner = ", ".join(f"{format_value(k)}: {format_value(v, style)}" for k, v in value.items())
        return "{" + inner + "}"
    if isinstance(value, list):
        return "[" + ", ".join(format_value(v, style) for v in value) + "]"
    if isinstance(value, tuple):
        items = [format_value(v, style) for v in value]
        return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
    if isinstance(value, (bool, int, float, str)) or value is None:
        return repr(value)
    raise RewriteError(f"cannot write a {type(value).__name__} into a config")


def _is_identifier(key: Any) -> bool:
    return isinstance(key, str) and key.isidentifier() and not keyword.iskeyword(key)


def apply_edits(text: str, edits: Sequence[FileEdit]) -> str:
    """Return ``text`` with ``edits`` applied; raise RewriteError if a target is not found."""
    module = cst.parse_module(text)
    wrapper = MetadataWrapper(module, unsafe_skip_copy=True)
    transformer = _Transformer([e for e in edits if not isinstance(e, AppendAssignment)])
    new_module = wrapper.visit(transformer)
    missing = transformer.pending()
    if missing:
        raise RewriteError(f"could not find the place to edit for {missing[0]!r}")
    for edit in edits:
        if isinstance(edit, AppendAssignment):
            new_module = _append(new_module, edit)
    return new_module.code


def _append(module: cst.Module, edit: AppendAssignment) -> cst.Module:
    value = format_value(edit.value, literal=edit.name == "custom_keys")
    code = f"{edit.name}.update({value})" if edit.merge else f"{edit.name} = {value}"
    statement = cst.parse_statement(f"{code}{module.default_newline}", config=module.config_for_parsing)
    # libcst renders a newline after what was the last line even when the file had none.
    return module.with_changes(body=[*module.body, statement])


def _same_literal(node: cst.CSTNode, location: Location) -> bool:
    if location.container is not None or location.how == "computed":
        return True
    try:
        return location.matches(ast.literal_eval(cst.Module(body=[]).code_for_node(node).strip()))
    except (ValueError, SyntaxError, TypeError):
        return False


def _span(location: Location) -> tuple[int, int, int, int]:
    return (location.line, location.col, location.end_line, location.end_col)


class _Transformer(cst.CSTTransformer):
    METADATA_DEPENDENCIES = (PositionProvider,)

    def __init__(self, edits: Sequence[FileEdit]):
        super().__init__()
        self.replace: dict[tuple[int, int], ReplaceValue] = {}
        self.container: dict[tuple[int, int], list[InsertEntry | RemoveEntry]] = {}
        # Nodes are matched on their whole span, start and end, so that an edit planned for one
        # text can never land on a different node of another.
        for edit in edits:
            if isinstance(edit, ReplaceValue):
                self.replace[_span(edit.at)] = edit
            else:
                self.container.setdefault(_span(edit.container), []).append(edit)
        self.done: set[int] = set()

    def pending(self) -> list[FileEdit]:
        edits: list[FileEdit] = [*self.replace.values()]
        for group in self.container.values():
            edits.extend(group)
        return [e for e in edits if id(e) not in self.done]

    def _span(self, node: cst.CSTNode) -> tuple[int, int, int, int]:
        pos = self.get_metadata(PositionProvider, node)
        return (pos.start.line, pos.start.column, pos.end.line, pos.end.column)

    def on_leave(self, original_node: cst.CSTNode, updated_node: cst.CSTNode) -> Any:
        updated = super().on_leave(original_node, updated_node)
        if not isinstance(original_node, cst.BaseExpression):
            return updated
        span = self._span(original_node)
        if isinstance(updated, (cst.Call, cst.Dict)) and span in self.container:
            updated = self._edit_container(updated, self.container[span])
        edit = self.replace.get(span)
        if edit is not None and not _same_literal(original_node, edit.at):
            edit = None  # same span, different value: the text is not the one that was planned
        if edit is not None and id(edit) not in self.done and isinstance(updated, cst.BaseExpression):
            self.done.add(id(edit))
            style = "dict-literal" if edit.at.how == "dict-literal" else "dict-call"
            new = cst.parse_expression(format_value(edit.value, style))
            if getattr(updated, "lpar", None):
                new = new.with_changes(lpar=updated.lpar, rpar=updated.rpar)
            return new
        return updated

    def _edit_container(self, node: cst.Call | cst.Dict, edits: list) -> cst.Call | cst.Dict:
        for edit in edits:
            if id(edit) in self.done:
                continue
            if isinstance(edit, RemoveEntry):
                node = _remove(node, edit.key)
            else:
                node = _insert(node, edit.key, edit.value)
            self.done.add(id(edit))
        return node


def _entries(node: cst.Call | cst.Dict) -> list:
    return list(node.args) if isinstance(node, cst.Call) else list(node.elements)


def _with_entries(node: cst.Call | cst.Dict, entries: list) -> cst.Call | cst.Dict:
    return node.with_changes(args=entries) if isinstance(node, cst.Call) else node.with_changes(
        elements=entries
    )


def _entry_key(entry: Any) -> str | None:
    if isinstance(entry, cst.Arg):
        return entry.keyword.value if entry.keyword is not None else None
    if isinstance(entry, cst.DictElement) and isinstance(entry.key, cst.SimpleString):
        return entry.key.evaluated_value  # type: ignore[return-value]
    return None


def _is_multiline(ws: Any) -> bool:
    return isinstance(ws, cst.ParenthesizedWhitespace)


def _bare(ws: Any) -> Any:
    """A copy of a separator without the comment or blank lines it may carry."""
    if isinstance(ws, cst.ParenthesizedWhitespace):
        return ws.with_changes(
            first_line=cst.TrailingWhitespace(newline=ws.first_line.newline), empty_lines=[]
        )
    return ws


def _separator(node: cst.Call | cst.Dict, entries: list) -> Any:
    """The whitespace that separates two entries in this container (comments left out)."""
    if len(entries) >= 2 and isinstance(entries[-2].comma, cst.Comma):
        return _bare(entries[-2].comma.whitespace_after)
    opening = node.whitespace_before_args if isinstance(node, cst.Call) else node.lbrace.whitespace_after
    if _is_multiline(opening):
        return _bare(opening)
    return cst.SimpleWhitespace(" ")


def _insert(node: cst.Call | cst.Dict, key: str, value: Any) -> cst.Call | cst.Dict:
    entries = _entries(node)
    if any(_entry_key(e) == key for e in entries):
        raise RewriteError(f"key {key!r} is already there")
    # Nested dicts follow the siblings' values: `'k': dict(lr_mult=0.0)` next to `dict(...)` values.
    sibling_values = [e.value for e in entries if isinstance(e, (cst.Arg, cst.DictElement))]
    style = "dict-literal" if sibling_values and isinstance(sibling_values[-1], cst.Dict) else "dict-call"
    value_node = cst.parse_expression(format_value(value, style, literal=key == "custom_keys"))
    if isinstance(node, cst.Call):
        if not _is_identifier(key):
            raise RewriteError(f"{key!r} cannot be a keyword of dict(...)")
        new: Any = cst.Arg(
            keyword=cst.Name(key),
            value=value_node,
            equal=cst.AssignEqual(
                whitespace_before=cst.SimpleWhitespace(""), whitespace_after=cst.SimpleWhitespace("")
            ),
        )
    else:
        colon_ws = entries[-1].whitespace_after_colon if entries and isinstance(
            entries[-1], cst.DictElement
        ) else cst.SimpleWhitespace(" ")
        quote = "'"
        if entries and isinstance(entries[-1], cst.DictElement) and isinstance(
            entries[-1].key, cst.SimpleString
        ):
            quote = entries[-1].key.quote
        new = cst.DictElement(
            key=cst.SimpleString(f"{quote}{key}{quote}"),
            value=value_node,
            whitespace_after_colon=colon_ws,
        )
    if not entries:
        return _with_entries(node, [new])
    return _append_entry(node, entries, new, _separator(node, entries))


def _closing(node: cst.Call | cst.Dict, last: Any) -> Any:
    """The whitespace between the last entry and the closing bracket (where its comment lives).

    libcst keeps it in the trailing comma of a call, after a call's last argument when there is
    no trailing comma, and before the closing brace of a dict literal.
    """
    if isinstance(node, cst.Dict):
        if isinstance(last.comma, cst.Comma) and _is_multiline(last.comma.whitespace_after):
            return last.comma.whitespace_after
        return node.rbrace.whitespace_before
    if isinstance(last.comma, cst.Comma):
        return last.comma.whitespace_after
    return last.whitespace_after_arg


def _append_entry(node: cst.Call | cst.Dict, entries: list, new: Any, separator: Any) -> cst.Call | cst.Dict:
    last = entries[-1]
    closing = _closing(node, last)
    trailing_comma = isinstance(last.comma, cst.Comma)
    empty = cst.SimpleWhitespace("")
    if _is_multiline(closing):
        # One entry per line: the last entry keeps its line and its comment; the new entry goes on
        # the next line at the siblings' indentation, and the closing bracket keeps its own.
        indent = separator.last_line if _is_multiline(separator) else closing.last_line
        last_comma = last.comma if trailing_comma else cst.Comma(whitespace_before=empty)
        last = last.with_changes(comma=last_comma.with_changes(whitespace_after=closing.with_changes(last_line=indent)))
        after_new = _bare(closing)
    else:
        last = last.with_changes(
            comma=(last.comma if trailing_comma else cst.Comma()).with_changes(whitespace_after=separator)
        )
        after_new = closing
    if isinstance(last, cst.Arg):
        last = last.with_changes(whitespace_after_arg=empty)
    if isinstance(node, cst.Dict):
        new = new.with_changes(comma=cst.Comma(whitespace_after=empty) if trailing_comma else cst.MaybeSentinel.DEFAULT)
        node = node.with_changes(rbrace=node.rbrace.with_changes(whitespace_before=after_new))
    elif trailing_comma:
        new = new.with_changes(comma=cst.Comma(whitespace_after=after_new))
    else:
        new = new.with_changes(whitespace_after_arg=after_new)
    return _with_entries(node, [*entries[:-1], last, new])


def _remove(node: cst.Call | cst.Dict, key: str) -> cst.Call | cst.Dict:
    entries = _entries(node)
    index = next((i for i, e in enumerate(entries) if _entry_key(e) == key), None)
    if index is None:
        raise RewriteError(f"key {key!r} is not there")
    removed = entries.pop(index)
    if entries and index == len(entries):
        # The removed entry was last: the new last entry takes over its comma (or lack of one)
        # so the closing bracket keeps its place.
        entries[-1] = entries[-1].with_changes(comma=removed.comma)
    return _with_entries(node, entries)
