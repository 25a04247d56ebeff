"""Stage three: where a finding is reported — the file, line and column that write its key."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from freezefix.config.resolve import Resolver
from freezefix.ftypes import OPEN, Checked, FileOutcome, Finding, FixState, FixStatus, Placed


def place(resolver: Resolver, config: Path, finding: Finding) -> Placed:
    """At ``finding.at`` when the rule chose the place; else where the deepest written prefix of
    its key is written (a key only a base's dict holds is reported at that dict), else the top
    of the config."""
    if finding.at is not None:
        return Placed(finding, *finding.at)
    key = finding.key
    for depth in range(len(key), 0, -1):
        origin = resolver.origin(config, key[:depth])
        if origin is not None and origin.location is not None:
            return Placed(finding, origin.path, origin.location.line, origin.location.col + 1)
    return Placed(finding, config, 1, 1)


@dataclass
class Reported:
    """A placed finding as a run reports it: the configs it was found in, and what became of its fix."""

    placed: Placed
    configs: list[Path] = field(default_factory=list)
    fix_status: FixStatus = OPEN
    suppressed: bool = False

    @property
    def finding(self) -> Finding:
        return self.placed.finding

    @property
    def path(self) -> Path:
        return self.placed.path

    @property
    def line(self) -> int:
        return self.placed.line

    @property
    def col(self) -> int:
        return self.placed.col

    @property
    def ident(self) -> tuple:
        return self.placed.ident

    @property
    def state(self) -> FixState:
        return self.fix_status.state

    @property
    def status(self) -> str:
        """The fix status as reports write it: 'open', 'fixed', 'would-fix' or 'skipped: <why>'."""
        return str(self.fix_status)

    @property
    def fix_kind(self) -> str | None:
        fix = self.finding.fix
        if fix is None:
            return None
        return "safe" if fix.safe else "unsafe"


def group(placed_by_config: dict[Path, tuple[Placed, ...]]) -> list[Reported]:
    """One report per place and rule, whatever the configs that inherit it: a base's trap shows
    once, with the message of the first config and the others listed."""
    reported: dict[tuple, Reported] = {}
    for config, placed in placed_by_config.items():
        for p in placed:
            entry = reported.setdefault(p.ident, Reported(p))
            entry.configs.append(config)
    return list(reported.values())


def withdraw_read_names(placed: dict[Path, tuple[Placed, ...]],
                        outcomes: dict[Path, FileOutcome | None]) -> dict[Path, tuple[Placed, ...]]:
    """Without the findings that call a top-level name unread (``Finding.unless_read``) in a file
    that another config of the run inherits and reads that name in (``_base_.total_epochs``):
    there the name is a variable.  Decided over the whole run, as each config sees only its own chain."""
    read_through: dict[Path, set[str]] = {}  # file → names read by the configs whose chain holds it
    for outcome in outcomes.values():
        if isinstance(outcome, Checked):
            for file in outcome.files:
                read_through.setdefault(file, set()).update(outcome.names_read)
    return {config: tuple(p for p in found
                          if p.finding.unless_read is None or p.finding.unless_read not in read_through.get(p.path, ()))
            for config, found in placed.items()}
