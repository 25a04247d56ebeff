"""Suppression comments: each one that silences nothing is its own FF100 report."""

from __future__ import annotations

from freezefix.api import RunOptions, Session

from freezefix.testing import RecordedFacts

NEEDS_STACK = False  # runs in the lane without torch or OpenMMLab too


def test_every_unused_suppression_of_a_file_is_reported_at_its_own_line(tmp_path):
    config = tmp_path / "cfg.py"
    config.write_text("a = 1  # freezefix: ignore\nb = 2  # freezefix: ignore[FF101]\nc = 3  # freezefix: ignore\n")
    # FF100 alone needs no class facts: an empty table answers nothing and is asked nothing.
    result = Session([config], RunOptions(select=("FF100",)), facts_source=RecordedFacts({})).check()
    assert not result.errors
    # Line 2 names FF101, which did not run (--select): that suppression is not judged.
    assert [(r.finding.code, r.line) for r in result.findings] == [("FF100", 1), ("FF100", 3)]
    assert all("(every rule) silences no finding" in r.finding.message for r in result.findings)
