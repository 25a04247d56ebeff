"""Property tests over generated config repos (hypothesis): apply never changes what it was not asked to.

For each drawn repo (a model base, a schedule base of either era, children with or without an
intermediate, dict calls or literals, module-level variables, Chinese comments, CRLF), after `apply`:
1. every file not in the plan is byte-identical;
2. in edited files, every changed line writes `frozen_stages` or `lr_mult`;
3. every config, loaded by the stack's own Config, differs from before exactly as the rules of the
   trade say it must (``_expected``, worked out from the drawn settings, not from freezefix's plan);
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

from .conftest import stack_values

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


FULL_FREEZE = 4  # ResNet-50 with 4 stages: frozen_stages=4 freezes the stem and every stage


def _expected(fs: int, lr: float | None) -> tuple[int, float | None]:
    """(frozen_stages, lr_mult of the 'backbone' custom key) a config must resolve to after apply,
    from what it resolves to before: past the range is clamped (FF103); all params at lr 0 means
    frozen fully (FF101, safe: norm_eval=True and no resume); a non-zero lr_mult on a module frozen
    fully is dead and becomes 0 (FF102, also after FF103's clamp, in the next pass)."""
    if fs > FULL_FREEZE:
        fs = FULL_FREEZE
    if lr == 0.0 and fs < FULL_FREEZE:
        fs = FULL_FREEZE
    if lr is not None and lr != 0.0 and fs == FULL_FREEZE:
        lr = 0.0
    return fs, lr


def _with(values: dict, root: str, fs: int, lr: float | None) -> dict:
    import copy

    out = copy.deepcopy(values)
    out["model"]["backbone"]["frozen_stages"] = fs
    if lr is not None:
        out[root]["paramwise_cfg"]["custom_keys"]["backbone"]["lr_mult"] = lr
    return out


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
        before_values = {p: stack_values(p) for p in files}

        written: set[Path] = set()
        for _ in range(4):  # apply's passes: a fix can uncover another
            result = Session([root], RunOptions(verify=False, cache_dir=None)).fix(dry_run=False)
            assert not result.errors, result.errors
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
                    assert "frozen_stages" in line or "lr_mult" in line, line  # (2)
        optimizer_root = "optim_wrapper" if era == "mmengine" else "optimizer"
        for path in files:
            if path.parent.name == "_base_" or path.name == "_mid.py":
                continue
            before = before_values[path]
            fs_before = before["model"]["backbone"]["frozen_stages"]
            lr_before = before[optimizer_root].get("paramwise_cfg", {}).get("custom_keys", {}).get("backbone", {})
            fs, lr = _expected(fs_before, lr_before.get("lr_mult"))
            after = stack_values(path)
            if variable:
                # The base's module-level `backbone` stays a key of every config (mmengine keeps
                # it): it follows the base's own dict, which apply edits only when every config
                # that reads it wants the change.
                assert after["backbone"]["frozen_stages"] in (before["backbone"]["frozen_stages"], fs)
                after = dict(after, backbone=before["backbone"])
            assert after == _with(before, optimizer_root, fs, lr), path.name  # (3)
        again = Session([root], RunOptions(verify=False, cache_dir=None)).check()
        assert not [r for r in again.findings if r.fix_kind == "safe"]  # (4)
        snapshot = {p: p.read_bytes() for p in files}
        Session([root], RunOptions(verify=False, cache_dir=None)).fix(dry_run=False)
        assert {p: p.read_bytes() for p in files} == snapshot  # (5)
    finally:
        shutil.rmtree(root, ignore_errors=True)
