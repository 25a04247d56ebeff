"""The precision shapes on the mmcv 1.x stack (``tests/fixtures/precision/mmcv1``, mmcv-1.x era
configs): a DetectoRS backbone that cannot be built, a dropped ``auto_scale_lr.enable=False``
(mmdet 2.x's ``train_detector`` scales only when it is truthy) and an optimizer the stack cannot
build give no finding and say why; their twins keep their true findings, and the gate refuses a
fix on the module it cannot build.  (FF114's read ``total_epochs`` has no mmcv 1.x shape: that
runner reads ``total_epochs`` itself.)
"""

from __future__ import annotations

import pytest

from freezefix.api import RunOptions, Session, check_paths
from freezefix.rules.base import Change, Fix
from freezefix.rules.ff103_frozen_stages_out_of_range import FrozenStagesOutOfRange
from freezefix.stacks import stack_name

from ..conftest import fixes_that_change_what_builds, found_and_unjudged, snapshot

pytestmark = pytest.mark.skipif(stack_name() != "mmcv1", reason="needs the mmcv 1.x stack (bash scripts/test_mmcv1.sh)")

FIXTURE = "precision/mmcv1"


def test_only_true_findings_and_the_rest_is_named_as_not_judged(copy_fixture):
    root = copy_fixture(FIXTURE) / "configs"
    result = check_paths([root], RunOptions(cache_dir=None))
    assert not result.errors, result.errors
    found, unjudged = found_and_unjudged(result, root)
    assert found == [
        ("_base_/retinanet_detectors.py", "FF101", ("detectors_partial_freeze.py",)),
        ("detectors_past_range.py", "FF103", ("detectors_past_range.py",)),
        ("scale_lr_enable_lost.py", "FF111", ("scale_lr_enable_lost.py",)),
    ]
    assert set(unjudged) == {"backbone (DetectoRS_ResNet)", "optimizer (AdamW)"}
    why, configs = unjudged["backbone (DetectoRS_ResNet)"]
    assert configs == ["detectors_cannot_build.py"]
    # mmcv 1.x's build_from_cfg puts the class name before the message
    assert why == ("cannot be built: AssertionError: DetectoRS_ResNet: conv_cfg must be None for DCN; nothing "
                   "about its freeze was judged")
    why, configs = unjudged["optimizer (AdamW)"]
    assert configs == ["adamw_over_sgd.py"] and "unexpected keyword argument 'momentum'" in why


def test_every_offered_fix_builds_what_its_config_built(copy_fixture):
    root = copy_fixture(FIXTURE) / "configs"
    session = Session([root], RunOptions(cache_dir=None, unsafe_fixes=True))
    session.check()
    assert sum(1 for found in session.per_config.values() for f in found if f.fix) == 3
    assert fixes_that_change_what_builds(session) == []


def test_the_gate_refuses_a_fix_on_a_module_it_cannot_build(copy_fixture, cli, monkeypatch):
    root = copy_fixture(FIXTURE)

    def old_ff103(self, view, options):  # the false finding, with its safe fix that unfreezes the stem
        change = Change(("model", "backbone", "frozen_stages"), -1)
        yield self.finding("injected", change.key, Fix((change,), safe=True), "backbone")

    monkeypatch.setattr(FrozenStagesOutOfRange, "check", old_ff103)
    before = snapshot(root)
    result = cli("apply", "configs/detectors_cannot_build.py", "--select", "FF103")
    assert result.exit_code == 1, result.output
    assert "verification FAILED: configs/detectors_cannot_build.py" in result.stderr
    assert "problem: backbone could not be built before the rewrite (" in result.stderr
    assert "conv_cfg must be None for DCN): nothing about it is verified" in result.stderr
    assert snapshot(root) == before


def test_apply_writes_the_true_fixes_only(copy_fixture, cli):
    root = copy_fixture(FIXTURE)
    before = snapshot(root)
    result = cli("apply", "configs", "--unsafe-fixes")
    assert result.exit_code == 0, result.output
    changed = {name for name, data in snapshot(root).items() if before[name] != data}
    assert changed == {"configs/detectors_past_range.py", "configs/detectors_partial_freeze.py",
                       "configs/scale_lr_enable_lost.py"}
    assert "verified on meta: configs/detectors_past_range.py" in result.stderr
