"""The config files of a run as text and syntax trees, each read and parsed once; planned edits
(an overlay) stand in for the files they rewrite."""

from __future__ import annotations

import ast
import os
from pathlib import Path

from freezefix.config.errors import ConfigError
from freezefix.textio import SourceError, SourceFile, read_source


class Sources:
    def __init__(self, overlay: dict[Path, str] | None = None):
        # path → text to use instead of the file on disk (verification of planned edits)
        self.overlay = {Path(os.path.abspath(p)): t for p, t in (overlay or {}).items()}
        self._parsed: dict[Path, tuple[SourceFile, ast.Module]] = {}

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

    def exists(self, path: Path) -> bool:
        """Whether ``path`` can be read: on disk, or in the overlay."""
        return path in self.overlay or path.exists()
