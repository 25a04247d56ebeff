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

from typing import Iterator

from freezefix.analysis import ConfigView
from freezefix.rules.base import Example, Finding, Options, Rule, registry

_CFG = "model = dict(type='RetinaNet', backbone=dict(type='mmdet.ResNet', depth=18, frozen_stages=-1){comment}\n)\n"


@registry.add
class UnusedSuppression(Rule):
    __doc__ = __doc__
    code = "FF100"
    name = "unused-suppression"
    summary = "a freezefix: ignore comment that silences nothing"
    VALID = [Example(_CFG.format(comment=""))]
    INVALID = [Example(_CFG.format(comment=",  # freezefix: ignore"))]

    def check(self, view: ConfigView, options: Options) -> Iterator[Finding]:
        # Decided by the engine once every other rule has run (freezefix.api); nothing per config.
        return iter(())
