"""What mmengine does to a config file's text and tree before executing it: the predefined-variable,
environment and ``{{_base_.x}}`` substitutions, finding its ``_base_`` entries and where they point,
telling a lazy-import (new-style) config from an old-style one, and taking the ``_base_``
assignments out of what is executed."""

from __future__ import annotations

import ast
import copy
import importlib.util
import os
import re
import uuid
from pathlib import Path
from typing import Callable

from freezefix.config.errors import BASE_KEY, ConfigError

_PREDEFINED = ("fileDirname", "fileBasename", "fileBasenameNoExtension", "fileExtname")
_ENV_RE = re.compile(r"\{\{['\"]?\s*\$(\w+)\s*\:\s*(\S*?)\s*['\"]?\}\}")
BASE_VAR_RE = re.compile(r"\{\{\s*" + BASE_KEY + r"\.([\w\.]+)\s*\}\}")


def env_vars_read(text: str) -> list[str]:
    """The environment variables the text's ``{{$VAR:default}}`` placeholders read."""
    return [name for name, _ in _ENV_RE.findall(text)]


def substitute_text(text: str, filename: str) -> tuple[str, dict[str, str]]:
    """mmengine's three text substitutions, in its order; returns the text and base placeholders."""
    dirname, basename = os.path.split(filename)
    values = dict(
        fileDirname=dirname,
        fileBasename=basename,
        fileBasenameNoExtension=os.path.splitext(basename)[0],
        fileExtname=os.path.splitext(filename)[1],
    )
    for key in _PREDEFINED:
        text = re.sub(r"\{\{\s*" + key + r"\s*\}\}", values[key].replace("\\", "/"), text)
    for var_name, default in _ENV_RE.findall(text):
        pattern = r"\{\{['\"]?\s*\$" + var_name + r"\s*\:\s*" + default + r"\s*['\"]?\}\}"
        value = os.environ.get(var_name, default)
        if not value:
            raise ConfigError(f"`{var_name}` is not set in the environment and has no default")
        text = re.sub(pattern, value, text)
    placeholders: dict[str, str] = {}
    for base_var in set(BASE_VAR_RE.findall(text)):
        randstr = f"_{base_var}_{uuid.uuid4().hex.lower()[:6]}"
        placeholders[randstr] = base_var
        text = re.sub(r"\{\{\s*" + BASE_KEY + r"\." + base_var + r"\s*\}\}", f'"{randstr}"', text)
    return text, placeholders


# A line that starts an import or a with statement; without one the tree needs no walk (most configs).
_IMPORT_OR_WITH = re.compile(r"^[ \t]*(?:import|from|with)\b", re.MULTILINE)


def is_lazy_import(text: str, tree: ast.Module) -> bool:
    if not _IMPORT_OR_WITH.search(text):
        return False
    try:
        from mmengine.config.utils import _is_builtin_module
    except ImportError:
        return False  # mmcv 1.x's Config has no lazy-import configs: it executes imports as written

    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            if node.targets[0].id == BASE_KEY:
                return False
        if isinstance(node, ast.With):
            return True
        if isinstance(node, ast.ImportFrom):
            if node.level != 0:
                return True
            if node.module == "mmengine" and [a.name for a in node.names] == ["Config"]:
                continue
            if isinstance(node.module, str) and not _is_builtin_module(node.module):
                return True
        if isinstance(node, ast.Import):
            if any(not _is_builtin_module(alias.name) for alias in node.names):
                return True
    return False


def base_files(tree: ast.Module) -> list[str]:
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            if node.targets[0].id == BASE_KEY:
                try:
                    value = ast.literal_eval(node.value)  # nearly always a list of strings
                except ValueError:
                    value = eval(compile(ast.Expression(body=node.value), "", "eval"))  # noqa: S307
                return value if isinstance(value, list) else [value]
    return []


def base_path(spec: str, child: Path, remembered: Callable[[], dict] | None = None) -> tuple[Path, str | None]:
    """Where a ``_base_`` entry points, and its registry scope for ``pkg::`` entries.

    A ``pkg::`` entry is located by mmengine's own ``Config._get_cfg_path``, which re-reads the
    installed packages' metadata (about 0.1 s an entry, after 0.25 s importing mmengine): asked
    once per entry in a process, and kept in ``remembered()`` (a cache keyed by package versions)
    for later runs, which then import no mmengine.  A kept answer is used again only while it still
    holds: the file it names exists, or the package it found missing still cannot be imported.
    """
    if "::" not in spec:
        return Path(os.path.normpath(child.parent / spec)), None
    store = remembered() if remembered is not None else {}
    question = f'["package-base", {spec!r}]'
    answer = ASKED_THIS_PROCESS.get(spec) or store.get(question)
    if not _still_holds(answer):
        answer = ask_mmengine(spec, child)
        store[question] = answer
    ASKED_THIS_PROCESS[spec] = answer
    if "error" in answer:
        raise ConfigError(f"cannot find base {spec!r}: {answer['error']}", child)
    return Path(answer["path"]), answer["scope"]


ASKED_THIS_PROCESS: dict[str, dict] = {}  # pkg:: entry → mmengine's answer, this process


def ask_mmengine(spec: str, child: Path) -> dict:
    """Where mmengine's own ``Config`` finds a ``pkg::`` base entry: ``path`` and ``scope``, or the
    ``error`` it raises (and the ``missing`` package, when that is why)."""
    try:
        from mmengine.config import Config
    except ImportError:
        raise ConfigError(f"base {spec!r} names a package (`pkg::`), which only mmengine's Config reads",
                          child) from None
    try:
        path, scope = Config._get_cfg_path(spec, str(child))
    except ModuleNotFoundError as exc:
        return {"error": str(exc), "missing": spec.partition("::")[0]}
    except (FileNotFoundError, ValueError, AssertionError) as exc:
        return {"error": str(exc)}
    return {"path": str(path), "scope": scope}


def _still_holds(answer: dict | None) -> bool:
    if not isinstance(answer, dict):
        return False
    if "path" in answer:
        return os.path.exists(answer["path"])
    if "missing" in answer:
        return importlib.util.find_spec(answer["missing"]) is None
    return "error" in answer


def without_base_assignments(tree: ast.Module) -> ast.Module:
    """The module minus its ``_base_ = ...`` assignments, as mmengine's RemoveAssignFromAST does.

    A new Module over the same statement nodes (compile() does not modify them), so the tree kept
    for provenance is untouched and nothing is copied; only a nested ``_base_`` assignment (in an
    ``if``, say) takes the copying transformer.
    """
    def is_base(node: ast.AST) -> bool:
        return isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name) and node.targets[0].id == BASE_KEY

    top = [node for node in tree.body if not is_base(node)]
    # Only a compound statement (if, for, with, def, ...) can hold a nested assignment statement.
    simple = (ast.Assign, ast.AnnAssign, ast.AugAssign, ast.Expr, ast.Import, ast.ImportFrom, ast.Pass)
    if any(is_base(node) for stmt in top if not isinstance(stmt, simple) for node in ast.walk(stmt)):
        return _RemoveBaseAssign().visit(copy.deepcopy(tree))
    return ast.Module(body=top, type_ignores=[])


class _RemoveBaseAssign(ast.NodeTransformer):
    def visit_Assign(self, node: ast.Assign) -> ast.Assign | None:
        if isinstance(node.targets[0], ast.Name) and node.targets[0].id == BASE_KEY:
            return None
        return node
