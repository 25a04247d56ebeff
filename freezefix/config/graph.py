"""The ``_base_`` graph of the resolved files, with reverse edges (who inherits a file)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from freezefix.config.resolve import Resolver


class BaseGraph:
    def __init__(self, resolver: Resolver):
        self.bases: dict[Path, list[Path]] = {p: list(u.bases) for p, u in resolver.units.items()}
        self.children: dict[Path, list[Path]] = defaultdict(list)
        for path, bases in self.bases.items():
            for base in bases:
                self.children[base].append(path)

    def ancestors(self, path: Path) -> list[Path]:
        """Every file ``path`` inherits from, nearest first, each once (path excluded)."""
        return self._closure(path, self.bases)

    def dependents(self, path: Path) -> list[Path]:
        """Every file that inherits ``path``, directly or not (path excluded)."""
        return self._closure(path, self.children)

    @staticmethod
    def _closure(start: Path, edges: dict[Path, list[Path]]) -> list[Path]:
        seen: dict[Path, None] = {}
        queue = list(edges.get(start, ()))
        while queue:
            current = queue.pop(0)
            if current in seen or current == start:
                continue
            seen[current] = None
            queue.extend(edges.get(current, ()))
        return list(seen)
