"""Stages one to four for runs of files in forked workers, when nothing after the check needs the
files resolved in the parent (``check``; ``apply`` plans fixes on them and resolves them itself).

Each worker resolves, judges and remembers its own runs, so every core reads and parses from the
start; what comes back is small: outcomes, results-cache entries, the texts suppression comments are
read from, and what was learnt about classes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from freezefix.cache import ResultsCache
from freezefix.config.resolve import Resolver
from freezefix.engine.judge import Judge, RunChecked
from freezefix.engine.load import Loaded, load
from freezefix.engine.remember import entry_for


def check_runs(resolver: Resolver, judge: Judge, named: set[Path], cache: ResultsCache | None) -> Callable[[list[Path]], RunChecked]:
    """The work of a forked worker: ``resolver`` and ``judge`` are its own copies, kept from one
    run to the next (bases resolved and classes probed once per worker)."""
    sent: set[Path] = set()

    def check_run(run: list[Path]) -> RunChecked:
        known = judge.facts_source.known()
        resolved_before = len(resolver.resolved)
        checked = RunChecked()
        for path in run:
            outcome = load(resolver, path, path in named)
            if isinstance(outcome, Loaded):
                outcome = judge.judge(resolver, path)
            checked.outcomes[path] = outcome
            entry = entry_for(cache, resolver, path, path in named, outcome) if cache is not None else None
            if entry is not None:
                checked.entries[path] = entry
        checked.texts = {p: unit.source.text for p, unit in resolver.units.items()
                         if p not in sent and "freezefix" in unit.source.text}
        sent.update(resolver.units)
        checked.probed = judge.facts_source.learnt_since(known)
        checked.resolved = resolver.resolved[resolved_before:]
        return checked

    return check_run
