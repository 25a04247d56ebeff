"""`freezefix bench` on the seed example, on CPU with a small input (slow: real model, real steps)."""

from __future__ import annotations

import json

import pytest

from .conftest import FIXTURES

pytestmark = pytest.mark.slow

LAYER4_CONVS = 14_942_208  # what frozen_stages=3 leaves trainable in the seed's ResNet50


def test_bench_seed_layer4_gradients_and_adamw_state_go_to_zero(cli, tmp_path):
    config = FIXTURES / "seed_cmt/configs/cmt/cmt_voxel0075_r50_finetune.py"
    png = tmp_path / "bench.png"
    result = cli("bench", str(config), "--device", "cpu", "--steps", "1", "--input-shape", "1,3,64,160",
                 "--format", "json", "--plot", str(png))
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    before, after = data["variants"]
    assert data["modules"] == ["img_backbone"] and data["dense"] == ["img_backbone", "img_neck"]
    assert before["trainable_params"] == LAYER4_CONVS and after["trainable_params"] == 0
    assert before["grad_bytes"] == LAYER4_CONVS * 4 and after["grad_bytes"] == 0
    # AdamW: exp_avg and exp_avg_sq (fp32) per parameter, plus a 4-byte step count for each of
    # layer4's 10 conv weights (3 blocks x 3 convs + the downsample conv; its BN is frozen by norm_cfg).
    assert before["optimizer_state_bytes"] == 2 * LAYER4_CONVS * 4 + 10 * 4
    assert after["optimizer_state_bytes"] == 0
    assert after["peak_bytes"] < before["peak_bytes"]
    assert before["frozen_bit_identical"] is True and after["frozen_bit_identical"] is True
    assert before["bn_stats_unchanged"] is True and after["bn_stats_unchanged"] is True
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_without_a_fix_says_so(cli, tmp_path):
    config = tmp_path / "clean.py"
    config.write_text("model = dict(type='RetinaNet', backbone=dict(type='mmdet.ResNet', depth=18, frozen_stages=4))\n"
                      "optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.01))\n")
    result = cli("bench", str(config), "--device", "cpu", "--steps", "1")
    assert result.exit_code == 2 and "nothing to compare" in " ".join(result.stdout.split())
