"""Reading new-style configs (``with read_base():`` and the modules they import as bases) for the
resolver: each file parsed once by :mod:`freezefix.config.lazy`, as mmengine's lazy loader parses
it, and registered with the resolver as a unit like any other file."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from freezefix.config import lazy
from freezefix.config.errors import ConfigError
from freezefix.config.execution import ExecTimeout, execute
from freezefix.config.unit import FileUnit

if TYPE_CHECKING:
    from freezefix.config.resolve import Resolver


class NewStyleReader:
    def __init__(self, resolver: Resolver):
        self.resolver = resolver
        self.parsed: dict[Path, lazy.LazyParse] = {}

    def parse(self, path: Path, loading: tuple[Path, ...]) -> lazy.LazyParse:
        """A new-style file (or a module it reads as a base), parsed once; its unit registered."""
        resolver = self.resolver
        if path in loading:
            cycle = " -> ".join(p.name for p in (*loading[loading.index(path):], path))
            raise ConfigError(f"cyclic read_base import: {cycle}", path)
        if path in self.parsed:
            return self.parsed[path]
        if isinstance(resolver.failures.get(path), ConfigError):
            raise resolver.failures[path]  # (NotAnalysable: read on its own it was no config; as a base it is)
        deps = resolver.deps.setdefault(path, {path: None})
        try:
            parsed = self._parse(path, (*loading, path), deps)
        except ConfigError as exc:
            resolver.failures[path] = exc
            raise
        self.parsed[path] = parsed
        sources: set[Path] = set()
        merged = lazy.plain_values(parsed.cfg, parsed.imported, sources)
        deps.update(dict.fromkeys(sorted(sources)))  # plugin classes it names: a change makes it stale
        source, tree = resolver.parsed(path)
        resolver.units[path] = FileUnit(source=source, bases=parsed.bases, base_scopes=parsed.base_scopes,
                                        own=lazy.own_values(merged, parsed.before), merged=merged, tree=tree,
                                        new_style=True, base_names=parsed.base_names)
        return parsed

    def _parse(self, path: Path, loading: tuple[Path, ...], deps: dict[Path, None]) -> lazy.LazyParse:
        resolver = self.resolver
        if path not in resolver.overlay and not path.is_file():
            raise ConfigError("file not found", path)
        source, tree = resolver.parsed(path)
        if source.has_bom:
            raise ConfigError("starts with a UTF-8 BOM, which mmengine cannot load; save it as UTF-8 without BOM", path)

        def base_parse(base: Path) -> lazy.LazyParse:
            deps[base] = None
            if base not in resolver.overlay and not base.is_file():
                raise ConfigError(f"missing read_base module (looked for {base})", path)
            try:
                parsed = self.parse(base, loading)
            finally:
                deps.update(resolver.deps.get(base, {}))
            # Fresh objects per child, as mmengine's re-parse gives: the child's code mutates them.
            return lazy.fresh_copy(parsed)

        try:
            return lazy.parse(path, tree, base_parse, execute)
        except ConfigError:
            raise
        except ExecTimeout as exc:
            resolver.transient.add(path)
            raise ConfigError(str(exc), path) from None
        except Exception as exc:  # noqa: BLE001 - config code is arbitrary Python
            raise ConfigError(f"raises when parsed as a new-style config: {type(exc).__name__}: {exc}", path) from None
