"""Without torch / mmdet (lane 3: the oldest Python, no OpenMMLab package) the CLI must not pretend.

Every rule reads its facts off the real classes, so "0 findings" there would be a lie: check, apply,
explain and bench stop with exit 2 and say where freezefix has to run (skipped where a stack
exists).  The last tests here run in every lane.
"""

from __future__ import annotations

import pytest

from freezefix.stacks import missing

from .conftest import FIXTURES

NEEDS_STACK = False  # runs in the lane without torch or OpenMMLab too

needs_no_stack = pytest.mark.skipif(missing() is None, reason="an OpenMMLab stack is installed here")

CONFIG = str(FIXTURES / "seed_cmt/configs/cmt/cmt_voxel0075_r50_finetune.py")


@needs_no_stack
@pytest.mark.parametrize("args", [["check", CONFIG], ["apply", "--dry-run", CONFIG], ["explain", CONFIG],
                                  ["bench", CONFIG]])
def test_every_model_command_stops_with_exit_2_and_says_why(cli, args):
    result = cli(*args)
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert "not installed in this Python" in text and "environment your configs train in" in text


@needs_no_stack
def test_doctor_says_this_python_cannot_run_freezefix_and_why(cli):
    result = cli("doctor")
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert "FAIL torch torch and mmdet not installed in this Python" in text
    assert "freezefix cannot work in this environment: 1 problem" in text


@needs_no_stack
def test_the_rule_docs_need_no_stack(cli):
    result = cli("rules", "FF101")
    assert result.exit_code == 0 and "frozen_stages" in result.output


# The static core runs everywhere freezefix installs (lane 3 is Python 3.8): these need no stack.
def test_a_walked_script_is_told_from_a_config():
    import ast

    from freezefix.discover import looks_like_config

    script = "lr = 0.1\nif __name__ == '__main__':\n    print(lr)\n"
    assert "script" in looks_like_config(ast.parse(script))
    assert looks_like_config(ast.parse("model = dict(type='RetinaNet')\n")) is None


def test_the_results_cache_reads_suppressions_of_a_file_with_a_bom(tmp_path):
    from freezefix.cache import Entry, ResultsCache

    config = tmp_path / "c.py"
    config.write_bytes(b"\xef\xbb\xbfmodel = dict(a=1)  # freezefix: ignore[FF101]\n")
    cache = ResultsCache(tmp_path / "cache", "key")
    cache.store(config, Entry(True, ((str(config), cache.digest(str(config))),), (), (), "config"))
    assert cache.lookup(config, named=True) is not None
    assert cache.text(config) == "model = dict(a=1)  # freezefix: ignore[FF101]\n"


@needs_no_stack
def test_the_library_api_does_not_report_clean_when_it_cannot_check():
    from freezefix.api import check_paths, fix_paths

    for result in (check_paths([FIXTURES / "seed_cmt" / "configs"]), fix_paths([FIXTURES / "seed_cmt" / "configs"], dry_run=True)):
        assert result.exit_code == 2
        assert result.errors and all("cannot check: torch and mmdet not installed" in why for _, why in result.errors)
        assert not result.findings
