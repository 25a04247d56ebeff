"""What a run is asked to do and what it came to."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from freezefix.engine.place import Reported
from freezefix.ftypes import FileOutcome, FixState

if TYPE_CHECKING:  # the check path must not import libcst (plan) before it needs to
    from freezefix.plan import Plan


@dataclass(frozen=True)
class RunOptions:
    select: tuple[str, ...] = ()  # rule codes (or prefixes); empty = all
    ignore: tuple[str, ...] = ()
    freeze: tuple[str, ...] = ()
    unsafe_fixes: bool = False
    cache_dir: Path | None = None
    device: str = "meta"  # where the write gate and explain build models: auto | meta | cpu | cuda
    verify: bool = True  # the write gate (apply): prove each rewrite on the real model first
    exclude: Any = None  # callable(path) → bool, from [tool.freezefix] exclude
    jobs: int | None = None  # rules: forked workers only when given; write gate: None means one per core
    results_cache: bool = False  # check: reuse per-file results from cache_dir while their inputs are unchanged

    @property
    def prober_device(self) -> str:
        """Where class facts are learnt: they are about structure, so meta suffices (cpu only when
        asked for), never cuda."""
        return "cpu" if self.device == "cpu" else "meta"

    def wants(self, code: str) -> bool:
        if self.select and not any(code.startswith(s) for s in self.select):
            return False
        return not any(code.startswith(i) for i in self.ignore)


@dataclass
class RunResult:
    files: int = 0
    configs_checked: int = 0
    findings: list[Reported] = field(default_factory=list)
    # What became of each file of the run (resolved this run or read from the results cache).
    outcomes: dict[Path, FileOutcome] = field(default_factory=dict)
    # Per-file problems as the reports list them: files that failed to load, rules that crashed,
    # a rewrite that could not be planned or written.
    errors: list[tuple[Path, str]] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    plan: Plan | None = None
    written: list[Path] = field(default_factory=list)
    dry_run: bool = False
    inherited_by: dict[Path, list[Path]] = field(default_factory=dict)  # changed file → its dependents
    suppressed: int = 0  # findings silenced by `# freezefix: ignore` comments
    verdicts: dict[Path, Any] = field(default_factory=dict)  # config → ConfigVerdict of the gate
    verify_stats: dict = field(default_factory=dict)  # loads, model builds and their time in the gate
    # What no rule could judge, (what, why) → configs: a class no registry holds (a plugin that does
    # not import), a detector that freezes in its own code.  "No findings" there means "not checked".
    unjudged: dict[tuple[str, str], list[Path]] = field(default_factory=dict)
    # Every file read and executed this run, in this process or a worker (a cached outcome reads none).
    files_resolved: list[Path] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        if self.errors:
            return 2
        if self.dry_run and self.plan and self.plan.texts:
            return 1
        return 1 if any(r.fix_status.state is not FixState.FIXED for r in self.findings) else 0
