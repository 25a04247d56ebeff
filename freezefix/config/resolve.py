"""Resolve a config exactly as ``mmengine.Config.fromfile`` does, once per file, with provenance.

mmengine re-reads and re-executes every base for every child and goes through temporary files.
This resolver follows the same steps (predefined-variable and environment substitution,
``{{_base_.x}}`` placeholders, sibling-base duplicate check, ``pkg::`` scopes, execution with
``_base_`` in the globals, ``_delete_`` merging), re-implemented on plain dicts
(:mod:`freezefix.config.preprocess`, :mod:`freezefix.config.merge`) and checked against mmengine's
``Config`` by the tests, but keeps each file's result and reuses it across children.  It also keeps each file's *own* dict (what the file
itself writes, before merging), which is what provenance is computed from: the owner of a dotted
key is the last file in merge order whose own dict sets it.

Config code is executed, as mmengine does.  mmengine only accepts standard-library imports in
old-style configs (anything else makes it a lazy-import config).  New-style ``with read_base()``
configs (and the modules they read as bases) are parsed by :mod:`freezefix.config.lazy`, as
mmengine's lazy loader parses them; a file that imports non-standard modules without
``read_base()`` and is no config's base (plugin code, a script) is skipped with a reason.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import os
import signal
import threading
import types
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from freezefix.config import lazy, static_eval
from freezefix.config.errors import BASE_KEY, DELETE_KEY, DEPRECATION_KEY, ConfigError, NotAnalysable
from freezefix.config.merge import AttrDict, attr_copy, lookup, merge_a_into_b, substitute_base_vars
from freezefix.config.plain import to_plain
from freezefix.config.preprocess import (base_files, base_path, env_vars_read, is_lazy_import, substitute_text,
                                         without_base_assignments)
from freezefix.config.locate import Key, Location, LocationMap, build_location_map, build_mutation_map
from freezefix.textio import SourceError, SourceFile, read_source


@dataclass
class FileUnit:
    """One config file, resolved: what it writes itself and the merged result."""

    source: SourceFile
    bases: list[Path]
    base_scopes: list[str | None]  # 'mmdet' for a `mmdet::` base (found through the package), else None
    own: dict  # the file's own top-level names, after {{_base_.x}} substitution, before merging
    merged: dict  # plain-dict view of mmengine's result for this file
    tree: ast.Module  # as parsed, before substitution: what locations are read from
    new_style: bool = False  # a `with read_base()` config or one of its bases: its code mutates values
    # New-style: per base, the names its import binds (None: `import *`; see lazy.imported_names).
    base_names: list | None = None

    @functools.cached_property
    def locations(self) -> LocationMap:
        # Built on first use: only the files that own a finding or an edit need one, and building
        # it for every file was a fifth of a check's resolution time.
        if self.new_style:
            return build_mutation_map(self.tree, self.source.text)
        return build_location_map(self.tree, self.source.text)


@dataclass(frozen=True)
class Origin:
    """Where the value at a key is written."""

    path: Path
    location: Location | None  # None: the file sets it, but not as something freezefix can point at

    @property
    def how(self) -> str:
        return self.location.how if self.location else "computed"

    @property
    def editable(self) -> bool:
        return self.location is not None and self.location.how != "computed"


class Resolver:
    """Resolves configs with a per-file cache; one instance per run (or per worker)."""

    def __init__(self, overlay: dict[Path, str] | None = None):
        # overlay: path → text to use instead of the file on disk (verification of planned edits)
        self.overlay = {Path(os.path.abspath(p)): t for p, t in (overlay or {}).items()}
        self.units: dict[Path, FileUnit] = {}
        self.failures: dict[Path, Exception] = {}
        self._lazy: dict[Path, lazy.LazyParse] = {}  # new-style files, parsed once
        self._parsed: dict[Path, tuple[SourceFile, ast.Module]] = {}
        # What each file's outcome (unit or failure) was computed from, for the results cache:
        # itself and every base it reached or looked for (a missing one too: creating it changes
        # the outcome), and the environment variables its `{{$VAR:default}}` placeholders read.
        self.deps: dict[Path, dict[Path, None]] = {}
        self.env_used: dict[Path, dict[str, str | None]] = {}
        # Files that failed for a reason that may not recur (a timeout on a busy machine).
        self.transient: set[Path] = set()

    # -- public -------------------------------------------------------------------------------
    def unit(self, path: Path) -> FileUnit:
        return self._load(Path(os.path.abspath(path)), ())

    def values(self, path: Path) -> dict:
        return self.unit(path).merged

    def origin(self, path: Path, key: Key) -> Origin | None:
        """The file (and place in it) that sets ``key`` in the resolved config of ``path``."""
        path = self.unit(path).source.path
        owner = self._owner(Path(os.path.abspath(path)), key)
        if owner is None:
            return None
        unit = self.units[owner]
        location = unit.locations.get(key)
        if location is not None and location.how != "computed":
            # Only claim a literal when the literal really is the value mmengine produced there.
            if not location.matches(lookup(unit.own, key)):
                location = location.as_computed()
        return Origin(owner, location)

    def local_files(self, path: Path) -> list[Path]:
        """``path`` and the bases it reaches through relative paths (not through ``pkg::``)."""
        seen: dict[Path, None] = {}
        stack = [self.unit(path).source.path]
        while stack:
            current = stack.pop()
            if current in seen:
                continue
            seen[current] = None
            unit = self.units[current]
            stack.extend(b for b, scope in zip(unit.bases, unit.base_scopes) if scope is None)
        return list(seen)

    # -- loading ------------------------------------------------------------------------------
    def parsed(self, path: Path) -> tuple[SourceFile, ast.Module]:
        """The file's text and ``ast``, read and parsed once per run (ConfigError if it cannot be)."""
        path = Path(os.path.abspath(path))
        if path not in self._parsed:
            try:
                source = self.read(path)
            except SourceError as exc:
                raise ConfigError(str(exc), path) from None
            try:
                tree = ast.parse(source.text, filename=str(path))
            except SyntaxError as exc:
                raise ConfigError(f"syntax error at line {exc.lineno}: {exc.msg}", path) from None
            self._parsed[path] = (source, tree)
        return self._parsed[path]

    def digest_read(self, path: Path) -> str | None:
        """sha256 of the bytes this run parsed ``path`` from; None when it did not parse it."""
        parsed = self._parsed.get(path)
        return parsed[0].digest if parsed is not None else None

    def read(self, path: Path) -> SourceFile:
        if path in self.overlay:
            original = read_source(path) if path.exists() else None
            return SourceFile(
                path,
                self.overlay[path],
                original.has_bom if original else False,
                original.digest if original else "",
            )
        return read_source(path)

    def _load(self, path: Path, stack: tuple[Path, ...]) -> FileUnit:
        if path in self.units:
            return self.units[path]
        if path in self.failures:
            raise self.failures[path]
        if path in stack:
            cycle = " -> ".join(p.name for p in (*stack[stack.index(path):], path))
            raise ConfigError(f"cyclic _base_: {cycle}", path)
        deps = self.deps.setdefault(path, {path: None})
        try:
            unit = self._file2dict(path, (*stack, path), deps)
        except (ConfigError, NotAnalysable) as exc:
            self.failures[path] = exc
            raise
        self.units[path] = unit
        return unit

    def _file2dict(self, path: Path, stack: tuple[Path, ...], deps: dict[Path, None]) -> FileUnit:
        if path not in self.overlay:
            try:
                os.stat(path)
            except OSError as exc:  # missing, or a symlink that loops or dangles
                raise ConfigError("file not found" if not path.is_symlink() else f"cannot read: {exc.strerror}", path) from None
        source, original_tree = self.parsed(path)
        if source.has_bom:
            # mmengine reads configs as plain UTF-8, so the BOM reaches ast.parse and fails there.
            raise ConfigError(
                "starts with a UTF-8 BOM, which neither mmengine nor mmcv can load (SyntaxError: invalid non-printable "
                "character U+FEFF); save it as UTF-8 without BOM",
                path,
            )
        if is_lazy_import(source.text, original_tree):
            if len(stack) > 1:
                raise ConfigError("an old-style config cannot name a new-style one (it imports non-standard "
                                  "modules) in _base_; mmengine refuses that too", path)
            # A `_base_/` fragment that imports classes is a new-style base module (it has no
            # read_base() when it inherits nothing); anything else without one is not a config.
            if not lazy.has_read_base(original_tree) and BASE_KEY not in path.parts:
                raise NotAnalysable(
                    "imports non-standard modules without `with read_base()`: plugin code or a script, "
                    "not a config; not analysed"
                )
            self._lazy_parse(path, ())
            return self.units[path]

        if "{{" in source.text:
            self.env_used[path] = {name: os.environ.get(name) for name in env_vars_read(source.text)}
        text, placeholders = substitute_text(source.text, str(path))
        try:
            tree = ast.parse(text, filename=str(path)) if text != source.text else original_tree
            base_specs = base_files(tree)
        except SyntaxError as exc:
            raise ConfigError(f"syntax error after substitution at line {exc.lineno}", path) from None
        except Exception as exc:  # noqa: BLE001 - _base_ is evaluated like mmengine does
            raise ConfigError(f"cannot evaluate _base_: {exc}", path) from None

        bases, base_scopes, base_units = self._bases(path, base_specs, stack, deps)
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
                with warnings.catch_warnings(), _time_limit(EXEC_TIMEOUT_S):
                    warnings.simplefilter("ignore")
                    exec(compile(tree, str(path), "exec"), scope_globals, scope_globals)  # noqa: S102
            except _ExecTimeout:
                self.transient.add(path)
                raise ConfigError(f"did not finish executing within {EXEC_TIMEOUT_S:g} s (an endless loop?)", path) from None
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
        return FileUnit(
            source=source,
            bases=bases,
            base_scopes=base_scopes,
            own=own,
            merged=merged,
            tree=original_tree,
        )

    def _bases(self, path: Path, base_specs: list, stack: tuple[Path, ...],
               deps: dict[Path, None]) -> tuple[list[Path], list[str | None], list[FileUnit]]:
        """The resolved units of a file's ``_base_`` entries, in order."""
        bases: list[Path] = []
        base_scopes: list[str | None] = []
        units: list[FileUnit] = []
        for spec in base_specs:
            if not isinstance(spec, str):
                raise ConfigError(f"_base_ entries must be strings, got {spec!r}", path)
            bpath, scope = base_path(spec, path)
            deps[bpath] = None
            if not bpath.exists() and bpath not in self.overlay:
                raise ConfigError(f"missing _base_ {spec!r} (looked for {bpath})", path)
            try:
                units.append(self._load(bpath, stack))
            except NotAnalysable as exc:
                raise NotAnalysable(f"base {spec!r}: {exc}") from None
            except ConfigError as exc:
                if exc.path == bpath and "cyclic" not in str(exc):
                    raise ConfigError(f"in _base_ {spec!r}: {exc}", path) from None
                raise
            finally:
                deps.update(self.deps.get(bpath, {}))
            bases.append(bpath)
            base_scopes.append(scope)
        return bases, base_scopes, units

    def _lazy_parse(self, path: Path, stack: tuple[Path, ...]) -> lazy.LazyParse:
        """A new-style file (or a module it reads as a base), parsed once; its unit registered."""
        if path in stack:
            cycle = " -> ".join(p.name for p in (*stack[stack.index(path):], path))
            raise ConfigError(f"cyclic read_base import: {cycle}", path)
        if path in self._lazy:
            return self._lazy[path]
        if isinstance(self.failures.get(path), ConfigError):
            raise self.failures[path]  # (NotAnalysable: read on its own it was no config; as a base it is)
        deps = self.deps.setdefault(path, {path: None})
        try:
            parsed = self._parse_new_style(path, (*stack, path), deps)
        except ConfigError as exc:
            self.failures[path] = exc
            raise
        self._lazy[path] = parsed
        sources: set[Path] = set()
        merged = lazy.plain_values(parsed.cfg, parsed.imported, sources)
        deps.update(dict.fromkeys(sorted(sources)))  # plugin classes it names: a change makes it stale
        source, tree = self.parsed(path)
        self.units[path] = FileUnit(source=source, bases=parsed.bases, base_scopes=parsed.base_scopes,
                                    own=lazy.own_values(merged, parsed.before), merged=merged, tree=tree,
                                    new_style=True, base_names=parsed.base_names)
        return parsed

    def _parse_new_style(self, path: Path, stack: tuple[Path, ...], deps: dict[Path, None]) -> lazy.LazyParse:
        if path not in self.overlay and not path.is_file():
            raise ConfigError("file not found", path)
        source, tree = self.parsed(path)
        if source.has_bom:
            raise ConfigError("starts with a UTF-8 BOM, which mmengine cannot load; save it as UTF-8 without BOM", path)

        def base_parse(base: Path) -> lazy.LazyParse:
            deps[base] = None
            if base not in self.overlay and not base.is_file():
                raise ConfigError(f"missing read_base module (looked for {base})", path)
            try:
                parsed = self._lazy_parse(base, stack)
            finally:
                deps.update(self.deps.get(base, {}))
            # Fresh objects per child, as mmengine's re-parse gives: the child's code mutates them.
            return lazy.fresh_copy(parsed)

        def execute(code: Any, scope: dict) -> None:
            with warnings.catch_warnings(), _time_limit(EXEC_TIMEOUT_S):
                warnings.simplefilter("ignore")
                exec(code, scope, scope)  # noqa: S102 - config code, as mmengine runs it

        try:
            return lazy.parse(path, tree, base_parse, execute)
        except ConfigError:
            raise
        except _ExecTimeout:
            self.transient.add(path)
            raise ConfigError(f"did not finish executing within {EXEC_TIMEOUT_S:g} s (an endless loop?)", path) from None
        except Exception as exc:  # noqa: BLE001 - config code is arbitrary Python
            raise ConfigError(f"raises when parsed as a new-style config: {type(exc).__name__}: {exc}", path) from None

    # -- provenance ---------------------------------------------------------------------------
    def _owner(self, path: Path, key: Key) -> Path | None:
        unit = self.units.get(path)
        if unit is None or not key:
            return None
        node: Any = unit.own
        for depth, part in enumerate(key):
            if not isinstance(node, dict) or part not in node:
                break  # not set here: it comes from the bases (a `_delete_` above returned already)
            node = node[part]
            if depth == len(key) - 1 or not isinstance(node, dict) or node.get(DELETE_KEY):
                return path
        # The last base that binds the name here: new-style imports rebind in order (old-style sibling
        # bases may not share a name at all).
        for index in reversed(range(len(unit.bases))):
            base = unit.bases[index]
            names = unit.base_names[index] if unit.base_names else None
            if names is not None and key[0] not in names:
                continue  # `from .x import optim_wrapper` does not bring x's `model`
            if names is not None and names[key[0]] is None:
                return None  # renamed with `as`: not followed (never guessed)
            if key[0] in self.units[base].merged:
                return self._owner(base, key)
        return None


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


EXEC_TIMEOUT_S = float(os.environ.get("FREEZEFIX_EXEC_TIMEOUT", "20"))


class _ExecTimeout(BaseException):
    """Raised into a config's code by the timer; a BaseException so the config cannot catch it."""


@contextlib.contextmanager
def _time_limit(seconds: float):
    """Stop a config that runs too long (main thread, POSIX: a real-time interval timer)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return

    def expire(signum, frame):
        raise _ExecTimeout()

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


