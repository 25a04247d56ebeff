"""FreezeAuditHook inside REAL mmengine Runners (CPU): the seed's trap measured in a training run.

Every run trains a few iterations of mmdet's real ResNet-50 (or SwinTransformer) behind a small head
on random images, with the optimizer mmengine's own constructor builds from the config.  Expected
numbers are counted here from the model and the optimizer, independently of freezefix.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from freezefix.stacks import stack_name

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(stack_name() != "mmengine", reason="needs the mmengine stack (scripts/setup_venv.sh)"),
]

ROOT = Path(__file__).resolve().parent.parent
LAYER4 = 14_942_208  # ResNet50's layer4: what frozen_stages=3 leaves trainable


def _config(tmp_path: Path, *, frozen_stages=3, norm_eval=True, lr_mult=0.0, strict=False, iterations=3,
            max_iters=3, scheduler=None, accumulative_counts=1) -> Path:
    """A config file as a user writes it: custom_imports brings the hook (and our small model) in."""
    text = f"""\
custom_imports = dict(imports=['freezefix.hooks', 'tests.audit_models'], allow_failed_imports=False)
model = dict(
    type='FreezeAuditPooledRegressor',
    # The seed's backbone: BatchNorm affine parameters frozen (norm_cfg), ResNet-50's own freeze.
    backbone=dict(type='mmdet.ResNet', depth=50, frozen_stages={frozen_stages}, norm_eval={norm_eval},
                  norm_cfg=dict(type='BN', requires_grad=False)))
optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.01),
    accumulative_counts={accumulative_counts},
    paramwise_cfg=dict(custom_keys={{'backbone': dict(lr_mult={lr_mult})}}))
param_scheduler = {scheduler!r}
train_dataloader = dict(
    dataset=dict(type='FreezeAuditRandomImages', length=8, size=64),
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'), batch_size=2, num_workers=0)
train_cfg = dict(by_epoch=False, max_iters={max_iters})
default_hooks = dict(checkpoint=None, logger=dict(type='LoggerHook', interval=1))
custom_hooks = [dict(type='FreezeAuditHook', strict={strict}, iterations={iterations})]
work_dir = {str(tmp_path / 'work')!r}
# Runners of one second share a logger (and its log file) unless their experiment names differ.
experiment_name = {tmp_path.name!r}
randomness = dict(seed=0)
"""
    path = tmp_path / "audit_cfg.py"
    path.write_text(text)
    return path


def _runner(config: Path):
    from mmengine.config import Config
    from mmengine.runner import Runner

    sys.path.insert(0, str(ROOT))  # custom_imports names tests.audit_models
    runner = Runner.from_cfg(Config.fromfile(str(config)))
    # The Runner initialises weights once, inside train(): done here so that tests can compare
    # weights from before train() with those after.
    runner.model.init_weights()
    # The run fine-tunes from a checkpoint (these very weights), as real runs do: its load_from.
    import torch

    torch.save({"state_dict": runner.model.state_dict()}, config.parent / "init.pth")
    runner._load_from = str(config.parent / "init.pth")
    return runner


def _load_as_the_runner(model) -> None:
    """What a runner's load_from does, for the tests that drive the hook without one."""
    from mmengine.runner.checkpoint import load_state_dict

    load_state_dict(model, model.state_dict())


def _audit(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "work" / "freeze_audit.json").read_text())


def _module(report: dict, name: str) -> dict:
    return next(m for m in report["modules"] if m["module"] == name)


def _state_bytes(optimizer, params) -> int:
    import torch

    return sum(t.numel() * t.element_size() for p in params for t in optimizer.state[p].values() if torch.is_tensor(t))


def test_seed_trap_layer4_computes_gradients_at_lr_0(tmp_path, caplog):
    runner = _runner(_config(tmp_path))
    runner.train()
    model = runner.model
    layer4 = [p for p in model.backbone.layer4.parameters() if p.requires_grad]
    assert sum(p.numel() for p in layer4) == LAYER4
    report = _audit(tmp_path)
    backbone = _module(report, "backbone")
    assert backbone["zero_lr"] == LAYER4  # frozen stages are not in mmengine's optimizer at all
    assert backbone["zero_lr_grads"] == LAYER4 and backbone["zero_lr_grad_children"] == ["layer4"]
    assert backbone["zero_lr_grad_bytes"] == LAYER4 * 4
    # AdamW keeps two moments and a step count for each of them, lr 0 or not: read off the optimizer.
    assert backbone["zero_lr_state_bytes"] == _state_bytes(runner.optim_wrapper.optimizer, layer4)
    assert backbone["zero_lr_state_bytes"] >= 2 * LAYER4 * 4
    assert backbone["bn_training"] == 0 and backbone["bn_total"] == 53  # norm_eval=True
    assert backbone["lr"] == [{"lr": 0.0, "weight_decay": 0.01, "params": LAYER4}]
    assert _module(report, "head")["lr"] == [{"lr": 1e-4, "weight_decay": 0.01, "params": 2049}]
    codes = [p["code"] for p in report["problems"]]
    assert codes == ["FF101"]
    message = report["problems"][0]["message"]
    assert "14,942,208 params with lr 0 received gradients (layer4" in message
    assert "model.backbone.frozen_stages (it is 3 now)" in message
    assert report["iterations"] == 3 and report["steps"] == 3 and report["ddp"] is None
    assert report["version"] == 1 and report["rank"] == 0
    # The same table is in the runner's log file (rank 0).
    log = next((tmp_path / "work").rglob("*.log")).read_text()
    assert "freezefix FreezeAuditHook: 3 iterations" in log and "FF101 partial-freeze-zero-lr: backbone:" in log
    assert "59,768,832" in log


def test_full_freeze_reports_no_gradient_at_lr_0(tmp_path):
    runner = _runner(_config(tmp_path, frozen_stages=4))
    runner.train()
    report = _audit(tmp_path)
    backbone = _module(report, "backbone")
    assert backbone["trainable"] == 0 and backbone["zero_lr_grads"] == 0 and backbone["zero_lr_state_bytes"] == 0
    assert report["problems"] == []
    assert backbone["bn_moved"] == 0 and backbone["meant_frozen"]


def test_strict_stops_before_the_first_step_and_no_weight_changes(tmp_path):
    from freezefix.hooks import FreezeAuditError

    runner = _runner(_config(tmp_path, strict=True))
    before = {name: p.detach().clone() for name, p in runner.model.named_parameters()}
    with pytest.raises(FreezeAuditError, match=r"FF101 partial-freeze-zero-lr: backbone: 14,942,208 params"):
        runner.train()
    after = dict(runner.model.named_parameters())
    assert all(before[name].equal(after[name].detach()) for name in before)
    assert not runner.optim_wrapper.optimizer.state  # no step ran: AdamW allocated nothing
    assert _audit(tmp_path)["strict"] is True  # the report was written before stopping


def test_bn_statistics_moving_in_a_lr_0_module(tmp_path):
    runner = _runner(_config(tmp_path, frozen_stages=-1, norm_eval=False))
    runner.train()
    report = _audit(tmp_path)
    backbone = _module(report, "backbone")
    import torch

    bn_layers = [m for m in runner.model.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert backbone["meant_frozen"] and backbone["bn_moved"] == len(bn_layers) == 53
    assert backbone["bn_training"] == 53
    ff105 = [p for p in report["problems"] if p["code"] == "FF105"]
    assert len(ff105) == 1 and "set model.backbone.norm_eval=True (it is False now)" in ff105[0]["message"]
    assert "FF101" in [p["code"] for p in report["problems"]]  # every backbone param computes gradients


def test_scheduler_reviving_a_zero_lr(tmp_path):
    scheduler = [dict(type="CosineAnnealingLR", T_max=3, eta_min=1e-5, by_epoch=False)]
    runner = _runner(_config(tmp_path, scheduler=scheduler))
    layer4_before = [p.detach().clone() for p in runner.model.backbone.layer4.parameters()]
    runner.train()
    report = _audit(tmp_path)
    ff108 = [p for p in report["problems"] if p["code"] == "FF108"]
    assert any("is configured with lr 0 but has lr" in p["message"] for p in ff108)
    moved = sum(p.numel() for p, b in zip(runner.model.backbone.layer4.parameters(), layer4_before)
                if not p.detach().equal(b))
    assert moved > 0 and _module(report, "backbone")["zero_lr_changed"] == moved
    assert any("params with lr 0 changed value" in p["message"] for p in ff108)


def test_no_scheduler_keeps_zero_lr_weights_still(tmp_path):
    runner = _runner(_config(tmp_path))
    runner.train()
    assert _module(_audit(tmp_path), "backbone")["zero_lr_changed"] == 0


def test_gradient_accumulation_waits_for_the_first_step(tmp_path):
    runner = _runner(_config(tmp_path, accumulative_counts=2, iterations=1, max_iters=4))
    runner.train()
    report = _audit(tmp_path)
    assert report["steps"] == 1 and report["iterations"] == 2  # the window ran on to the first step
    assert _module(report, "backbone")["zero_lr_grads"] == LAYER4


def test_audit_failure_never_stops_training(tmp_path, monkeypatch):
    from freezefix.hooks.audit import FreezeAudit

    def broken(self, *args):
        raise ValueError("simulated bug in the audit")

    monkeypatch.setattr(FreezeAudit, "iteration_starts", broken)
    runner = _runner(_config(tmp_path))
    runner.train()  # completes
    assert runner.iter == 3
    log = next((tmp_path / "work").rglob("*.log")).read_text()
    assert "the audit failed at before_train_iter and is switched off; training goes on" in log
    assert not (tmp_path / "work" / "freeze_audit.json").exists()


def test_hook_without_an_optimizer_and_without_batchnorm(tmp_path, caplog):
    """A runner with no optimizer (an evaluation-style use) and a Swin backbone (no BatchNorm)."""
    from freezefix.hooks import MmengineFreezeAuditHook
    from tests.audit_models import PooledRegressor

    model = PooledRegressor(backbone=dict(type="mmdet.SwinTransformer", embed_dims=32, depths=(1, 1), num_heads=(1, 2),
                                          strides=(4, 2), out_indices=(1,), frozen_stages=1), head_in=64)
    runner = SimpleNamespace(model=model, optim_wrapper=None, iter=0, work_dir=str(tmp_path),
                             logger=logging.getLogger("audit-test"))
    hook = MmengineFreezeAuditHook(iterations=1)
    with caplog.at_level(logging.INFO, logger="audit-test"):
        hook.before_run(runner)
        _load_as_the_runner(model)
        model.train()
        hook.before_train_iter(runner, 0)
        hook.after_train_iter(runner, 0)
    report = json.loads((tmp_path / "freeze_audit.json").read_text())
    assert "the runner has no optimizer" in " ".join(report["notes"])
    backbone = _module(report, "backbone")
    assert backbone["bn_total"] == 0 and backbone["frozen_since_wrap"] > 0  # Swin freezes in train()
    assert report["problems"] == []  # not wrapped in DDP: a note, not a problem
    assert any("under DDP" in note for note in report["notes"])
    assert "freezefix FreezeAuditHook" in caplog.text


def test_ddp_two_processes_name_params_frozen_after_wrapping(tmp_path):
    """Two gloo processes on localhost; mmdet's Swin freezes its first stage only in train()."""
    out = tmp_path / "ddp"
    done = subprocess.run([sys.executable, "-m", "tests.ddp_audit_worker", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((out / "work" / "freeze_audit.json").read_text())
    assert report["world_size"] == 2 and report["rank"] == 0
    assert report["ddp"] == {"find_unused_parameters": False, "static_graph": False}
    backbone = _module(report, "backbone")
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    # The frozen count is what the worker counted on the model: trainable at wrap, frozen after train().
    assert backbone["frozen_since_wrap"] == ranks[0]["frozen_after_wrap"] > 0
    assert backbone["frozen_since_wrap_children"] == ["patch_embed", "stages.0"]
    ff109 = [p for p in report["problems"] if p["code"] == "FF109"]
    assert len(ff109) == 1 and "set find_unused_parameters=True" in ff109[0]["message"]
    # Every rank audited (strict must stop all of them) and saw the same; only rank 0 wrote the file.
    assert ranks[0]["codes"] == ranks[1]["codes"] == ["FF109"]
    # What FF109 predicts really happens at the second iteration, on both ranks.
    assert all("Expected to have finished reduction" in r["training_error"] for r in ranks)


def _namespace_runner(model, optimizer, tmp_path):
    from mmengine.optim import OptimWrapper

    return SimpleNamespace(model=model, optim_wrapper=OptimWrapper(optimizer) if optimizer else None, iter=0,
                           work_dir=str(tmp_path), logger=logging.getLogger("audit-test"))


def _small_frozen_pair():
    """A conv whose group has lr 0 (a tensor, as torch allows) and a trainable linear layer."""
    import torch

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(), torch.nn.LazyLinear(1))
    model(torch.randn(2, 3, 8, 8))  # materialise the lazy layer
    optimizer = torch.optim.SGD([{"params": model[0].parameters(), "lr": torch.tensor(0.0)},
                                 {"params": [*model[1].parameters(), *model[3].parameters()]}], lr=0.1)
    return model, optimizer


def _one_iteration(hook, runner, model, optimizer):
    import torch

    hook.before_run(runner)
    _load_as_the_runner(model)
    model.train()
    hook.before_train_iter(runner, 0)
    optimizer.zero_grad()
    model(torch.randn(2, 3, 8, 8)).sum().backward()
    optimizer.step()
    hook.after_train_iter(runner, 0)


def test_strict_raises_its_own_error_even_with_a_tensor_lr(tmp_path):
    from freezefix.hooks import FreezeAuditError, MmengineFreezeAuditHook

    model, optimizer = _small_frozen_pair()
    before = [p.detach().clone() for p in model.parameters()]
    hook = MmengineFreezeAuditHook(strict=True, iterations=1)
    with pytest.raises(FreezeAuditError, match="FF101 partial-freeze-zero-lr: 0: 112 params with lr 0"):
        _one_iteration(hook, _namespace_runner(model, optimizer, tmp_path), model, optimizer)
    assert all(b.equal(p.detach()) for b, p in zip(before, model.parameters()))
    report = json.loads((tmp_path / "freeze_audit.json").read_text())  # a tensor lr serialised as a number
    assert {"lr": 0.0, "weight_decay": 0, "params": 112} in _module(report, "0")["lr"]


def test_a_failure_inside_the_optimizer_step_never_reaches_training(tmp_path, monkeypatch, caplog):
    from freezefix.hooks import MmengineFreezeAuditHook
    from freezefix.hooks.training_state import TrainingState

    def broken(self, iteration):
        raise RuntimeError("simulated bug while measuring gradients")

    monkeypatch.setattr(TrainingState, "measure_first_gradients", broken)
    model, optimizer = _small_frozen_pair()
    hook = MmengineFreezeAuditHook(strict=True, iterations=1)
    with caplog.at_level(logging.WARNING, logger="audit-test"):
        _one_iteration(hook, _namespace_runner(model, optimizer, tmp_path), model, optimizer)  # no raise
    assert "the audit failed at the optimizer step and is switched off; training goes on" in caplog.text
    assert not optimizer._optimizer_step_pre_hooks and not optimizer._optimizer_step_post_hooks
    optimizer.step()  # the hooks are gone: later steps are untouched


def test_bn_statistics_moved_by_another_hook_after_the_step_are_not_a_drift(tmp_path):
    """Only the forward may move them: an EMA-style hook that touches a frozen module's buffers after
    the optimizer step (mmdet's MeanTeacherHook does, for its teacher) is not the config's doing."""
    from mmengine.hooks import Hook
    from mmengine.registry import HOOKS

    @HOOKS.register_module(name="FreezeAuditTestBufferNudge", force=True)
    class BufferNudge(Hook):
        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            for layer in runner.model.backbone.modules():
                if hasattr(layer, "running_mean") and layer.running_mean is not None:
                    layer.running_mean.add_(1e-3)

    config = _config(tmp_path, frozen_stages=4)
    config.write_text(config.read_text().replace(
        "custom_hooks = [", "custom_hooks = [dict(type='FreezeAuditTestBufferNudge'), "))
    runner = _runner(config)
    runner.train()
    report = _audit(tmp_path)
    assert report["problems"] == [] and _module(report, "backbone")["bn_moved"] == 0


# A small ResNet-18 behind the head, frozen whole: where its weights come from is all that matters here.
R18 = "dict(type='mmdet.ResNet', depth=18, base_channels=8, frozen_stages=4, norm_eval=True{init})"


def _weights_runner(tmp_path: Path, *, init: str = "", load_from: str | None = None, strict: bool = False):
    """A Runner left to do its own weight steps (init_weights(), then load_from) after the hook's before_run."""
    from mmengine.config import Config
    from mmengine.runner import Runner

    tmp_path.mkdir(parents=True, exist_ok=True)
    config = _config(tmp_path, strict=strict, iterations=1, max_iters=1)
    text = config.read_text()
    start = text.index("backbone=dict(")
    end = text.index("))\n", start) + 1
    text = text[:start] + "backbone=" + R18.format(init=init) + ", head_in=64" + text[end:]
    text += f"load_from = {load_from!r}\n"
    config.write_text(text)
    sys.path.insert(0, str(ROOT))
    return Runner.from_cfg(Config.fromfile(str(config)))


def _r18_checkpoint(path: Path, prefix: str, drop: str = "") -> Path:
    from freezefix.rules.base import Checkpoint
    from freezefix.testing import write_checkpoint

    write_checkpoint(path, Checkpoint(str(path), {"type": "mmdet.ResNet", "depth": 18, "base_channels": 8},
                                      prefix=prefix, drop=(drop,) if drop else ()))
    return path


def test_a_frozen_backbone_nothing_loads_is_ff115_and_strict_stops_before_the_first_step(tmp_path):
    from freezefix.hooks import FreezeAuditError

    runner = _weights_runner(tmp_path, strict=True)
    with pytest.raises(FreezeAuditError, match="FF115 frozen-without-weights: backbone: nothing loaded any weights"):
        runner.train()
    report = _audit(tmp_path)
    backbone = _module(report, "backbone")
    tensors = sum(1 for _ in runner.model.backbone.parameters())
    assert backbone["frozen_at_init"] == tensors + 2 * 20  # every param tensor, 20 BatchNorm layers' statistics
    assert f"{tensors} of its {tensors} frozen param tensors and 20 BatchNorm layers' statistics" in \
        report["problems"][0]["message"]


def test_the_runners_own_loads_are_what_counts(tmp_path):
    """load_from with the detector's keys fills the backbone; a Pretrained init_cfg inside init_weights()
    does too; a checkpoint without layer4 leaves exactly layer4's tensors at init (FF116)."""
    import torch

    full = _r18_checkpoint(tmp_path / "det.pth", prefix="backbone.")
    runner = _weights_runner(tmp_path / "a", load_from=str(full))
    runner.train()
    assert _audit(tmp_path / "a")["problems"] == []
    own = _r18_checkpoint(tmp_path / "r18.pth", prefix="")
    runner = _weights_runner(tmp_path / "b", init=f", init_cfg=dict(type='Pretrained', checkpoint={str(own)!r})")
    runner.train()
    assert _audit(tmp_path / "b")["problems"] == []
    partial = _r18_checkpoint(tmp_path / "no_layer4.pth", prefix="backbone.", drop="layer4.")
    runner = _weights_runner(tmp_path / "c", load_from=str(partial))
    runner.train()
    report = _audit(tmp_path / "c")
    [problem] = report["problems"]
    layer4 = [n for n, _ in runner.model.backbone.named_parameters() if n.startswith("layer4.")]
    norms = [m for m in runner.model.backbone.layer4.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert problem["code"] == "FF116" and problem["module"] == "backbone"
    assert f"left {len(layer4)} of its" in problem["message"]
    assert f"and {len(norms)} BatchNorm layers' statistics at their init" in problem["message"]
    assert "(the first: backbone.layer4.0.conv1.weight)" in problem["message"]
