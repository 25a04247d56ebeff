"""FF112 and FF109 against real distributed training: two gloo processes on localhost train mmdet's
Swin (frozen in ``train()``, ``with_cp=True``) under each DDP setting, and what the rules say about
the matching config is what happens.

- ``find_unused_parameters=True``: FF112 → DDP stops at the first backward ("ready only once");
- neither flag: FF109, whose fix is ``static_graph`` here (not the flag, which would be FF112) → DDP
  stops at the second iteration ("finished reduction");
- ``static_graph=True`` (FF109's fix, applied): no finding → three iterations train.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from freezefix.api import RunOptions, Session, check_paths
from freezefix.stacks import stack_name

from .ddp_checkpoint_worker import SWIN

pytestmark = [pytest.mark.slow, pytest.mark.skipif(stack_name() != "mmengine", reason="mmengine's DDP wrapper")]

ROOT = Path(__file__).resolve().parent.parent
ARGS = ", ".join(f"{k}={v!r}" for k, v in SWIN.items() if k != "type")
CONFIG = f"model = dict(type='RetinaNet', backbone=dict(type='mmdet.SwinTransformer', {ARGS}))\n"
SELECT = RunOptions(select=("FF109", "FF112"), cache_dir=None)


def _train(tmp_path: Path, setting: str) -> list[dict]:
    out = tmp_path / setting
    done = subprocess.run([sys.executable, "-m", "tests.ddp_checkpoint_worker", str(out), setting], cwd=ROOT,
                          capture_output=True, text=True, timeout=240)
    reports = [out / f"rank{r}.json" for r in (0, 1)]
    # Each rank writes what its training did before it tears the process group down. A rank can
    # still abort after that (seen once on CI: "terminate called without an active exception", a
    # torch thread destroyed at exit), which says nothing about the training asserted here; a rank
    # that dies before its report fails the test.
    assert all(r.exists() for r in reports), done.stdout[-3000:] + done.stderr[-3000:]
    return [json.loads(r.read_text()) for r in reports]


def _codes(path: Path) -> list[str]:
    return [r.finding.code for r in check_paths([path], SELECT).findings]


def test_checkpointing_under_find_unused_parameters_is_reported_and_really_stops(tmp_path):
    config = tmp_path / "find_unused.py"
    config.write_text(CONFIG + "find_unused_parameters = True\n")
    assert _codes(config) == ["FF112"]
    ranks = _train(tmp_path, "find_unused")
    assert all(r["iterations"] == 0 and "Expected to mark a variable ready only once" in r["training_error"]
               for r in ranks), ranks


def test_ff109_fixes_with_static_graph_and_the_fixed_setting_really_trains(tmp_path):
    config = tmp_path / "plain.py"
    config.write_text(CONFIG)
    assert _codes(config) == ["FF109"]
    ranks = _train(tmp_path, "plain")
    assert all(r["iterations"] == 1 and "Expected to have finished reduction" in r["training_error"] for r in ranks)

    result = Session([config], RunOptions(select=("FF109", "FF112"), cache_dir=None, unsafe_fixes=True)).fix(dry_run=False)
    assert [r.status for r in result.findings] == ["fixed"]
    assert config.read_text().endswith(
        "model_wrapper_cfg = dict(type='MMDistributedDataParallel', broadcast_buffers=False, static_graph=True)\n")
    assert _codes(config) == []
    ranks = _train(tmp_path, "static_graph")
    assert all(r == {"iterations": 3, "training_error": None} for r in ranks), ranks
