"""Where frozen weights come from (FF115, FF116, explain's "weights from"), on a BEV fixture repo
whose checkpoints the test writes from the real classes of the installed stack, as training runs and
users save them: the model's own checkpoint, a monocular detector's, ImageNet weights as a bare
state dict.  Runs on both stacks (each has its era's configs)."""

from __future__ import annotations

import pytest
import torch

from freezefix.api import RunOptions, check_paths
from freezefix.explain import explain
from freezefix.stacks import stack_name
from freezefix.testing import write_checkpoint
from freezefix.rules.base import Checkpoint

pytestmark = pytest.mark.slow

R18 = {"type": "mmdet.ResNet", "depth": 18, "base_channels": 8, "out_indices": (2, 3)}


@pytest.fixture
def repo(copy_fixture):
    root = copy_fixture("frozen_weights")
    write_checkpoint(root / "ckpts/bev_r18.pth", Checkpoint("", R18, prefix="img_backbone."))
    write_checkpoint(root / "ckpts/mono_r18_det.pth", Checkpoint("", R18, prefix="backbone."))
    write_checkpoint(root / "ckpts/r18_imagenet.pth", Checkpoint("", R18, nest=None))
    return root / ("configs" if stack_name() == "mmengine" else "configs_mmcv1")


def _resnet_params(depth: int = 18) -> int:
    from freezefix.class_probe import build_module, clean_kwargs
    from freezefix.classes import find_class

    cls, scope = find_class("mmdet.ResNet", None)
    return sum(p.numel() for p in build_module(cls, scope, clean_kwargs(dict(R18, depth=depth))).parameters())


def test_findings_are_exactly_the_frozen_tensors_left_at_init(repo):
    result = check_paths([repo], RunOptions(cache_dir=None, select=("FF115", "FF116")))
    assert not result.errors, result.errors
    found = sorted((r.path.name, r.finding.code) for r in result.findings)
    assert found == [("bev_r18.py", "FF115"), ("deeper_backbone.py", "FF116"), ("finetune_from_mono.py", "FF116")]
    by_name = {r.path.name: r for r in result.findings}
    scratch = by_name["bev_r18.py"]
    assert [p.name for p in scratch.configs] == ["frozen_from_scratch.py"]
    assert f"all {_resnet_params():,} of its params are frozen (frozen_stages=4" in scratch.finding.message
    mono = by_name["finetune_from_mono.py"].finding.message
    assert f"leaves all {_resnet_params():,} frozen params" in mono
    assert f"(read from {repo.parent / 'ckpts/mono_r18_det.pth'})" in mono  # relative: from the working directory
    assert ("init_cfg=dict(type='Pretrained', checkpoint='ckpts/mono_r18_det.pth', prefix='backbone.') on img_backbone "
            "loads them") in mono
    deeper = by_name["deeper_backbone.py"].finding.message
    # ResNet-34 has 1 + 2 + 4 + 1 more BasicBlocks than ResNet-18 (3, 4, 6, 3 against 2, 2, 2, 2), with
    # 2 BatchNorm layers each and the same shapes as the blocks before them
    assert "its BatchNorm statistics are frozen (norm_eval=True" in deeper
    assert "leaves 16 of the 36 frozen BatchNorm layers' statistics at init" in deeper
    [(what, why)] = [(w, y) for w, y in result.unjudged if "weights" in w]
    assert what == "img_backbone weights" and "load_img_from='ckpts/r18_imagenet.pth'" in why
    assert [p.name for p in result.unjudged[(what, why)]] == ["plugin_loader.py"]


def test_the_stacks_own_loader_agrees_on_what_the_clean_configs_load(repo):
    """What freezefix counts as loaded is what the stack's own loader puts in the frozen module."""
    for name in ("finetune_bev.py", "imagenet_init.py") + (("detector_pretrained.py",) if stack_name() == "mmcv1" else ()):
        explanation = explain(repo / name, RunOptions(cache_dir=None))
        assert explanation.error is None, explanation.error
        row = next(r for r in explanation.modules if r["module"] == "img_backbone")
        weights = row["weights_from"]
        assert weights["loaded_params"] == weights["params"] == _resnet_params(), (name, weights)
        assert weights["text"].endswith(f"({_resnet_params():,} / {_resnet_params():,} params)")
        assert _loaded_by_the_stack(repo / name) == _resnet_params()


def test_explain_says_random_init_and_what_it_trusts(repo):
    scratch = explain(repo / "frozen_from_scratch.py", RunOptions(cache_dir=None))
    rows = {r["module"]: r["weights_from"]["text"] for r in scratch.modules if "weights_from" in r}
    assert rows["img_backbone"] == "random init" and rows["pts_backbone"] == "random init"
    assert [f["code"] for f in scratch.findings] == ["FF115"]


def _loaded_by_the_stack(config) -> int:
    """The oracle: build the detector with the installed stack (its init_cfg and pretrained= kept),
    run the runner's weight steps (init_weights(), then load_from) and count the image backbone's
    params that now hold the checkpoint's values."""
    from freezefix.stacks import current

    stack = current()
    values = stack.load_config(str(config))
    model = stack.build_model(values["model"], values, "mmdet3d")
    model.init_weights()
    if values.get("load_from"):
        if stack_name() == "mmengine":
            from mmengine.runner import load_checkpoint
        else:
            from mmcv.runner import load_checkpoint
        load_checkpoint(model, values["load_from"], map_location="cpu", strict=False)
    written = torch.load(config.parent.parent / "ckpts/r18_imagenet.pth")
    return sum(p.numel() for n, p in model.img_backbone.named_parameters() if torch.equal(p, written[n]))


def test_the_prefix_fix_is_proved_value_by_value_and_leaves_nothing_to_report(repo, cli):
    config = repo / "finetune_from_mono.py"
    result = cli("apply", str(config), "--unsafe-fixes", "--select", "FF115,FF116")
    assert result.exit_code == 0, result.output
    assert "img_backbone: init_weights() loads all 120 tensors its checkpoint holds for it" in result.stderr
    assert "init_cfg=dict(type='Pretrained', checkpoint='ckpts/mono_r18_det.pth', prefix='backbone.')" \
        in config.read_text()
    assert check_paths([config], RunOptions(cache_dir=None, select=("FF115", "FF116"))).findings == []
    assert _loaded_by_the_stack(config) == _resnet_params()  # the stack's own runner steps agree


def test_a_fix_that_loads_nothing_is_refused_and_nothing_is_written(repo, cli, monkeypatch):
    from freezefix.rules import ff116_checkpoint_misses_frozen_weights as ff116

    real = ff116.other_prefix
    # A planner bug: the prefix of another module of the checkpoint.
    monkeypatch.setattr(ff116, "other_prefix", lambda seen: ("neck.", real(seen)[1]))
    config = repo / "finetune_from_mono.py"
    before = config.read_text()
    result = cli("apply", str(config), "--unsafe-fixes", "--select", "FF115,FF116")
    assert result.exit_code == 1
    # the stack's own PretrainedInit refuses the prefix: the gate says so and writes nothing
    assert f"verification FAILED: {repo.name}/finetune_from_mono.py" in result.output
    assert "img_backbone could not be built and initialised on the CPU" in result.output
    assert "neck. is not in the pretrained model" in result.output
    assert config.read_text() == before
