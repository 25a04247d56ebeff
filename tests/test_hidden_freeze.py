"""A detector that freezes in its own code (UniAD-style ``freeze_img_backbone=True``) or a freezing
hook: what trains cannot be seen on modules built alone, so the rules that judge it stay silent and
`check` says what it could not judge, never a false FF101 / FF105.
"""

from __future__ import annotations

import pytest

from freezefix.api import RunOptions, check_paths

pytestmark = pytest.mark.slow

CONFIG = """\
model = dict(
    type='BEVDetector',{flag}
    img_backbone=dict(type='mmdet.ResNet', depth=50, frozen_stages=3, norm_eval=False),
)
optim_wrapper = dict(optimizer=dict(type='AdamW', lr=2e-4),
                     paramwise_cfg=dict(custom_keys={{'img_backbone': dict(lr_mult=0.0)}}))
{hooks}"""


def _check(tmp_path, flag: str = "", hooks: str = ""):
    config = tmp_path / "c.py"
    config.write_text(CONFIG.format(flag=flag, hooks=hooks))
    return check_paths([config], RunOptions(cache_dir=None))


def test_without_a_hidden_freeze_the_rules_judge(tmp_path):
    result = _check(tmp_path, hooks="custom_hooks = [dict(type='FreezeAuditHook')]\n")  # the audit freezes nothing
    assert {"FF101", "FF105"} <= {r.finding.code for r in result.findings}
    # Only what a plugin detector that is not installed leaves unjudged: its custom keys against the
    # whole model (FF106, FF107); nothing about what trains.
    [(what, why)] = list(result.unjudged)
    assert what == "BEVDetector (whole model)" and "is not in the mmdet3d::model registry" in why
    assert "(FF106, FF107 not judged)" in why


@pytest.mark.parametrize(("flag", "hooks", "named"), [
    ("\n    freeze_img_backbone=True,", "", "freeze_img_backbone=True"),
    ("\n    freeze_bn=True,", "", "freeze_bn=True"),
    ("", "custom_hooks = [dict(type='FreezeBackboneHook', until_epoch=2)]\n", "custom hook FreezeBackboneHook"),
])
def test_a_freeze_in_the_detectors_own_code_is_not_guessed_at(tmp_path, flag, hooks, named):
    result = _check(tmp_path, flag, hooks)
    assert not {"FF101", "FF105", "FF109", "FF110"} & {r.finding.code for r in result.findings}
    [(what, why)] = list(result.unjudged)
    assert what == "BEVDetector"
    assert f"it freezes in its own code ({named})" in why and "what trains was not judged" in why


def test_what_was_not_judged_is_said_again_when_the_result_comes_from_the_cache(tmp_path):
    config = tmp_path / "c.py"
    config.write_text(CONFIG.format(flag="\n    freeze_img_backbone=True,", hooks=""))
    options = RunOptions(cache_dir=tmp_path / "cache", results_cache=True)
    fresh = check_paths([config], options)
    cached = check_paths([config], options)
    assert [what for what, _ in fresh.unjudged] == ["BEVDetector"]
    assert cached.unjudged == fresh.unjudged
