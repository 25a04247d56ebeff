"""`doctor` and `explain --format mmengine-log` on the mmcv 1.x stack (lane 2; skipped elsewhere)."""

from __future__ import annotations

import json
from importlib.metadata import version

import pytest

from freezefix.stacks import stack_name

from ..conftest import FIXTURES

pytestmark = pytest.mark.skipif(stack_name() != "mmcv1", reason="needs the mmcv 1.x stack (bash scripts/test_mmcv1.sh)")

SEED = FIXTURES / "seed_cmt"


def test_doctor_names_the_mmcv1_stack_and_imports_the_seed_plugin(cli):
    result = cli("doctor", str(SEED / "configs"), "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["stack"]["name"] == "mmcv1"
    for package in ("mmcv-full", "mmdet", "mmdet3d"):
        assert f"{package} {version(package)}" in data["stack"]["versions"]
    assert data["registries"]["mmdet"] == data["registries"]["mmdet3d"] == "ok"
    [plugin] = data["plugins"]
    assert plugin["module"] == "projects.mmdet3d_plugin" and plugin["error"] is None


def test_mmengine_log_format_is_refused_since_mmcv1_logs_no_such_lines(cli):
    result = cli("explain", str(SEED / "configs/cmt/cmt_voxel0075_r50_finetune.py"), "--format", "mmengine-log")
    assert result.exit_code == 2 and result.stdout == ""
    assert "logs no per-parameter lines" in " ".join(result.stderr.split())
