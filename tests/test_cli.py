"""The command line end to end on the bundled fixture repos (real classes, real files)."""

from __future__ import annotations

import sys
import os
import subprocess
from pathlib import Path

import pytest

from .conftest import snapshot, stack_values

pytestmark = pytest.mark.slow

BASE = "configs/_base_/models/cmt_voxel0075_r50.py"
CHILD = "configs/cmt/cmt_voxel0075_r50_finetune.py"
FOUR = ("img_backbone", "pts_backbone", "pts_voxel_encoder", "pts_middle_encoder")


def test_seed_dry_run_shows_exactly_the_3_to_4_edit_in_the_owning_file(copy_fixture, cli):
    root = copy_fixture("seed_cmt")
    before = snapshot(root)
    result = cli("apply", "configs", "--dry-run")
    assert result.exit_code == 1
    diff = result.stdout
    assert diff.startswith(f"--- a/{BASE}\n+++ b/{BASE}\n")
    changed = [l for l in diff.splitlines() if l[:1] in "+-" and l[:3] not in ("+++", "---")]
    assert changed == [
        "-        frozen_stages=3,  # 冻结 stage 0,1,2,3（全部）",
        "+        frozen_stages=4,  # 冻结 stage 0,1,2,3（全部）",
    ]
    assert snapshot(root) == before, "--dry-run wrote nothing"
    # The patch is what `apply` would write: git accepts it.
    (root / "fix.patch").write_text(diff)
    subprocess.run(["git", "apply", "--check", "fix.patch"], cwd=root, check=True)


def test_seed_apply_then_check_is_clean_and_a_second_apply_changes_nothing(copy_fixture, cli):
    root = copy_fixture("seed_cmt")
    original = (root / BASE).read_bytes()
    result = cli("apply", "configs")
    assert result.exit_code == 0, result.output
    assert (root / BASE).read_bytes() == original.replace(b"frozen_stages=3,", b"frozen_stages=4,")
    assert result.stderr.count("FreezeAuditHook") == 1  # pointed at once, after a run that wrote
    check = cli("check", "configs")
    assert check.exit_code == 0, check.output
    after = snapshot(root)
    again = cli("apply", "configs")
    assert again.exit_code == 0 and snapshot(root) == after
    assert "FreezeAuditHook" not in again.stderr  # nothing written: nothing to confirm


def test_seed_check_reports_the_trap_where_it_is_written(copy_fixture, cli):
    copy_fixture("seed_cmt")
    result = cli("check", "configs")
    assert result.exit_code == 1
    line = result.stdout.splitlines()[0]
    assert line.startswith(f"{BASE}:14:23: FF101 [*] img_backbone: lr_mult=0.0")
    assert "14,942,208 params (layer4)" in line and "frozen_stages=4" in line


def test_freeze_policy_produces_the_seed_recommended_config(copy_fixture, cli):
    root = copy_fixture("seed_cmt")
    result = cli("apply", "configs", "--freeze", ",".join(FOUR))
    # Exit 1: what no config setting can fix remains (BatchNorm drift in the point-cloud modules).
    assert result.exit_code == 1, result.output
    assert "5 fixed" in result.stderr and result.stdout.count(" FF105 ") == 3
    values = stack_values(root / CHILD)
    model = values["model"]
    assert model["img_backbone"]["frozen_stages"] == 4 and model["img_backbone"]["norm_eval"] is True
    assert "frozen_stages" not in model["pts_backbone"]  # SECOND takes none
    keys = values["optimizer"]["paramwise_cfg"]["custom_keys"]
    assert {k: v["lr_mult"] for k, v in keys.items()} == {m: 0.0 for m in FOUR}
    text = (root / CHILD).read_text()
    assert "'img_backbone': dict(lr_mult=0.0),  # 图像主干不更新\n" in text  # comment stays on its line
    # What is left cannot be fixed in a config: the three point-cloud classes have no norm_eval, so
    # their BatchNorm statistics still drift under lr 0.  check says so, and offers no fix.
    check = cli("check", "configs", "--freeze", ",".join(FOUR))
    lines = check.stdout.splitlines()
    assert check.exit_code == 1 and len(lines) == 3
    for line, cls in zip(lines, ("HardVFE", "SparseEncoder", "SECOND"), strict=True):
        assert " FF105 " in line and f"{cls} has no norm_eval" in line and "[*]" not in line


def test_shared_base_is_left_alone_and_the_child_gets_an_override(copy_fixture, cli):
    root = copy_fixture("shared_base")
    base_before = (root / "configs/_base_/bevdet_r50.py").read_bytes()
    finetune_before = (root / "configs/finetune_backbone.py").read_bytes()
    result = cli("apply", "configs")
    assert result.exit_code == 0, result.output
    assert (root / "configs/_base_/bevdet_r50.py").read_bytes() == base_before
    assert (root / "configs/finetune_backbone.py").read_bytes() == finetune_before
    assert (root / "configs/frozen_backbone.py").read_text().endswith(
        "model = dict(img_backbone=dict(frozen_stages=4))\n"
    )
    assert stack_values(root / "configs/frozen_backbone.py")["model"]["img_backbone"]["frozen_stages"] == 4
    assert stack_values(root / "configs/finetune_backbone.py")["model"]["img_backbone"]["frozen_stages"] == 1


def test_shared_base_is_edited_when_every_child_wants_it(copy_fixture, cli):
    root = copy_fixture("shared_base")
    finetune = root / "configs/finetune_backbone.py"
    finetune.write_text(finetune.read_text().replace("lr_mult=0.1", "lr_mult=0.0"))
    result = cli("apply", "configs")
    assert result.exit_code == 0, result.output
    assert "frozen_stages=4, norm_eval=True" in (root / "configs/_base_/bevdet_r50.py").read_text()
    assert "model =" not in (root / "configs/frozen_backbone.py").read_text()


def _write(root: Path, name: str, text: str) -> Path:
    path = root / name
    path.write_text(text)
    return path


SECOND_CFG = """\
model = dict(
    type='MVXFasterRCNN',
    pts_backbone=dict(type='SECOND', in_channels=64, out_channels=[64, 128], layer_nums=[1, 1],
                      layer_strides=[2, 2], frozen_stages=4),
)
optimizer = dict(type='AdamW', lr=2e-4)
"""


def test_frozen_stages_on_second_is_ff104(tmp_path, monkeypatch, cli):
    monkeypatch.chdir(tmp_path)
    _write(tmp_path, "second.py", SECOND_CFG)
    result = cli("check", "second.py")
    assert result.exit_code == 1
    assert "FF104 [unsafe-fix] pts_backbone: SECOND does not accept frozen_stages" in result.stdout
    # Unsafe: not applied without --unsafe-fixes ...
    assert cli("apply", "second.py").exit_code == 1
    assert (tmp_path / "second.py").read_text() == SECOND_CFG
    # ... and with it: the argument goes, an lr_mult=0.0 key comes, under mmcv 1.x's optimizer=.
    fixed = cli("apply", "second.py", "--unsafe-fixes")
    # Exit 1: SECOND's BatchNorm statistics still drift under lr 0 (FF105), which no setting fixes.
    assert fixed.exit_code == 1 and "→ fixed" in fixed.stdout and " FF105 " in fixed.stdout
    text = (tmp_path / "second.py").read_text()
    assert "frozen_stages" not in text
    assert "optimizer = dict(type='AdamW', lr=2e-4, paramwise_cfg=dict(custom_keys={'pts_backbone': dict(lr_mult=0.0)}))" in text


def test_frozen_stages_5_on_resnet50_is_ff103_and_fixed_to_4(tmp_path, monkeypatch, cli):
    monkeypatch.chdir(tmp_path)
    _write(tmp_path, "r50.py", "model = dict(type='RetinaNet', backbone=dict(type='mmdet.ResNet', depth=50, frozen_stages=5))\n"
           "load_from = 'https://download.example.org/retinanet_r50.pth'\n")
    result = cli("check", "r50.py")
    assert result.exit_code == 1 and "FF103 [*] backbone: frozen_stages=5 is past the range" in result.stdout
    assert "(-1..4)" in result.stdout
    assert cli("apply", "r50.py").exit_code == 0
    assert "frozen_stages=4" in (tmp_path / "r50.py").read_text()


# A detector with a module that trains (the neck): a full freeze of the backbone leaves the optimizer
# something to hold, as in any real config (with paramwise_cfg, mmengine leaves frozen params out of it).
GOOD = "model = dict(type='RetinaNet', backbone=dict(type='mmdet.ResNet', depth=18, frozen_stages=3, norm_eval=True),\n" \
       "             neck=dict(type='mmdet.FPN', in_channels=[64, 128, 256, 512], out_channels=64, num_outs=4))\n" \
       "optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.01), paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=0.0)}))\n"


def test_bad_input_gives_per_file_errors_and_the_rest_is_still_processed(tmp_path, monkeypatch, cli):
    monkeypatch.chdir(tmp_path)
    _write(tmp_path, "a_syntax.py", "model = dict(\n")
    _write(tmp_path, "b_missing_base.py", "_base_ = './nowhere.py'\n")
    _write(tmp_path, "c_cycle1.py", "_base_ = './c_cycle2.py'\n")
    _write(tmp_path, "c_cycle2.py", "_base_ = './c_cycle1.py'\n")
    (tmp_path / "d_latin1.py").write_bytes("name = 'caf\xe9'\n".encode("latin-1"))
    (tmp_path / "e_dir.py").mkdir()
    good = _write(tmp_path, "z_good.py", GOOD)
    result = cli("apply", ".")
    assert result.exit_code == 2
    errors = {line.split(":")[0]: line for line in result.stderr.splitlines() if ": error: " in line}
    assert "syntax error at line 1" in errors["a_syntax.py"]
    assert "missing _base_ './nowhere.py'" in errors["b_missing_base.py"]
    assert "cyclic _base_" in errors["c_cycle1.py"] and "cyclic _base_" in errors["c_cycle2.py"]
    assert "not valid UTF-8" in errors["d_latin1.py"]
    # The good config was still fixed.
    assert "frozen_stages=4" in good.read_text()


def test_read_only_target_is_an_error_and_other_files_are_written(tmp_path, monkeypatch, cli):
    monkeypatch.chdir(tmp_path)
    locked = _write(tmp_path, "locked.py", GOOD)
    free = _write(tmp_path, "free.py", GOOD)
    locked.chmod(0o444)
    try:
        result = cli("apply", ".")
        assert result.exit_code == 2
        assert "locked.py: error: is read-only; not written" in result.stderr
        assert locked.read_text() == GOOD
        assert "frozen_stages=4" in free.read_text()
        assert oct(free.stat().st_mode & 0o777) == "0o644"
    finally:
        locked.chmod(0o644)


def test_file_changed_between_read_and_write_is_refused(tmp_path, monkeypatch):
    from freezefix.api import RunOptions, Session
    from freezefix.textio import atomic_write

    path = _write(tmp_path, "cfg.py", GOOD)
    session = Session([path], RunOptions())
    source = session.resolver.unit(path).source
    path.write_text(GOOD + "# edited meanwhile\n")
    with pytest.raises(Exception, match="changed on disk since it was read"):
        atomic_write(source, "x = 1\n")
    assert path.read_text().endswith("# edited meanwhile\n")


def test_rules_command_lists_and_documents(cli):
    listing = cli("rules")
    assert listing.exit_code == 0
    for code in ("FF101", "FF102", "FF103", "FF104", "FF105", "FF110"):
        assert code in listing.stdout
    doc = cli("rules", "FF101")
    assert doc.exit_code == 0 and "Fix safety" in doc.stdout and "partial-freeze-zero-lr" in doc.stdout
    assert cli("rules", "FF999").exit_code != 0


def test_module_entry_point(tmp_path):
    out = subprocess.run(
        [os.sys.executable, "-m", "freezefix", "rules"], capture_output=True, text=True, check=True
    )
    assert "FF101" in out.stdout


def test_installed_package_base_is_never_edited_the_config_overrides_it(tmp_path, monkeypatch, cli):
    monkeypatch.chdir(tmp_path)
    cfg = _write(
        tmp_path,
        "retina_probe.py",
        "_base_ = 'mmdet::_base_/models/retinanet_r50_fpn.py'\n\n"
        "model = dict(bbox_head=dict(num_classes=3))\n"
        "optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.01),\n"
        "                     paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=0.0)}))\n",
    )
    import mmdet

    installed = Path(mmdet.__file__).parent / ".mim/configs/_base_/models/retinanet_r50_fpn.py"
    before = installed.read_bytes()
    result = cli("apply", "retina_probe.py")
    assert result.exit_code == 0, result.output
    assert installed.read_bytes() == before
    assert "model = dict(bbox_head=dict(num_classes=3), backbone=dict(frozen_stages=4))\n" in cfg.read_text()


def test_base_outside_the_given_paths_is_not_edited(copy_fixture, cli):
    root = copy_fixture("seed_cmt")
    base_before = (root / BASE).read_bytes()
    result = cli("apply", "configs/cmt")
    assert result.exit_code == 0, result.output
    assert (root / BASE).read_bytes() == base_before
    assert (root / CHILD).read_text().endswith("model = dict(img_backbone=dict(frozen_stages=4))\n")


def test_no_placement_without_collateral_means_no_edit(tmp_path, monkeypatch, cli):
    # mid.py wants frozen_stages=4 (lr 0); leaf.py inherits mid.py but fine-tunes (lr 0.1).  Editing
    # base.py or overriding in mid.py would both change leaf.py: the fix is dropped, with the reason.
    monkeypatch.chdir(tmp_path)
    _write(tmp_path, "base.py", "model = dict(type='RetinaNet', backbone=dict(type='mmdet.ResNet', depth=18, frozen_stages=1))\n")
    _write(tmp_path, "mid.py", "_base_ = './base.py'\noptim_wrapper = dict(optimizer=dict(type='SGD', lr=0.01), "
           "paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=0.0)}))\n")
    _write(tmp_path, "leaf.py", "_base_ = './mid.py'\noptim_wrapper = dict(paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=0.1)}))\n")
    before = {p.name: p.read_bytes() for p in tmp_path.glob("*.py")}
    result = cli("apply", ".")
    assert result.exit_code == 1
    assert "FF101 [*]" in result.stdout and "skipped: editing mid.py would also change leaf.py (model.backbone.frozen_stages), which inherits it" in result.stdout
    assert {p.name: p.read_bytes() for p in tmp_path.glob("*.py")} == before


def test_symlink_loops_are_per_file_errors_and_never_followed(tmp_path, monkeypatch, cli):
    import os

    monkeypatch.chdir(tmp_path)
    good = _write(tmp_path, "good.py", GOOD)
    os.symlink("self.py", tmp_path / "self.py")  # a link to itself
    (tmp_path / "sub").mkdir()
    os.symlink("..", tmp_path / "sub" / "up")  # a directory loop: walking must not follow it
    result = cli("check", ".", "self.py")
    assert result.exit_code == 2
    assert "self.py: error: cannot read: Too many levels of symbolic links" in result.stderr
    assert "good.py" in result.stdout  # the good config was still checked (its FF101)
    assert good.read_text() == GOOD


def test_disk_full_on_write_keeps_the_original_and_no_temp_file(tmp_path, monkeypatch, cli):
    import errno

    import freezefix.textio

    monkeypatch.chdir(tmp_path)
    target = _write(tmp_path, "cfg.py", GOOD)

    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(freezefix.textio.os, "fsync", no_space)
    result = cli("apply", "cfg.py", "--no-verify")
    assert result.exit_code == 2
    assert "cfg.py: error: write failed, original kept: No space left on device" in result.stderr
    assert target.read_text() == GOOD
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cfg.py"]


def test_missing_plugin_import_falls_back_to_module_level(tmp_path, monkeypatch, cli):
    monkeypatch.chdir(tmp_path)
    cfg = _write(tmp_path, "plugin_cfg.py", "custom_imports = dict(imports=['not_installed_plugin'], allow_failed_imports=False)\n"
                 "model = dict(type='PluginDetector', backbone=dict(type='mmdet.ResNet', depth=18, frozen_stages=1))\n"
                 "load_from = 'https://download.example.org/plugin_detector.pth'\n"
                 "optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.01), "
                 "paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=0.0)}))\n")
    result = cli("apply", "plugin_cfg.py")
    assert result.exit_code == 0, result.output
    assert "verified at module level on meta: plugin_cfg.py" in result.stderr
    assert "custom_imports 'not_installed_plugin' not importable" in result.stderr
    assert "frozen_stages=4" in cfg.read_text()


def test_the_progress_bar_shows_only_for_long_runs_on_a_terminal(monkeypatch):
    from freezefix.cli import ProgressBar

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    with ProgressBar(True) as short:
        short(1, 10)
    assert short.bar is None
    with ProgressBar(False) as off:
        off(1, 500)
    assert off.bar is None
    with ProgressBar(True) as long:
        long(1, 500)
        long(2, 500)
        assert long.bar.tasks[0].total == 500 and long.bar.tasks[0].completed == 3
