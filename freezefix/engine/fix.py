"""Stage five: the findings' fixes → a plan → the write gate → atomic writes, and each fix's status."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Callable

from freezefix.config.graph import BaseGraph
from freezefix.config.resolve import Resolver
from freezefix.engine.place import Reported
from freezefix.engine.result import RunOptions, RunResult
from freezefix.ftypes import FIXED, WOULD_FIX, Change, Finding, FixState, skipped_fix
from freezefix.plan import Plan, Planner
from freezefix.textio import SourceError, atomic_write
from freezefix.verify.gate import Gate

GATE_ROUNDS = 2  # a config refused by the gate is planned out and the rest proved again, this often


def wanted_changes(per_config: dict[Path, list[Finding]], options: RunOptions) -> dict[Path, list[Change]]:
    """config → the changes of its fixes that this run may apply (unsafe ones only when asked)."""
    wanted: dict[Path, list[Change]] = defaultdict(list)
    for config, findings in per_config.items():
        for finding in findings:
            fix = finding.fix
            if fix is not None and (fix.safe or options.unsafe_fixes):
                wanted[config].extend(fix.changes)
    return dict(wanted)


def fix(result: RunResult, per_config: dict[Path, list[Finding]], resolver: Resolver, editable: list[Path],
        options: RunOptions, gate: Gate, dry_run: bool,
        on_written: Callable[[Path, int], None] | None = None) -> RunResult:
    """Plan the fixes of a checked run, prove the plan with ``gate`` (when ``options.verify``),
    write it unless ``dry_run``, and set each finding's fix status.  ``on_written(path, n)`` is
    called as each file is replaced (``n``: configs inheriting it); Ctrl-C between two files leaves
    every file either as it was or fully rewritten, each write being atomic."""
    result.dry_run = dry_run
    wanted = wanted_changes(per_config, options)
    planner = Planner(resolver, list(per_config), editable)
    plan = planner.plan(wanted)
    refused: dict[Path, str] = {}
    if options.verify and plan.texts:
        for _round in range(GATE_ROUNDS):
            verdicts = gate.verify(plan)
            result.verdicts.update(verdicts)
            for name, value in gate.stats.items():
                result.verify_stats[name] = result.verify_stats.get(name, 0) + value
            failed = {c: v for c, v in verdicts.items() if not v.ok and c in wanted}
            if not failed:
                break
            # A config whose rewrite fails on the real model keeps its files as they are;
            # the others are planned again without its changes, and verified again.
            for config, verdict in failed.items():
                refused[config] = "verification failed: " + "; ".join(verdict.problems)
                wanted.pop(config, None)
            plan = planner.plan(wanted)
        else:
            if any(not v.ok for v in result.verdicts.values() if v.config in wanted):
                plan = planner.plan({})
    result.plan = plan
    graph = BaseGraph(resolver)
    result.inherited_by = {path: graph.dependents(path) for path in plan.texts}
    result.errors.extend(plan.errors.items())
    dropped = {(config, change): why for config, change, why in plan.dropped}
    for reported in result.findings:
        fix_ = reported.finding.fix
        if fix_ is None or not (fix_.safe or options.unsafe_fixes):
            continue
        whys = [dropped[(c, ch)] for c in reported.configs for ch in fix_.changes if (c, ch) in dropped]
        whys += [refused[c] for c in reported.configs if c in refused]
        reported.fix_status = skipped_fix(whys[0]) if whys else WOULD_FIX if dry_run else FIXED
    if dry_run:
        return result
    for path, (_old, new) in plan.texts.items():
        try:
            atomic_write(resolver.unit(path).source, new)
        except SourceError as exc:
            result.errors.append((path, str(exc)))
            for reported in result.findings:
                if reported.fix_status.state is FixState.FIXED and _served_by(plan, reported, path):
                    reported.fix_status = skipped_fix(str(exc))
            continue
        result.written.append(path)
        if on_written is not None:
            on_written(path, len(result.inherited_by.get(path, ())))
    return result


def _served_by(plan: Plan, reported: Reported, path: Path) -> bool:
    """Whether the rewrite of ``path`` carries a change of ``reported``'s fix."""
    changes = set(reported.finding.fix.changes) if reported.finding.fix else set()
    return any(p.file == path and any(ch in changes for _, ch in p.served) for p in plan.placements)
