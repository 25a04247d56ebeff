"""A detector that freezes in its own code (UniAD-style ``freeze_img_backbone=True``) or a freezing
hook: what trains cannot be seen on modules built alone, so the rules that judge it stay silent and
`check` says what it could not judge, never a false FF101 / FF105.
"""

from __future__ import annotations

import pytest

from freezefix.api import RunOptions, check_paths
from freezefix.stacks import stack_name

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


# A plugin package whose detectors freeze the camera backbone in their own code, in the places
# BEV repos do (tests/fixtures/hidden_freeze): judged on the whole detector, era-exact.
JUDGED = {
    "linear_probe.py": {"FF105"},  # eval() in __init__ only: the runner's train() undoes it
    "linear_probe_norm_eval.py": set(),
    "linear_probe_slow_backbone.py": {"FF102"},  # the flag makes the key's lr_mult dead
    "no_running_stats.py": {"FF118"},  # track_running_stats=False in training mode
    "late_freeze.py": {"FF109"},  # requires_grad=False in train(), after DDP
    "late_freeze_ddp_ready.py": set(),
    # mmengine's Runner calls init_weights() after DDP and the optimizer are built
    "init_weights_freeze.py": {"FF105", "FF109"},
}


def judged_freezes(result, configs_dir) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {p.name: set() for p in configs_dir.glob("*.py")}
    for reported in result.findings:
        for config in reported.configs:
            found[config.name].add(reported.finding.code)
    return found


@pytest.mark.skipif(stack_name() != "mmengine",
                    reason="mmengine-era configs of the plugin repo")
def test_freezes_in_a_plugin_detectors_code_are_judged_on_the_whole_detector(copy_fixture):
    root = copy_fixture("hidden_freeze")
    result = check_paths([root / "configs"], RunOptions(cache_dir=None))
    assert not result.errors, result.errors
    assert dict(result.unjudged) == {}
    assert judged_freezes(result, root / "configs") == JUDGED
    messages = {r.finding.code: r.finding.message for r in result.findings}
    assert "img_backbone is fully frozen (by the detector's own code: freeze_img_backbone=True)" in messages["FF102"]
    assert "normalise with each batch's statistics in training and with the stored ones at test" in messages["FF118"]
    assert "frozen afterwards by the detector's own code" in messages["FF109"]


@pytest.mark.skipif(stack_name() != "mmengine",
                    reason="mmengine-era configs of the plugin repo")
def test_the_fixes_of_judged_freezes_are_proved_on_the_whole_detector_and_leave_only_the_code_finding(copy_fixture):
    from freezefix.api import Session

    root = copy_fixture("hidden_freeze")
    base = (root / "configs" / "_base_" / "bev_r18.py").read_bytes()
    result = Session([root / "configs"], RunOptions(cache_dir=None, unsafe_fixes=True)).fix(dry_run=False)
    assert not result.errors, result.errors
    assert sorted(p.name for p, v in result.verdicts.items() if v.ok) == [
        "init_weights_freeze.py", "late_freeze.py", "linear_probe.py", "linear_probe_slow_backbone.py"]
    # the plugin's init_weights() cannot run on meta tensors: that one is proved on the CPU
    assert {p.name: v.device for p, v in result.verdicts.items()}["init_weights_freeze.py"] == "cpu"
    assert (root / "configs" / "_base_" / "bev_r18.py").read_bytes() == base  # shared: children edited
    after = check_paths([root / "configs"], RunOptions(cache_dir=None))
    assert judged_freezes(after, root / "configs") == {name: codes & {"FF118"} for name, codes in JUDGED.items()}
