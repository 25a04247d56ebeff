"""Mutation test on real configs: plant findings into a copy of mmdet's shipped configs, fix them.

Planted into leaf configs that do not set the key themselves (so the plant merges over the bases,
as a user's edit would):
- FF101: ``optim_wrapper = dict(paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=0.0)}))``
  on a ResNet whose frozen_stages is below 4;
- FF103: ``model = dict(backbone=dict(frozen_stages=7))`` on a ResNet.
Then `apply`, and: every planted finding was found and fixed; every config, loaded by mmengine
before and after, differs exactly by the changes planned for it (nothing else anywhere); and the
configs that were not mutated report exactly what they reported before the mutation.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from freezefix.api import RunOptions, Session
from freezefix.config.resolve import Resolver

from .conftest import assert_repo_changed_exactly_by_plan, stack_values

pytestmark = pytest.mark.slow

FF101_PLANT = "\noptim_wrapper = dict(paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=0.0)}))\n"
FF103_PLANT = "\nmodel = dict(backbone=dict(frozen_stages=7))\n"
RESNETS = {"ResNet", "mmdet.ResNet", "ResNetV1d", "mmdet.ResNetV1d"}


def _codes(session: Session) -> dict[Path, set[tuple[str, str | None]]]:
    return {c: {(f.code, f.module) for f in found} for c, found in session.per_config.items()}


def test_planted_findings_in_real_configs_are_found_fixed_and_nothing_else_changes(tmp_path, capsys):
    import mmdet

    root = tmp_path / "configs"
    shutil.copytree(Path(mmdet.__file__).parent / ".mim" / "configs", root,
                    ignore=shutil.ignore_patterns("__pycache__"))
    baseline = Session([root], RunOptions(cache_dir=None))
    baseline.check()
    before_codes = _codes(baseline)

    # Choose leaves: ResNet backbone (4 stages, frozen_stages 0..3), not inherited by any other config.
    resolver = baseline.resolver
    inherited = {b for u in resolver.units.values() for b in u.bases}
    candidates = []
    for config in sorted(baseline.per_config):
        if config in inherited:
            continue
        unit = resolver.units[config]
        backbone = unit.merged.get("model", {}).get("backbone", {})
        if (backbone.get("type") in RESNETS and backbone.get("num_stages", 4) == 4
                and isinstance(backbone.get("frozen_stages"), int) and 0 <= backbone["frozen_stages"] < 4
                and backbone.get("depth") in (50, 101) and "optim_wrapper" in unit.merged
                and not unit.merged["optim_wrapper"].get("paramwise_cfg")):
            candidates.append(config)
    ff101 = [c for c in candidates if "optim_wrapper" not in resolver.units[c].own][:30:2]
    ff103 = [c for c in candidates if "model" not in resolver.units[c].own and c not in ff101][:14]
    assert len(ff101) >= 10 and len(ff103) >= 5, (len(ff101), len(ff103))
    for config in ff101:
        config.write_text(config.read_text() + FF101_PLANT)
    for config in ff103:
        config.write_text(config.read_text() + FF103_PLANT)
    mutated = set(ff101) | set(ff103)

    files = sorted(p for p in root.rglob("*.py"))
    before_values = {p: stack_values(p, lenient=True) for p in files}
    before_bytes = {p: p.read_bytes() for p in files}

    session = Session([root], RunOptions(verify=False, cache_dir=None))
    result = session.fix(dry_run=False)
    found = {c for c in ff101 if ("FF101", "backbone") in _codes(session)[c]}
    found |= {c for c in ff103 if ("FF103", "backbone") in _codes(session)[c]}

    # Nothing reported on the configs that were not mutated, beyond what they reported before.
    false_positives = {
        c: codes - before_codes.get(c, set()) for c, codes in _codes(session).items()
        if c not in mutated and codes - before_codes.get(c, set())
    }
    planned = {}
    for config, findings in session.per_config.items():
        changes = [ch for f in findings if f.fix is not None and f.fix.safe for ch in f.fix.changes]
        if changes:
            planned[config] = changes
    fixed = {c for c in mutated if c in planned
             and Resolver().values(c)["model"]["backbone"]["frozen_stages"] == 4}
    with capsys.disabled():
        print(f"\nmutation test: planted {len(mutated)} ({len(ff101)} FF101, {len(ff103)} FF103), "
              f"found {len(found)}, fixed {len(fixed)}, false positives {len(false_positives)}, "
              f"files rewritten {len(result.written)}")
    assert found == mutated
    assert fixed == mutated
    assert not false_positives, false_positives
    assert not result.errors or all("missing _base_" in m or "cannot find base" in m for _, m in result.errors)

    # Property: every config loads in mmengine exactly as before plus its own planned changes.
    assert_repo_changed_exactly_by_plan(files, before_values, before_bytes, result.written, planned)
