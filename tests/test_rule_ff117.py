"""FF117 shadowed-zero-lr on the shapes public configs use (``tests/fixtures/shadowed_zero_lr``):
a "fixed feature" Swin-T on top of mmdet's own Swin base, whose ``'relative_position_bias_table'``
key takes 23,322 backbone params away from ``'backbone': dict(lr_mult=0.0)``; a RetinaNet whose repo
base keeps the FPN's lateral convs out of weight decay while one config fixes the neck; and their
twins where nothing is meant frozen.  The fixes are proved by the gate on the real models.
"""

from __future__ import annotations

import pytest

from freezefix.api import RunOptions, Session, check_paths
from freezefix.rules.base import Change, Fix
from freezefix.rules.ff117_shadowed_zero_lr import ShadowedZeroLr
from freezefix.stacks import stack_name

from .conftest import assert_changed_exactly_by_plan, snapshot, stack_values

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(stack_name() != "mmengine", reason="the configs build on mmdet 3.x's own bases")]

ONLY = RunOptions(select=("FF107", "FF117"), cache_dir=None)


def _found(result, root):
    return {(r.path.relative_to(root).as_posix() if r.path.is_relative_to(root) else r.path.name, r.finding.code):
            r.finding.message for r in result.findings}


def test_the_revived_params_are_named_and_moot_or_deliberate_keys_are_not(copy_fixture):
    root = copy_fixture("shadowed_zero_lr") / "configs"
    result = check_paths([root], ONLY)
    assert not result.errors, result.errors
    found = _found(result, root)
    assert set(found) == {
        ("swin_fixed_features.py", "FF117"),
        ("retinanet_frozen_neck.py", "FF117"),
        # a true FF107: at lr_mult 0.1 'backbone' takes the norms' decay_mult=0 away
        ("mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py", "FF107"),
    }
    swin = found[("swin_fixed_features.py", "FF117")]
    assert ("backbone: custom key 'backbone' gives lr 0, but longer keys match first and train 23,322 of its "
            "params: 'relative_position_bias_table' (23,322 params at lr 0.0001)") in swin
    assert "frozen_stages=4 freezes all of backbone (SwinTransformer)" in swin
    assert "'lateral_convs' (918,272 params at lr 0.01)" in found[("retinanet_frozen_neck.py", "FF117")]
    shadowed = [r for r in result.findings if r.finding.code == "FF107"]
    # the moot 'norm' under the fixed backbone is not reported; the one under lr_mult 0.1 is
    assert [[p.name for p in r.configs] for r in shadowed] == [["swin_slow_backbone.py"]]
    assert "'norm' is shadowed: every parameter it matches is taken first by 'backbone'" in shadowed[0].finding.message


def test_the_fixes_stop_exactly_the_revived_params_and_leave_the_shared_base(copy_fixture):
    root = copy_fixture("shadowed_zero_lr") / "configs"
    configs = sorted(p for p in root.rglob("*.py") if "_base_" not in p.parts)
    before = {p: stack_values(p) for p in configs}
    base = (root / "_base_" / "neck_keys.py").read_bytes()
    session = Session([root], RunOptions(select=("FF117",), cache_dir=None, unsafe_fixes=True))
    result = session.fix(dry_run=False)
    assert not result.errors, result.errors
    assert {r.path.name: r.status for r in result.findings} == {
        "swin_fixed_features.py": "fixed", "retinanet_frozen_neck.py": "fixed"}
    verdicts = {path.name: verdict for path, verdict in result.verdicts.items()}
    assert all(v.ok for v in verdicts.values()), verdicts
    assert_changed_exactly_by_plan(configs, before, session)
    # the sibling whose neck trains keeps the shared key as it is: the override goes in the config
    assert (root / "_base_" / "neck_keys.py").read_bytes() == base
    neck_keys = stack_values(root / "retinanet_frozen_neck.py")["optim_wrapper"]["paramwise_cfg"]["custom_keys"]
    assert neck_keys["lateral_convs"] == {"decay_mult": 0.0, "lr_mult": 0.0}
    assert stack_values(root / "swin_fixed_features.py")["model"]["backbone"]["frozen_stages"] == 4
    assert not check_paths([root], RunOptions(select=("FF117",), cache_dir=None)).findings


def test_the_gate_refuses_a_fix_that_leaves_params_training_or_reaches_another_module(copy_fixture, monkeypatch):
    root = copy_fixture("shadowed_zero_lr") / "configs"
    honest = ShadowedZeroLr.check
    wrong = {"value": 0.5, "key": "lateral_convs"}

    def planner_bug(self, view, options):
        for finding in honest(self, view, options):
            if finding.module == "neck":
                change = finding.fix.changes[0]
                key = (*change.key[:-2], wrong["key"], "lr_mult")
                finding.fix = Fix((Change(key, wrong["value"]),), safe=False, why_unsafe="test",
                                  stops_training=finding.fix.stops_training)
            yield finding

    monkeypatch.setattr(ShadowedZeroLr, "check", planner_bug)
    config = root / "retinanet_frozen_neck.py"
    before = snapshot(root)
    result = Session([config], RunOptions(select=("FF117",), cache_dir=None, unsafe_fixes=True)).fix(dry_run=False)
    (verdict,) = result.verdicts.values()
    assert not verdict.ok
    assert "neck: 918,272 params still train at a non-zero lr after the rewrite" in verdict.problems
    assert snapshot(root) == before

    # lr_mult 0 on 'conv' stops the lateral convs, and the heads' convs too
    wrong.update(value=0.0, key="conv")
    result = Session([config], RunOptions(select=("FF117",), cache_dir=None, unsafe_fixes=True)).fix(dry_run=False)
    (verdict,) = result.verdicts.values()
    assert not verdict.ok
    assert any(p.startswith("bbox_head: the rewrite changes its lrs or weight decays") for p in verdict.problems), \
        verdict.problems
    assert snapshot(root) == before

