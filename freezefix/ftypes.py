"""The types every layer of freezefix passes around: keys, findings and their fixes, what became of
each file, and of each finding's fix.

This module imports nothing of freezefix, so that the resolver, the rules, the planner, the cache
and the reports can all speak these types without importing each other.  Everything here is a
plain, picklable value: findings cross process boundaries (rule workers) and live in the results
cache.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Tuple, Union

# A dotted path into a resolved config, as a tuple: ("model", "backbone", "frozen_stages").
# typing.Tuple, not tuple[...]: a module-level alias is evaluated at import, and Python 3.8 has no tuple[...].
Key = Tuple[str, ...]


class _Remove:
    def __repr__(self) -> str:
        return "REMOVE"

    def __reduce__(self) -> str:
        return "REMOVE"  # unpickles as the module's singleton, so `value is REMOVE` survives processes


REMOVE: Any = _Remove()


@dataclass(frozen=True)
class Change:
    key: Key  # in the resolved config of the checked file
    value: Any  # REMOVE deletes the key
    # The file whose own text must hold the value (FF111 restores settings in the file that lost
    # them); None lets the planner choose the file that writes the value now.
    written_in: Path | None = None

    def __hash__(self) -> int:  # values may be dicts (a new custom_keys entry)
        return hash((self.key, repr(self.value), self.written_in))


@dataclass(frozen=True)
class Fix:
    changes: tuple[Change, ...]
    safe: bool
    why_unsafe: str | None = None
    # Findings the fix knowingly leaves behind, as (code, module): giving SECOND lr 0 makes its
    # BatchNorm drift a finding (FF105) that no config setting can fix.  The write gate accepts
    # these; any other new finding after the rewrite fails it.
    announces: tuple[tuple[str, str], ...] = ()
    # Modules the config as it is cannot build and the fix makes buildable (FF103's frozen_stages
    # past the range, FF104's rejected argument).  The write gate accepts that they were not built
    # before the rewrite; every other module a fix edits must build both before and after it.
    repairs: tuple[str, ...] = ()
    # Modules the fix means to stop training (FF117: a zero-lr key a longer key shadows).  The write
    # gate proves it with the real optimizer: after the rewrite every parameter under them is frozen
    # or at lr 0, and no parameter of another module changes its lr or weight decay.
    stops_training: tuple[str, ...] = ()
    # Modules the fix gives a checkpoint to load (FF116's init_cfg with a prefix).  The write gate
    # proves it on the real class: built on the CPU from the rewritten config, init_weights() run,
    # every tensor the checkpoint holds for it must hold the checkpoint's value.
    loads_weights: tuple[str, ...] = ()


@dataclass
class Finding:
    code: str
    name: str
    message: str
    key: Key  # the key the finding is about (reported where it is written)
    fix: Fix | None = None
    module: str | None = None
    # Where to report it, when that is not where ``key`` is written: FF111's key is the name whose
    # first binding was dropped, which the resolved config attributes to the live binding.
    at: tuple[Path, int, int] | None = None
    # A top-level name this finding calls unread (FF114): it is withdrawn when another config of
    # the run that inherits the file where it is reported reads that name (``_base_.x``).
    unless_read: str | None = None


@dataclass(frozen=True)
class Placed:
    """A finding at the place it is written: the file that owns its key, 1-based line and column."""

    finding: Finding
    path: Path
    line: int
    col: int

    @property
    def ident(self) -> tuple:
        """One report per rule and place: findings of several configs with this ident are one."""
        return (self.finding.code, self.path, self.line, self.col)


# What became of one file of a run.  A file is exactly one of these; the report, the results cache
# and the write gate read them instead of re-deriving it.


@dataclass(frozen=True)
class Skipped:
    """Not a config freezefix checks (a script, a file that runs code at load): said, not an error."""

    reason: str


@dataclass(frozen=True)
class Failed:
    """A config that could not be checked (a syntax error, a missing ``_base_``): exit code 2."""

    message: str


@dataclass(frozen=True)
class Fragment:
    """A ``_base_`` fragment: resolved for the configs that inherit it, never checked on its own."""


@dataclass(frozen=True)
class Checked:
    """A config the rules ran on: what they found where, the rules that crashed on it as (code,
    'ExcType: message'), and what no rule could judge as (what, why): a class no registry holds, a
    detector that freezes in its own code.  ``lasting`` is False when the outcome may change with
    no file changing (a plugin that did not import may import once installed)."""

    findings: tuple[Placed, ...]
    crashes: tuple[tuple[str, str], ...] = ()
    unjudged: tuple[tuple[str, str], ...] = ()
    lasting: bool = True
    # The config's own file and the bases it reaches by relative path, and every top-level name
    # they read from a base (``_base_.x``): whether a finding about an unread name in a shared
    # base stands depends on every config that inherits it.
    files: tuple[Path, ...] = ()
    names_read: frozenset[str] = frozenset()


FileOutcome = Union[Skipped, Failed, Fragment, Checked]


class FixState(enum.Enum):
    OPEN = "open"  # no fix ran on it (check, an unsafe fix without --unsafe-fixes, no fix at all)
    WOULD_FIX = "would-fix"  # a dry run's plan fixes it
    FIXED = "fixed"  # the rewritten files are on disk
    SKIPPED = "skipped"  # a fix exists and was not applied: ``reason`` says why


@dataclass(frozen=True)
class FixStatus:
    state: FixState
    reason: str | None = None

    def __str__(self) -> str:
        return f"{self.state.value}: {self.reason}" if self.reason else self.state.value


OPEN = FixStatus(FixState.OPEN)
WOULD_FIX = FixStatus(FixState.WOULD_FIX)
FIXED = FixStatus(FixState.FIXED)


def skipped_fix(reason: str) -> FixStatus:
    return FixStatus(FixState.SKIPPED, reason)
