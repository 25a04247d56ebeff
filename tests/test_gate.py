"""The write gate builds the real models before anything is written (slow: real builds)."""

from __future__ import annotations

import re

import pytest

from freezefix.rules.base import Change, Fix
from freezefix.rules.ff101_partial_freeze_zero_lr import PartialFreezeZeroLr

from .conftest import snapshot

pytestmark = pytest.mark.slow

BASE = "configs/_base_/models/cmt_voxel0075_r50.py"
CHILD = "configs/cmt/cmt_voxel0075_r50_finetune.py"


def test_seed_apply_prints_what_changed_on_the_real_model(copy_fixture, cli):
    copy_fixture("seed_cmt")
    result = cli("apply", "configs")
    assert result.exit_code == 0, result.output
    assert f"verified on meta: {CHILD}" in result.stderr
    assert "img_backbone (ResNet): 14,942,208 trainable params in layer4 → 0; BN eval 53/53 → 53/53" in result.stderr


def test_a_wrong_fix_is_caught_by_the_gate_and_nothing_is_written(copy_fixture, cli, monkeypatch):
    root = copy_fixture("seed_cmt")
    honest = PartialFreezeZeroLr.check

    def off_by_two(self, view, options):
        # A planner bug: frozen_stages 3 → 2 instead of 4 (layer3 and layer4 then train at lr 0).
        for finding in honest(self, view, options):
            change = finding.fix.changes[0]
            finding.fix = Fix((Change(change.key, change.value - 2),), safe=True)
            yield finding

    monkeypatch.setattr(PartialFreezeZeroLr, "check", off_by_two)
    before = snapshot(root)
    result = cli("apply", "configs")
    assert result.exit_code == 1
    assert f"verification FAILED: {CHILD}" in result.stderr
    assert "img_backbone: with frozen_stages=2, 22,020,096 params still train with lr 0 on the real model" in result.stderr
    assert "→ skipped: verification failed" in result.stdout
    assert snapshot(root) == before


def test_a_rule_that_crashes_on_the_rewritten_config_refuses_that_rewrite_only(copy_fixture, cli, monkeypatch):
    from freezefix.rules.ff102_dead_lr_mult import DeadLrMult

    root = copy_fixture("seed_cmt")
    honest = DeadLrMult.check

    def crashes_after_the_fix(self, view, options):
        if view.values["model"]["img_backbone"]["frozen_stages"] == 4:
            raise KeyError("a bug that only the rewritten config reaches")
        yield from honest(self, view, options)

    monkeypatch.setattr(DeadLrMult, "check", crashes_after_the_fix)
    before = snapshot(root)
    result = cli("apply", "configs")  # no exception out of apply: the crash is this config's problem
    assert result.exit_code == 1
    assert f"verification FAILED: {CHILD}" in result.stderr
    assert "FF102 crashed on the rewritten config: KeyError: 'a bug that only the rewritten config reaches'" in result.stderr
    assert snapshot(root) == before


def test_no_verify_skips_the_gate_loudly(copy_fixture, cli):
    root = copy_fixture("seed_cmt")
    result = cli("apply", "configs", "--no-verify")
    assert result.exit_code == 0
    assert "--no-verify: rewrites are NOT checked on the real model" in result.stderr
    assert "verified" not in result.stderr
    assert "frozen_stages=4," in (root / BASE).read_text()


def test_plugin_detector_is_built_from_plugin_dir(tmp_path):
    from freezefix.verify.gate import run_worker

    from .conftest import FIXTURES

    config = FIXTURES / "seed_cmt" / CHILD
    answer = run_worker([{"id": 1, "config": str(config), "origin": str(config), "device": "meta"}])[1]
    assert answer.ok and answer.level == "model", answer
    # Unscoped types of the mmcv-1.x era config were found in mmdet's registry, and said so.
    assert answer.substitutions == {"ResNet": "mmdet.ResNet", "FPN": "mmdet.FPN"}
    backbone = answer.modules["img_backbone"]
    assert backbone.params == 23_508_032 and backbone.trainable_train == 14_942_208
    assert backbone.children["layer4"].trainable_train == 14_942_208


def test_unimportable_detector_is_verified_at_module_level(tmp_path):
    from freezefix.verify.gate import run_worker

    config = tmp_path / "cfg.py"
    config.write_text(
        "model = dict(type='NotInstalledDetector',\n"
        "             img_backbone=dict(type='ResNet', depth=18, frozen_stages=4, norm_eval=True))\n"
        "optimizer = dict(type='AdamW', lr=1e-4)\n"
    )
    answer = run_worker([{"id": 1, "config": str(config), "origin": str(config), "device": "meta"}])[1]
    assert answer.ok and answer.level == "module"
    assert any("could not be built" in note for note in answer.notes)
    assert answer.modules["img_backbone"].trainable_train == 0


def test_a_hanging_config_times_out_cleanly(tmp_path):
    from freezefix.verify.gate import run_worker

    hang = tmp_path / "hang.py"
    hang.write_text("while True:\n    pass\n")
    ok = tmp_path / "ok.py"
    ok.write_text("model = dict(type='NotInstalled', backbone=dict(type='ResNet', depth=18))\n")
    answers = run_worker(
        [{"id": "hang", "config": str(hang), "device": "meta"}, {"id": "ok", "config": str(ok), "device": "meta"}],
        timeout=5,
        startup=30,
    )
    assert answers["hang"].ok is False and "timed out" in answers["hang"].error
    assert answers["ok"].ok is True


def test_a_rule_that_crashes_in_check_is_a_per_config_error_and_the_other_rules_still_report(copy_fixture, monkeypatch):
    from freezefix.api import RunOptions, check_paths
    from freezefix.rules.ff102_dead_lr_mult import DeadLrMult

    def crashes(self, view, options):
        raise KeyError("a rule bug")
        yield  # a generator, as rules are

    monkeypatch.setattr(DeadLrMult, "check", crashes)
    root = copy_fixture("seed_cmt")
    result = check_paths([root / "configs"], RunOptions(cache_dir=None))
    assert [why for _, why in result.errors] == ["FF102 crashed: KeyError: 'a rule bug'"]
    assert "FF101" in {r.finding.code for r in result.findings}
    assert result.exit_code == 2


def test_an_unchanged_repo_is_proved_again_from_kept_answers_and_an_edit_makes_them_stale(copy_fixture, cli,
                                                                                           monkeypatch):
    from freezefix.verify import gate

    root = copy_fixture("seed_cmt")
    sent: list[list[str]] = []
    real = gate.run_worker

    def counting(jobs, *args, **kwargs):
        sent.append([job["id"] for job in jobs])
        return real(jobs, *args, **kwargs)

    monkeypatch.setattr(gate, "run_worker", counting)
    first = cli("apply", "configs", "--dry-run")
    assert first.exit_code == 1 and sent == [["0:before", "0:after"]]
    second = cli("apply", "configs", "--dry-run")
    assert sent == [["0:before", "0:after"]]  # no worker ran: both answers were kept
    assert second.stdout == first.stdout

    def without_timing(text: str) -> str:
        return re.sub(r"\(\d+\.\d s\)", "", text)

    assert without_timing(second.stderr) == without_timing(first.stderr)
    # A comment in a file the config reaches: the text differs, so both answers are measured again.
    base = root / BASE
    base.write_text(base.read_text() + "# edited\n")
    third = cli("apply", "configs", "--dry-run")
    assert third.exit_code == 1 and sent[1:] == [["0:before", "0:after"]]
    assert f"verified on meta: {CHILD}" in third.stderr
