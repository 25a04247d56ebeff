"""Each rule's own VALID / INVALID examples, run on the real classes (Fixit-style)."""

from __future__ import annotations

import pytest

from freezefix.api import RunOptions, Session
from freezefix.rules import registry

pytestmark = pytest.mark.slow


def _cases(kind: str):
    for code, rule in sorted(registry.rules.items()):
        for i, example in enumerate(getattr(rule, kind)):
            yield pytest.param(code, example, id=f"{code}-{kind.lower()}-{i}")


def _run(tmp_path, example, apply: bool, code: str):
    path = tmp_path / "example.py"
    path.write_text(example.source)
    # Each rule is tested alone: its fixed example shows its own fix, not its neighbours'.
    options = RunOptions(select=(code,), freeze=example.freeze, unsafe_fixes=example.unsafe_fixes)
    session = Session([path], options)
    result = session.fix(dry_run=False) if apply else session.check()
    return path, result


@pytest.mark.parametrize(("code", "example"), list(_cases("VALID")))
def test_valid_examples_have_no_finding(tmp_path, code, example):
    _, result = _run(tmp_path, example, apply=False, code=code)
    assert not result.errors
    assert [r.finding.message for r in result.findings if r.finding.code == code] == []


@pytest.mark.parametrize(("code", "example"), list(_cases("INVALID")))
def test_invalid_examples_are_found_and_fixed(tmp_path, code, example):
    path, result = _run(tmp_path, example, apply=example.fixed is not None, code=code)
    assert not result.errors
    found = [r.finding for r in result.findings if r.finding.code == code]
    assert found, [r.finding.message for r in result.findings]
    assert example.key is not None and example.message, f"{code}: an INVALID example says what it must report"
    assert any(".".join(map(str, f.key)) == example.key and example.message in f.message for f in found), \
        [(".".join(map(str, f.key)), f.message) for f in found]
    if example.fixed is not None:
        assert path.read_text() == example.fixed
        # Fixed means fixed: checking again finds nothing for this rule.
        again = Session([path], RunOptions(select=(code,), freeze=example.freeze)).check()
        assert not [r for r in again.findings if r.finding.code == code]
    else:
        assert path.read_text() == example.source


def test_every_rule_is_documented_and_has_examples():
    for code, rule in registry.rules.items():
        doc = type(rule).__doc__ or ""
        for heading in ("What", "Why", "Example", "Fix safety"):
            assert f"\n{heading}\n" in doc, f"{code} lacks a {heading} section"
        assert rule.VALID and rule.INVALID, code
        assert code.startswith("FF") and rule.name == rule.name.lower()


def test_the_fast_lanes_recorded_facts_are_what_the_real_classes_say():
    from .facts_table import load_table, record, table_text

    assert table_text(record()) == table_text(load_table()), "record again: python -m tests.facts_table"
