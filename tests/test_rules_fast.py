"""The fast lane: every rule's VALID / INVALID examples on facts recorded from the real classes of
each stack (freezefix.testing.RecordedFacts): no torch, no OpenMMLab, no model built.
``test_rules.py`` runs the same examples on the real classes of the installed stack, and checks
that its record still says what they say.  After changing a rule's examples, on each stack:

    python -m freezefix.testing record tests/fixtures/rule_example_facts.json         # mmengine
    python -m freezefix.testing record tests/fixtures/rule_example_facts_mmcv1.json   # mmcv 1.x
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from freezefix.testing import RecordedFacts, check_example, example_problems, examples

NEEDS_STACK = False  # runs in the lane without torch or OpenMMLab too

FIXTURES = Path(__file__).parent / "fixtures"
TABLES = {"mmengine": FIXTURES / "rule_example_facts.json", "mmcv1": FIXTURES / "rule_example_facts_mmcv1.json"}
RECORDED = {stack: json.loads(path.read_text(encoding="utf-8")) for stack, path in TABLES.items()}


def _cases():
    return [pytest.param(stack, code, example, id=f"{stack}-{code}-{type(example).__name__.lower()}-{i}")
            for stack in TABLES for i, (code, example) in enumerate(examples(stack=stack))]


@pytest.mark.parametrize(("stack", "code", "example"), _cases())
def test_every_example_on_recorded_facts(tmp_path, stack, code, example):
    if example.checkpoints:
        pytest.importorskip("torch", reason="the example's checkpoint is written with torch.save")
        pytest.importorskip("mmdet", reason="the example's checkpoint is saved from the real class")
    facts = RecordedFacts(RECORDED[stack], stack=stack)
    checked = check_example(tmp_path, code, example, facts_source=facts, verify=False)
    assert example_problems(code, example, checked) == []


def test_a_question_the_table_does_not_hold_is_a_crash_of_that_rule_not_a_pass(tmp_path):
    code, example = next((c, e) for c, e in examples("FF101") if type(e).__name__ == "Invalid")
    checked = check_example(tmp_path, code, example, facts_source=RecordedFacts({}), verify=False)
    assert checked.result.findings == []
    messages = [message for _, message in checked.result.errors]
    assert any("FF101 crashed: MissingFact" in message for message in messages)
    # what the config's summary asks of the stack (can its optimizer be built?) is a question too
    assert all("crashed: MissingFact" in message for message in messages), messages
    assert example_problems(code, example, checked)  # and the harness says the example failed
