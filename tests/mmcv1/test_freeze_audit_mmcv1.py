"""FreezeAuditHook inside mmcv 1.x's real runners (EpochBasedRunner, IterBasedRunner) on the CPU.

The seed's trap as CMT-era repos train it: mmdet 2.x's ResNet-50 with ``frozen_stages=3`` and
``custom_keys={'backbone': dict(lr_mult=0.0)}``, the optimizer from ``mmcv.runner.build_optimizer``,
backward and step in mmcv's OptimizerHook.  Expected numbers are counted here, not by freezefix.
"""

from __future__ import annotations

import json
import logging

import pytest

from freezefix.stacks import stack_name

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(stack_name() != "mmcv1", reason="needs the mmcv 1.x stack (bash scripts/test_mmcv1.sh)"),
]

LAYER4 = 14_942_208
RESNET50 = 23_508_032


def _train(tmp_path, runner_type: str, *, frozen_stages=3, strict=False, lr_config=None, caplog=None):
    import torch
    from mmcv.runner import EpochBasedRunner, IterBasedRunner, build_optimizer
    from torch.utils.data import DataLoader

    import freezefix.hooks  # noqa: F401 - what a config's custom_imports does
    from tests.audit_models import RandomImages, mmcv1_model_class

    torch.manual_seed(0)
    model = mmcv1_model_class()(backbone=dict(type="ResNet", depth=50, frozen_stages=frozen_stages, norm_eval=True,
                                                       norm_cfg=dict(type="BN", requires_grad=False)))
    optimizer = build_optimizer(model, dict(type="AdamW", lr=1e-4, weight_decay=0.01,
                                            paramwise_cfg=dict(custom_keys={"backbone": dict(lr_mult=0.0)})))
    loader = DataLoader(RandomImages(length=6, size=64), batch_size=2)
    logger = logging.getLogger("freezefix-mmcv1-audit")
    logger.setLevel(logging.INFO)
    common = dict(optimizer=optimizer, work_dir=str(tmp_path / "work"), logger=logger)
    if runner_type == "iter":
        runner = IterBasedRunner(model, max_iters=3, **common)
        workflow = [("train", 3)]
    else:
        runner = EpochBasedRunner(model, max_epochs=1, **common)  # one epoch = 3 batches
        workflow = [("train", 1)]
    runner.register_training_hooks(lr_config=lr_config or dict(policy="fixed"), optimizer_config=dict(grad_clip=None))
    runner.register_custom_hooks([dict(type="FreezeAuditHook", strict=strict, iterations=3)])
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    return runner, model, optimizer, before, lambda: runner.run([loader], workflow)


def _audit(tmp_path) -> dict:
    return json.loads((tmp_path / "work" / "freeze_audit.json").read_text())


def _backbone(report: dict) -> dict:
    return next(m for m in report["modules"] if m["module"] == "backbone")


@pytest.mark.parametrize("runner_type", ["iter", "epoch"])
def test_seed_trap_under_mmcv1_runners(tmp_path, runner_type, caplog):
    import torch

    runner, model, optimizer, _, run = _train(tmp_path, runner_type)
    with caplog.at_level(logging.INFO, logger="freezefix-mmcv1-audit"):
        run()
    layer4 = [p for p in model.backbone.layer4.parameters() if p.requires_grad]
    assert sum(p.numel() for p in layer4) == LAYER4
    report = _audit(tmp_path)
    backbone = _backbone(report)
    assert backbone["zero_lr_grads"] == LAYER4 and backbone["zero_lr_grad_children"] == ["layer4"]
    assert backbone["zero_lr_grad_bytes"] == 4 * LAYER4
    state = sum(t.numel() * t.element_size() for p in layer4 for t in optimizer.state[p].values()
                if torch.is_tensor(t))
    assert backbone["zero_lr_state_bytes"] == state >= 2 * 4 * LAYER4
    # mmcv 1.x keeps the frozen stem..layer3 in the optimizer, in groups at the base lr.
    assert backbone["held_frozen"] == RESNET50 - LAYER4
    assert [p["code"] for p in report["problems"]] == ["FF101"]
    assert "model.backbone.frozen_stages (it is 3 now)" in report["problems"][0]["message"]
    assert report["steps"] == 3 and report["iterations"] == 3
    assert "FF101 partial-freeze-zero-lr: backbone: 14,942,208 params with lr 0 received gradients" in caplog.text


def test_full_freeze_under_mmcv1_is_clean(tmp_path):
    _, _, _, _, run = _train(tmp_path, "iter", frozen_stages=4)
    run()
    report = _audit(tmp_path)
    assert report["problems"] == [] and _backbone(report)["zero_lr_grads"] == 0
    assert _backbone(report)["held_frozen"] == RESNET50
    # mmcv 1.x's train scripts load weights before the runner calls any hook: said, not guessed
    assert any("where the frozen weights came from (FF115, FF116) was not audited" in n for n in report["notes"])


def test_strict_stops_mmcv1_before_the_optimizer_step(tmp_path):
    from freezefix.hooks import FreezeAuditError

    _, model, optimizer, before, run = _train(tmp_path, "iter", strict=True)
    with pytest.raises(FreezeAuditError, match="FF101 partial-freeze-zero-lr"):
        run()
    assert all(before[name].equal(p.detach()) for name, p in model.named_parameters())
    assert not optimizer.state


def test_mmcv1_cosine_min_lr_revives_zero_lr(tmp_path):
    lr_config = dict(policy="CosineAnnealing", min_lr=1e-5, by_epoch=False)
    _, _, _, _, run = _train(tmp_path, "iter", lr_config=lr_config)
    run()
    report = _audit(tmp_path)
    messages = [p["message"] for p in report["problems"] if p["code"] == "FF108"]
    assert any("configured with lr 0 but has lr" in m for m in messages)
    assert _backbone(report)["zero_lr_changed"] > 0
