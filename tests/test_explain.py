"""`freezefix explain` reports what the real model has (slow: real builds)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from freezefix.stacks import stack_name

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
    assert {"lr": 0.0, "lr_mult": 0.0, "params": 14_942_208, "custom_keys": {"img_backbone": 14_942_208}} in layer4["lr"]
    text = cli("explain", str(config))
    assert "img_backbone" in text.stdout and "3 (4)" in text.stdout and "FF101" in text.stdout
    assert "← " in text.stdout and "'img_backbone'" in text.stdout  # the table may wrap the cell
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


# The seed model and its optimizer as an mmengine training run would build them, written out here
# without freezefix: the plugin imported as the repo's train script does, the mmcv-1.x era type names
# scoped for mmengine's registries, the logger made as the Runner makes it (its log file), and
# mmengine's own build_optim_wrapper.  Run in its own process: the plugin and the logger stay there.
_REFERENCE = r"""
import importlib, json, sys
import torch
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope

config, root, log_file, out = sys.argv[1:5]
MMLogger.get_instance('reference-run', logger_name='mmengine', log_file=log_file, log_level='INFO')
cfg = Config.fromfile(config)
sys.path.insert(0, root)
importlib.import_module(cfg.plugin_dir.strip('/').replace('/', '.'))
import mmdet.models, mmdet3d.models
from mmdet3d.registry import MODELS
init_default_scope('mmdet3d')
model_cfg = cfg.model.to_dict()
for key in ('img_backbone', 'img_neck'):
    model_cfg[key]['type'] = 'mmdet.' + model_cfg[key]['type']
with torch.device('meta'):
    model = MODELS.build(model_cfg)
optimizer = cfg.optimizer.to_dict()
paramwise_cfg = optimizer.pop('paramwise_cfg')
build_optim_wrapper(model, dict(type='OptimWrapper', optimizer=optimizer, paramwise_cfg=paramwise_cfg))
model.train()
with open(out, 'w') as handle:
    json.dump({'total': sum(p.numel() for p in model.parameters()),
               'trainable': sum(p.numel() for p in model.parameters() if p.requires_grad)}, handle)
"""


@pytest.fixture(scope="module")
def seed_reference(tmp_path_factory):
    """(counts, log file) of the seed built by mmengine directly, in a training run's way."""
    import subprocess
    import sys

    from .conftest import FIXTURES

    work = tmp_path_factory.mktemp("reference")
    seed = FIXTURES / "seed_cmt"
    config = seed / "configs/cmt/cmt_voxel0075_r50_finetune.py"
    run = subprocess.run([sys.executable, "-c", _REFERENCE, str(config), str(seed), str(work / "run.log"),
                          str(work / "counts.json")], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads((work / "counts.json").read_text()), work / "run.log"


SEED = "seed_cmt/configs/cmt/cmt_voxel0075_r50_finetune.py"


def test_explain_starts_with_the_trainable_line_of_the_model_built_independently(cli, seed_reference):
    from .conftest import FIXTURES

    counts, _ = seed_reference
    data = json.loads(cli("explain", str(FIXTURES / SEED), "--format", "json").stdout)
    assert (data["trainable_params"], data["total_params"]) == (counts["trainable"], counts["total"])
    assert data["trainable_zero_lr"] == 14_942_208  # layer4: trains, at lr 0
    text = cli("explain", str(FIXTURES / SEED))
    assert text.exit_code == 0
    share = 100 * counts["trainable"] / counts["total"]
    first, second = text.stdout.splitlines()[:2]
    assert first == f"trainable {counts['trainable']:,} / {counts['total']:,} ({share:.1f}%)"
    assert first == "trainable 24,206,752 / 32,772,576 (73.9%)"  # the pinned stack's numbers, for the reader
    assert second.split() == "of which 14,942,208 at lr 0: they compute gradients that lr 0 discards".split()


def test_explain_prints_mmengines_own_optimizer_log_lines_as_the_training_log_has_them(cli, seed_reference):
    import subprocess

    from .conftest import FIXTURES

    _, log_file = seed_reference
    # The README's recipe for a real log: keep the constructor's lines, drop the timestamp.
    pipeline = ("grep -E 'paramwise_options -- |is skipped since its requires_grad=' \"$0\" | cut -d' ' -f4-")
    real = subprocess.run(["sh", "-c", pipeline, str(log_file)], capture_output=True, text=True, check=True)
    expected = real.stdout.splitlines()
    assert "mmengine - INFO - paramwise_options -- img_backbone.layer4.0.conv1.weight:lr=0.0" in expected
    assert "mmengine - WARNING - img_backbone.layer1.0.conv1.weight is skipped since its requires_grad=False" \
        in expected

    result = cli("explain", str(FIXTURES / SEED), "--format", "mmengine-log")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == expected


def test_explain_credits_each_lr_to_the_key_that_set_it(copy_fixture, cli):
    """mmdet's Swin base brings 'relative_position_bias_table': dict(decay_mult=0.); being longer, it
    takes those params away from the config's 'backbone': dict(lr_mult=0.0), and explain says so."""
    if stack_name() != "mmengine":
        pytest.skip("the config builds on mmdet 3.x's own bases")
    from mmengine.config import Config
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import init_default_scope

    import mmdet.models  # noqa: F401 - registers the classes
    from mmdet.registry import MODELS

    config = copy_fixture("shadowed_zero_lr") / "configs" / "swin_fixed_features.py"
    result = cli("explain", str(config), "--format", "json")
    assert result.exit_code == 0, result.output
    (backbone,) = [row for row in json.loads(result.stdout)["modules"] if row["module"] == "backbone"]
    credited = {group["lr"]: group["custom_keys"] for group in backbone["lr"]}

    # the same numbers from mmengine's own constructor on a model built here
    cfg = Config.fromfile(str(config))
    init_default_scope("mmdet")
    model = MODELS.build(cfg.model)  # on the CPU: Swin's init cannot run on meta
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    names = {id(p): n for n, p in model.named_parameters()}
    by_lr: dict[float, int] = {}
    for group in wrapper.optimizer.param_groups:
        for param in group["params"]:
            if names[id(param)].startswith("backbone.") and param.requires_grad:
                by_lr[group["lr"]] = by_lr.get(group["lr"], 0) + param.numel()
    assert credited == {0.0: {"backbone": by_lr[0.0]}, 1e-4: {"relative_position_bias_table": by_lr[1e-4]}}
    assert by_lr[1e-4] == 23_322
