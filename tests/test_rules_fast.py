"""The fast lane: every rule's VALID / INVALID examples on facts recorded from the real classes
(``tests/facts_table.py``): no torch, no OpenMMLab, no model built.  ``test_rules.py`` runs the same
examples on the real classes, and checks that the record still says what they say."""

from __future__ import annotations

import pytest

from .facts_table import TableProber, examples, load_table, recheck, run_example

NEEDS_STACK = False  # runs in the lane without torch or OpenMMLab too

TABLE = load_table()


def _cases(kind: str):
    return [pytest.param(code, example, id=f"{code}-{kind.lower()}-{index}")
            for code, of_kind, index, example in examples() if of_kind == kind]


@pytest.mark.parametrize(("code", "example"), _cases("VALID"))
def test_valid_examples_have_no_finding(tmp_path, code, example):
    _, result = run_example(tmp_path, code, example, apply=False, prober=TableProber(TABLE))
    assert not result.errors
    assert [r.finding.message for r in result.findings if r.finding.code == code] == []


@pytest.mark.parametrize(("code", "example"), _cases("INVALID"))
def test_invalid_examples_are_found_said_and_fixed(tmp_path, code, example):
    apply = example.fixed is not None
    path, result = run_example(tmp_path, code, example, apply=apply, prober=TableProber(TABLE), verify=False)
    assert not result.errors
    found = [r.finding for r in result.findings if r.finding.code == code]
    assert any(".".join(map(str, f.key)) == example.key and example.message in f.message for f in found), \
        [(".".join(map(str, f.key)), f.message) for f in found]
    if apply:
        assert path.read_text() == example.fixed
        again = recheck(path, code, example, TableProber(TABLE))
        assert not again.errors and not [r for r in again.findings if r.finding.code == code]
    else:
        assert path.read_text() == example.source


def test_a_question_the_table_does_not_hold_is_a_crash_of_that_rule_not_a_pass(tmp_path):
    code, _, _, example = next(e for e in examples() if e[0] == "FF101" and e[1] == "INVALID")
    _, result = run_example(tmp_path, code, example, apply=False, prober=TableProber({}))
    assert result.findings == []
    messages = [message for _, message in result.errors]
    assert any("FF101 crashed: MissingFact" in message for message in messages)
    # what the config's summary asks of the stack (can its optimizer be built?) is a question too
    assert all("crashed: MissingFact" in message for message in messages), messages
