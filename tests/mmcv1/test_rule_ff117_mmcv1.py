"""FF117 shadowed-zero-lr on the mmcv 1.x stack (``tests/fixtures/shadowed_zero_lr_mmcv1``): a repo
base in mmdet 2.x's Swin style (decay-only keys for the position tables and norms) shared by a
fixed-feature probe, the same probe frozen by the class's own ``frozen_stages``, and a fine-tune.
"""

from __future__ import annotations

import pytest

from freezefix.api import RunOptions, Session, check_paths
from freezefix.stacks import stack_name

from ..conftest import assert_changed_exactly_by_plan, stack_values

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(stack_name() != "mmcv1", reason="needs the mmcv 1.x stack (bash scripts/test_mmcv1.sh)")]

FIXTURE = "shadowed_zero_lr_mmcv1"


def test_only_the_probe_whose_zero_lr_is_shadowed_is_reported_and_fixed_in_its_own_file(copy_fixture):
    root = copy_fixture(FIXTURE) / "configs"
    configs = sorted(p for p in root.rglob("*.py") if "_base_" not in p.parts)
    result = check_paths([root], RunOptions(select=("FF107", "FF117"), cache_dir=None))
    assert not result.errors, result.errors
    found = {(r.finding.code, tuple(p.name for p in r.configs)): r.finding.message for r in result.findings}
    assert set(found) == {("FF117", ("swin_fixed_features.py",)), ("FF107", ("swin_finetune.py",))}
    assert ("custom key 'backbone' gives lr 0, but longer keys match first and train 23,322 of its params: "
            "'relative_position_bias_table' (23,322 params at lr 0.0001)") in found["FF117", ("swin_fixed_features.py",)]

    before = {p: stack_values(p) for p in configs}
    base = (root / "_base_" / "retinanet_swin_t.py").read_bytes()
    session = Session([root], RunOptions(select=("FF117",), cache_dir=None, unsafe_fixes=True))
    fixed = session.fix(dry_run=False)
    assert not fixed.errors, fixed.errors
    assert [(r.path.name, r.status) for r in fixed.findings] == [("swin_fixed_features.py", "fixed")]
    assert all(v.ok for v in fixed.verdicts.values()), fixed.verdicts
    assert_changed_exactly_by_plan(configs, before, session)
    assert (root / "_base_" / "retinanet_swin_t.py").read_bytes() == base  # the fine-tune shares it
    after = stack_values(root / "swin_fixed_features.py")
    assert after["model"]["backbone"]["frozen_stages"] == 4 and after["find_unused_parameters"] is True
    assert not check_paths([root], RunOptions(select=("FF117",), cache_dir=None)).findings
