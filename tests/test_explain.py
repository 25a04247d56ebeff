"""`freezefix explain` reports what the real model has (slow: real builds)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import params_by_child

pytestmark = pytest.mark.slow


def _mvxnet() -> Path:
    import mmdet3d

    return Path(mmdet3d.__file__).parent / ".mim/configs/mvxnet/mvxnet_fpn_dv_second_secfpn_8xb2-80e_kitti-3d-3class.py"


def test_explain_mvxnet_matches_the_model_built_independently(cli):
    import torch
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    import mmdet3d.models  # noqa: F401 - registers the classes
    from mmdet3d.registry import MODELS

    result = cli("explain", str(_mvxnet()), "--format", "json", "--device", "meta")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["level"] == "model" and data["device"] == "cpu"  # meta was tried first

    cfg = Config.fromfile(str(_mvxnet()))
    init_default_scope("mmdet3d")
    with torch.device("cpu"):  # its voxelizer cannot be created on meta
        model = MODELS.build(cfg.model)
    model.train()
    expected = params_by_child(model)
    reported = {row["module"]: (row["params"], row["trainable_after_train"]) for row in data["modules"]}
    assert reported == expected
    # The camera backbone: ResNet50 with frozen_stages=1 (stem + layer1 frozen).
    assert reported["img_backbone"][0] == 23_508_032 and reported["img_backbone"][1] < 23_508_032
    backbone = next(r for r in data["modules"] if r["module"] == "img_backbone")
    assert [s["module"] for s in backbone["stages"]][-1] == "img_backbone.layer4"


def test_explain_seed_shows_layer4_training_at_lr_zero(cli):
    from .conftest import FIXTURES

    config = FIXTURES / "seed_cmt/configs/cmt/cmt_voxel0075_r50_finetune.py"
    result = cli("explain", str(config), "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    backbone = next(r for r in data["modules"] if r["module"] == "img_backbone")
    assert backbone["frozen_stages"] == 3 and backbone["full_freeze"] == 4 and backbone["findings"] == ["FF101"]
    layer4 = next(s for s in backbone["stages"] if s["module"] == "img_backbone.layer4")
    assert layer4["trainable_after_train"] == 14_942_208
    assert {"lr": 0.0, "lr_mult": 0.0, "params": 14_942_208} in layer4["lr"]
    text = cli("explain", str(config))
    assert "img_backbone" in text.stdout and "3 (4)" in text.stdout and "FF101" in text.stdout
    # Something is meant frozen, so the run-time audit is pointed at, once.
    assert data["audit_hook_hint"] and "custom_hooks = [dict(type='FreezeAuditHook')]" in data["audit_hook_hint"]
    assert " ".join(text.stdout.split()).count("dict(type='FreezeAuditHook')") == 1


def test_explain_does_not_point_at_the_hook_a_config_already_runs(tmp_path, cli):
    from .conftest import FIXTURES

    config = tmp_path / "with_hook.py"
    config.write_text(f"_base_ = [{str(FIXTURES / 'seed_cmt/configs/cmt/cmt_voxel0075_r50_finetune.py')!r}]\n"
                      "custom_hooks = [dict(type='FreezeAuditHook', strict=True)]\n")
    data = json.loads(cli("explain", str(config), "--format", "json").stdout)
    assert data["audit_hook_hint"] is None and data["findings"]
