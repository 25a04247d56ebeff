"""Stage two: every selected rule on one resolved config.

The only place rules run: ``check`` judges each config here, the write gate judges the rewritten
configs here, ``explain`` reads the same view.  A rule that raises is a per-config problem
("FF1xx crashed: …"), never an exception out of the run.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from pathlib import Path
from typing import Any, Callable

from freezefix.analysis import ConfigView, config_files
from freezefix.config.resolve import Resolver
from freezefix.engine.place import place
from freezefix.ftypes import Checked
from freezefix.probe import Prober
from freezefix.rules import Options, Rule, registry
from freezefix.rules.base import run_rules

PER_WORKER = 64  # fewer configs than this per worker process cost more to fork than they save


def selected_rules(wants: Callable[[str], bool]) -> list[Rule]:
    """The registered rules ``wants`` keeps (``--select`` / ``--ignore``), in code order."""
    return [rule for code, rule in sorted(registry.rules.items()) if wants(code)]


class Judge:
    """The rules of a run, with the prober that answers their questions about classes."""

    def __init__(self, rules: list[Rule], options: Options, prober: Prober):
        self.rules = rules
        self.options = options
        self.prober = prober
        self._plugins: dict[tuple, list[str]] = {}  # plugin setting → notes of what did not import

    @property
    def codes(self) -> list[str]:
        return [rule.code for rule in self.rules]

    def judge(self, resolver: Resolver, path: Path) -> Checked:
        values = resolver.values(path)
        plugin_notes: list[str] = []
        # Plugins register classes (VoVNet …) the probes look up; imported only when a fact is not
        # cached (a plugin that imports mmdet3d costs seconds; a warm cache needs none of it).
        self.prober.before_building = lambda: plugin_notes.extend(self.import_plugins(values, path))
        view = ConfigView.of(path, values, self.prober, config_files(resolver, path))
        try:
            findings, crashes = run_rules(view, self.rules, self.options)
        finally:
            self.prober.before_building = None
        unjudged = [(facts.type_name, "; ".join([facts.import_error, *plugin_notes]))
                    for facts in view.probed() if facts.import_error]
        # A class that did not import may import next run (a plugin repaired, a package installed).
        lasting = not unjudged
        if view.hidden_freeze:
            unjudged.append((view.model_type, view.hidden_freeze))
        return Checked(tuple(place(resolver, path, f) for f in findings), tuple(crashes), tuple(unjudged), lasting)

    def import_plugins(self, values: dict, path: Path) -> list[str]:
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

    def judge_all(self, resolver: Resolver, paths: list[Path], jobs: int | None = None) -> dict[Path, Checked]:
        """Every config of ``paths``: in this process, or in forked workers (``jobs``; by default
        one per core while this process has not imported torch).

        A process that has run torch CPU kernels (an OpenMP pool) or holds other threads can
        deadlock its forked children: without ``jobs`` such a process (a library caller's) does the
        work itself; with it, the workers pin torch to one thread and the parent gives them a
        deadline, after which it does the work itself.
        """
        workers = max(1, min(jobs or default_jobs(), len(paths) // PER_WORKER))
        if workers == 1:
            return {path: self.judge(resolver, path) for path in paths}
        # Contiguous runs of paths: configs of one directory share their classes, which a worker
        # then probes once (interleaved chunks had every worker probe nearly every class); four
        # runs per worker, handed out as workers free up, so that one slow directory does not
        # leave the other cores idle.
        size = -(-len(paths) // (workers * 4))
        chunks = [paths[i:i + size] for i in range(0, len(paths), size)]
        global _FORKED
        _FORKED = (self, resolver)
        pool = multiprocessing.get_context("fork").Pool(workers)
        try:
            answers = pool.map_async(_judge_in_child, chunks, chunksize=1).get(timeout=120 + 2 * len(paths))
        except multiprocessing.TimeoutError:
            pool.terminate()
            return {path: self.judge(resolver, path) for path in paths}
        finally:
            pool.terminate()
            pool.join()
            _FORKED = None
        judged: dict[Path, Checked] = {}
        for chunk_judged, probe_entries in answers:
            judged.update(chunk_judged)
            self.prober.file.learn(probe_entries)  # what the children probed, for the cache
        return {path: judged[path] for path in paths}


_FORKED: Any = None  # (judge, resolver) inherited by forked workers


def default_jobs() -> int:
    """One rule worker per usable core, where forking is safe: before torch is imported here (a
    CLI run resolves every config first and leaves torch to the workers that probe classes)."""
    if "torch" in sys.modules or "fork" not in multiprocessing.get_all_start_methods():
        return 1
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _judge_in_child(chunk: list[Path]) -> tuple[dict[Path, Checked], dict[str, dict]]:
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)  # no OpenMP region in a forked child
    judge, resolver = _FORKED
    known = judge.prober.file.known()
    judged = {path: judge.judge(resolver, path) for path in chunk}
    return judged, judge.prober.file.learnt_since(known)
