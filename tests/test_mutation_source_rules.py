"""Mutation test for the rules that read what a config writes rather than the model (FF111, FF114):
plant each into a copy of mmdet's shipped configs, then check and fix the copy.

Planted into leaf configs that do not write the names themselves:
- FF111: ``model = dict(backbone=dict(frozen_stages=4))`` then ``model = dict(backbone=dict(norm_eval=True))``
  on a ResNet whose frozen_stages is below 4 (the freeze is lost);
- FF114: a top-level ``find_unused_parameters = True`` under ``model_wrapper_cfg``, and an mmcv 1.x
  ``optimizer = dict(..., paramwise_cfg=...)`` beside the config's ``optim_wrapper``.
Found must equal planted, nothing new may be reported on the configs left alone, and after
``apply --unsafe-fixes`` every config loads in mmengine exactly as before plus its planned changes.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from freezefix.api import RunOptions, Session

from .conftest import assert_repo_changed_exactly_by_plan, stack_values
from freezefix.stacks import stack_name

pytestmark = [pytest.mark.slow, pytest.mark.skipif(stack_name() != "mmengine", reason="mmengine's loader is the oracle")]

REBIND = "\nmodel = dict(backbone=dict(frozen_stages=4))\nmodel = dict(backbone=dict(norm_eval=True))\n"
WRAPPER_FLAG = "\nmodel_wrapper_cfg = dict(type='MMDistributedDataParallel')\nfind_unused_parameters = True\n"
OLD_OPTIMIZER = ("\noptimizer = dict(type='SGD', lr=0.02, momentum=0.9,\n"
                 "                 paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=0.1)}))\n")
RESNETS = {"ResNet", "mmdet.ResNet", "ResNetV1d", "mmdet.ResNetV1d"}
SELECT = ("FF111", "FF114")


def _reported(session: Session) -> dict[Path, set[tuple[str, str]]]:
    return {c: {(f.code, f.message) for f in found} for c, found in session.per_config.items()}


def test_planted_source_findings_are_found_exactly_and_fixed_exactly(tmp_path, capsys):
    import mmdet

    root = tmp_path / "configs"
    shutil.copytree(Path(mmdet.__file__).parent / ".mim" / "configs", root,
                    ignore=shutil.ignore_patterns("__pycache__"))
    baseline = Session([root], RunOptions(select=SELECT, cache_dir=None))
    baseline.check()
    before_reported = _reported(baseline)

    resolver = baseline.resolver
    inherited = {b for u in resolver.units.values() for b in u.bases}
    leaves = [c for c in sorted(baseline.per_config) if c not in inherited and not resolver.units[c].new_style]

    def own(config: Path) -> dict:
        return resolver.units[config].own

    def merged(config: Path) -> dict:
        return resolver.units[config].merged

    rebind = [c for c in leaves if "model" not in own(c)
              and merged(c).get("model", {}).get("backbone", {}).get("type") in RESNETS
              and merged(c)["model"]["backbone"].get("frozen_stages") in (-1, 0, 1, 2, 3)][:40:3]
    flag = [c for c in leaves if c not in rebind and "model_wrapper_cfg" not in merged(c)
            and "find_unused_parameters" not in merged(c)][:60:5]
    old_optimizer = [c for c in leaves if c not in rebind and c not in flag and "optimizer" not in merged(c)
                     and isinstance(merged(c).get("optim_wrapper"), dict)
                     and "paramwise_cfg" not in merged(c)["optim_wrapper"]][:70:6]
    assert len(rebind) >= 8 and len(flag) >= 8 and len(old_optimizer) >= 8, (len(rebind), len(flag), len(old_optimizer))
    plants = {**{c: ("FF111", REBIND) for c in rebind}, **{c: ("FF114", WRAPPER_FLAG) for c in flag},
              **{c: ("FF114", OLD_OPTIMIZER) for c in old_optimizer}}
    for config, (_, text) in plants.items():
        config.write_text(config.read_text() + text)

    files = sorted(root.rglob("*.py"))
    before_values = {p: stack_values(p, lenient=True) for p in files}
    before_bytes = {p: p.read_bytes() for p in files}

    session = Session([root], RunOptions(select=SELECT, cache_dir=None, verify=False, unsafe_fixes=True))
    result = session.fix(dry_run=False)
    after = _reported(session)
    found = {c for c, (code, _) in plants.items() if any(got == code for got, _ in after.get(c, ()) - before_reported.get(c, set()))}
    extra = {c: new for c, new in ((c, after.get(c, set()) - before_reported.get(c, set())) for c in after)
             if new and (c not in plants or {code for code, _ in new} != {plants[c][0]} or len(new) != 1)}
    with capsys.disabled():
        print(f"\nsource-rule mutation test: planted {len(plants)} ({len(rebind)} FF111, {len(flag)} FF114 flag, "
              f"{len(old_optimizer)} FF114 optimizer), found {len(found)}, unexpected {len(extra)}, "
              f"files rewritten {len(result.written)}")
    assert found == set(plants)
    assert not extra, extra

    planned: dict[Path, list] = {}
    for config, findings in session.per_config.items():
        changes = [ch for f in findings if f.fix is not None for ch in f.fix.changes]
        if changes:
            planned[config] = changes
    assert set(planned) == set(plants)
    assert_repo_changed_exactly_by_plan(files, before_values, before_bytes, result.written, planned)
    for config in rebind:
        assert stack_values(config, lenient=True)["model"]["backbone"]["frozen_stages"] == 4
    # fixed means fixed: checking again reports what the shipped configs reported before, nothing more
    again = Session([root], RunOptions(select=SELECT, cache_dir=None))
    again.check()
    for config, found in again.per_config.items():
        assert {(f.code, f.message) for f in found} <= before_reported.get(config, set()), config
