"""The rules' examples, run on facts recorded from the real classes: the fast lane.

Every rule reads its facts about classes (what ``frozen_stages`` freezes, the whole model's
parameter names, the lr the stack's optimizer constructor gives, how a schedule runs) through the
prober.  :class:`RecordingProber` is the real prober, keeping every answer it gave;
:class:`TableProber` answers from such a record and never builds anything, so the examples run
without torch or an OpenMMLab stack, in milliseconds.  The record is
``tests/fixtures/rule_example_facts.json``; the real-stack lane checks that recording again gives
exactly that file, so the table cannot drift from the classes it stands for.

    python -m tests.facts_table    # record again (after changing a rule's examples)
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterator

from freezefix.api import RunOptions, RunResult, Session
from freezefix.probe import Prober
from freezefix.rules import Example, registry

TABLE = Path(__file__).parent / "fixtures" / "rule_example_facts.json"


class MissingFact(LookupError):
    """A rule asked something the record does not hold."""


class RecordingProber(Prober):
    """The real prober, on the meta device, with no cache on disk; ``record`` is every answer."""

    def __init__(self) -> None:
        super().__init__(cache_dir=None, device="meta")

    def facts(self, module_cfg: dict, scope_hint: str | None = None, scan: bool = True):
        facts = super().facts(module_cfg, scope_hint, scan)
        if facts.import_error is not None and isinstance(module_cfg.get("type"), str):
            # The real prober keeps no answer for a class that does not import (a plugin may
            # register it later); the record must, or the table could not answer it.
            self.file.entries.setdefault(self.facts_key(module_cfg, scope_hint, scan), asdict(facts))
        return facts

    @property
    def record(self) -> dict[str, Any]:
        return self.file.entries


class TableProber(Prober):
    """Answers from a record; a question it does not hold fails the rule that asked (MissingFact)."""

    def __init__(self, table: dict[str, Any]) -> None:
        super().__init__(cache_dir=None, device="meta")
        self.file.learn(table)

    def _prepare_to_build(self) -> None:
        raise MissingFact("not in tests/fixtures/rule_example_facts.json: record again with "
                          "`python -m tests.facts_table`")


def examples() -> Iterator[tuple[str, str, int, Example]]:
    """(code, 'VALID' | 'INVALID', index, example) for every rule."""
    for code, rule in sorted(registry.rules.items()):
        for kind in ("VALID", "INVALID"):
            for index, example in enumerate(getattr(rule, kind)):
                yield code, kind, index, example


def run_example(directory: Path, code: str, example: Example, apply: bool, prober: Prober,
                verify: bool = True) -> tuple[Path, RunResult]:
    """One example config, checked (or fixed) with that rule alone, its facts from ``prober``."""
    path = directory / "example.py"
    path.write_text(example.source)
    # Each rule is tested alone: its fixed example shows its own fix, not its neighbours'.
    options = RunOptions(select=(code,), freeze=example.freeze, unsafe_fixes=example.unsafe_fixes, verify=verify)
    session = Session([path], options, prober=prober)
    result = session.fix(dry_run=False) if apply else session.check()
    return path, result


def recheck(path: Path, code: str, example: Example, prober: Prober) -> RunResult:
    """The fixed file checked again with the same rule."""
    return Session([path], RunOptions(select=(code,), freeze=example.freeze), prober=prober).check()


def record() -> dict[str, Any]:
    """Every answer the real classes give to what the fast lane asks: each example checked, each
    INVALID example with a fix applied (without the write gate) and checked again."""
    recorder = RecordingProber()
    for code, kind, _index, example in examples():
        with tempfile.TemporaryDirectory() as tmp:
            apply = kind == "INVALID" and example.fixed is not None
            path, _ = run_example(Path(tmp), code, example, apply, recorder, verify=False)
            if apply:
                recheck(path, code, example, recorder)
    # Answers kept for one environment (a class not found) are under a key naming this machine's
    # installed packages; the record holds them under their plain question (RecordingProber.facts).
    return dict(sorted((k, v) for k, v in recorder.record.items() if not k.startswith('["environment"')))


def load_table() -> dict[str, Any]:
    return json.loads(TABLE.read_text(encoding="utf-8"))


def table_text(table: dict[str, Any]) -> str:
    return json.dumps(table, indent=1, sort_keys=True) + "\n"


if __name__ == "__main__":
    TABLE.write_text(table_text(record()), encoding="utf-8")
    print(f"wrote {TABLE}")
