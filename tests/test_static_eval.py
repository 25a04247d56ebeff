"""The static evaluator against Python itself: the same globals as exec gives, or a refusal."""

from __future__ import annotations

import ast

import pytest

from freezefix.config import static_eval
from freezefix.config.resolve import AttrDict, ConfigError, Resolver

NEEDS_STACK = False  # runs in the lane without torch or OpenMMLab too

RUN_LIKE_EXEC = [
    "a = 1\nb = a * 2 + 3 ** 2 - 7 // 2 % 3\nc = -b\nd = not c\n",
    "model = dict(type='ResNet', depth=50, frozen_stages=3, norm_cfg=dict(type='BN', requires_grad=True))\n",
    "x = {'a': 1, **{'b': 2}}\ny = dict(x, c=3)\nz = dict(**x, d=[1, *[2, 3]])\n",
    "lr = 0.02\noptimizer = dict(lr=lr / 8, momentum=0.9)\nsteps = [8, 11]\nmax_epochs = steps[-1] + 1\n",
    "a = b = dict(k=1)\nc = (1, 2)[::-1]\nd = {1, 2}\ne = 'x' if a is b else 'y'\n",
    "names = ['car', 'truck']\nn = len(names)\nm = max(n, 3)\nr = list(range(n))\nt = tuple(names)\n",
    "work = f'work_dirs/{1 + 1:03d}_{\"x\"!r}'\ns = str(1.5) + 'e'\ni = int('7')\nf = float(2)\n",
    "a = 1 < 2 < 3\nb = 1 < 3 < 2\nc = [] or [1]\nd = 0 and 5\ne = 2 in [1, 2]\n",
    "model = dict(backbone=dict(depth=50))\nmodel['backbone']['depth'] = 101\nlr = 1\nlr *= 4\n",
    "x = [1]\ny = x\ny += [2]\ndel y\n",
    "_base_.model.backbone.depth = 101\nmodel = _base_.model\ndel _base_.schedule\n",
    "'''a docstring'''\npass\nv = _base_['lr'] * 2\n",
]

REFUSED = [
    "import os\nx = 1\n",
    "x = [i for i in range(3)]\n",
    "x = dict(a=1)\nx.update(b=2)\n",
    "for i in range(2):\n    pass\n",
    "def f():\n    return 1\n",
    "x = print\n",
    "a, b = 1, 2\n",
    "x: int = 1\n",
    "f = lambda: 1\n",
    "x = '{}'.format(1)\n",
]

RAISES_LIKE_EXEC = [
    "x = undefined_name\n",
    "x = dict(a=1)['b']\n",
    "x = 1 / 0\n",
    "x = _base_.missing\n",
    "x = dict(a=1, **dict(a=2))\n",
    "x = [1] + (2,)\n",
]


def _base() -> AttrDict:
    return AttrDict(model=AttrDict(backbone=AttrDict(depth=50)), lr=0.1, schedule=AttrDict(epochs=12))


def _globals_after(run, source: str) -> dict:
    scope = {"_base_": _base()}
    run(source, scope)
    return {k: v for k, v in scope.items() if not k.startswith("__")}


def _exec(source: str, scope: dict) -> None:
    exec(compile(source, "<config>", "exec"), scope, scope)  # noqa: S102


def _static(source: str, scope: dict) -> None:
    static_eval.run(ast.parse(source), scope)


@pytest.mark.parametrize("source", RUN_LIKE_EXEC)
def test_runs_a_plain_config_exactly_as_exec(source):
    expected = _globals_after(_exec, source)
    got = _globals_after(_static, source)
    assert got == expected
    assert {k: type(v) for k, v in got.items()} == {k: type(v) for k, v in expected.items()}


def test_aliasing_is_kept_as_exec_keeps_it():
    got = _globals_after(_static, "a = b = dict(k=1)\nc = dict(inner=a)\nd = _base_.model\n")
    assert got["a"] is got["b"] is got["c"]["inner"]
    assert got["d"] is got["_base_"]["model"]


@pytest.mark.parametrize("source", REFUSED)
def test_anything_else_is_refused(source):
    with pytest.raises(static_eval.Unsupported):
        _static(source, {"_base_": _base()})


@pytest.mark.parametrize("source", RAISES_LIKE_EXEC)
def test_errors_are_the_ones_exec_raises(source):
    with pytest.raises(Exception) as from_exec:
        _exec(source, {"_base_": _base()})
    with pytest.raises(Exception) as from_static:
        _static(source, {"_base_": _base()})
    assert type(from_static.value) is type(from_exec.value)


def test_mutating_statements_are_recognised():
    assert not static_eval.mutates_containers(ast.parse("a = 1\nb = dict(x=a)\nc = d = b\n"))
    for source in ("a['k'] = 1\n", "a.k = 1\n", "a += [1]\n", "del a\n"):
        assert static_eval.mutates_containers(ast.parse(source)), source


def test_resolver_falls_back_to_exec_with_a_fresh_base(tmp_path):
    """A child that mutates its base and then does something the evaluator refuses: the exec that
    follows must see the base as it was, not with the first attempt's edit applied twice."""
    (tmp_path / "base.py").write_text("model = dict(backbone=dict(depth=50, stages=[1, 2]))\n")
    (tmp_path / "child.py").write_text(
        "_base_ = ['./base.py']\n"
        "_base_.model.backbone.stages += [3]\n"
        "model = _base_.model\n"
        "names = [s for s in model['backbone']['stages']]\n"
    )
    values = Resolver().values(tmp_path / "child.py")
    assert values["model"]["backbone"]["stages"] == [1, 2, 3]
    assert values["names"] == [1, 2, 3]


def test_a_child_that_only_reads_leaves_its_base_untouched(tmp_path):
    (tmp_path / "base.py").write_text("model = dict(backbone=dict(depth=50), neck=dict(n=1))\n")
    (tmp_path / "a.py").write_text("_base_ = ['./base.py']\nmodel = dict(backbone=dict(depth=101, _delete_=True))\n")
    (tmp_path / "b.py").write_text("_base_ = ['./base.py']\nkept = _base_.model\n")
    resolver = Resolver()
    a, b = resolver.values(tmp_path / "a.py"), resolver.values(tmp_path / "b.py")
    base = resolver.values(tmp_path / "base.py")
    assert a["model"] == {"backbone": {"depth": 101}, "neck": {"n": 1}}
    assert b["model"] == base["model"] == {"backbone": {"depth": 50}, "neck": {"n": 1}}
    assert b["kept"] == base["model"] and b["kept"] is not base["model"]


def test_the_error_message_is_execs(tmp_path):
    (tmp_path / "bad.py").write_text("model = dict(type='ResNet')\nx = model['depth']\n")
    with pytest.raises(ConfigError, match="raises when executed: KeyError: 'depth'"):
        Resolver().values(tmp_path / "bad.py")
