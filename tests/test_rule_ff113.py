"""FF113 custom-key-drops-decay-rules, counted on the real classes by the stack's own optimizer
constructor: the seed's ResNet-50 (frozen_stages=1) behind ``custom_keys={'backbone': ...}`` with
``norm_decay_mult=0.0``, and an FPN neck (convolutions with biases) under ``bias_lr_mult=2.0``.
"""

from __future__ import annotations

import pytest

from freezefix.api import RunOptions, check_paths

pytestmark = pytest.mark.slow

MODEL = """\
model = dict(
    type='RetinaNet',
    backbone=dict(type='mmdet.ResNet', depth=50, frozen_stages=1, norm_eval=True),
    neck=dict(type='mmdet.FPN', in_channels=[256, 512, 1024, 2048], out_channels=32, num_outs=5),
)
"""
OPTIM = ("optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=0.0001),\n"
         "                     paramwise_cfg=dict({rules}, custom_keys={keys}))\n")


def _messages(tmp_path, rules: str, keys: str) -> list[str]:
    config = tmp_path / "c.py"
    config.write_text(MODEL + OPTIM.format(rules=rules, keys=keys))
    return [r.finding.message for r in check_paths([config], RunOptions(select=("FF113",), cache_dir=None)).findings]


def test_norm_weights_of_a_keyed_backbone_lose_norm_decay_mult(tmp_path):
    # layer2-4 train (frozen_stages=1): 84 BatchNorm weights and biases, all matched by 'backbone'
    [message] = _messages(tmp_path, "norm_decay_mult=0.0", "{'backbone': dict(lr_mult=0.1)}")
    assert message.startswith("backbone: custom key 'backbone' takes 84 params out of norm_decay_mult=0.0")
    assert "gets weight decay 0.0001 instead of 0" in message


def test_biases_of_a_keyed_neck_lose_bias_lr_mult(tmp_path):
    [message] = _messages(tmp_path, "bias_lr_mult=2.0", "{'neck': dict(lr_mult=0.5)}")
    # FPN: 4 lateral and 4 output convolutions, each with a bias: lr 0.01 * 0.5, not 0.01 * 2.0 * 0.5
    assert message.startswith("neck: custom key 'neck' takes 8 params out of bias_lr_mult=2.0")
    assert "gets lr 0.005 instead of 0.01" in message


def test_a_key_that_restates_the_rule_or_stops_the_params_is_no_finding(tmp_path):
    assert _messages(tmp_path, "norm_decay_mult=0.0", "{'backbone': dict(lr_mult=0.0)}") == []
    assert _messages(tmp_path, "norm_decay_mult=0.0", "{'backbone': dict(lr_mult=0.1, decay_mult=0.0)}") == []


def test_a_narrower_key_takes_exactly_its_params_back(tmp_path):
    # longest key first: 'backbone.layer2.0.bn1' (weight and bias) restates the rule, the other 82 still drop it
    [message] = _messages(tmp_path, "norm_decay_mult=0.0",
                          "{'backbone': dict(lr_mult=0.1), 'backbone.layer2.0.bn1': dict(lr_mult=0.1, decay_mult=0.0)}")
    assert message.startswith("backbone: custom key 'backbone' takes 82 params out of norm_decay_mult=0.0")
