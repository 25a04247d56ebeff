"""The write gate: prove on the real model that a planned rewrite loads and freezes what it claims.

For every config whose inheritance chain holds an edited file:
1. the edited files are written into a temporary overlay (a copy of the files the config reaches
   through relative ``_base_`` paths); the stack's own Config loads the original and the overlay
   copy, and the resolved difference must be exactly the planned changes;
2. the worker builds both real models (meta device by default) and measures every top-level
   module; each change must have the effect it is for (a module whose ``frozen_stages`` changed has
   no parameter left that trains with lr 0; ``norm_eval=True`` leaves no BatchNorm in training mode;
   a new ``lr_mult=0.0`` key gives every parameter of its module lr 0 or none at all);
3. the rules run again on the patched configs: nothing new may appear.
Only configs that pass keep their changes.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from freezefix.config.resolve import Resolver
from freezefix.ftypes import Change, Checked, Finding, Fix
from freezefix.plan import Plan
from freezefix.verify.answers import AnswerCache, answer_id
from freezefix.verify.measured import BuildAnswer
from freezefix.rules import registry
from freezefix.verify.verdict import CRASHED, ConfigVerdict, edited_modules, judge_rewrite

UNCOVERED_BY_FREEZING = frozenset(code for code, rule in registry.rules.items() if rule.uncovered_by_freezing)

JOB_TIMEOUT_S = 300.0


def start_worker() -> subprocess.Popen:
    """A worker process, importing torch and the registries until it is handed its jobs: started
    early, those seconds pass while this process is still checking."""
    return subprocess.Popen(
        [sys.executable, "-m", "freezefix.verify.worker"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )


def run_worker(jobs: list[dict], timeout: float = JOB_TIMEOUT_S, startup: float = 60.0,
               started: subprocess.Popen | None = None) -> dict[Any, BuildAnswer]:
    """Run jobs in a worker process (``started``, if given and alive, first); a job past its
    deadline is failed and the rest go on.

    Each worker's first job also gets ``startup`` seconds for importing torch and the registries.
    """
    results: dict[Any, BuildAnswer] = {}
    pending = list(jobs)
    while pending:
        proc = started if started is not None and started.poll() is None else start_worker()
        started = None
        lines: queue.Queue = queue.Queue()

        # Bound as defaults: after a restart, the old worker's pump must not feed the new queue.
        def pump(stream=proc.stdout, sink=lines) -> None:
            for line in stream:
                sink.put(line)
            sink.put(None)

        threading.Thread(target=pump, daemon=True).start()
        proc.stdin.write(json.dumps(pending))
        proc.stdin.close()
        first = True
        while pending:
            try:
                line = lines.get(timeout=timeout + (startup if first else 0))
                first = False
            except queue.Empty:
                proc.kill()
                stuck = pending.pop(0)
                results[stuck["id"]] = BuildAnswer(stuck["id"], error=f"verification timed out after {timeout:.0f} s")
                break
            if line is None:  # the worker died: fail the job it was on, restart for the rest
                stuck = pending.pop(0)
                results[stuck["id"]] = BuildAnswer(stuck["id"], error=f"the verification worker died (exit {proc.wait()})")
                break
            answer = BuildAnswer.from_json(json.loads(line))
            results[answer.id] = answer
            pending = [j for j in pending if j["id"] != answer.id]
        proc.wait()
    return results


class Gate:
    """Proves a plan on the real model before it is written: each affected config is loaded and
    built by the installed stack as it is and as rewritten, and judged again by the same rules."""

    def __init__(self, resolver: Resolver, judge: Callable[[Resolver, Path], Checked],
                 per_config: dict[Path, list[Finding]],
                 found_before: dict[Path, list[Finding]] | None = None, *,
                 unsafe_fixes: bool = False, cache_dir: Path | None = None, device: str = "meta",
                 timeout: float = JOB_TIMEOUT_S, jobs: int | None = None, started: subprocess.Popen | None = None):
        self.resolver = resolver  # the run's: the files as they are on disk
        self.judge = judge  # the run's rules on one config of a resolver (the rewritten texts' here)
        self.per_config = per_config  # config → the findings its check reported (fixes to apply)
        # config → every finding the rules made on it, suppressed ones too: what a rewrite may leave
        self.found_before = found_before if found_before is not None else per_config
        self.unsafe_fixes = unsafe_fixes
        self.cache_dir = cache_dir
        self.device = device
        self.timeout = timeout
        self.jobs = jobs
        self.started = started  # a worker started ahead (start_worker), used by the first verify
        self.stats: dict = {"jobs": 0, "builds": 0, "build_seconds": 0.0}

    def verify(self, plan: Plan) -> dict[Path, ConfigVerdict]:
        resolver = self.resolver
        edited = set(plan.texts)
        affected: dict[Path, list[Change]] = {}
        served = self._served(plan)
        for config in self.per_config:
            if edited & set(resolver.local_files(config)) or config in served:
                affected[config] = served.get(config, [])
        if not affected:
            return {}
        kept = AnswerCache(self.cache_dir)
        with tempfile.TemporaryDirectory(prefix="freezefix-verify-") as tmp:
            overlay = write_overlay(resolver, Path(tmp), affected, plan)
            per_config = [
                [{"id": f"{i}:before", "config": str(config), "origin": str(config), "device": self.device},
                 {"id": f"{i}:after", "config": str(overlay[config]), "origin": str(config), "device": self.device,
                  "loads_weights": sorted({m for fix in self._fixes(config, changes) for m in fix.loads_weights})}]
                for i, (config, changes) in enumerate(affected.items())
            ]
            keys = {job["id"]: self._answer_id(job, plan) for pair in per_config for job in pair}
            answers = {i: replace(a, id=i) for i, a in ((i, kept.get(k)) for i, k in keys.items()) if a is not None}
            missing = [[job for job in pair if job["id"] not in answers] for pair in per_config]
            fresh = self._run([pair for pair in missing if pair]) if any(missing) else {}
        for job_id, answer in fresh.items():
            kept.put(keys.get(job_id), answer)
        kept.save()
        answers.update(fresh)
        built = [a for a in answers.values() if a.built]
        self.stats = {"jobs": len(answers), "builds": len(built),
                      "build_seconds": round(sum(a.build_seconds for a in built), 3)}
        after_findings = self._findings_after(plan, list(affected))
        verdicts = {}
        for i, (config, changes) in enumerate(affected.items()):
            findings = self.per_config.get(config, [])
            accepted = {_what(f) for f in self.found_before.get(config, findings)}
            accepted |= {a for f in findings if f.fix for a in f.fix.announces}
            # A fix that freezes a module asks for the first time what frozen modules need (where their
            # weights come from): such a finding was there all along (Rule.uncovered_by_freezing).
            model = answers[f"{i}:before"].values.get("model") if answers[f"{i}:before"].values else None
            accepted |= {(code, name) for code in UNCOVERED_BY_FREEZING
                         for name in edited_modules(changes, model if isinstance(model, dict) else {})}
            fixes = self._fixes(config, changes)
            verdicts[config] = judge_rewrite(config, changes, answers[f"{i}:before"], answers[f"{i}:after"],
                                             after_findings.get(config, []), accepted, self.device,
                                             repairs={m for fix in fixes for m in fix.repairs},
                                             stops={m for fix in fixes for m in fix.stops_training},
                                             loads={m for fix in fixes for m in fix.loads_weights})
        return verdicts

    def _run(self, per_config: list[list[dict]]) -> dict:
        """Worker processes in parallel (each starts in seconds, so only for long runs)."""
        from concurrent.futures import ThreadPoolExecutor

        workers = max(1, min(self.jobs or os.cpu_count() or 1, len(per_config) // 25))
        chunks = [[job for pair in per_config[i::workers] for job in pair] for i in range(workers)]
        started = [self.started] + [None] * (workers - 1)
        self.started = None
        answers: dict = {}
        with ThreadPoolExecutor(workers) as pool:
            for part in pool.map(lambda chunk, proc: run_worker(chunk, self.timeout, started=proc), chunks, started):
                answers.update(part)
        return answers

    def close(self) -> None:
        """Stop a worker started ahead that no verify used."""
        if self.started is not None:
            self.started.kill()
            self.started.wait()
            self.started = None

    def _fixes(self, config: Path, changes: list[Change]) -> list[Fix]:
        """The fixes of the config's findings that the rewrite applies."""
        return [f.fix for f in self.per_config.get(config, []) if f.fix and set(f.fix.changes) & set(changes)]

    def _answer_id(self, job: dict, plan: Plan) -> str | None:
        """What the job's answer depends on, as the id it is kept under (None: not kept)."""
        if job.get("loads_weights"):
            return None  # it reads a checkpoint file, which no key here pins down
        from freezefix.cache import inputs_of
        from freezefix.textio import SourceError, read_source

        resolver = self.resolver
        config = Path(job["origin"])
        patched = job["config"] != job["origin"]
        inputs = inputs_of(resolver, config)
        texts: dict[Path, str | None] = {}
        for path in inputs.files:
            if patched and path in plan.texts:
                texts[path] = plan.texts[path][1]
            elif path in resolver.units:
                texts[path] = resolver.units[path].source.text
            else:
                try:
                    texts[path] = read_source(path).text
                except (SourceError, OSError):
                    texts[path] = None
        return answer_id(job, texts, None if inputs.plugins is None else list(inputs.plugins), dict(inputs.env))

    def _served(self, plan: Plan) -> dict[Path, list[Change]]:
        served: dict[Path, list[Change]] = {}
        for placement in plan.placements:
            for config, change in placement.served:
                if change not in served.setdefault(config, []):
                    served[config].append(change)
        return served

    def _findings_after(self, plan: Plan, configs: list[Path]) -> dict[Path, list[tuple]]:
        """The rules again on the patched texts (a resolver reading the plan's texts, same probes)."""
        from freezefix.config.resolve import ConfigError, NotAnalysable

        resolver = self.resolver.with_overlay({p: new for p, (_, new) in plan.texts.items()})
        found: dict[Path, list[tuple]] = {}
        for config in configs:
            try:
                checked = self.judge(resolver, config)
            except (ConfigError, NotAnalysable) as exc:
                found[config] = [("load", str(exc))]
                continue
            # A crash refuses this config's rewrite, not the run.
            found[config] = [(code, f"{CRASHED}: {why}") for code, why in checked.crashes]
            # A new finding that apply will fix itself in its next pass (FF103's 5 → 4 can make a
            # custom key's lr_mult dead: FF102) is not held against this rewrite.
            found[config].extend(_what(f) for f in (p.finding for p in checked.findings)
                                 if f.fix is None or not (f.fix.safe or self.unsafe_fixes))
        return found


def _what(finding: Finding) -> tuple[str, str]:
    """A finding as the gate compares them before and after a rewrite: its code and its module
    (or key), since the rewrite moves where it is written."""
    return finding.code, finding.module or ".".join(finding.key)


def write_overlay(resolver: Resolver, root: Path, affected: dict[Path, list[Change]] | list[Path], plan: Plan) -> dict[Path, Path]:
    """The files the ``affected`` configs reach, written under ``root`` as the plan leaves them
    (relative layout kept, so relative ``_base_`` and plugin paths resolve): config → its copy."""
    files = {f for config in affected for f in resolver.local_files(config)}
    common = Path(os.path.commonpath([str(f.parent) for f in files]))
    for file in files:
        target = root / file.relative_to(common)
        target.parent.mkdir(parents=True, exist_ok=True)
        source = resolver.unit(file).source
        text = plan.texts[file][1] if file in plan.texts else source.text
        target.write_bytes(source.encode(text))
    return {config: root / config.relative_to(common) for config in affected}
