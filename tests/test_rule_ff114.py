"""FF114 ignored-setting on a migrated repo: a CMT fine-tune moved to mmdet3d 1.x that kept its
mmcv 1.x ``optimizer=`` (with the freeze in its custom_keys), ``lr_config`` and ``runner``; a
top-level ``find_unused_parameters`` under a shared base's ``model_wrapper_cfg``; and a consistent
config (a top-level ``optimizer`` that feeds ``optim_wrapper``, the flag in the wrapper config).
"""

from __future__ import annotations


import pytest

from freezefix.api import RunOptions, Session, check_paths
from freezefix.stacks import stack_name

from .conftest import assert_changed_exactly_by_plan, stack_values

pytestmark = pytest.mark.skipif(stack_name() != "mmengine", reason="what mmengine's Runner reads")

ONLY = RunOptions(select=("FF114",), cache_dir=None)


def test_settings_mmengine_never_reads_are_reported_where_they_are_written(copy_fixture):
    root = copy_fixture("ignored_settings") / "configs"
    result = check_paths([root], ONLY)
    found = {(r.path.relative_to(root).as_posix(), r.line): r for r in result.findings}
    assert set(found) == {
        ("migrated/cmt_to_mmdet3d1x.py", 12),  # optimizer.paramwise_cfg
        ("migrated/cmt_to_mmdet3d1x.py", 14),  # lr_config
        ("migrated/cmt_to_mmdet3d1x.py", 15),  # runner
        ("migrated/ddp_flag.py", 5),  # find_unused_parameters
    }
    paramwise = found[("migrated/cmt_to_mmdet3d1x.py", 12)]
    assert paramwise.finding.message.startswith(
        "optimizer.paramwise_cfg (custom_keys {'img_backbone': {'lr_mult': 0.0}}) is never read: mmengine's "
        "Runner builds the optimizer from `optim_wrapper` only, which has no paramwise_cfg")
    assert paramwise.fix_kind == "unsafe"
    assert "`lr_config` is never read: mmengine's Runner schedules the lr from `param_scheduler`" in found[("migrated/cmt_to_mmdet3d1x.py", 14)].finding.message
    assert found[("migrated/cmt_to_mmdet3d1x.py", 15)].fix_kind is None
    flag = found[("migrated/ddp_flag.py", 5)]
    assert "reads it only when model_wrapper_cfg is None" in flag.finding.message
    assert flag.fix_kind == "safe"


@pytest.mark.slow
def test_fixes_put_each_setting_where_the_runner_reads_it(copy_fixture):
    root = copy_fixture("ignored_settings") / "configs"
    configs = sorted(p for p in root.rglob("*.py") if "_base_" not in p.parts)
    before = {p: stack_values(p) for p in configs}
    base_before = (root / "_base_" / "runtime.py").read_bytes()
    session = Session([root], RunOptions(select=("FF114",), cache_dir=None, unsafe_fixes=True))
    result = session.fix(dry_run=False)
    assert not result.errors, result.errors
    statuses = {(r.path.name, r.line): r.status for r in result.findings}
    assert statuses == {("cmt_to_mmdet3d1x.py", 12): "fixed", ("cmt_to_mmdet3d1x.py", 14): "open",
                        ("cmt_to_mmdet3d1x.py", 15): "open", ("ddp_flag.py", 5): "fixed"}
    assert_changed_exactly_by_plan(configs, before, session)
    # the shared runtime base is not edited for one of its three configs: the flag goes in the config
    assert (root / "_base_" / "runtime.py").read_bytes() == base_before
    assert stack_values(root / "migrated" / "ddp_flag.py")["model_wrapper_cfg"]["find_unused_parameters"] is True
    assert stack_values(root / "migrated" / "cmt_to_mmdet3d1x.py")["optim_wrapper"]["paramwise_cfg"] == {
        "custom_keys": {"img_backbone": {"lr_mult": 0.0}}}
    left = {(r.path.name, r.line) for r in check_paths([root], ONLY).findings}
    # the ignored copy is left for the user to delete; it now says what is read, so it is no finding
    # (optim_wrapper grew by one line: lr_config and runner moved down by one)
    assert left == {("cmt_to_mmdet3d1x.py", 15), ("cmt_to_mmdet3d1x.py", 16)}
    assert "    clip_grad=dict(max_norm=35, norm_type=2),\n    paramwise_cfg=dict(" in (
        root / "migrated" / "cmt_to_mmdet3d1x.py").read_text()
