"""Each rule's own VALID / INVALID examples, run on the real classes of the installed stack
(Fixit-style), through the harness users of freezefix.testing get too; the fast lane runs the same
examples on facts recorded from these classes, for both stacks (test_rules_fast.py)."""

from __future__ import annotations

import pytest

from freezefix.rules import registry
from freezefix.stacks import stack_name
from freezefix.testing import check_example, example_problems, examples

from .test_rules_fast import TABLES

pytestmark = pytest.mark.slow


def _cases():
    return [pytest.param(code, example, id=f"{code}-{type(example).__name__.lower()}-{i}")
            for i, (code, example) in enumerate(examples(stack=stack_name()))]


@pytest.mark.parametrize(("code", "example"), _cases())
def test_every_example_on_the_real_classes(tmp_path, code, example):
    checked = check_example(tmp_path, code, example)
    assert example_problems(code, example, checked) == []


def test_every_rule_is_documented_and_has_examples_on_each_stack():
    for code, rule in registry.rules.items():
        doc = type(rule).__doc__ or ""
        for heading in ("What", "Why", "Example", "Fix safety"):
            assert f"\n{heading}\n" in doc, f"{code} lacks a {heading} section"
        for stack in ("mmengine", "mmcv1"):
            assert any(stack in e.stacks for e in rule.VALID), (code, stack)
        assert any(e.stacks for e in rule.INVALID), code
        assert code.startswith("FF") and rule.name == rule.name.lower()


def test_the_fast_lanes_recorded_facts_are_what_the_real_classes_say():
    from freezefix.testing import record, table_text

    table = TABLES[stack_name()]
    assert table_text(record()) == table.read_text(encoding="utf-8"), \
        f"record again: python -m freezefix.testing record {table}"
