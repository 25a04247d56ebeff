"""Stage two: every selected rule on one resolved config.

The only place rules run: ``check`` judges each config here, the write gate judges the rewritten
configs here, ``explain`` reads the same view.  A rule that raises is a per-config problem
("FF1xx crashed: …"), never an exception out of the run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from freezefix.analysis import ConfigView, config_files, names_read_of_bases
from freezefix.cache import Entry
from freezefix.config.resolve import Resolver
from freezefix.engine.place import place
from freezefix.engine.workers import share_out, worker_count
from freezefix.facts import MODEL_NOT_BUILT, FactsSource, ModelFacts
from freezefix.plugins import PluginImporter
from freezefix.ftypes import Checked, FileOutcome, Finding
from freezefix.rules import Options, Rule, registry
from freezefix.rules.base import run_rules


@dataclass
class RunChecked:
    """What a forked worker sends back for one run of files (see ``freezefix.engine.workers``)."""

    outcomes: dict[Path, FileOutcome] = field(default_factory=dict)
    entries: dict[Path, Entry] = field(default_factory=dict)  # for the results cache, where one may be kept
    # Files the worker resolved that mention freezefix (their suppression comments), each sent once.
    texts: dict[Path, str] = field(default_factory=dict)
    probed: dict[str, dict] = field(default_factory=dict)  # new probe-cache entries
    resolved: list[Path] = field(default_factory=list)  # files the worker resolved for this run


def not_judged(view: ConfigView, findings: list[Finding], plugin_notes: list[str]) -> list[tuple[str, str]]:
    """What no rule could judge on one config, as (what, why): classes that were not found or cannot
    be built, a detector that freezes in its own code, a whole model the custom-key rules needed and
    could not have, an optimizer the stack cannot build."""
    unjudged = []
    for name, facts in view.probed().items():
        notes = facts.environment_notes or plugin_notes  # a cached answer brings its own
        if facts.import_error is not None:
            unjudged.append((facts.type_name, "; ".join([facts.import_error, *notes])))
        elif facts.unbuildable is not None:
            unjudged.append((f"{name} ({facts.type_name})", "; ".join([facts.unjudged_reason, *notes])))
    if view.hidden_freeze():
        unjudged.append((view.model_type, view.hidden_freeze()))
    unjudged.extend(view.not_judged.items())
    whole = _whole_model_unjudged(view.model_if_asked)
    # A detector that fails for a module already named here, or for what a finding's fix repairs
    # (FF103's frozen_stages past the range), needs no note of its own.
    if whole and not unjudged and not any(f.fix and f.fix.repairs for f in findings):
        unjudged.append((f"{view.model_type} (whole model)", whole))
    optimizer_error = view.facts_source.optimizer_error(view.values) if view.optimizer is not None else None
    if optimizer_error:
        unjudged.append((f"optimizer ({view.optimizer.type_name})",
                         f"cannot be built: {optimizer_error}; the Runner stops there too, and what it gives "
                         "each parameter (FF113) was not judged"))
    return unjudged


def _whole_model_unjudged(model: ModelFacts | None) -> str | None:
    """Why the rules that match custom keys against the whole model's parameters said nothing,
    when they asked for it and the detector could not be built."""
    if model is None or model.complete:
        return None
    why = next((n for n in model.notes if n.startswith(MODEL_NOT_BUILT)), None)
    why = why[len(MODEL_NOT_BUILT):].strip(" ()") if why else "; ".join(model.notes) or "not built"
    return (f"could not be built ({why}): its custom keys were not matched against its parameters "
            "(FF106, FF107 not judged)")


def selected_rules(wants: Callable[[str], bool]) -> list[Rule]:
    """The registered rules ``wants`` keeps (``--select`` / ``--ignore``), in code order."""
    return [rule for code, rule in sorted(registry.rules.items()) if wants(code)]


class Judge:
    """The rules of a run, with the source of facts that answers their questions."""

    def __init__(self, rules: list[Rule], options: Options, facts_source: FactsSource):
        self.rules = rules
        self.options = options
        self.facts_source = facts_source
        self.plugins = PluginImporter()

    @property
    def codes(self) -> list[str]:
        return [rule.code for rule in self.rules]

    def judge(self, resolver: Resolver, path: Path) -> Checked:
        values = resolver.values(path)
        plugin_notes: list[str] = []
        # Plugins register classes (VoVNet …) the probes look up; imported only when a fact is not
        # kept (a plugin that imports mmdet3d costs seconds; a warm cache needs none of it).
        def import_plugins() -> list[str]:
            plugin_notes.extend(self.plugins.notes(values, path))
            return plugin_notes

        view = ConfigView.of(path, values, self.facts_source, config_files(resolver, path))
        with self.facts_source.judging(values, path, import_plugins):
            findings, crashes = run_rules(view, self.rules, self.options)
            try:
                unjudged = not_judged(view, findings, plugin_notes)
            except Exception as exc:  # noqa: BLE001 - this config's problem, reported as a rule's crash is
                unjudged = []
                crashes.append(("the could-not-judge summary", f"{type(exc).__name__}: {exc}"))
        # A class that did not import may import next run (a plugin repaired, a package installed),
        # one that did not build may build once a plugin registers what it names or a package it
        # needs is installed: such outcomes are kept only while the environment stays as it is.
        # A checkpoint read from disk may change with no config changing (and relative paths depend on
        # the working directory): such a config is judged again every run.
        lasting = not any(facts.transient for facts in view.probed().values()) \
            and not (unjudged and plugin_notes) and not (view.model_if_asked is not None and view.model_if_asked.transient) \
            and not view.checkpoints
        return Checked(tuple(place(resolver, path, f) for f in findings), tuple(crashes), tuple(unjudged), lasting,
                       files=tuple(file.path for file in view.files), names_read=names_read_of_bases(view.files))

    def judge_all(self, resolver: Resolver, paths: list[Path], jobs: int | None = None) -> dict[Path, Checked]:
        """Every config of ``paths``: in this process, or in forked workers (``jobs``; by default
        one per core while forking is safe, see ``freezefix.engine.workers``)."""
        judged: dict[Path, FileOutcome] = {}
        workers = worker_count(len(paths), jobs)
        if workers > 1:
            def done(_run: list[Path], checked: RunChecked) -> None:
                judged.update(checked.outcomes)
                self.facts_source.learn(checked.probed)  # what the worker probed, for the cache

            paths_left = share_out(paths, self.judge_in_worker(resolver), workers, done)
        else:
            paths_left = paths
        judged.update((path, self.judge(resolver, path)) for path in paths_left)
        return {path: judged[path] for path in paths}

    def judge_in_worker(self, resolver: Resolver) -> Callable[[list[Path]], RunChecked]:
        """What a forked worker does with a run of configs: judge each, and say what it probed."""
        def work(run: list[Path]) -> RunChecked:
            known = self.facts_source.known()
            judged = {path: self.judge(resolver, path) for path in run}
            return RunChecked(outcomes=judged, probed=self.facts_source.learnt_since(known))
        return work
