"""Reading old-style configs (``_base_ = [...]`` and plain Python) for the resolver, as
``mmengine.Config.fromfile`` does: text substitutions, the bases resolved first and handed to the
file as ``_base_``, the file executed (statically where it is plain literals and names), its own
values merged over its bases."""

from __future__ import annotations

import ast
import os
import types
from pathlib import Path
from typing import Any

from freezefix.config import static_eval
from freezefix.config.errors import BASE_KEY, DEPRECATION_KEY, ConfigError, NotAnalysable, TimedOut
from freezefix.config.execution import ExecTimeout, execute
from freezefix.config.merge import AttrDict, attr_copy, merge_a_into_b, substitute_base_vars
from freezefix.config.plain import to_plain
from freezefix.config.preprocess import base_files, env_vars_read, substitute_text, without_base_assignments
from freezefix.config.unit import Bases, FileUnit
from freezefix.textio import SourceFile


def read(path: Path, loading: tuple[Path, ...], source: SourceFile, original_tree: ast.Module, bases: Bases) -> FileUnit:
    """One old-style file resolved over its bases (``bases`` resolves those, ``loading`` is the
    chain being resolved, this file last); ConfigError (TimedOut for code that did not finish)."""
    env_used = None
    if "{{" in source.text:
        env_used = {name: os.environ.get(name) for name in env_vars_read(source.text)}
    text, placeholders = substitute_text(source.text, str(path))
    try:
        tree = ast.parse(text, filename=str(path)) if text != source.text else original_tree
        base_specs = base_files(tree)
    except SyntaxError as exc:
        raise ConfigError(f"syntax error after substitution at line {exc.lineno}", path) from None
    except Exception as exc:  # noqa: BLE001 - _base_ is evaluated like mmengine does
        raise ConfigError(f"cannot evaluate _base_: {exc}", path) from None

    base_paths, base_scopes, base_units = _bases(path, base_specs, loading, bases)
    tree = without_base_assignments(tree)
    # A child that only reads its bases (most) runs on them as they are; every container it
    # keeps is copied by the substitution below, and the merge copies what it changes.
    reads_only = not static_eval.mutates_containers(tree) and not any(base_scopes)
    base_cfg = _base_dict(base_units, base_scopes, path, copied=not reads_only)
    scope_globals: dict[str, Any] = {BASE_KEY: base_cfg}
    if not _ran_statically(tree, scope_globals):
        base_cfg = _base_dict(base_units, base_scopes, path)  # fresh and copied: exec may mutate it
        scope_globals = {BASE_KEY: base_cfg}
        try:
            execute(compile(tree, str(path), "exec"), scope_globals)
        except ExecTimeout as exc:
            raise TimedOut(str(exc), path) from None
        except Exception as exc:  # noqa: BLE001 - config code is arbitrary Python
            raise ConfigError(f"raises when executed: {type(exc).__name__}: {exc}", path) from None
    cfg_dict = {
        k: v
        for k, v in scope_globals.items()
        if k != BASE_KEY
        and not k.startswith("__")
        and not isinstance(v, (types.FunctionType, types.ModuleType))
    }
    cfg_dict.pop(DEPRECATION_KEY, None)
    try:
        # Always: besides substituting, it copies every container, which (as in mmengine)
        # separates `test_evaluator = val_evaluator` before the merge pops `_delete_` from one.
        cfg_dict = substitute_base_vars(cfg_dict, placeholders, base_cfg)
    except (KeyError, AttributeError) as exc:
        raise ConfigError(f"{{{{_base_.…}}}} names a key the bases do not have: {exc}", path) from None
    cfg_dict.pop(BASE_KEY, None)
    own = to_plain(cfg_dict)  # a copy: the merge below pops `_delete_` from cfg_dict
    try:
        merged = merge_a_into_b(cfg_dict, base_cfg)
    except TypeError as exc:
        raise ConfigError(str(exc), path) from None
    # Fresh objects (the bases were copied for this file, its own values just executed), so
    # they are kept as they are: AttrDict compares and serialises as the dict it is.
    merged = {k: v for k, v in merged.items() if not k.startswith("__")}
    return FileUnit(source=source, bases=base_paths, base_scopes=base_scopes, own=own, merged=merged,
                    tree=original_tree, env_used=env_used)


def _bases(path: Path, base_specs: list, loading: tuple[Path, ...],
           bases: Bases) -> tuple[list[Path], list[str | None], list[FileUnit]]:
    """The resolved units of a file's ``_base_`` entries, in order."""
    base_paths: list[Path] = []
    base_scopes: list[str | None] = []
    units: list[FileUnit] = []
    for spec in base_specs:
        if not isinstance(spec, str):
            raise ConfigError(f"_base_ entries must be strings, got {spec!r}", path)
        bpath, scope = bases.locate(spec, path)
        if not bases.exists(bpath):
            raise ConfigError(f"missing _base_ {spec!r} (looked for {bpath})", path)
        try:
            units.append(bases.old_style(bpath, loading))
        except NotAnalysable as exc:
            raise NotAnalysable(f"base {spec!r}: {exc}") from None
        except ConfigError as exc:
            if exc.path == bpath and "cyclic" not in str(exc):
                raise ConfigError(f"in _base_ {spec!r}: {exc}", path) from None
            raise
        base_paths.append(bpath)
        base_scopes.append(scope)
    return base_paths, base_scopes, units


def _base_dict(units: list[FileUnit], scopes: list[str | None], path: Path, copied: bool = True) -> AttrDict:
    """What ``_base_`` is while a child executes: the bases' results merged side by side, each a
    fresh copy as mmengine's re-execution gives (child code may mutate it) unless not ``copied``."""
    base_cfg = AttrDict()
    for unit, scope in zip(units, scopes):
        base_dict = attr_copy(unit.merged, scope) if copied else unit.merged
        duplicates = base_cfg.keys() & base_dict.keys()
        if duplicates:
            raise ConfigError(
                f"sibling bases both define {sorted(duplicates)} "
                "(mmengine: duplicate key is not allowed among bases)",
                path,
            )
        base_cfg.update(base_dict)
    return base_cfg


def _ran_statically(tree: ast.Module, scope: dict) -> bool:
    """Execute a plain config without compiling it (most are), or say False: it uses more than
    literals, names and arithmetic, or it raised (the exec that follows on fresh globals raises it
    again with Python's own message, as mmengine shows it)."""
    try:
        static_eval.run(tree, scope)
    except Exception:  # noqa: BLE001 - Unsupported, or the config's own error
        return False
    return True
