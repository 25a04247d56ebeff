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

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from freezefix.config import lazy
from freezefix.config import old_style
from freezefix.config.errors import BASE_KEY, DELETE_KEY, ConfigError, NotAnalysable, TimedOut
from freezefix.config.locate import Key, Location
from freezefix.config.merge import AttrDict
from freezefix.config.new_style import NewStyleReader
from freezefix.config.plain import get_in, to_plain
from freezefix.config.preprocess import base_path, is_lazy_import
from freezefix.config.sources import Sources
from freezefix.config.unit import FileUnit

# What callers use from here; AttrDict and to_plain are the values resolution hands out.
__all__ = ["AttrDict", "ConfigError", "FileUnit", "NotAnalysable", "Origin", "Resolver", "to_plain"]


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

    def __init__(self, overlay: dict[Path, str] | None = None, remembered: Callable[[], dict] | None = None,
                 registered_name: Callable[[Any], str | None] | None = None):
        self.sources = Sources(overlay)  # the files' texts (or the overlay's) and trees, read once
        # remembered(): a dict kept across runs (keyed by package versions) for what only the
        # installed packages decide, such as where a `pkg::` base is.
        self.remembered = remembered
        # registered_name(cls): the name the installed stack's registries build a class under
        # ('mmdet.ResNet'), for the classes new-style configs name; None: their import paths.
        self.registered_name = registered_name
        self.units: dict[Path, FileUnit] = {}
        self.failures: dict[Path, Exception] = {}
        self.new_style = NewStyleReader(registered_name)  # keeps new-style parses, which children start from
        # What each file's outcome (unit or failure) was computed from, for the results cache:
        # itself and every base it reached or looked for (a missing one too: creating it changes
        # the outcome), and the environment variables its `{{$VAR:default}}` placeholders read.
        self.deps: dict[Path, dict[Path, None]] = {}
        self.env_used: dict[Path, dict[str, str | None]] = {}
        # Files that failed for a reason that may not recur (a timeout on a busy machine).
        self.transient: set[Path] = set()
        self.resolved: list[Path] = []  # files read and executed by this resolver, in order (a count of work done)

    # -- public -------------------------------------------------------------------------------
    def with_overlay(self, overlay: dict[Path, str]) -> Resolver:
        """A resolver like this one that reads ``overlay``'s texts instead of those files (planned edits)."""
        return Resolver(overlay, self.remembered, self.registered_name)

    @property
    def overlay(self) -> dict[Path, str]:
        return self.sources.overlay

    def unit(self, path: Path) -> FileUnit:
        known = self.units.get(path)  # asked many times per config, nearly always by its own key
        return known if known is not None else self.load(Path(os.path.abspath(path)), ())

    def values(self, path: Path) -> dict:
        return self.unit(path).merged

    def origin(self, path: Path, key: Key) -> Origin | None:
        """The file (and place in it) that sets ``key`` in the resolved config of ``path``."""
        path = self.unit(path).source.path
        owner = owner_of(self.units, Path(os.path.abspath(path)), key)
        if owner is None:
            return None
        unit = self.units[owner]
        location = unit.locations.get(key)
        if location is not None and location.how != "computed":
            # Only claim a literal when the literal really is the value mmengine produced there.
            if not location.matches(get_in(unit.own, key)):
                location = location.as_computed()
        return Origin(owner, location)

    def local_files(self, path: Path) -> list[Path]:
        """``path`` and the bases it reaches through relative paths (not through ``pkg::``)."""
        seen: dict[Path, None] = {}
        pending = [self.unit(path).source.path]
        while pending:
            current = pending.pop()
            if current in seen:
                continue
            seen[current] = None
            unit = self.units[current]
            pending.extend(b for b, scope in zip(unit.bases, unit.base_scopes) if scope is None)
        return list(seen)

    # -- loading ------------------------------------------------------------------------------
    def load(self, path: Path, loading: tuple[Path, ...]) -> FileUnit:
        """``path`` resolved once (its failure too); ``loading``: the files whose bases are being
        resolved, outermost first (``path`` among them is an inheritance cycle)."""
        if path in self.units:
            return self.units[path]
        if path in self.failures:
            raise self.failures[path]
        if path in loading:
            cycle = " -> ".join(p.name for p in (*loading[loading.index(path):], path))
            raise ConfigError(f"cyclic _base_: {cycle}", path)
        self.deps.setdefault(path, {path: None})
        try:
            unit = self._file2dict(path, (*loading, path))
        except (ConfigError, NotAnalysable) as exc:
            self._failed(path, exc)
            raise
        self.units[path] = unit
        return unit

    def _failed(self, path: Path, exc: Exception) -> None:
        self.failures[path] = exc
        if isinstance(exc, TimedOut):
            self.transient.add(path)

    def _file2dict(self, path: Path, loading: tuple[Path, ...]) -> FileUnit:
        if path not in self.overlay:
            try:
                os.stat(path)
            except OSError as exc:  # missing, or a symlink that loops or dangles
                raise ConfigError("file not found" if not path.is_symlink() else f"cannot read: {exc.strerror}", path) from None
        source, original_tree = self.sources.parsed(path)
        if source.has_bom:
            # mmengine reads configs as plain UTF-8, so the BOM reaches ast.parse and fails there.
            raise ConfigError(
                "starts with a UTF-8 BOM, which neither mmengine nor mmcv can load (SyntaxError: invalid non-printable "
                "character U+FEFF); save it as UTF-8 without BOM",
                path,
            )
        if is_lazy_import(source.text, original_tree):
            if len(loading) > 1:
                raise ConfigError("an old-style config cannot name a new-style one (it imports non-standard "
                                  "modules) in _base_; mmengine refuses that too", path)
            # A `_base_/` fragment that imports classes is a new-style base module (it has no
            # read_base() when it inherits nothing); anything else without one is not a config.
            if not lazy.has_read_base(original_tree) and BASE_KEY not in path.parts:
                raise NotAnalysable(
                    "imports non-standard modules without `with read_base()`: plugin code or a script, "
                    "not a config; not analysed"
                )
            return self._new_style(path, ())
        self.resolved.append(path)
        unit = old_style.read(path, loading, source, original_tree, _Bases(self))
        if unit.env_used is not None:
            self.env_used[path] = unit.env_used
        return unit

    def _new_style(self, path: Path, loading: tuple[Path, ...]) -> FileUnit:
        """A new-style file, or a module one reads as a base (always read new-style), once."""
        if path in loading:
            cycle = " -> ".join(p.name for p in (*loading[loading.index(path):], path))
            raise ConfigError(f"cyclic read_base import: {cycle}", path)
        if path in self.new_style.parsed:
            return self.units[path]
        if isinstance(self.failures.get(path), ConfigError):
            raise self.failures[path]  # (NotAnalysable: read on its own it was no config; as a base it is)
        deps = self.deps.setdefault(path, {path: None})
        self.resolved.append(path)
        try:
            if path not in self.overlay and not path.is_file():
                raise ConfigError("file not found", path)
            source, tree = self.sources.parsed(path)
            unit = self.new_style.read(path, (*loading, path), source, tree, _Bases(self))
        except ConfigError as exc:
            self._failed(path, exc)
            raise
        deps.update(dict.fromkeys(unit.sources))  # plugin classes it names: a change makes it stale
        self.units[path] = unit
        return unit

def owner_of(units: dict[Path, FileUnit], path: Path, key: Key) -> Path | None:
    """The last file in merge order whose own dict sets ``key`` for ``path``'s resolved config."""
    unit = units.get(path)
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
        if key[0] in units[base].merged:
            return owner_of(units, base, key)
    return None


class _Bases:
    """What a reader asks of the resolver while it reads ``loading[-1]`` (``freezefix.config.unit.Bases``):
    the resolver records every base it located or loaded as that file's dependency."""

    def __init__(self, resolver: Resolver):
        self.resolver = resolver

    def locate(self, spec: str, child: Path) -> tuple[Path, str | None]:
        path, scope = base_path(spec, child, self.resolver.remembered)
        self.resolver.deps.setdefault(child, {child: None})[path] = None  # a missing one too: creating it changes the outcome
        return path, scope

    def exists(self, path: Path) -> bool:
        return self.resolver.sources.exists(path)

    def old_style(self, path: Path, loading: tuple[Path, ...]) -> FileUnit:
        return self._with_deps(path, loading, lambda: self.resolver.load(path, loading))

    def new_style(self, path: Path, loading: tuple[Path, ...]) -> FileUnit:
        return self._with_deps(path, loading, lambda: self.resolver._new_style(path, loading))

    def _with_deps(self, path: Path, loading: tuple[Path, ...], load: Callable[[], FileUnit]) -> FileUnit:
        child = self.resolver.deps.setdefault(loading[-1], {loading[-1]: None})
        child[path] = None
        try:
            return load()
        finally:
            child.update(self.resolver.deps.get(path, {}))
