"""Reading new-style configs (``with read_base():`` and the modules they import as bases) for the
resolver: each file parsed once by :mod:`freezefix.config.lazy`, as mmengine's lazy loader parses
it, and returned as a unit like any other file."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from freezefix.config import lazy
from freezefix.config.errors import ConfigError, TimedOut
from freezefix.config.execution import ExecTimeout, execute
from freezefix.config.unit import Bases, FileUnit
from freezefix.textio import SourceFile


class NewStyleReader:
    """Keeps each file's parse (what a child reading it as a base starts from); the resolver keeps
    the units."""

    def __init__(self, registered_name: Callable[[Any], str | None] | None = None) -> None:
        self.parsed: dict[Path, lazy.LazyParse] = {}
        self.registered_name = registered_name

    def read(self, path: Path, loading: tuple[Path, ...], source: SourceFile, tree, bases: Bases) -> FileUnit:
        """A new-style file (or a module it reads as a base) parsed, its read_base modules through
        ``bases``; ConfigError (TimedOut for code that did not finish)."""
        if source.has_bom:
            raise ConfigError("starts with a UTF-8 BOM, which mmengine cannot load; save it as UTF-8 without BOM", path)

        def base_parse(base: Path) -> lazy.LazyParse:
            if not bases.exists(base):
                raise ConfigError(f"missing read_base module (looked for {base})", path)
            bases.new_style(base, loading)
            # Fresh objects per child, as mmengine's re-parse gives: the child's code mutates them.
            return lazy.fresh_copy(self.parsed[base])

        try:
            parsed = lazy.parse(path, tree, base_parse, execute)
        except ConfigError:
            raise
        except ExecTimeout as exc:
            raise TimedOut(str(exc), path) from None
        except Exception as exc:  # noqa: BLE001 - config code is arbitrary Python
            raise ConfigError(f"raises when parsed as a new-style config: {type(exc).__name__}: {exc}", path) from None
        self.parsed[path] = parsed
        sources: set[Path] = set()
        merged = lazy.plain_values(parsed.cfg, parsed.imported, sources, self.registered_name)
        return FileUnit(source=source, bases=parsed.bases, base_scopes=parsed.base_scopes,
                        own=lazy.own_values(merged, parsed.before), merged=merged, tree=tree,
                        new_style=True, base_names=parsed.base_names, sources=tuple(sorted(sources)))
