"""Freezes in a plugin detector's own code on the mmcv 1.x stack (``tests/fixtures/hidden_freeze``,
its mmcv-1.x era configs): judged on the whole detector as mmcv 1.x's train scripts leave it; there
``init_weights()`` runs before DDP and the optimizer are built, so a freeze in it is no FF109."""

from __future__ import annotations

import pytest

from freezefix.api import RunOptions, Session, check_paths
from freezefix.stacks import stack_name

from ..test_hidden_freeze import JUDGED, judged_freezes

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(stack_name() != "mmcv1", reason="needs the mmcv 1.x stack (bash scripts/test_mmcv1.sh)")]

MMCV1_JUDGED = {**JUDGED, "init_weights_freeze.py": {"FF105"}}


def test_freezes_in_a_plugin_detectors_code_are_judged_era_exact_and_fixed(copy_fixture):
    root = copy_fixture("hidden_freeze")
    configs = root / "configs_mmcv1"
    result = check_paths([configs], RunOptions(cache_dir=None))
    assert not result.errors, result.errors
    assert dict(result.unjudged) == {}
    assert judged_freezes(result, configs) == MMCV1_JUDGED

    fixed = Session([configs], RunOptions(cache_dir=None, unsafe_fixes=True)).fix(dry_run=False)
    assert not fixed.errors, fixed.errors
    assert all(v.ok for v in fixed.verdicts.values()), fixed.verdicts
    after = check_paths([configs], RunOptions(cache_dir=None))
    assert judged_freezes(after, configs) == {name: codes & {"FF118"} for name, codes in MMCV1_JUDGED.items()}
