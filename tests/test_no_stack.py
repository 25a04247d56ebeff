"""Without torch / mmdet (lane 3: the oldest Python, no OpenMMLab package) the CLI must not pretend.

Every rule reads its facts off the real classes, so "0 findings" there would be a lie: check, apply,
explain and bench stop with exit 2 and say where freezefix has to run.  Skipped where a stack exists.
"""

from __future__ import annotations

import pytest

from freezefix.stacks import missing

from .conftest import FIXTURES

pytestmark = pytest.mark.skipif(missing() is None, reason="an OpenMMLab stack is installed here")

CONFIG = str(FIXTURES / "seed_cmt/configs/cmt/cmt_voxel0075_r50_finetune.py")


@pytest.mark.parametrize("args", [["check", CONFIG], ["apply", "--dry-run", CONFIG], ["explain", CONFIG],
                                  ["bench", CONFIG]])
def test_every_model_command_stops_with_exit_2_and_says_why(cli, args):
    result = cli(*args)
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert "not installed in this Python" in text and "environment your configs train in" in text


def test_the_rule_docs_need_no_stack(cli):
    result = cli("rules", "FF101")
    assert result.exit_code == 0 and "frozen_stages" in result.output
