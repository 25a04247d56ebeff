"""freezefix installed the way a user installs it into a training environment: as a built wheel.

The wheel is built from this checkout, installed with ``--no-deps`` into a fresh venv that already has
the lane's OpenMMLab stack, and the seed example runs end to end with that venv's ``freezefix``, in a
copy of the example: nothing comes from the source tree.  Giving the fresh venv the stack without
copying gigabytes: a ``.pth`` file naming this interpreter's site-packages.  Lines of a ``.pth`` file
only add directories to ``sys.path``; the ``.pth`` files inside those directories are not processed, so
this venv's editable install of freezefix does not reach the fresh one (asserted below).
"""

from __future__ import annotations

import email.parser
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from .conftest import FIXTURES, snapshot

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
BASE = "configs/_base_/models/cmt_voxel0075_r50.py"
OPENMMLAB = {"torch", "torchvision", "mmengine", "mmcv", "mmcv-full", "mmdet", "mmdet3d", "mmsegmentation",
             "mmpretrain", "mmcls"}


def _run(args: list, cwd: Path, env: dict, expect: int) -> subprocess.CompletedProcess:
    done = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == expect, f"{args}: exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def _build_wheel(work: Path, env: dict) -> Path:
    """``pip wheel`` of a copy of the checkout (the build writes build/ and *.egg-info next to its source)."""
    source = work / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    shutil.copytree(REPO / "freezefix", source / "freezefix", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
          source, "-w", work / "dist"], work, env, 0)
    [wheel] = (work / "dist").glob("freezefix-*.whl")
    return wheel


def _requires(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        [name] = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        metadata = email.parser.Parser().parsestr(archive.read(name).decode())
    return metadata.get_all("Requires-Dist") or []


def test_the_built_wheel_runs_the_seed_example_from_a_fresh_venv_with_the_lanes_stack(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env.update(FREEZEFIX_CACHE_DIR=str(tmp_path / "cache"), PIP_DISABLE_PIP_VERSION_CHECK="1")
    wheel = _build_wheel(tmp_path, env)

    # What pip would pull: freezefix's own few packages; the stack only as extras, torch never.
    requires = _requires(wheel)
    plain = {re.match(r"[A-Za-z0-9._-]+", r).group(0).lower() for r in requires if "extra ==" not in r}
    assert plain == {"libcst", "click", "rich", "tomli"}
    named = {re.match(r"[A-Za-z0-9._-]+", r).group(0).lower() for r in requires}
    assert "torch" not in named and named & OPENMMLAB <= {"mmengine", "mmcv", "mmcv-full", "mmdet", "mmdet3d"}

    fresh = tmp_path / "fresh"
    _run([sys.executable, "-m", "venv", fresh], tmp_path, env, 0)
    python = fresh / "bin" / "python"
    site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                     tmp_path, env, 0).stdout.strip())
    lane = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
    (site / "lane_stack.pth").write_text("".join(f"{path}\n" for path in lane))

    seed = tmp_path / "seed"
    shutil.copytree(FIXTURES / "seed_cmt", seed)
    stack = _run([python, "-c", "import torch, mmengine, mmdet3d; import freezefix"], seed, env, 1)
    assert "No module named 'freezefix'" in stack.stderr  # the stack is there, freezefix is not (yet)

    _run([python, "-m", "pip", "install", "--no-deps", "--no-index", "-q", wheel], tmp_path, env, 0)
    where = _run([python, "-c", "import freezefix; print(freezefix.__file__)"], seed, env, 0).stdout.strip()
    assert Path(where).is_relative_to(site), where

    freezefix = fresh / "bin" / "freezefix"
    before = snapshot(seed)
    diff = _run([freezefix, "apply", "configs", "--dry-run"], seed, env, 1).stdout
    assert diff.startswith(f"--- a/{BASE}\n+++ b/{BASE}\n")
    changed = [line for line in diff.splitlines() if line[:1] in "+-" and line[:3] not in ("+++", "---")]
    assert changed == [
        "-        frozen_stages=3,  # 冻结 stage 0,1,2,3（全部）",
        "+        frozen_stages=4,  # 冻结 stage 0,1,2,3（全部）",
    ]
    assert snapshot(seed) == before

    applied = _run([freezefix, "apply", "configs"], seed, env, 0)
    assert "verified on meta: configs/cmt/cmt_voxel0075_r50_finetune.py" in applied.stderr
    assert (seed / BASE).read_bytes() == (FIXTURES / "seed_cmt" / BASE).read_bytes().replace(
        b"frozen_stages=3,", b"frozen_stages=4,")
    _run([freezefix, "check", "configs"], seed, env, 0)

    doctor = json.loads(_run([freezefix, "doctor", "configs", "--format", "json"], seed, env, 0).stdout)
    assert Path(doctor["freezefix"]["location"]).is_relative_to(site)
    assert doctor["python"]["executable"] == str(python)
    assert doctor["caches"]["dir"] == str(tmp_path / "cache") and doctor["caches"]["probe_files"] >= 1
    [plugin] = doctor["plugins"]
    assert plugin["error"] is None and Path(plugin["location"]).is_relative_to(seed)
