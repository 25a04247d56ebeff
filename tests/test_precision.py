"""A finding is a promise: shapes of public configs that once gave false findings, each beside a
consistent twin that still gets its true one (``tests/fixtures/precision/mmengine``), and the write
gate refusing what it could not build.

- ``detectors_cannot_build.py``: DetectoRS with ConvAWS and DCN asserts at every ``frozen_stages``:
  no FF103 "past the range (-1..-1)" with a fix that unfreezes the stem; the could-not-judge note
  names the class and the exception.  Twins: ``detectors_past_range.py`` (a real FF103) and
  ``detectors_partial_freeze.py`` (a real FF101).
- ``epochs_read_here.py`` / ``epochs_in_parent.py`` + ``epochs_read_by_child.py``: a top-level
  ``total_epochs`` read as a variable is no FF114.  Twin: ``epochs_never_read.py``.
- ``scale_lr_default_lost.py``: a dropped ``auto_scale_lr.enable=False`` is what the Runner does
  anyway: no FF111.  Twin: ``scale_lr_enable_lost.py``.
- ``adamw_over_sgd.py``: an optimizer the stack cannot build is named in the could-not-judge note.
"""

from __future__ import annotations

import pytest

from freezefix.api import RunOptions, check_paths
from freezefix.rules.base import Change, Fix
from freezefix.rules.ff103_frozen_stages_out_of_range import FrozenStagesOutOfRange
from freezefix.stacks import stack_name

from .conftest import found_and_unjudged, snapshot

pytestmark = pytest.mark.skipif(stack_name() != "mmengine",
                                reason="the mmengine stack's fixtures (tests/mmcv1 has the others)")

FIXTURE = "precision/mmengine"
CANNOT_BUILD = "backbone (DetectoRS_ResNet)"


def test_only_true_findings_and_the_rest_is_named_as_not_judged(copy_fixture):
    root = copy_fixture(FIXTURE) / "configs"
    result = check_paths([root], RunOptions(cache_dir=None))
    assert not result.errors, result.errors
    found, unjudged = found_and_unjudged(result, root)
    assert found == [
        ("_base_/retinanet_detectors.py", "FF101", ("detectors_partial_freeze.py",)),
        ("detectors_past_range.py", "FF103", ("detectors_past_range.py",)),
        ("epochs_never_read.py", "FF114", ("epochs_never_read.py",)),
        ("scale_lr_enable_lost.py", "FF111", ("scale_lr_enable_lost.py",)),
    ]
    by_code = {r.finding.code: r for r in result.findings}
    assert "past the range of DetectoRS_ResNet (-1..4)" in by_code["FF103"].finding.message
    assert by_code["FF103"].finding.fix.changes == (Change(("model", "backbone", "frozen_stages"), 4),)
    assert "so enable=True never take effect" in by_code["FF111"].finding.message
    assert set(unjudged) == {CANNOT_BUILD, "optimizer (AdamW)"}
    why, configs = unjudged[CANNOT_BUILD]
    assert configs == ["detectors_cannot_build.py"]
    assert why == ("cannot be built: AssertionError: conv_cfg must be None for DCN; nothing about its freeze "
                   "was judged")
    why, configs = unjudged["optimizer (AdamW)"]
    assert configs == ["adamw_over_sgd.py"]
    assert "TypeError: AdamW.__init__() got an unexpected keyword argument 'momentum'" in why


def test_a_name_read_by_a_config_that_inherits_it_is_read_only_when_that_config_is_in_the_run(copy_fixture):
    root = copy_fixture(FIXTURE) / "configs"
    alone = check_paths([root / "epochs_in_parent.py"], RunOptions(cache_dir=None, select=("FF114",)))
    assert [r.finding.key for r in alone.findings] == [("total_epochs",)]
    together = check_paths([root / "epochs_in_parent.py", root / "epochs_read_by_child.py"],
                           RunOptions(cache_dir=None, select=("FF114",)))
    assert together.findings == []


@pytest.mark.slow
def test_apply_writes_the_true_fixes_only_and_proves_each(copy_fixture, cli):
    root = copy_fixture(FIXTURE)
    before = snapshot(root)
    result = cli("apply", "configs", "--unsafe-fixes")
    assert result.exit_code == 1, result.output  # FF114 on epochs_never_read.py has no fix
    changed = {name for name, data in snapshot(root).items() if before[name] != data}
    assert changed == {"configs/detectors_past_range.py", "configs/detectors_partial_freeze.py",
                       "configs/scale_lr_enable_lost.py"}
    assert "verified on meta: configs/detectors_past_range.py" in result.stderr
    # FF103 repairs the backbone's build: the gate accepts that it did not build before, and says so.
    assert ("the original model builds only at module level (backbone: AttributeError: 'DetectoRS_ResNet' object "
            "has no attribute 'layer5'); the rewritten one at model level") in result.stderr
    assert "frozen_stages=4" in (root / "configs" / "detectors_past_range.py").read_text()


def _offer(monkeypatch, change: Change, repairs: tuple[str, ...] = ()) -> None:
    """FF103 as it was: a finding with a safe fix on any config with a backbone (here, the bug the
    gate must catch on its own)."""
    def check(self, view, options):
        if "backbone" in view.modules:
            yield self.finding("injected", change.key, Fix((change,), safe=True, repairs=repairs), "backbone")

    monkeypatch.setattr(FrozenStagesOutOfRange, "check", check)


def _refused(root, cli, config: str) -> str:
    before = snapshot(root)
    result = cli("apply", f"configs/{config}", "--select", "FF103")
    assert result.exit_code == 1, result.output
    assert f"verification FAILED: configs/{config}" in result.stderr
    assert "→ skipped: verification failed" in result.stdout
    assert snapshot(root) == before
    return result.stderr


@pytest.mark.slow
def test_the_gate_refuses_a_fix_on_a_module_it_cannot_build(copy_fixture, cli, monkeypatch):
    """Module level: the detector cannot be built (its backbone asserts), its neck and head can.
    The rewrite of the backbone (the old FF103's frozen_stages=-1) is never "verified"."""
    root = copy_fixture(FIXTURE)
    _offer(monkeypatch, Change(("model", "backbone", "frozen_stages"), -1))
    stderr = _refused(root, cli, "detectors_cannot_build.py")
    assert ("problem: backbone could not be built before the rewrite (AssertionError: conv_cfg must be None for "
            "DCN): nothing about it is verified") in stderr
    assert "problem: backbone could not be built after the rewrite" in stderr


@pytest.mark.slow
def test_the_gate_refuses_a_fix_that_breaks_the_whole_model(copy_fixture, cli, monkeypatch):
    """Whole-model level: the detector builds before; the rewrite makes its backbone assert."""
    root = copy_fixture(FIXTURE)
    _offer(monkeypatch, Change(("model", "backbone", "conv_cfg"), {"type": "ConvAWS"}))
    stderr = _refused(root, cli, "detectors_partial_freeze.py")
    assert "problem: the original model builds at model level and the rewritten one at module level" in stderr


@pytest.mark.slow
def test_the_gate_refuses_a_fix_that_makes_an_unbuildable_model_build_without_saying_so(copy_fixture, cli,
                                                                                        monkeypatch):
    """A fix that changes what builds, and does not claim to repair it, is no fix the gate can judge."""
    root = copy_fixture(FIXTURE)
    _offer(monkeypatch, Change(("model", "backbone", "dcn"), None))
    stderr = _refused(root, cli, "detectors_cannot_build.py")
    assert "problem: the original model builds at module level and the rewritten one at model level" in stderr


@pytest.mark.slow
def test_a_suppressed_finding_does_not_block_another_fix_of_the_same_config(copy_fixture, cli):
    root = copy_fixture(FIXTURE)
    config = root / "configs" / "detectors_partial_freeze.py"
    # One more finding in the config FF101's fix is for, silenced where it is reported: the rewrite
    # leaves it as it was, which is no reason to refuse the fix.
    config.write_text(config.read_text() + "total_epochs = 24  # freezefix: ignore[FF114]\n")
    result = cli("apply", "configs/detectors_partial_freeze.py")
    assert result.exit_code == 0, result.output
    assert "verified on meta: configs/detectors_partial_freeze.py" in result.stderr
    assert "frozen_stages=4" in config.read_text()


@pytest.mark.slow
def test_every_offered_fix_builds_what_its_config_built(copy_fixture):
    from freezefix.api import Session

    from .conftest import fixes_that_change_what_builds

    root = copy_fixture(FIXTURE) / "configs"
    session = Session([root], RunOptions(cache_dir=None, unsafe_fixes=True))
    session.check()
    assert sum(1 for found in session.per_config.values() for f in found if f.fix) == 3
    assert fixes_that_change_what_builds(session) == []


@pytest.mark.slow
def test_a_rename_the_gate_cannot_prove_on_an_unbuilt_detector_is_refused_and_said_why(tmp_path, monkeypatch, cli):
    """FF106 tells a typo from the modules it built, but the key it renames away might match a
    parameter of the head that does not build: the gate refuses, `--no-verify` writes."""
    from freezefix.rules import registry

    # the rule's own example of a detector that does not build, and the rename it would make
    typo = next(e.source for e in registry.rules["FF106"].INVALID if "'img_bakbone'" in e.source)
    renamed = typo.replace("'img_bakbone'", "'img_backbone'")
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "cfg.py"
    config.write_text(typo)
    refused = cli("apply", "cfg.py", "--select", "FF106", "--unsafe-fixes")
    assert refused.exit_code == 1, refused.output
    assert ("problem: pts_bbox_head could not be built before the rewrite (LookupError: 'NoSuchHead' is not in the "
            "registries of mmdet3d, mmdet): nothing about it is verified") in refused.stderr
    assert config.read_text() == typo
    written = cli("apply", "cfg.py", "--select", "FF106", "--unsafe-fixes", "--no-verify")
    assert written.exit_code == 0, written.output
    assert config.read_text() == renamed
