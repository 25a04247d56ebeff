"""Property tests over generated config repos (hypothesis): apply never changes what it was not asked to.

For each drawn repo (a model base, a schedule base of either era, children with or without an
intermediate, dict calls or literals, module-level variables, Chinese comments, CRLF), after `apply`:
1. every file not in the plan is byte-identical;
2. in edited files, every changed line carries a planned key;
3. every config, loaded by mmengine, differs from before exactly by its planned changes;
4. `check` reports nothing fixable;
5. a second `apply` is a no-op.
"""

from __future__ import annotations

import difflib
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from freezefix.api import RunOptions, Session
from freezefix.plan import apply_change

from .conftest import mmengine_values

pytestmark = pytest.mark.slow

children = st.lists(
    st.fixed_dictionaries({
        "lr": st.sampled_from([None, 0.0, 0.1]),
        "fs": st.sampled_from([None, -1, 0, 2, 3, 4, 5]),
        "via_mid": st.booleans(),
        "crlf": st.booleans(),
        "literal": st.booleans(),
    }),
    min_size=1, max_size=3,
)


def _model_base(fs: int, literal: bool, variable: bool, comment: bool) -> str:
    note = "  # 冻结 stage（全部）" if comment else ""
    if literal:
        backbone = ("{'type': 'mmdet.ResNet', 'depth': 50, 'num_stages': 4,\n"
                    f"            'frozen_stages': {fs},{note}\n            'norm_eval': True}}")
    else:
        backbone = f"dict(type='mmdet.ResNet', depth=50, num_stages=4,\n         frozen_stages={fs},{note}\n         norm_eval=True)"
    if variable:
        return f"backbone = {backbone}\nmodel = dict(type='RetinaNet', backbone=backbone)\n"
    return f"model = dict(type='RetinaNet', backbone={backbone})\n"


def _schedule(era: str) -> str:
    if era == "mmengine":
        return "optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=0.01))\n"
    return "optimizer = dict(type='AdamW', lr=0.0002)\n"


def _child(spec: dict, era: str) -> str:
    root = "optim_wrapper" if era == "mmengine" else "optimizer"
    lines = ["_base_ = './_mid.py'" if spec["via_mid"] else "_base_ = ['./_base_/model.py', './_base_/schedule.py']", ""]
    if spec["fs"] is not None:
        lines.append(f"model = dict(backbone=dict(frozen_stages={spec['fs']}))")
    if spec["lr"] is not None:
        keys = f"{{'backbone': {{'lr_mult': {spec['lr']}}}}}" if spec["literal"] else f"{{'backbone': dict(lr_mult={spec['lr']})}}"
        lines.append(f"{root} = dict(paramwise_cfg=dict(custom_keys={keys}))  # 微调")
    return "\n".join(lines) + "\n"


def _write(path: Path, text: str, crlf: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes((text.replace("\n", "\r\n") if crlf else text).encode("utf-8"))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# A value written through a module-level variable of the base: its alias key changes with it.
@example(fs=-1, literal=False, variable=True, comment=False, era="mmengine",
         specs=[{"lr": None, "fs": None, "via_mid": False, "crlf": False, "literal": False},
                {"lr": 0.0, "fs": None, "via_mid": False, "crlf": False, "literal": False}])
@given(
    fs=st.sampled_from([-1, 0, 1, 3]), literal=st.booleans(), variable=st.booleans(), comment=st.booleans(),
    era=st.sampled_from(["mmengine", "mmcv1"]), specs=children,
)
def test_apply_changes_exactly_the_plan(fs, literal, variable, comment, era, specs):
    root = Path(tempfile.mkdtemp(prefix="freezefix-prop-"))
    try:
        _write(root / "_base_/model.py", _model_base(fs, literal, variable, comment), crlf=comment)
        _write(root / "_base_/schedule.py", _schedule(era))
        _write(root / "_mid.py", "_base_ = ['./_base_/model.py', './_base_/schedule.py']\n\nseed = 0\n")
        for i, spec in enumerate(specs):
            _write(root / f"exp_{i}.py", _child(spec, era), crlf=spec["crlf"])
        files = sorted(root.rglob("*.py"))
        before_bytes = {p: p.read_bytes() for p in files}
        before_values = {p: mmengine_values(p) for p in files}

        # apply's passes (a fix can uncover another), each recorded with what it planned.
        planned: dict[Path, list] = {}
        keys: set[str] = set()
        written: set[Path] = set()
        for _ in range(4):
            session = Session([root], RunOptions(verify=False, cache_dir=None))
            result = session.fix(dry_run=False)
            assert not result.errors, result.errors
            # What the plan serves per config: the fixes' changes, plus the alias a value written
            # through a module-level variable also has (mmengine keeps `backbone = dict(...)` as a key).
            for placement in result.plan.placements if result.plan else ():
                for config, change in placement.served:
                    planned.setdefault(config, []).append(change)
                    keys.add(change.key[-1])
            written |= set(result.written)
            if not result.written:
                break
        for path in files:
            after = path.read_bytes()
            if path not in written:
                assert after == before_bytes[path], f"{path.name} changed outside the plan"  # (1)
                continue
            old, new = before_bytes[path].decode().splitlines(), after.decode().splitlines()
            for line in difflib.unified_diff(old, new, lineterm="", n=0):
                if line[:1] in "+-" and not line.startswith(("+++", "---")):
                    assert any(k in line for k in keys) or "model = dict(" in line, line  # (2)
        for path in files:
            expected = before_values[path]
            for change in planned.get(path, []):
                expected = apply_change(expected, change)
            if path.parent.name != "_base_" and path.name != "_mid.py":
                assert mmengine_values(path) == expected, path.name  # (3)
        again = Session([root], RunOptions(verify=False, cache_dir=None)).check()
        assert not [r for r in again.findings if r.fix_kind == "safe"]  # (4)
        snapshot = {p: p.read_bytes() for p in files}
        Session([root], RunOptions(verify=False, cache_dir=None)).fix(dry_run=False)
        assert {p: p.read_bytes() for p in files} == snapshot  # (5)
    finally:
        shutil.rmtree(root, ignore_errors=True)
