"""Inline suppressions: ``# freezefix: ignore[FF101]`` on the line a finding is reported at.

``# freezefix: ignore`` silences every rule on its line.  A suppression that silences nothing is
reported itself (FF100), as ruff does for unused ``noqa``, so they do not pile up after fixes.
"""

from __future__ import annotations

import io
import re
import tokenize
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Iterable

_PATTERN = re.compile(r"#\s*freezefix:\s*ignore(?:\[(?P<codes>[A-Za-z0-9_,\s]+)\])?", re.IGNORECASE)


@dataclass
class Suppression:
    line: int
    col: int
    codes: frozenset[str] | None  # None: every rule
    used: set[str] = field(default_factory=set)

    def covers(self, code: str) -> bool:
        return self.codes is None or code in self.codes


@lru_cache(maxsize=4096)
def _comments(text: str) -> tuple[tuple[int, int, str], ...]:
    found = []
    try:
        for token in tokenize.generate_tokens(io.StringIO(text).readline):
            if token.type == tokenize.COMMENT:
                found.append((token.start[0], token.start[1], token.string))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        pass
    return tuple(found)


def suppressions(text: str) -> dict[int, Suppression]:
    """Suppressions of a file by line (comments only: a '#' inside a string does not count)."""
    found: dict[int, Suppression] = {}
    for line, col, comment in _comments(text):
        match = _PATTERN.search(comment)
        if match is None:
            continue
        codes = match.group("codes")
        parsed = frozenset(c.strip().upper() for c in codes.split(",") if c.strip()) if codes else None
        found[line] = Suppression(line, col + match.start() + 1, parsed)
    return found


def silence(reports: Iterable, by_file: dict[Path, dict[int, Suppression]]) -> None:
    """Mark each report (``.finding.code``, ``.path``, ``.line``) that a suppression on its line
    covers as ``suppressed``, and the suppression as used for that code."""
    for report in reports:
        suppression = by_file.get(report.path, {}).get(report.line)
        if suppression is not None and suppression.covers(report.finding.code):
            report.suppressed = True
            suppression.used.add(report.finding.code)
