"""FF100 unused-suppression.

What
    A ``# freezefix: ignore[...]`` comment silences no finding on its line.

Why
    Suppressions outlive the problems they were written for: once a config is fixed, the comment
    only hides whatever goes wrong on that line next.  ruff reports unused ``noqa`` the same way.

Example
    ``frozen_stages=4,  # freezefix: ignore[FF101]`` after the fix → reported; delete the comment.

Fix safety
    Reported only (the comment is the user's).  Codes of rules that did not run (``--select``) are
    not judged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from freezefix.analysis import ConfigView
from freezefix.ftypes import Placed
from freezefix.rules.base import Finding, Invalid, Options, Rule, Valid, registry
from freezefix.suppress import Suppression

_CFG = "model = dict(type='RetinaNet', backbone=dict(type='mmdet.ResNet', depth=18, frozen_stages=-1){comment}\n)\n"


@registry.add
class UnusedSuppression(Rule):
    __doc__ = __doc__
    code = "FF100"
    name = "unused-suppression"
    summary = "a freezefix: ignore comment that silences nothing"
    fix_summary = "reported (delete the comment)"
    VALID = [Valid(_CFG.format(comment=""))]
    INVALID = [Invalid(_CFG.format(comment=",  # freezefix: ignore"), line=1, col=97, message="silences no finding")]

    def check(self, view: ConfigView, options: Options) -> Iterator[Finding]:
        # Nothing per config: whether a suppression silenced something is known only once every
        # other rule has run on every config that reaches its file (see `unused`).
        return iter(())

    def unused(self, by_file: dict[Path, dict[int, Suppression]], ran: set[str]) -> list[Placed]:
        """The suppressions that silenced nothing, once the rules ``ran`` have marked the ones they
        used; one that names a rule that did not run (``--select``) is not judged."""
        found = []
        for path, suppressions in by_file.items():
            for suppression in suppressions.values():
                judged = suppression.codes is None or suppression.codes <= ran
                if suppression.used or not judged:
                    continue
                what = "every rule" if suppression.codes is None else ", ".join(sorted(suppression.codes))
                finding = self.finding(f"this `freezefix: ignore` ({what}) silences no finding; remove it", ())
                found.append(Placed(finding, path, suppression.line, suppression.col))
        return found
