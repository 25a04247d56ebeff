"""Testing rules: a source of facts recorded from the real classes, and one runner for every rule's
examples, on the real stack or on recorded facts (as Fixit ships ``fixit.testing``).

A rule's examples are :class:`Valid` and :class:`Invalid` configs (``freezefix.rules.base``).
:func:`check_example` runs one of them with that rule alone and returns what came of it;
:func:`example_problems` says what is wrong with that (nothing, for a rule that does what its
examples say).  The same two functions serve the real-stack test lane (facts from building the
installed classes) and the fast lane (:class:`RecordedFacts`, no torch and no OpenMMLab needed).

    python -m freezefix.testing record tests/fixtures/rule_example_facts.json         # mmengine stack
    python -m freezefix.testing record tests/fixtures/rule_example_facts_mmcv1.json   # mmcv 1.x stack
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from freezefix.api import RunOptions, RunResult, Session
from freezefix.facts import ClassFacts, FactsSource, ModelFacts, facts_from_json
from freezefix.probe import (
    DDP_STATIC_GRAPH_QUESTION, Prober, changes_nothing_question, class_question, model_question,
    optimizer_error_question, optimizer_settings_question, state_shapes_question, zero_lr_peak_question,
)
from freezefix.rules import registry
from freezefix.rules.base import Checkpoint, Invalid, Valid

__all__ = ["Checked", "MissingFact", "RecordedFacts", "check_example", "example_problems", "examples", "record"]

_LR_SCHEDULE = {"mmengine": "param_scheduler", "mmcv1": "lr_config"}


class MissingFact(LookupError):
    """A rule asked something the record does not hold."""


class RecordedFacts:
    """A :class:`FactsSource` that answers from a table of recorded answers (question → answer, as
    :func:`record` writes it) and builds nothing; a question the table does not hold raises
    :class:`MissingFact`, which fails the rule that asked.  ``stack``: the stack the table was
    recorded on."""

    def __init__(self, table: dict[str, Any], stack: str = "mmengine", device: str = "meta"):
        self.table = table
        self.stack = stack
        self.lr_schedule = _LR_SCHEDULE[stack]
        self.device = device
        self.kept: dict[str, Any] = {}

    def judging(self, values: dict, config_path: Path, import_plugins: Callable[[], list[str]]) -> Any:
        return contextlib.nullcontext()

    def facts(self, module_cfg: dict, scope_hint: str | None = None, scan: bool = True) -> ClassFacts:
        if not isinstance(module_cfg.get("type"), str):
            return ClassFacts(type_name=repr(module_cfg.get("type")), import_error="type is not a string")
        facts = facts_from_json(self._answer(class_question(module_cfg, scope_hint, scan, self.device)))
        if facts is None:
            raise MissingFact("the record holds class facts of another shape: record again")
        return facts

    def model(self, values: dict, config_path: Path) -> ModelFacts:
        return ModelFacts.from_json(self._answer(model_question(values, self.device)))

    def optimizer_settings(self, module_cfg: dict, scope_hint: str | None, name: str,
                           optimizer_values: dict) -> dict[str, list] | None:
        return self._answer(optimizer_settings_question(module_cfg, scope_hint, name, optimizer_values, self.device))

    def optimizer_error(self, values: dict) -> str | None:
        return self._answer(optimizer_error_question(values))

    def state_shapes(self, module_cfg: dict, scope_hint: str | None) -> list[list] | None:
        return self._answer(state_shapes_question(module_cfg, scope_hint, self.device))

    def changes_nothing(self, values: dict, key: tuple[str, ...], value: Any) -> bool:
        return self._answer(changes_nothing_question(values, key, value))

    def zero_lr_peak(self, setting: str, cfg: Any, base_lr: float, epochs: int) -> float | None:
        return self._answer(zero_lr_peak_question(setting, cfg, base_lr, epochs))

    def ddp_accepts_static_graph(self) -> bool:
        return self._answer(DDP_STATIC_GRAPH_QUESTION)

    def known(self) -> set[str]:
        return set()

    def learnt_since(self, known: set[str]) -> dict[str, Any]:
        return {}

    def learn(self, answers: dict[str, Any]) -> None:
        pass

    def save(self) -> None:
        pass

    def _answer(self, question: str) -> Any:
        if question not in self.table:
            raise MissingFact(f"not in the record: {question[:200]}; record again "
                              "(python -m freezefix.testing record FILE, on the real stack)")
        return self.table[question]


@dataclass
class Checked:
    """What came of checking (or fixing) one example config with its rule alone."""

    path: Path  # the example's file, as the run left it
    result: RunResult
    again: RunResult | None = None  # the fixed file checked again, when a fix was applied


def examples(code: str | None = None, stack: str | None = None) -> Iterator[tuple[str, Valid | Invalid]]:
    """(rule code, example) for every example of every rule (or of ``code``) that holds on ``stack``
    (None: any), VALID ones first."""
    for rule_code, rule in sorted(registry.rules.items()):
        if code is None or rule_code == code:
            yield from ((rule_code, example) for example in (*rule.VALID, *rule.INVALID)
                        if stack is None or stack in example.stacks)


def check_example(directory: Path, code: str, example: Valid | Invalid, facts_source: FactsSource | None = None,
                  verify: bool = True) -> Checked:
    """Write ``example`` to ``directory`` and check it with rule ``code`` alone (an Invalid example
    with a ``fixed`` text is fixed, through the write gate unless not ``verify``, and checked again).
    ``facts_source``: where the rule's facts come from (None: the installed stack)."""
    path = directory / "example.py"
    path.write_text(example.source)
    for relative, text in example.beside:
        (directory / relative).parent.mkdir(parents=True, exist_ok=True)
        (directory / relative).write_text(text)
    for checkpoint in example.checkpoints:
        write_checkpoint(directory / checkpoint.path, checkpoint)
    fixing = isinstance(example, Invalid) and example.fixed is not None
    # Each rule is tested alone: its fixed example shows its own fix, not its neighbours'.
    options = RunOptions(select=(code,), freeze=example.freeze, unsafe_fixes=example.unsafe_fixes, verify=verify)
    with _working_directory(directory):  # the train scripts read relative checkpoint paths from there
        session = Session([path], options, facts_source=facts_source)
        result = session.fix(dry_run=False) if fixing else session.check()
        again = None
        if fixing:
            again = Session([path], RunOptions(select=(code,), freeze=example.freeze), facts_source=facts_source).check()
    return Checked(path, result, again)


@contextlib.contextmanager
def _working_directory(directory: Path) -> Iterator[None]:
    before = os.getcwd()
    os.chdir(directory)
    try:
        yield
    finally:
        os.chdir(before)


def write_checkpoint(path: Path, spec: Checkpoint) -> None:
    """Save ``spec``'s module, built on the CPU by the installed stack's real class, as a training run
    (or a user cutting a checkpoint apart) would have saved it."""
    import torch

    from freezefix.class_probe import build_module, clean_kwargs
    from freezefix.classes import find_class

    cls, scope = find_class(spec.module["type"], None)
    torch.manual_seed(0)  # the same module saves the same weights, whichever way it is cut
    module = build_module(cls, scope, clean_kwargs(spec.module))
    state = {}
    for name, tensor in module.state_dict().items():
        if spec.drop and name.startswith(spec.drop):
            continue
        if name in spec.reshape:
            tensor = torch.zeros((tensor.shape[0] + 1, *tensor.shape[1:]), dtype=tensor.dtype)
        state[spec.prefix + name] = tensor
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({spec.nest: state, "meta": {"epoch": 12}} if spec.nest else state, path)


def example_problems(code: str, example: Valid | Invalid, checked: Checked) -> list[str]:
    """What the run of one example got wrong against what the example says: a Valid example has no
    finding of its rule; an Invalid one has the finding at its place (line, column) with its
    message, and its fix leaves exactly its ``fixed`` text, which the rule then finds clean."""
    result = checked.result
    problems = [f"error: {message}" for _, message in result.errors]
    found = [r for r in result.findings if r.finding.code == code]
    if isinstance(example, Valid):
        problems += [f"unexpected finding at {r.line}:{r.col}: {r.finding.message}" for r in found]
        return problems
    if not any((r.line, r.col) == (example.line, example.col) and example.message in r.finding.message
               for r in found):
        problems.append(f"no finding at {example.line}:{example.col} saying {example.message!r}; found: "
                        + "; ".join(f"{r.line}:{r.col} {r.finding.message}" for r in found))
    text = checked.path.read_text()
    if example.fixed is None and text != example.source:
        problems.append("the file changed, and the example has no fixed text")
    if example.fixed is not None:
        if text != example.fixed:
            problems.append(f"fixed text differs:\n{text}")
        if checked.again is not None:
            problems += [f"after the fix: error: {m}" for _, m in checked.again.errors]
            problems += [f"after the fix, still found: {r.finding.message}" for r in checked.again.findings
                         if r.finding.code == code]
    return problems


def record() -> dict[str, Any]:
    """Every answer the installed stack's classes give to what its rule examples ask: each example
    checked, each Invalid one with a fix applied (without the write gate) and checked again."""
    prober = Prober(cache_dir=None, device="meta", record=True)
    for code, example in examples(stack=prober.stack):
        with tempfile.TemporaryDirectory() as tmp:
            check_example(Path(tmp), code, example, facts_source=prober, verify=False)
    return dict(sorted(prober.answered.items()))


def table_text(table: dict[str, Any]) -> str:
    return json.dumps(table, indent=1, sort_keys=True) + "\n"


def _main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "record":
        print("usage: python -m freezefix.testing record FILE", file=sys.stderr)
        return 2
    Path(argv[1]).write_text(table_text(record()), encoding="utf-8")
    print(f"wrote {argv[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
