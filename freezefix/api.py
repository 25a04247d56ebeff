"""The library behind the CLI: check and fix config paths, returning results, never raising per file.

A run is a pipeline of stages (``freezefix.engine``): each file is loaded, each config judged by
the rules, each finding placed where it is written; outcomes go to the results cache, suppressions
are applied, and ``apply`` plans, proves and writes the fixes.  :class:`Session` runs them over a
set of paths and keeps what later stages and passes share: one resolver, one source of facts.
"""

from __future__ import annotations

import gc
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

from freezefix.config.resolve import Resolver
from freezefix.discover import discover
from freezefix.engine.fan_out import check_runs
from freezefix.engine.judge import Judge, RunChecked, selected_rules
from freezefix.engine.load import Loaded, load
from freezefix.engine.place import Reported, group, withdraw_read_names
from freezefix.engine.remember import open_results_cache, remember
from freezefix.engine.result import RunOptions, RunResult
from freezefix.engine.workers import PER_WORKER, share_out, worker_count
from freezefix.ftypes import Checked, Failed, Finding, FixState, Placed, Skipped
from freezefix.facts import FactsSource
from freezefix.plugins import forget_plugin_locations
from freezefix.probe import Prober
from freezefix.rules import Options, registry
from freezefix.stacks import missing as missing_stack, registered_name

__all__ = ["RunOptions", "RunResult", "Reported", "Session", "apply_until_stable", "check_paths", "fix_paths"]


@contextmanager
def rare_collections():
    """Python's cycle collector runs every 700 allocations and walks every live object each time;
    a run keeps every file's syntax tree and values alive (no cycles among them), so with the
    default it spent as long collecting as parsing.  Collections stay on, a hundred times rarer."""
    previous = gc.get_threshold()
    gc.set_threshold(70_000, 50, 100)
    try:
        yield
    finally:
        gc.set_threshold(*previous)


class Session:
    """One run over a set of paths: a resolver and a source of facts shared by all configs (a forked worker
    of a check works on its own copies and sends back what it found, see ``freezefix.engine.fan_out``)."""

    def __init__(self, paths: list[Path], options: RunOptions, facts_source: FactsSource | None = None):
        """``facts_source``: where the rules' facts come from, when not the installed stack's classes."""
        self.options = options
        forget_plugin_locations()  # plugin directories may have come or gone since the last run
        self.discovery = discover(paths, options.exclude)
        self.facts_given = facts_source is not None
        self.facts_source = facts_source or Prober(cache_dir=options.cache_dir, device=options.prober_device)
        self.resolver = Resolver(remembered=lambda: self.facts_source.kept, registered_name=registered_name)
        self.judge = Judge(selected_rules(options.wants), Options(freeze=options.freeze), self.facts_source)
        self.result = RunResult(files=len(self.discovery.files))
        # config → its findings that are not suppressed: the fixes `apply` plans.
        self.per_config: dict[Path, list[Finding]] = {}
        # config → every finding the rules made on it, suppressed or withdrawn ones too: the write
        # gate's baseline (a rewrite may leave behind what was there, never add to it).
        self.found: dict[Path, list[Finding]] = {}
        # Whether every file must be resolved in this process (planning fixes reads them); if not,
        # a large run resolves them in forked workers.
        self.keeps_resolved = False
        self.texts: dict[Path, str] = {}  # files workers resolved that mention freezefix (suppressions)

    def check(self, progress=None) -> RunResult:
        """``progress(n)`` is called after each file (a progress bar, say)."""
        with rare_collections():
            return self._check(progress)

    def _check(self, progress=None) -> RunResult:
        result = self.result
        for missing in self.discovery.missing:
            result.errors.append((missing, "no such file or directory"))
        unusable = missing_stack() if not self.facts_given else None
        if unusable:
            # Every rule reads its facts off the real classes (and which settings the installed stack
            # reads): without a stack, "no findings" would be a lie, so each config is an error.
            result.errors.extend((path, f"cannot check: {unusable}") for path in self.discovery.config_candidates)
            return result
        cache = open_results_cache(self.options)
        outcomes = result.outcomes
        fresh: list[Path] = []  # files whose outcome is computed this run (not read from the cache)
        for path in self.discovery.files:
            entry = cache.lookup(path, path in self.discovery.named) if cache is not None else None
            if entry is not None:
                outcomes[path] = entry.outcome
                if progress is not None:
                    progress(1)
            else:
                outcomes[path] = None  # for now: outcomes keep the order files were found in
                fresh.append(path)
        workers = 1 if self.keeps_resolved else worker_count(len(fresh), self.options.jobs)
        if workers > 1:
            # Nothing after a check needs the configs resolved in this process: workers resolve,
            # judge and remember runs of files from the start, every core reading and parsing.
            work = check_runs(self.resolver, self.judge, self.discovery.named, cache)
            fresh = share_out(fresh, work, workers, self._take(cache, progress))
        self._load_and_judge(fresh, cache, progress)
        result.configs_checked = sum(1 for outcome in outcomes.values() if isinstance(outcome, Checked))
        result.files_resolved.extend(self.resolver.resolved)
        placed = _tally(result)
        # Everything the rules found, shown or not: a rewrite may leave these behind (the gate).
        self.found.clear()
        self.found.update({config: [p.finding for p in found] for config, found in placed.items()})
        placed = withdraw_read_names(placed, outcomes)
        if cache is not None:
            cache.save()
        self.facts_source.save()
        findings = self._suppress(group(placed), cache)
        result.suppressed = sum(1 for r in findings if r.suppressed)
        result.findings = sorted(
            (r for r in findings if not r.suppressed), key=lambda r: (str(r.path), r.line, r.col, r.finding.code)
        )
        # A suppressed finding is not fixed either: the user said to leave that line alone.
        silenced = {r.ident for r in findings if r.suppressed}
        self.per_config.clear()  # in place: the write gate holds this dict
        self.per_config.update({config: [p.finding for p in found if p.ident not in silenced]
                                for config, found in placed.items()})
        return result

    def _load_and_judge(self, paths: list[Path], cache, progress=None) -> None:
        """Stages one to four in this process (the rules may still run in forked workers), leaving
        every file resolved here, as planning fixes needs."""
        outcomes = self.result.outcomes
        for path in paths:
            if progress is not None:
                progress(1)
            outcomes[path] = load(self.resolver, path, path in self.discovery.named)
        to_judge = [path for path in paths if isinstance(outcomes[path], Loaded)]
        outcomes.update(self.judge.judge_all(self.resolver, to_judge, self.options.jobs))
        if cache is not None:
            for path in paths:
                remember(cache, self.resolver, path, path in self.discovery.named, outcomes[path])

    def _take(self, cache, progress=None) -> Callable[[list[Path], RunChecked], None]:
        """What this process does with a run a worker checked."""
        def take(run: list[Path], checked: RunChecked) -> None:
            self.result.outcomes.update(checked.outcomes)
            if cache is not None:
                for path, entry in checked.entries.items():
                    cache.store(path, entry)
            self.texts.update(checked.texts)
            self.facts_source.learn(checked.probed)
            self.result.files_resolved.extend(checked.resolved)
            if progress is not None:
                progress(len(run))

        return take

    def _suppress(self, findings: list[Reported], cache=None) -> list[Reported]:
        """Mark findings silenced by `# freezefix: ignore[...]`; report suppressions that silence nothing."""
        from freezefix.suppress import silence, suppressions

        by_file = {}
        for path in {r.path for r in findings} | set(self.discovery.files):
            unit = self.resolver.units.get(path)
            if unit is not None:
                text = unit.source.text
            elif path in self.texts:  # resolved by a worker
                text = self.texts[path]
            else:  # known from the results cache: read, not resolved, this run
                text = cache.text(path) if cache is not None else None
            if text is not None and "freezefix" in text:
                by_file[path] = suppressions(text)
        silence(findings, by_file)
        if not self.options.wants("FF100"):
            return findings
        unused = registry.rules["FF100"].unused(by_file, set(self.judge.codes))
        return findings + [Reported(p, [p.path]) for p in unused]

    def fix(self, dry_run: bool, progress=None, on_written=None) -> RunResult:
        """Check, then plan, prove and write the fixes (see ``freezefix.engine.fix``)."""
        from freezefix.engine.fix import fix
        from freezefix.verify.gate import Gate, start_worker

        # A small run checks in this process on one core: the gate's worker imports torch and the
        # registries on another meanwhile (it is stopped if nothing needs proving).
        ahead = (self.options.verify and len(self.discovery.config_candidates) < 2 * PER_WORKER and (os.cpu_count() or 1) > 1
                 and not missing_stack())
        gate = Gate(self.resolver, self.judge.judge, self.per_config, self.found, unsafe_fixes=self.options.unsafe_fixes,
                    cache_dir=self.options.cache_dir, device=self.options.device, jobs=self.options.jobs,
                    started=start_worker() if ahead else None)
        self.keeps_resolved = True
        try:
            result = self.check(progress)
            return fix(result, self.per_config, self.resolver, self.discovery.files, self.options, gate, dry_run,
                       on_written)
        finally:
            gate.close()
            self.facts_source.save()  # what the gate probed on the rewritten configs too


def _tally(result: RunResult) -> dict[Path, tuple[Placed, ...]]:
    """Sort each file's outcome into the result (skipped, errors, what was not judged); the findings
    of each checked config, as placed."""
    placed: dict[Path, tuple[Placed, ...]] = {}
    crashes: list[tuple[Path, str]] = []  # listed after the files that did not load, as always
    for path, outcome in result.outcomes.items():
        if isinstance(outcome, Skipped):
            result.skipped.append((path, outcome.reason))
        elif isinstance(outcome, Failed):
            result.errors.append((path, outcome.message))
        elif isinstance(outcome, Checked):
            crashes.extend((path, f"{code} crashed: {why}") for code, why in outcome.crashes)
            for what in outcome.unjudged:
                result.unjudged.setdefault(what, []).append(path)
            placed[path] = outcome.findings
    result.errors.extend(crashes)
    return placed


MAX_PASSES = 4


def apply_until_stable(paths: list[Path], options: RunOptions, dry_run: bool = False, progress=None,
                       on_written=None, first: Session | None = None) -> RunResult:
    """``apply`` in passes, as ruff does: a fix can uncover another (FF103's 5 → 4 makes a module
    fully frozen, and its lr_mult 0.1 dead: FF102), so after a pass that wrote files the repo is
    checked again, up to MAX_PASSES.  A dry run shows the first pass only (nothing is on disk)."""
    fixed: list[Reported] = []
    written: list[Path] = []
    errors: list[tuple[Path, str]] = []
    verdicts: dict = {}
    for _ in range(MAX_PASSES):
        session, first = first or Session(paths, options), None  # later passes read the new files
        result = session.fix(dry_run, progress, on_written)
        progress = None  # one bar, for the first pass
        errors.extend(e for e in result.errors if e not in errors)
        verdicts.update(result.verdicts)
        written.extend(p for p in result.written if p not in written)
        fixed.extend(r for r in result.findings if r.state is FixState.FIXED)
        if dry_run or not result.written or result.errors:
            break
    result.findings = fixed + [r for r in result.findings if r.state is not FixState.FIXED]
    result.written, result.errors, result.verdicts = written, errors, verdicts
    return result


def check_paths(paths: list[Path], options: RunOptions | None = None, progress: Progress | None = None) -> RunResult:
    """Check ``paths`` (config files, directories of them).  Per-file problems are in the result,
    never raised; ``progress(n, total)`` is called as files are done (a progress bar, say)."""
    session = Session(paths, options or RunOptions())
    return session.check(_counting(progress, len(session.discovery.files)))


def fix_paths(paths: list[Path], options: RunOptions | None = None, dry_run: bool = False,
              progress: Progress | None = None, on_written: Callable[[Path, int], None] | None = None) -> RunResult:
    """Check ``paths`` and apply the fixes (after proving them, unless ``options.verify`` is off), in
    passes until nothing more is fixed; ``dry_run`` plans them and writes nothing.
    ``on_written(path, n)`` is called as each file is replaced (``n``: configs inheriting it)."""
    first = Session(paths, options or RunOptions())
    return apply_until_stable(paths, first.options, dry_run, _counting(progress, len(first.discovery.files)),
                              on_written, first)


Progress = Callable[[int, int], None]  # (files just done, files in the run)


def _counting(progress: Progress | None, total: int) -> Callable[[int], None] | None:
    return None if progress is None else (lambda n: progress(n, total))
