"""Stage one: what a file is — a config to judge, a ``_base_`` fragment, a file to skip, or an error."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from freezefix.config.resolve import ConfigError, NotAnalysable, Resolver
from freezefix.discover import is_fragment, looks_like_config
from freezefix.ftypes import Failed, Fragment, Skipped
from freezefix.textio import display_path


@dataclass(frozen=True)
class Loaded:
    """A config the resolver now holds, for the rules to judge."""


def load(resolver: Resolver, path: Path, named: bool) -> Skipped | Failed | Fragment | Loaded:
    """Resolve ``path``.  A file found by walking a directory that does not look like a config (a
    script, a test) is skipped; one named on the command line is always treated as a config."""
    try:
        if not named:
            why = looks_like_config(resolver.sources.parsed(path)[1])
            if why:
                return Skipped(why)
        resolver.unit(path)
    except NotAnalysable as exc:
        return Skipped(str(exc))
    except ConfigError as exc:
        at_fault = exc.path or path
        if at_fault == path:
            return Failed(str(exc))
        return Failed(f"cannot load: {display_path(at_fault)}: {exc}")
    return Fragment() if is_fragment(path) else Loaded()
