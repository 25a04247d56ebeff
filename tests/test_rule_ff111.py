"""FF111 overwritten-assignment on fixtures of the shapes real repos have: the seed's order (freeze
first, "keep this block last" settings after) and the reverse, a rebinding inside a shared ``_base_``
schedule, an mmcv 1.x-era ``optimizer=`` bound twice, and the consistent shapes it must stay silent on
(a first dict the base repeats anyway, ``_delete_`` in the live dict, a temporary read before the
rebinding).  The fix merges the lost entries into the live dict; mmengine's own loader then gives
exactly the values before plus the planned changes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from freezefix.api import RunOptions, Session, check_paths
from freezefix.stacks import stack_name

from .conftest import assert_changed_exactly_by_plan, stack_values, snapshot

ONLY = RunOptions(select=("FF111",), cache_dir=None)


def _found(root: Path, result) -> dict[tuple[str, int], str]:
    return {(r.path.relative_to(root).as_posix(), r.line): r.finding.message for r in result.findings}


def test_lost_settings_are_reported_where_the_first_dict_is_written(copy_fixture):
    root = copy_fixture("rebind") / "configs"
    found = _found(root, check_paths([root], ONLY))
    assert set(found) == {
        ("bev/freeze_then_settings.py", 5),
        ("bev/settings_then_freeze.py", 4),
        ("_base_/schedules/adamw_2x.py", 3),
        ("legacy/cmt_rebound_optimizer.py", 4),
    }
    seed_order = found[("bev/freeze_then_settings.py", 5)]
    assert "line 5 and again at line 12" in seed_order
    assert "img_backbone.frozen_stages=4, img_backbone.norm_eval=True never take effect" in seed_order
    assert "configs merge dicts only across _base_ files" in seed_order
    reverse = found[("bev/settings_then_freeze.py", 4)]
    assert "img_neck.num_outs=5" in reverse and "pts_backbone.layer_nums=[3, 5]" in reverse
    assert "paramwise_cfg.custom_keys.img_backbone.lr_mult=0.0" in found[("_base_/schedules/adamw_2x.py", 3)]
    legacy = found[("legacy/cmt_rebound_optimizer.py", 4)]
    # lr and weight_decay are set again by the live dict: only the custom key is lost
    assert legacy.endswith("so paramwise_cfg.custom_keys.img_backbone.lr_mult=0.0 never take effect")


def test_the_shared_base_is_reported_once_for_every_config_that_inherits_it(copy_fixture):
    root = copy_fixture("rebind") / "configs"
    result = check_paths([root], ONLY)
    shared = [r for r in result.findings if r.path.name == "adamw_2x.py"]
    assert len(shared) == 1
    assert sorted(p.name for p in shared[0].configs) == ["freeze_then_settings.py", "settings_then_freeze.py"]


def test_the_fix_is_unsafe_and_not_applied_without_unsafe_fixes(copy_fixture):
    root = copy_fixture("rebind") / "configs"
    before = snapshot(root)
    result = Session([root], ONLY).fix(dry_run=False)
    assert all(r.fix_kind == "unsafe" and r.status == "open" for r in result.findings)
    assert snapshot(root) == before


@pytest.mark.slow
@pytest.mark.skipif(stack_name() != "mmengine", reason="mmengine's loader is the oracle here")
def test_fix_merges_lost_entries_into_the_live_dict_and_values_change_exactly_by_the_plan(copy_fixture):
    root = copy_fixture("rebind") / "configs"
    configs = sorted(p for p in root.rglob("*.py") if "_base_" not in p.parts)
    before = {p: stack_values(p) for p in configs}
    options = RunOptions(select=("FF111",), cache_dir=None, unsafe_fixes=True)
    session = Session([root], options)
    result = session.fix(dry_run=False)
    assert not result.errors, result.errors
    assert {r.status for r in result.findings} == {"fixed"}
    assert_changed_exactly_by_plan(configs, before, session)
    # the lost entries went into the live dict, in the file that lost them, layout and comments kept
    text = (root / "bev" / "freeze_then_settings.py").read_text()
    assert text.endswith(
        "# Neck settings of the fine-tune; keep this block last.\nmodel = dict(\n    img_neck=dict(num_outs=5),\n"
        "    img_backbone=dict(frozen_stages=4, norm_eval=True),\n)\n"
    )
    assert "# 图像主干不更新" in (root / "legacy" / "cmt_rebound_optimizer.py").read_text()
    assert not check_paths([root], ONLY).findings


@pytest.mark.skipif(stack_name() != "mmengine", reason="new-style configs need mmengine's loader")
def test_new_style_configs_lose_the_first_dict_the_same_way(tmp_path):
    (tmp_path / "base.py").write_text(
        "model = dict(type='RetinaNet', backbone=dict(type='mmdet.ResNet', depth=18, frozen_stages=-1))\n")
    child = tmp_path / "child.py"
    child.write_text(
        "from mmengine.config import read_base\n\nwith read_base():\n    from .base import *\n\n"
        "model.update(backbone=dict(frozen_stages=4))\n"  # reads the name: merged, not lost
        "optim_wrapper = dict(paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=0.0)}))\n"
        "optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.01))\n")
    assert stack_values(child)["optim_wrapper"] == {"optimizer": {"type": "SGD", "lr": 0.01}}
    found = _found(tmp_path, check_paths([child], ONLY))
    assert list(found) == [("child.py", 7)]
    assert "paramwise_cfg.custom_keys.backbone.lr_mult=0.0 never take effect" in found[("child.py", 7)]
