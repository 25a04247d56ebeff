"""Reading a checkpoint's keys without its tensors (freezefix.checkpoints), checked against the
installed stack's own loader run on the real class: what it loads, what it skips, what it cannot read."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from freezefix.checkpoints import loaded_by, prefix_holding, read_checkpoint, resolve_checkpoint
from freezefix.class_probe import build_module, clean_kwargs
from freezefix.classes import find_class
from freezefix.stacks import stack_name
from freezefix.weights import WeightSource

R18 = {"type": "mmdet.ResNet", "depth": 18, "base_channels": 8}


def _resnet() -> torch.nn.Module:
    cls, scope = find_class(R18["type"], None)
    return build_module(cls, scope, clean_kwargs(R18))


def _stack_load(model: torch.nn.Module, path: Path, prefix: str | None = None) -> None:
    """The installed stack's own PretrainedInit / load_checkpoint, as init_weights() runs it."""
    if stack_name() == "mmengine":
        from mmengine.model.weight_init import PretrainedInit
    else:
        from mmcv.cnn.utils.weight_init import PretrainedInit
    PretrainedInit(checkpoint=str(path), prefix=prefix)(model)


def _loaded_by_the_stack(path: Path, prefix: str | None = None) -> set[str]:
    """Which tensors of a fresh ResNet the stack's loader changes (each filled with a marker first)."""
    model = _resnet()
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.fill_(-7.0)
    _stack_load(model, path, prefix)
    return {n for n, t in model.state_dict().items() if t.is_floating_point() and not torch.all(t == -7.0)}


@pytest.mark.parametrize(("saved_as", "prefix"), [
    ("plain", None), ("state_dict", None), ("ddp", None), ("detector", "backbone."), ("detector", None),
    ("reshaped", None), ("model", None),
])
def test_what_freezefix_says_is_loaded_is_what_the_stacks_loader_loads(tmp_path, saved_as, prefix):
    state = {k: torch.randn(v.shape) if v.is_floating_point() else v for k, v in _resnet().state_dict().items()}
    if saved_as == "reshaped":
        state["conv1.weight"] = torch.randn(9, *state["conv1.weight"].shape[1:])
    data = {"plain": state, "state_dict": {"state_dict": state, "meta": {"epoch": 1}},
            "ddp": {"state_dict": {f"module.{k}": v for k, v in state.items()}},
            "detector": {"state_dict": {f"backbone.{k}": v for k, v in state.items()}},
            "reshaped": {"state_dict": state}, "model": {"model": state}}[saved_as]
    path = tmp_path / "ckpt.pth"
    torch.save(data, path)
    keys = read_checkpoint(path)
    assert keys.error is None
    wanted = {n: tuple(t.shape) for n, t in _resnet().state_dict().items() if t.is_floating_point()}
    source = WeightSource("init_cfg", "test", str(path), into="backbone", prefix=prefix)
    loaded, mismatched = loaded_by(source, keys, "backbone", wanted)
    assert loaded == _loaded_by_the_stack(path, prefix)
    assert (saved_as == "reshaped") == (mismatched == {"conv1.weight"})
    if saved_as == "model":
        assert loaded == set() and keys.nested_under == "model"
    if saved_as == "detector" and prefix is None:
        assert loaded == set() and prefix_holding(keys, wanted) == "backbone."


def test_the_legacy_format_which_cannot_be_mapped_is_read_too(tmp_path):
    path = tmp_path / "old.pth"
    torch.save({"state_dict": {"w": torch.zeros(3, 4)}}, path, _use_new_zipfile_serialization=False)
    assert read_checkpoint(path).shapes == {"w": (3, 4)}


def test_objects_weights_only_refuses_are_read_as_placeholders_and_never_run(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "ckpt.pth"
    torch.save({"state_dict": {"conv.weight": torch.zeros(2, 3)}, "meta": {"hook": _RunsOnLoad(str(marker))}}, path)
    with pytest.raises(Exception):
        torch.load(path, weights_only=True)  # torch refuses it: freezefix must still read it, safely
    keys = read_checkpoint(path)
    assert keys.error is None and keys.shapes == {"conv.weight": (2, 3)} and keys.placeholders >= 1
    assert not marker.exists()


def test_unreadable_files_say_why(tmp_path):
    assert read_checkpoint(tmp_path / "absent.pth").error == "there is no such file"
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    assert "could not read" in read_checkpoint(tmp_path / "junk.pth").error
    torch.save([torch.zeros(1)], tmp_path / "list.pth")
    assert "not a dict" in read_checkpoint(tmp_path / "list.pth").error


def test_a_checkpoint_that_is_not_there_costs_no_torch_import(tmp_path):
    # Shipped configs name checkpoints nobody downloaded; a warm check of them must not pay torch's import.
    script = ("import sys; from freezefix.checkpoints import read_checkpoint; "
              f"print(read_checkpoint(__import__('pathlib').Path({str(tmp_path / 'absent.pth')!r})).error); "
              "print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.split("\n")[:2] == ["there is no such file", "False"]


class _RunsOnLoad:
    """Unpickling this runs code (os.makedirs of a marker): exactly what a checkpoint reader must not do."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


def test_checkpoint_paths_are_found_where_the_stacks_local_loader_opens_them(tmp_path, monkeypatch):
    # Both stacks' load_from_local expand "~" before opening; anything else relative is opened from
    # the working directory, as tools/train.py runs.
    home, work = tmp_path / "home", tmp_path / "work"
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    assert resolve_checkpoint("~/ckpts/r50.pth") == home / "ckpts" / "r50.pth"
    assert resolve_checkpoint("ckpts/r50.pth") == work / "ckpts" / "r50.pth"
    assert resolve_checkpoint(str(tmp_path / "abs.pth")) == tmp_path / "abs.pth"
