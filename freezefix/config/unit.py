"""One config file as the resolver keeps it."""

from __future__ import annotations

import ast
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from freezefix.config.locate import LocationMap, build_location_map, build_mutation_map
from freezefix.textio import SourceFile


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
    # What the file's outcome depends on besides files: the environment variables its
    # `{{$VAR:default}}` placeholders read, and (new-style) the plugin modules its classes come from.
    env_used: dict[str, str | None] | None = None
    sources: tuple[Path, ...] = ()

    @functools.cached_property
    def locations(self) -> LocationMap:
        # Built on first use: only the files that own a finding or an edit need one, and building
        # it for every file was a fifth of a check's resolution time.
        if self.new_style:
            return build_mutation_map(self.tree, self.source.text)
        return build_location_map(self.tree, self.source.text)


class Bases(Protocol):
    """What a reader may ask of the resolver while it reads one file: where a ``_base_`` entry
    points, and the resolved unit of a base (the resolver keeps every unit, failure and dependency;
    a reader only returns what it read)."""

    def locate(self, spec: str, child: Path) -> tuple[Path, str | None]:
        """Where a ``_base_`` entry of ``child`` points, and its registry scope for ``pkg::``
        entries; ConfigError when it points nowhere."""

    def old_style(self, path: Path, loading: tuple[Path, ...]) -> FileUnit:
        """The unit of an old-style base of the file being read."""

    def new_style(self, path: Path, loading: tuple[Path, ...]) -> FileUnit:
        """The unit of a module a new-style config reads as a base."""

    def exists(self, path: Path) -> bool:
        """Whether ``path`` can be read (on disk, or in the overlay of planned edits)."""
