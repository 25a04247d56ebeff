"""The library behind the CLI: check and fix config paths, returning results, never raising per file."""

from __future__ import annotations

import gc
import multiprocessing
import os
import sys
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from freezefix.analysis import ConfigView, config_files
from freezefix.config.graph import BaseGraph
from freezefix.config.locate import Key
from freezefix.config.resolve import ConfigError, NotAnalysable, Resolver
from freezefix.discover import discover, is_fragment, looks_like_config
from freezefix.probe import Prober
from freezefix.stacks import missing as missing_stack
from freezefix.rules import Finding, Options, registry
from freezefix.rules.base import run_rules
from freezefix.textio import SourceError, atomic_write


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

    def wants(self, code: str) -> bool:
        if self.select and not any(code.startswith(s) for s in self.select):
            return False
        return not any(code.startswith(i) for i in self.ignore)


@dataclass
class Reported:
    """A finding at the place it is written, possibly seen through several configs."""

    finding: Finding
    path: Path
    line: int
    col: int
    configs: list[Path] = field(default_factory=list)
    status: str = "open"  # 'open' | 'fixed' | 'would-fix' | 'skipped: <why>'

    suppressed: bool = False

    @property
    def fix_kind(self) -> str | None:
        fix = self.finding.fix
        if fix is None:
            return None
        return "safe" if fix.safe else "unsafe"


@dataclass(frozen=True)
class RulesOutcome:
    """What the rules came to on one config (in this process or a forked worker)."""

    path: Path
    findings: list[Finding]
    errors: list[tuple[Path, str]]  # a rule that crashed: (config, "FF1xx crashed: …")
    unjudged: list[tuple[str, str]]  # (what, why) no rule could judge
    lasting: bool  # nothing in it may change by itself before the next run (a class not importable)


@dataclass
class RunResult:
    files: int = 0
    configs_checked: int = 0
    findings: list[Reported] = field(default_factory=list)
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

    @property
    def exit_code(self) -> int:
        if self.errors:
            return 2
        if self.dry_run and self.plan and self.plan.texts:
            return 1
        return 1 if any(r.status not in ("fixed",) for r in self.findings) else 0


if TYPE_CHECKING:  # the check path must not import libcst (plan) before it needs to
    from freezefix.cache import Entry, ResultsCache
    from freezefix.plan import Plan

_PER_JOB = 64  # fewer configs than this per worker process cost more to fork than they save
_FORKED: Any = None  # (session, rules, options) inherited by forked rule workers


def _default_jobs() -> int:
    """One rule worker per usable core, where forking is safe: before torch is imported here (a
    CLI run resolves every config first and leaves torch to the workers that probe classes)."""
    if "torch" in sys.modules or "fork" not in multiprocessing.get_all_start_methods():
        return 1
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _rules_in_child(chunk: list[Path]):
    import sys

    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)  # no OpenMP region in a forked child
    session, rules, rule_options = _FORKED
    before = set(session.prober._load_disk())
    results = [session._rules_for(path, rules, rule_options) for path in chunk]
    disk = session.prober._load_disk()
    return results, {k: v for k, v in disk.items() if k not in before}


@contextmanager
def _rare_collections():
    """Python's cycle collector runs every 700 allocations and walks every live object each time;
    a run keeps every file's syntax tree and values alive (no cycles among them), so with the
    default it spent as long collecting as parsing.  Collections stay on, a hundred times rarer."""
    previous = gc.get_threshold()
    gc.set_threshold(70_000, 50, 100)
    try:
        yield
    finally:
        gc.set_threshold(*previous)


def _display(path: Path) -> Path:
    try:
        return Path(os.path.relpath(path))
    except ValueError:
        return path


class Session:
    """One run over a set of paths: a resolver and a prober shared by all configs."""

    def __init__(self, paths: list[Path], options: RunOptions):
        self.options = options
        self.discovery = discover(paths, options.exclude)
        self.resolver = Resolver()
        # Class facts are about structure: meta suffices (cpu only when asked for), never cuda.
        self.prober = Prober(cache_dir=options.cache_dir, device="cpu" if options.device == "cpu" else "meta")
        self.result = RunResult(files=len(self.discovery.files))
        self.per_config: dict[Path, list[Finding]] = {}
        self._ident: dict[int, tuple] = {}  # id(finding) → (code, file, line, col) it is reported at
        self._plugins: dict[tuple, list[str]] = {}  # plugin setting → notes of what did not import

    def check(self, progress=None) -> RunResult:
        """``progress(n)`` is called after each file (a progress bar, say)."""
        with _rare_collections():
            return self._check(progress)

    def _check(self, progress=None) -> RunResult:
        result = self.result
        for missing in self.discovery.missing:
            result.errors.append((missing, "no such file or directory"))
        unusable = missing_stack()
        if unusable:
            # Every rule reads its facts off the real classes (and which settings the installed stack
            # reads): without a stack, "no findings" would be a lie, so each config is an error.
            result.errors.extend((path, f"cannot check: {unusable}") for path in self.discovery.entries)
            return result
        rules = [r for code, r in sorted(registry.rules.items()) if self.options.wants(code)]
        rule_options = Options(freeze=self.options.freeze)
        cache = self._open_cache()
        cached: dict[Path, Entry] = {}  # configs whose findings come from the results cache
        fresh: dict[Path, tuple[str, str | None]] = {}  # files resolved this run: outcome, message
        reported: dict[tuple, Reported] = {}
        entries: list[Path] = []
        for path in self.discovery.files:
            if progress is not None:
                progress(1)
            named = path in self.discovery.named
            hit = cache.lookup(path, named) if cache is not None else None
            if hit is not None:
                if hit.outcome == "skip":
                    result.skipped.append((path, hit.message))
                elif hit.outcome == "error":
                    result.errors.append((path, hit.message))
                elif hit.outcome == "config":
                    cached[path] = hit
                    entries.append(path)
                continue
            try:
                if not named:
                    why = looks_like_config(self.resolver.parsed(path)[1])
                    if why:
                        result.skipped.append((path, why))
                        fresh[path] = ("skip", why)
                        continue
                self.resolver.unit(path)
            except NotAnalysable as exc:
                result.skipped.append((path, str(exc)))
                fresh[path] = ("skip", str(exc))
                continue
            except ConfigError as exc:
                at_fault = exc.path or path
                message = str(exc) if at_fault == path else f"cannot load: {_display(at_fault)}: {exc}"
                result.errors.append((path, message))
                fresh[path] = ("error", message)
                continue
            if not is_fragment(path):
                entries.append(path)
            fresh[path] = ("config" if not is_fragment(path) else "fragment", None)
        result.configs_checked = len(entries)
        # Repo-wide work (discovery, every _base_ resolved once) is done; the rules run per config,
        # in worker processes forked from here when there is enough to share out.
        ran = {outcome.path: outcome for outcome in self._run_rules([p for p in entries if p not in cached], rules,
                                                                    rule_options)}
        for path in entries:
            if path in cached:
                placed = cached[path].findings
                errors: list = []
                unjudged = list(cached[path].unjudged)
            else:
                outcome = ran[path]
                errors, unjudged = outcome.errors, outcome.unjudged
                placed = [(f, *(f.at or self._where(path, f.key))) for f in outcome.findings]
            for what in unjudged:
                result.unjudged.setdefault(what, []).append(path)
            result.errors.extend(errors)
            self.per_config[path] = [f for f, *_ in placed]
            for finding, file, line, col in placed:
                # One report per place and rule, whatever the configs that inherit it (the message
                # of the first config is shown; the others are listed).
                ident = (finding.code, file, line, col)
                self._ident[id(finding)] = ident
                entry = reported.setdefault(ident, Reported(finding, file, line, col))
                entry.configs.append(path)
            if cache is not None and path not in cached and not errors and ran[path].lasting:
                # A rule that crashed may not crash next time: such configs are not cached.
                self._remember(cache, path, "config", None, placed, unjudged)
        if cache is not None:
            for path, (outcome, message) in fresh.items():
                if outcome != "config":
                    self._remember(cache, path, outcome, message, [])
            cache.save()
        self.prober.save()
        findings = self._suppress(list(reported.values()), [r.code for r in rules], cache)
        result.suppressed = sum(1 for r in findings if r.suppressed)
        result.findings = sorted(
            (r for r in findings if not r.suppressed), key=lambda r: (str(r.path), r.line, r.col, r.finding.code)
        )
        # A suppressed finding is not fixed either: the user said to leave that line alone.
        silenced = {(r.finding.code, r.path, r.line, r.col) for r in findings if r.suppressed}
        for config, found in self.per_config.items():
            self.per_config[config] = [f for f in found if self._ident.get(id(f)) not in silenced]
        return result

    def _open_cache(self) -> ResultsCache | None:
        if not self.options.results_cache or self.options.cache_dir is None:
            return None
        from freezefix.cache import ResultsCache, cache_key

        settings = {"select": self.options.select, "ignore": self.options.ignore, "freeze": self.options.freeze,
                    "prober-device": self.prober.device}
        return ResultsCache(self.options.cache_dir, cache_key(settings))

    def _remember(self, cache: ResultsCache, path: Path, outcome: str, message: str | None, placed: list,
                  unjudged: list[tuple[str, str]] = ()) -> None:
        """Store what ``path`` came to with the digests of what it was computed from, as read this run."""
        from freezefix.cache import Entry, plugin_files

        deps = list(self.resolver.deps.get(path) or {path: None})
        if any(dep in self.resolver.transient for dep in deps):
            return  # a timeout on a busy machine is no verdict on the file
        plugins: list[Path] = []
        if outcome == "config":
            plugins = plugin_files(self.resolver.values(path), path)
            if plugins is None:
                return

        def digests(paths: list[Path]) -> tuple[tuple[str, str | None], ...]:
            # The digest of the bytes that were resolved, not of the file now: an edit since then
            # must invalidate the entry on the next run.
            parsed = self.resolver._parsed
            return tuple((str(p), parsed[p][0].digest if p in parsed else cache.digest(str(p))) for p in paths)

        env = sorted({(name, value) for dep in deps for name, value in self.resolver.env_used.get(dep, {}).items()})
        cache.store(path, Entry(path in self.discovery.named, digests(deps), digests(plugins), tuple(env),
                                outcome, message, placed, tuple(unjudged)))

    def _suppress(self, findings: list[Reported], ran: list[str], cache: ResultsCache | None = None) -> list[Reported]:
        """Mark findings silenced by `# freezefix: ignore[...]`; report suppressions that silence nothing."""
        from freezefix.rules.base import Finding
        from freezefix.suppress import suppressions

        files = {r.path for r in findings} | set(self.discovery.files)
        by_file = {}
        for path in files:
            unit = self.resolver.units.get(path)
            # A file known from the results cache was read (not resolved) this run.
            text = unit.source.text if unit is not None else cache.text(path) if cache is not None else None
            if text is not None and "freezefix" in text:
                by_file[path] = suppressions(text)
        for reported in findings:
            suppression = by_file.get(reported.path, {}).get(reported.line)
            if suppression is not None and suppression.covers(reported.finding.code):
                reported.suppressed = True
                suppression.used.add(reported.finding.code)
        if not self.options.wants("FF100"):
            return findings
        for path, entries in by_file.items():
            for suppression in entries.values():
                judged = suppression.codes is None or suppression.codes <= set(ran)
                if suppression.used or not judged:
                    continue
                what = "every rule" if suppression.codes is None else ", ".join(sorted(suppression.codes))
                finding = Finding("FF100", "unused-suppression",
                                  f"this `freezefix: ignore` ({what}) silences no finding; remove it", ())
                findings.append(Reported(finding, path, suppression.line, suppression.col, [path]))
        return findings

    def _rules_for(self, path: Path, rules, rule_options) -> RulesOutcome:
        values = self.resolver.values(path)
        plugin_notes: list[str] = []
        # Plugins register classes (VoVNet …) the probes look up; imported only when a fact is not
        # cached (a plugin that imports mmdet3d costs seconds; a warm cache needs none of it).
        self.prober.before_building = lambda: plugin_notes.extend(self._import_plugins(values, path))
        view = ConfigView.of(path, values, self.prober, config_files(self.resolver, path))
        try:
            findings, crashes = run_rules(view, rules, rule_options)
        finally:
            self.prober.before_building = None
        errors = [(path, f"{code} crashed: {why}") for code, why in crashes]
        unjudged = [(facts.type_name, "; ".join([facts.import_error, *plugin_notes]))
                    for facts in view.probed() if facts.import_error]
        # A class that did not import may import next run (a plugin repaired, a package installed).
        lasting = not unjudged
        if view.hidden_freeze:
            unjudged.append((view.model_type, view.hidden_freeze))
        return RulesOutcome(path, findings, errors, unjudged, lasting)

    def _import_plugins(self, values: dict, path: Path) -> list[str]:
        """The config's plugins imported before its classes are probed (they register classes such
        as VoVNet), once per distinct plugin setting in a run; notes for those that do not import."""
        if not (values.get("plugin_dir") or values.get("custom_imports")):
            return []
        from freezefix.models import import_plugins, plugin_dir_location

        located = plugin_dir_location(values, path)
        key = (repr(values.get("custom_imports")), repr(values.get("plugin_dir")), repr(located))
        if key not in self._plugins:
            self._plugins[key] = import_plugins(values, path)
        return self._plugins[key]

    def _run_rules(self, entries: list[Path], rules, rule_options):
        """Rules per config: in this process, or in forked workers (``--jobs N``; by default one per
        core while this process has not imported torch).

        A process that has run torch CPU kernels (an OpenMP pool) or holds other threads can deadlock
        its forked children: without ``--jobs`` such a process (a library caller's) does the work
        itself; with it, the workers pin torch to one thread and the parent gives them a deadline,
        after which it does the work itself.
        """
        jobs = max(1, min(self.options.jobs or _default_jobs(), len(entries) // _PER_JOB))
        if jobs == 1:
            return [self._rules_for(path, rules, rule_options) for path in entries]
        # Contiguous runs of paths: configs of one directory share their classes, which a worker
        # then probes once (interleaved chunks had every worker probe nearly every class); four
        # runs per worker, handed out as workers free up, so that one slow directory does not
        # leave the other cores idle.
        size = -(-len(entries) // (jobs * 4))
        chunks = [entries[i:i + size] for i in range(0, len(entries), size)]
        context = multiprocessing.get_context("fork")
        global _FORKED
        _FORKED = (self, rules, rule_options)
        pool = context.Pool(jobs)
        try:
            outcomes = pool.map_async(_rules_in_child, chunks, chunksize=1).get(timeout=120 + 2 * len(entries))
        except multiprocessing.TimeoutError:
            pool.terminate()
            return [self._rules_for(path, rules, rule_options) for path in entries]
        finally:
            pool.terminate()
            pool.join()
            _FORKED = None
        results = []
        for chunk_results, probe_entries in outcomes:
            results.extend(chunk_results)
            self.prober._load_disk().update(probe_entries)  # what the children learnt, for the cache
        order = {path: i for i, path in enumerate(entries)}
        return sorted(results, key=lambda r: order[r.path])

    def _where(self, config: Path, key: Key) -> tuple[Path, int, int]:
        for depth in range(len(key), 0, -1):
            origin = self.resolver.origin(config, key[:depth])
            if origin is not None and origin.location is not None:
                return origin.path, origin.location.line, origin.location.col + 1
        return config, 1, 1

    def fix(self, dry_run: bool, progress=None, on_written=None) -> RunResult:
        """``on_written(path)`` is called as each file is replaced (Ctrl-C between two files leaves
        every file either as it was or fully rewritten: each write is atomic)."""
        from freezefix.verify.gate import Gate, start_worker

        # A small run checks in this process on one core: the gate's worker imports torch and the
        # registries on another meanwhile (it is stopped if nothing needs proving).
        ahead = (self.options.verify and len(self.discovery.entries) < 2 * _PER_JOB and (os.cpu_count() or 1) > 1
                 and not missing_stack())
        gate = Gate(self, device=self.options.device, jobs=self.options.jobs, started=start_worker() if ahead else None)
        try:
            return self._fix(gate, dry_run, progress, on_written)
        finally:
            gate.close()
            self.prober.save()  # what the gate probed on the rewritten configs too

    def _fix(self, gate, dry_run: bool, progress=None, on_written=None) -> RunResult:
        result = self.check(progress)
        result.dry_run = dry_run
        wanted: dict[Path, list] = defaultdict(list)
        for config, findings in self.per_config.items():
            for finding in findings:
                fix = finding.fix
                if fix is not None and (fix.safe or self.options.unsafe_fixes):
                    wanted[config].extend(fix.changes)
        from freezefix.plan import Planner

        planner = Planner(self.resolver, list(self.per_config), self.discovery.files)
        plan = planner.plan(dict(wanted))
        refused: dict[Path, str] = {}
        if self.options.verify and plan.texts:
            for _round in range(2):
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
                plan = planner.plan(dict(wanted))
            else:
                if any(not v.ok for v in result.verdicts.values() if v.config in wanted):
                    plan = planner.plan({})
        result.plan = plan
        graph = BaseGraph(self.resolver)
        result.inherited_by = {path: graph.dependents(path) for path in plan.texts}
        for path, why in plan.errors.items():
            result.errors.append((path, why))
        dropped = {(config, change): why for config, change, why in plan.dropped}
        for reported in result.findings:
            fix = reported.finding.fix
            if fix is None:
                continue
            if not (fix.safe or self.options.unsafe_fixes):
                continue
            whys = [dropped[(c, ch)] for c in reported.configs for ch in fix.changes if (c, ch) in dropped]
            whys += [refused[c] for c in reported.configs if c in refused]
            if whys:
                reported.status = f"skipped: {whys[0]}"
            else:
                reported.status = "would-fix" if dry_run else "fixed"
        if dry_run:
            return result
        for path, (_old, new) in plan.texts.items():
            try:
                atomic_write(self.resolver.unit(path).source, new)
                result.written.append(path)
                if on_written is not None:
                    on_written(path, len(result.inherited_by.get(path, ())))
            except SourceError as exc:
                result.errors.append((path, str(exc)))
                for reported in result.findings:
                    if reported.status == "fixed" and self._touches(reported, path):
                        reported.status = f"skipped: {exc}"
        return result

    def _touches(self, reported: Reported, path: Path) -> bool:
        plan = self.result.plan
        if plan is None:
            return False
        changes = set(reported.finding.fix.changes) if reported.finding.fix else set()
        return any(
            p.file == path and any(ch in changes for _, ch in p.served) for p in plan.placements
        )


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
        fixed.extend(r for r in result.findings if r.status == "fixed")
        if dry_run or not result.written or result.errors:
            break
    result.findings = fixed + [r for r in result.findings if r.status != "fixed"]
    result.written, result.errors, result.verdicts = written, errors, verdicts
    return result


def check_paths(paths: list[Path], options: RunOptions | None = None) -> RunResult:
    return Session(paths, options or RunOptions()).check()


def fix_paths(paths: list[Path], options: RunOptions | None = None, dry_run: bool = False) -> RunResult:
    return apply_until_stable(paths, options or RunOptions(), dry_run)
