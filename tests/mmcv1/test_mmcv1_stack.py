"""freezefix on the OLD OpenMMLab stack most BEV research repos train on.

mmcv-full 1.7.0 + mmdet 2.28.2 + mmdet3d 1.0.0rc6, in the venv scripts/setup_venv_mmcv1.sh makes;
scripts/test_mmcv1.sh (the second CI lane) runs this file there.  In the mmengine venv it is skipped.
Every number here is read off the real classes and the real mmcv 1.x optimizer constructor.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from freezefix.stacks import stack_name

from ..conftest import FIXTURES, params_by_child, snapshot, stack_values

pytestmark = pytest.mark.skipif(stack_name() != "mmcv1", reason="needs the mmcv 1.x stack (bash scripts/test_mmcv1.sh)")

BASE = "configs/_base_/models/cmt_voxel0075_r50.py"
CHILD = "configs/cmt/cmt_voxel0075_r50_finetune.py"
LAYER4 = 14_942_208  # ResNet50's layer4: what frozen_stages=3 leaves trainable
RESNET50 = 23_508_032


def _mvxnet() -> Path:
    import mmdet3d

    return Path(mmdet3d.__file__).parent / ".mim/configs/mvxnet/dv_mvx-fpn_second_secfpn_adamw_2x8_80e_kitti-3d-3class.py"


def test_the_mmcv1_stack_is_chosen_and_mmengine_is_absent():
    import importlib.util

    from freezefix.stacks import current

    assert current().name == "mmcv1"
    assert "mmcv-full 1.7.0" in current().describe() and "mmdet3d 1.0.0rc6" in current().describe()
    # freezefix must not need mmengine here (it would also pull opencv-python beside the headless build).
    assert importlib.util.find_spec("mmengine") is None


def test_probe_reads_the_real_mmdet2_classes():
    from freezefix.probe import Prober

    prober = Prober()
    seed_backbone = dict(type="ResNet", depth=50, frozen_stages=3, norm_eval=True,
                         norm_cfg=dict(type="BN", requires_grad=False))
    resnet = prober.facts(seed_backbone, scope_hint="mmdet3d")
    assert resnet.scope == "mmdet" and resnet.class_path == "mmdet.models.backbones.resnet.ResNet"
    assert resnet.observed.trainable_params == LAYER4 and resnet.total_params == RESNET50
    assert resnet.full_freeze == 4 and resnet.stages[4].trainable_params == 0
    assert [resnet.stages[k].trainable_params for k in (-1, 0, 1)] == [23_454_912, 23_445_504, 23_232_512]
    second = prober.facts(dict(type="SECOND", in_channels=256, frozen_stages=3), scope_hint="mmdet3d")
    # mmcv 1.x re-raises a constructor's error with the class name in front.
    assert second.scope == "mmdet3d" and not second.accepts_frozen_stages
    assert second.error.startswith("TypeError") and "frozen_stages" in second.error


def test_seed_is_checked_fixed_and_verified_on_the_real_classes(copy_fixture, cli):
    root = copy_fixture("seed_cmt")
    check = cli("check", "configs")
    assert check.exit_code == 1
    assert check.stdout.splitlines()[0].startswith(f"{BASE}:14:23: FF101 [*] img_backbone: lr_mult=0.0")
    original = (root / BASE).read_bytes()
    applied = cli("apply", "configs")
    assert applied.exit_code == 0, applied.output
    assert (root / BASE).read_bytes() == original.replace(b"frozen_stages=3,", b"frozen_stages=4,")
    # The gate built both real models with mmdet3d.models.build_model (the plugin's CmtDetector
    # registered in mmdet's DETECTORS, as CMT does) and measured layer4 before and after.
    assert f"img_backbone (ResNet): {LAYER4:,} trainable params in layer4 → 0" in applied.output
    assert "module level" not in applied.output
    assert cli("check", "configs").exit_code == 0
    after = snapshot(root)
    assert cli("apply", "configs").exit_code == 0 and snapshot(root) == after


def _independent_model_and_optimizer(config: Path):
    """The model and optimizer as an mmcv 1.x train script builds them: no freezefix code involved."""
    import importlib
    import sys

    import torch
    from mmcv import Config
    from mmcv.runner import build_optimizer
    from mmdet3d.models import build_model

    cfg = Config.fromfile(str(config))
    if cfg.get("plugin"):
        root = next(p for p in config.resolve().parents if (p / cfg.plugin_dir).is_dir())
        sys.path.insert(0, str(root))
        importlib.import_module(cfg.plugin_dir.strip("/").replace("/", "."))
    with torch.device("cpu"):
        model = build_model(cfg.model, train_cfg=cfg.get("train_cfg"), test_cfg=cfg.get("test_cfg"))
    optimizer = build_optimizer(model, cfg.optimizer)
    model.train()
    return model, optimizer


def test_explain_shows_the_mmcv1_optimizer_truth_for_the_seed(cli):
    config = FIXTURES / "seed_cmt" / CHILD
    result = cli("explain", str(config), "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["stack"] == "mmcv1" and data["base_lr"] == 0.0001
    backbone = next(r for r in data["modules"] if r["module"] == "img_backbone")
    # layer4 trains at lr 0 (the trap); everything frozen_stages=3 froze is STILL in the optimizer,
    # in groups of its own at the base lr, because mmcv 1.x's constructor keeps frozen params.
    assert backbone["lr"] == [{"lr": 0.0, "lr_mult": 0.0, "params": LAYER4, "custom_keys": {"img_backbone": LAYER4}}]
    assert backbone["frozen_in_optimizer"] == [{"lr": 0.0001, "lr_mult": 1.0, "params": RESNET50 - LAYER4}]
    # The same, counted on a model and optimizer built independently, as CMT's tools/train.py would.
    model, optimizer = _independent_model_and_optimizer(config)
    lr_of = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    frozen = [p for p in model.img_backbone.parameters() if not p.requires_grad]
    assert sum(p.numel() for p in frozen) == RESNET50 - LAYER4
    assert all(lr_of[id(p)] == 0.0001 for p in frozen)
    text = " ".join(cli("explain", str(config)).stdout.split())  # the terminal wraps lines
    assert "lrs are those mmcv.runner.build_optimizer gives (mmcv-full 1.7.0" in text
    assert "8,565,824 frozen params are in the optimizer anyway" in text and "grad is None" in text


def test_frozen_params_held_by_the_mmcv1_optimizer_are_never_updated():
    """What explain's note claims, shown on the real stack: no update, no optimizer state."""
    import torch
    from mmcv.runner import build_optimizer
    from mmdet.models import build_backbone

    torch.manual_seed(0)
    backbone = build_backbone(dict(type="ResNet", depth=18, frozen_stages=2, norm_eval=True))
    optimizer = build_optimizer(backbone, dict(type="AdamW", lr=1e-2, weight_decay=0.05,
                                               paramwise_cfg=dict(custom_keys={"layer4": dict(lr_mult=0.1)})))
    backbone.train()
    frozen = {n: p.detach().clone() for n, p in backbone.named_parameters() if not p.requires_grad}
    trained = {n: p.detach().clone() for n, p in backbone.named_parameters() if p.requires_grad}
    held = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert frozen and all(id(p) in held for n, p in backbone.named_parameters() if n in frozen)
    for _ in range(2):
        optimizer.zero_grad()
        sum(o.mean() for o in backbone(torch.randn(2, 3, 64, 64))).backward()
        optimizer.step()
    for name, param in backbone.named_parameters():
        if name in frozen:
            assert param.grad is None and torch.equal(param, frozen[name]) and param not in optimizer.state
        else:
            assert param in optimizer.state and not torch.equal(param, trained[name])


def test_explain_on_mmdet3d_rc6_shipped_mvxnet_matches_the_model_built_independently(cli):
    result = cli("explain", str(_mvxnet()), "--format", "json", "--device", "cpu")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["level"] == "model" and data["stack"] == "mmcv1"
    model, _ = _independent_model_and_optimizer(_mvxnet())
    expected = params_by_child(model)
    reported = {row["module"]: (row["params"], row["trainable_after_train"]) for row in data["modules"]}
    assert reported == expected
    assert reported["img_backbone"] == (RESNET50, 23_232_512)


def test_a_plugin_that_cannot_be_imported_falls_back_to_module_level_and_says_so(copy_fixture, cli):
    root = copy_fixture("seed_cmt")
    (root / "projects/mmdet3d_plugin/cmt_detector.py").write_text("import cmt_compiled_ops  # not installed\n")
    applied = cli("apply", "configs")
    assert applied.exit_code == 0, applied.output
    assert "not importable" in applied.output and "module level" in applied.output
    assert b"frozen_stages=4," in (root / BASE).read_bytes()


def _shipped_configs() -> list[Path]:
    import mmdet
    import mmdet3d

    found = []
    for package in (mmdet3d, mmdet):
        found += sorted((Path(package.__file__).parent / ".mim/configs").rglob("*.py"))
    return found


def test_resolver_equals_mmcv_config_on_every_shipped_config():
    """Our resolver gives mmcv.Config's values on the configs shipped with mmdet 2.28 / mmdet3d rc6."""
    from freezefix.config.resolve import ConfigError, NotAnalysable, Resolver

    configs = _shipped_configs()
    assert len(configs) > 500
    resolver, compared, unloadable = Resolver(), 0, []
    for path in configs:
        try:
            expected = stack_values(path)
        except Exception:  # noqa: BLE001 - mmcv itself cannot load it: we must say so too
            unloadable.append(path)
            with pytest.raises((ConfigError, NotAnalysable)):
                resolver.values(path)
            continue
        assert resolver.values(path) == expected, path
        compared += 1
    print(f"{compared} configs equal mmcv.Config's values; {len(unloadable)} unloadable by mmcv too")
    assert compared > 500


@pytest.mark.parametrize(
    ("schedule", "revived"),
    [
        ("dict(policy='CosineAnnealing', warmup='linear', warmup_iters=50, warmup_ratio=0.001, min_lr=1e-6)", True),
        ("dict(policy='CosineAnnealing', warmup='linear', warmup_iters=50, warmup_ratio=0.001, min_lr_ratio=1e-3)", False),
        ("dict(policy='OneCycle', max_lr=0.01)", True),
        ("dict(policy='step', step=[8, 11])", False),
    ],
)
def test_ff108_runs_mmcv1s_own_lr_updater_hook(tmp_path, cli, schedule, revived):
    config = tmp_path / "finetune.py"
    config.write_text(
        "model = dict(type='RetinaNet', backbone=dict(type='ResNet', depth=18, frozen_stages=-1))\n"
        "optimizer = dict(type='SGD', lr=0.01, paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=0.0)}))\n"
        f"lr_config = {schedule}\n"
        "runner = dict(type='EpochBasedRunner', max_epochs=12)\n"
    )
    result = cli("check", str(config), "--select", "FF108")
    assert (result.exit_code == 1) is revived, result.output
    if revived:
        assert "gives 0-lr groups lr up to" in result.stdout


# Every finding `check` makes on the old stack's shipped configs, each judged true (see below):
# (rule, the file it is reported in, line, the configs it is reported for).
JUDGED_OLD_STACK = [
    ("FF106", "deformable_detr/deformable_detr_r50_16x2_50e_coco.py", 167,
     ["deformable_detr/deformable_detr_twostage_refine_r50_16x2_50e_coco.py"]),
    ("FF106", "dyhead/atss_swin-l-p4-w12_fpn_dyhead_mstrain_2x_coco.py", 152,
     ["dyhead/atss_swin-l-p4-w12_fpn_dyhead_mstrain_2x_coco.py"]),
    ("FF106", "mask2former/mask2former_swin-b-p4-w12-384_lsj_8x2_50e_coco-panoptic.py", 42,
     ["mask2former/mask2former_swin-b-p4-w12-384-in21k_lsj_8x2_50e_coco-panoptic.py",
      "mask2former/mask2former_swin-b-p4-w12-384_lsj_8x2_50e_coco-panoptic.py",
      "mask2former/mask2former_swin-l-p4-w12-384-in21k_lsj_16x1_100e_coco-panoptic.py"]),
    ("FF106", "mask2former/mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco-panoptic.py", 37,
     ["mask2former/mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco-panoptic.py"]),
    ("FF106", "mask2former/mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco.py", 37,
     ["mask2former/mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco.py"]),
    ("FF106", "mask2former/mask2former_swin-t-p4-w7-224_lsj_8x2_50e_coco-panoptic.py", 62,
     ["mask2former/mask2former_swin-t-p4-w7-224_lsj_8x2_50e_coco-panoptic.py"]),
    ("FF106", "mask2former/mask2former_swin-t-p4-w7-224_lsj_8x2_50e_coco.py", 61,
     ["mask2former/mask2former_swin-t-p4-w7-224_lsj_8x2_50e_coco.py"]),
    ("FF106", "maskformer/maskformer_swin-l-p4-w12_mstrain_64x1_300e_coco.py", 38,
     ["maskformer/maskformer_swin-l-p4-w12_mstrain_64x1_300e_coco.py"]),
    ("FF106", "swin/mask_rcnn_swin-t-p4-w7_fpn_1x_coco.py", 37, ["swin/mask_rcnn_swin-t-p4-w7_fpn_1x_coco.py"]),
    ("FF106", "swin/mask_rcnn_swin-t-p4-w7_fpn_ms-crop-3x_coco.py", 86,
     ["swin/mask_rcnn_swin-s-p4-w7_fpn_fp16_ms-crop-3x_coco.py", "swin/mask_rcnn_swin-t-p4-w7_fpn_fp16_ms-crop-3x_coco.py",
      "swin/mask_rcnn_swin-t-p4-w7_fpn_ms-crop-3x_coco.py"]),
    ("FF113", "maskformer/maskformer_r50_mstrain_16x1_75e_coco.py", 222,
     ["maskformer/maskformer_swin-l-p4-w12_mstrain_64x1_300e_coco.py"]),
]


def test_check_over_every_shipped_config_of_the_old_stack():
    """755 configs of mmdet 2.28 / mmdet3d rc6: none fails to load, and exactly the findings judged
    true (``JUDGED_OLD_STACK``): dead 'absolute_pos_embed' / 'reference_points' keys (FF106) and
    MaskFormer's Swin-L norm decay (FF113); ImVoteNet, which freezes its image branch in its own code,
    judged on the whole detector.  Every offered fix, applied in memory, builds what the config built."""
    import mmdet
    import mmdet3d

    from freezefix.api import RunOptions, Session
    from freezefix.config.resolve import Resolver

    from ..conftest import fixes_that_change_what_builds

    roots = [Path(p.__file__).parent / ".mim/configs" for p in (mmdet3d, mmdet)]
    session = Session(roots, RunOptions())
    result = session.check()
    assert not result.errors and result.configs_checked > 700, result.errors

    def under_configs(path: Path) -> str:
        return "/".join(path.parts[path.parts.index("configs") + 1:])

    found = sorted((r.finding.code, under_configs(r.path), r.line, sorted(under_configs(c) for c in r.configs))
                   for r in result.findings)
    assert found == sorted(JUDGED_OLD_STACK)
    # ImVoteNet's freeze_img_branch=True is judged on the whole detector.  Left unjudged: where frozen
    # weights come from when a checkpoint is named beside the working directory (not there here), or
    # LAD's detector loads its teacher itself.
    local = {f"backbone.init_cfg Pretrained checkpoint={name!r}" for name in (
        "./mocov2_r50_800ep_pretrain.pth", "./swav_800ep_pretrain.pth.tar", "res2net50_v1b_26w_4s-3cf99910.pth")}
    unjudged = {what: why for what, why in result.unjudged}
    assert set(unjudged) == {*local, "teacher_backbone weights"}
    assert all("there is no such file; what it loads into frozen modules was not judged" in unjudged[s] for s in local)
    assert "the detector has teacher_ckpt=" in unjudged["teacher_backbone weights"]
    # MaskFormer's Swin-L sets norm_decay_mult=0.0, but its 'backbone' key takes the backbone's LayerNorm
    # params out of it: mmcv's constructor skips every other rule for a keyed parameter, as mmengine's does.
    ff113 = [r for r in result.findings if r.finding.code == "FF113"]
    assert "takes 112 params out of norm_decay_mult=0.0" in ff113[0].finding.message
    for reported in result.findings:
        if reported.finding.code == "FF113":
            continue
        values = Resolver().values(reported.configs[0])
        if "absolute_pos_embed" in reported.finding.message:  # Swin built without an absolute position embedding
            assert values["model"]["backbone"].get("use_abs_pos_embed", False) is False
        else:  # two-stage Deformable DETR has no reference_points layer
            assert "'reference_points'" in reported.finding.message and values["model"]["bbox_head"]["as_two_stage"]
    assert fixes_that_change_what_builds(session) == []


def test_freeze_policy_inserts_lr_mult_keys_that_the_real_mmcv1_optimizer_honours(copy_fixture, cli):
    """The seed's four-module freeze: new custom keys under mmcv 1.x `optimizer=`, checked by the gate
    against the optimizer mmcv.runner.build_optimizer builds from the rewritten config."""
    from freezefix.config.resolve import Resolver

    root = copy_fixture("seed_cmt")
    four = ("img_backbone", "pts_backbone", "pts_voxel_encoder", "pts_middle_encoder")
    result = cli("apply", "configs", "--freeze", ",".join(four))
    assert result.exit_code == 1, result.output  # FF105 remains: SECOND & co. have no norm_eval
    assert "5 fixed" in result.stderr
    output = " ".join(result.output.split())
    assert "pts_backbone (SECOND): 4,280,832 trainable params in blocks → 4,280,832" in output
    assert "trainable params at lr 0 or left out of the optimizer 0 → 4,280,832" in output
    values = Resolver().values(root / CHILD)
    keys = values["optimizer"]["paramwise_cfg"]["custom_keys"]
    assert {k: v["lr_mult"] for k, v in keys.items()} == {m: 0.0 for m in four}
    assert values["model"]["img_backbone"]["frozen_stages"] == 4
