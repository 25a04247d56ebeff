"""A value written through a module-level variable (``img_backbone = dict(...)``, then
``model = dict(backbone=img_backbone)``): mmengine keeps the variable as a top-level key too, so one
edit changes two resolved keys.  The plan knows the alias and the write gate accepts exactly both;
a variable that feeds a third place is never edited behind the plan's back.
"""

from __future__ import annotations


import pytest

from freezefix.api import RunOptions, fix_paths
from freezefix.stacks import stack_name

from .conftest import stack_values

pytestmark = [pytest.mark.slow, pytest.mark.skipif(stack_name() != "mmengine", reason="mmengine's loader is the oracle")]

BACKBONE = ("img_backbone = dict(type='mmdet.ResNet', depth=50, num_stages=4, out_indices=(3, ), "
            "frozen_stages=3, norm_eval=True)  # frozen: stages 0-3\n")
OPTIM = ("optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.01),\n"
         "                     paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=0.0)}))\n")


def test_a_value_written_through_a_variable_is_fixed_with_its_alias(tmp_path):
    config = tmp_path / "alias.py"
    config.write_text(BACKBONE + "model = dict(type='RetinaNet', backbone=img_backbone)\n" + OPTIM)
    before = stack_values(config)
    result = fix_paths([tmp_path], RunOptions(select=("FF101",), cache_dir=None))
    assert [r.status for r in result.findings] == ["fixed"], [r.status for r in result.findings]
    assert config.read_text() == BACKBONE.replace("frozen_stages=3", "frozen_stages=4") + (
        "model = dict(type='RetinaNet', backbone=img_backbone)\n" + OPTIM)
    after = stack_values(config)
    before["model"]["backbone"]["frozen_stages"] = before["img_backbone"]["frozen_stages"] = 4
    assert after == before


def test_a_variable_feeding_a_place_no_finding_asked_for_is_left_alone(tmp_path):
    config = tmp_path / "shared.py"
    text = (BACKBONE + "model = dict(type='RetinaNet', backbone=img_backbone)\n"
            "teacher = dict(type='RetinaNet', backbone=img_backbone)  # a distillation teacher\n" + OPTIM)
    config.write_text(text)
    result = fix_paths([tmp_path], RunOptions(select=("FF101",), cache_dir=None))
    assert config.read_text() == text
    assert [r.status for r in result.findings] == [
        "skipped: editing shared.py would also change teacher.backbone.frozen_stages, which no fix asked for"]
