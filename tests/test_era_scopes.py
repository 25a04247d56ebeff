"""mmcv-1.x era configs built whole under mmengine's registries: a bare detector type is built in the
scope that registers it, and bare task utils nested in heads (box coders, assigners) are found in the
sibling scope that has them, with what they nest from the config's own scope kept there.  Real
registries, real builds (slow)."""

from __future__ import annotations

import pytest

from freezefix.api import RunOptions, check_paths
from freezefix.stacks import stack_name

from .conftest import found_and_unjudged

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(stack_name() != "mmengine", reason="mmengine's registries are the ones scoped")]


def test_a_bare_detector_is_built_in_the_scope_that_registers_it():
    from freezefix.models import default_scope_of

    assert default_scope_of({"model": {"type": "CascadeRCNN"}}) == "mmdet"
    assert default_scope_of({"model": {"type": "ImVoxelNet"}}) == "mmdet3d"
    assert default_scope_of({"model": {"type": "CascadeRCNN"}, "default_scope": "mmdet3d"}) == "mmdet3d"


def test_a_bare_assigner_is_built_in_mmdet_and_keeps_its_3d_iou_calculator():
    from mmengine.registry import DefaultScope

    from freezefix.models import scope_types

    import mmdet3d.models  # noqa: F401 - registers the classes
    from mmdet3d.registry import TASK_UTILS

    assigner = {"type": "MaxIoUAssigner", "iou_calculator": {"type": "BboxOverlapsNearest3D"},
                "pos_iou_thr": 0.6, "neg_iou_thr": 0.45, "min_pos_iou": 0.45}
    head = {"type": "Anchor3DHead", "bbox_coder": {"type": "DeltaXYZWLHRBBoxCoder"}, "train_cfg": {"assigner": assigner}}
    substitutions: dict[str, str] = {}
    scoped = scope_types(head, "mmdet3d", substitutions)
    assert substitutions == {"MaxIoUAssigner": "mmdet.MaxIoUAssigner"}
    assert scoped["bbox_coder"] == {"type": "DeltaXYZWLHRBBoxCoder"}  # mmdet3d's own: left alone
    assert scoped["train_cfg"]["assigner"]["_scope_"] == "mmdet"
    assert scoped["train_cfg"]["assigner"]["iou_calculator"] == {"type": "mmdet3d.BboxOverlapsNearest3D"}

    with DefaultScope.overwrite_default_scope("mmdet3d"):
        with pytest.raises(KeyError, match="MaxIoUAssigner is not in the mmdet3d::task util registry"):
            TASK_UTILS.build(dict(assigner))  # as the era's config writes it: mmdet3d 1.x cannot
        built = TASK_UTILS.build(dict(scoped["train_cfg"]["assigner"]))
    assert type(built).__name__ == "MaxIoUAssigner"
    assert type(built.iou_calculator).__name__ == "BboxOverlapsNearest3D"


def test_whole_model_rules_judge_an_mmcv1_era_repo_under_mmengine(copy_fixture):
    """The mmdet 2.x-style Swin repo (no default_scope, bare types, DeltaXYWHBBoxCoder and
    MaxIoUAssigner in its RetinaNet head) gets the whole-model findings the mmcv 1.x stack gives it."""
    root = copy_fixture("shadowed_zero_lr_mmcv1") / "configs"
    result = check_paths([root], RunOptions(select=("FF106", "FF107", "FF117"), cache_dir=None))
    assert not result.errors, result.errors
    found = {(r.finding.code, tuple(sorted(p.name for p in r.configs))) for r in result.findings}
    assert found == {
        ("FF106", ("swin_finetune.py", "swin_fixed_features.py", "swin_frozen_by_stages.py")),  # 'absolute_pos_embed'
        ("FF107", ("swin_finetune.py",)),
        ("FF117", ("swin_fixed_features.py",)),
    }
    assert found_and_unjudged(result, root)[1] == {}  # the whole RetinaNet was built for every config
