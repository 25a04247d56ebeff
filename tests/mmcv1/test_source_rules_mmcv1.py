"""FF111 and FF114 under the mmcv 1.x stack (mmcv-full 1.7.0, mmdet 2.28.2): the rebinding trap in
the era most BEV repos still train in, and FF114 the other way round: mmcv's runner builds the
optimizer from ``optimizer=`` and schedules from ``lr_config``, so an mmengine ``optim_wrapper`` /
``param_scheduler`` left in such a config does nothing.
"""

from __future__ import annotations

import pytest

from freezefix.api import RunOptions, check_paths
from freezefix.stacks import stack_name

from ..conftest import FIXTURES

pytestmark = pytest.mark.skipif(stack_name() != "mmcv1", reason="needs the mmcv 1.x stack (bash scripts/test_mmcv1.sh)")

MIXED = """\
model = dict(type='RetinaNet', backbone=dict(type='ResNet', depth=18, frozen_stages=-1))
optimizer = dict(type='AdamW', lr=2e-4, weight_decay=0.01)
lr_config = dict(policy='step', step=[8, 11])
# added while trying the 3.x way, never read by the mmcv 1.x runner
optim_wrapper = dict(optimizer=optimizer, paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=0.0)}))
param_scheduler = [dict(type='MultiStepLR', milestones=[8, 11])]
runner = dict(type='EpochBasedRunner', max_epochs=12)
"""


def test_mmengine_settings_in_an_mmcv1_config_are_reported(tmp_path):
    config = tmp_path / "mixed.py"
    config.write_text(MIXED)
    result = check_paths([config], RunOptions(select=("FF114",), cache_dir=None))
    found = {r.line: r for r in result.findings}
    assert set(found) == {5, 6}
    assert found[5].finding.message.startswith(
        "optim_wrapper.paramwise_cfg (custom_keys {'backbone': {'lr_mult': 0.0}}) is never read: the mmcv 1.x "
        "runner builds the optimizer from `optimizer` only, which has no paramwise_cfg")
    assert found[5].fix_kind == "unsafe"
    assert "`param_scheduler` is never read: the mmcv 1.x runner schedules the lr from `lr_config`" in (
        found[6].finding.message)


def test_the_rebinding_trap_is_found_in_the_mmcv1_era(tmp_path):
    result = check_paths([FIXTURES / "rebind" / "configs" / "legacy"], RunOptions(select=("FF111",), cache_dir=None))
    [reported] = result.findings
    assert reported.line == 4
    assert "paramwise_cfg.custom_keys.img_backbone.lr_mult=0.0 never take effect" in reported.finding.message
