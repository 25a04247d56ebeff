"""The resolver reproduces the installed stack's Config values and says where each one is written.

Runs in every lane: against mmengine's Config, against mmcv 1.x's, and (the comparisons skipped)
on the oldest Python without any OpenMMLab package.
"""

from __future__ import annotations

import importlib.util

import pytest

from freezefix.config.resolve import ConfigError, NotAnalysable, Resolver
from freezefix.stacks import missing

from .conftest import FIXTURES, stack_values

NEEDS_STACK = False  # runs in the lane without torch or OpenMMLab too

RESOLVE = FIXTURES / "resolve"
needs_stack = pytest.mark.skipif(missing() is not None, reason="no OpenMMLab stack to compare with")
# `pkg::` bases and read_base() configs are mmengine's alone.
needs_mmengine = pytest.mark.skipif(importlib.util.find_spec("mmengine") is None, reason="mmengine-only syntax")


@needs_stack
@pytest.mark.parametrize(
    "name", ["child.py", "grandchild.py", pytest.param("scoped.py", marks=needs_mmengine), "_base_/model.py",
             "_base_/schedule.py"]
)
def test_values_equal_the_stacks_config(name):
    path = RESOLVE / name
    assert Resolver().values(path) == stack_values(path)


@pytest.mark.parametrize(
    "path",
    [
        FIXTURES / "seed_cmt/configs/cmt/cmt_voxel0075_r50_finetune.py",
        FIXTURES / "shared_base/configs/frozen_backbone.py",
    ],
    ids=["seed", "shared-base"],
)
@needs_stack
def test_fixture_repos_equal_the_stacks_config(path):
    assert Resolver().values(path) == stack_values(path)


def test_provenance_of_partial_override():
    resolver = Resolver()
    child = RESOLVE / "child.py"
    origin = resolver.origin(child, ("model", "backbone", "frozen_stages"))
    assert origin.path == child
    assert (origin.location.line, origin.location.col, origin.how) == (6, 45, "dict-call")
    # Not overridden: still owned by the base, written through the `backbone` variable.
    origin = resolver.origin(child, ("model", "backbone", "norm_eval"))
    assert origin.path == RESOLVE / "_base_/model.py"
    assert origin.location.via == "backbone" and origin.location.line == 7
    # `depth=depth`: written through a module-level variable of the child.
    origin = resolver.origin(child, ("model", "backbone", "depth"))
    assert origin.path == child and origin.location.via == "depth" and origin.location.line == 4


def test_provenance_of_dict_literal_and_delete():
    resolver = Resolver()
    child = RESOLVE / "child.py"
    origin = resolver.origin(child, ("optim_wrapper", "optimizer", "lr"))
    assert origin.path == RESOLVE / "_base_/schedule.py" and origin.how == "dict-literal"
    # _delete_=True: the child owns the whole subtree, the base's keys are gone.
    values = resolver.values(child)
    assert values["model"]["neck"]["num_outs"] == 3 and "_delete_" not in values["model"]["neck"]
    assert resolver.origin(child, ("model", "neck", "num_outs")).path == child
    # custom_keys merge across files: each key is owned by the file that writes it.
    keys = ("optim_wrapper", "paramwise_cfg", "custom_keys")
    assert set(values[keys[0]][keys[1]][keys[2]]) == {"backbone.layer1", "neck"}
    assert resolver.origin(child, (*keys, "neck", "lr_mult")).path == child
    assert resolver.origin(child, (*keys, "backbone.layer1", "lr_mult")).path == RESOLVE / "_base_/schedule.py"


def test_computed_values_are_not_claimed_as_literals():
    resolver = Resolver()
    grandchild = RESOLVE / "grandchild.py"
    assert resolver.values(grandchild)["scaled"] == [0, 2, 4]
    origin = resolver.origin(grandchild, ("scaled",))
    assert origin.path == grandchild and not origin.editable and origin.how == "computed"
    # {{_base_.max_epochs}} is a reference, not a literal freezefix could edit.
    origin = resolver.origin(grandchild, ("train_cfg", "max_epochs"))
    assert origin.path == RESOLVE / "child.py" and not origin.editable


@needs_mmengine
def test_scoped_base_resolves_into_the_installed_package():
    resolver = Resolver()
    scoped = RESOLVE / "scoped.py"
    values = resolver.values(scoped)
    assert values["model"]["backbone"]["frozen_stages"] == 2
    assert values["model"]["_scope_"] == "mmdet"
    origin = resolver.origin(scoped, ("model", "backbone", "depth"))
    assert origin.path.parts[-3:] == ("_base_", "models", "retinanet_r50_fpn.py")
    assert "mmdet" in origin.path.parts


@needs_mmengine  # the graph includes scoped.py, whose base is `mmdet::...`
def test_base_graph_with_reverse_edges():
    from freezefix.config.graph import BaseGraph

    resolver = Resolver()
    for name in ("grandchild.py", "scoped.py"):
        resolver.unit(RESOLVE / name)
    graph = BaseGraph(resolver)
    assert [p.name for p in graph.ancestors(RESOLVE / "grandchild.py")] == ["child.py", "model.py", "schedule.py"]
    assert [p.name for p in graph.dependents(RESOLVE / "_base_/model.py")] == ["child.py", "grandchild.py"]
    assert graph.dependents(RESOLVE / "grandchild.py") == []
    # A `pkg::` base is an edge like any other.
    assert graph.ancestors(RESOLVE / "scoped.py")[0].name == "retinanet_r50_fpn.py"


@pytest.mark.parametrize(
    ("files", "target", "message"),
    [
        ({"a.py": "x = (\n"}, "a.py", "syntax error at line 1"),
        ({"a.py": "_base_ = './missing.py'\n"}, "a.py", "missing _base_ './missing.py'"),
        ({"a.py": "_base_ = './b.py'\n", "b.py": "_base_ = './a.py'\n"}, "a.py", "cyclic _base_: "),
        (
            {"a.py": "_base_ = ['./b.py', './c.py']\n", "b.py": "x = 1\n", "c.py": "x = 2\n"},
            "a.py",
            "sibling bases both define ['x']",
        ),
        ({"a.py": "x = 1 / 0\n"}, "a.py", "raises when executed: ZeroDivisionError"),
    ],
    ids=["syntax", "missing-base", "cycle", "sibling-duplicate", "raises"],
)
def test_bad_configs_raise_config_error(tmp_path, files, target, message):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(ConfigError) as info:
        Resolver().unit(tmp_path / target)
    assert message in str(info.value)


def test_non_utf8_and_bom(tmp_path):
    (tmp_path / "latin.py").write_bytes("x = 'caf\xe9'\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="not valid UTF-8"):
        Resolver().unit(tmp_path / "latin.py")
    # mmengine reads configs as plain UTF-8: a BOM reaches ast.parse and fails, and so must we.
    (tmp_path / "bom.py").write_bytes(b"\xef\xbb\xbfmodel = dict(a=1)\n")
    with pytest.raises(ConfigError, match="UTF-8 BOM, which neither mmengine nor mmcv can load"):
        Resolver().unit(tmp_path / "bom.py")
    if missing() is None:
        with pytest.raises(SyntaxError):
            stack_values(tmp_path / "bom.py")


def test_bom_is_kept_by_the_writer(tmp_path):
    from freezefix.textio import atomic_write, read_source

    path = tmp_path / "bom.py"
    path.write_bytes(b"\xef\xbb\xbfx = 1\r\n")
    source = read_source(path)
    assert source.has_bom and source.text == "x = 1\r\n"
    atomic_write(source, "x = 2\r\n")
    assert path.read_bytes() == b"\xef\xbb\xbfx = 2\r\n"


@needs_mmengine
def test_new_style_config_with_a_missing_base_is_an_error_and_plugin_code_is_skipped(tmp_path):
    from freezefix.stacks import stack_name

    (tmp_path / "new.py").write_text("from mmengine.config import read_base\nwith read_base():\n    from .x import *\n")
    # mmengine's lazy loader looks for x.py; mmcv 1.x has no such configs and fails on the import.
    expected = "missing read_base module" if stack_name() == "mmengine" else "No module named 'mmengine'"
    with pytest.raises(ConfigError, match=expected):
        Resolver().unit(tmp_path / "new.py")
    (tmp_path / "plugin.py").write_text("import torch\nlayer = torch.nn.Linear\n")
    if stack_name() == "mmengine":
        with pytest.raises(NotAnalysable, match="without `with read_base\\(\\)`: plugin code or a script"):
            Resolver().unit(tmp_path / "plugin.py")


def test_a_config_that_loops_is_stopped_with_an_error(tmp_path, monkeypatch):
    import freezefix.config.execution as execution

    monkeypatch.setattr(execution, "EXEC_TIMEOUT_S", 0.5)
    (tmp_path / "loop.py").write_text("x = 0\nfor i in iter(int, 1):\n    x += 1\n")
    (tmp_path / "ok.py").write_text("model = dict(a=1)\n")
    resolver = Resolver()
    with pytest.raises(ConfigError, match="did not finish executing within 0.5 s"):
        resolver.unit(tmp_path / "loop.py")
    assert resolver.values(tmp_path / "ok.py") == {"model": {"a": 1}}


@needs_mmengine
def test_where_a_pkg_base_is_is_asked_of_mmengine_once_and_kept_while_it_holds(tmp_path, monkeypatch):
    from freezefix.config import preprocess

    asked = []
    real_ask = preprocess.ask_mmengine
    monkeypatch.setattr(preprocess, "ask_mmengine", lambda spec, child: asked.append(spec) or real_ask(spec, child))
    monkeypatch.setattr(preprocess, "ASKED_THIS_PROCESS", {})
    kept: dict = {}
    expected = Resolver().values(RESOLVE / "scoped.py")  # what mmengine's own answer gives
    asked.clear()
    monkeypatch.setattr(preprocess, "ASKED_THIS_PROCESS", {})

    def run() -> dict:
        return Resolver(remembered=lambda: kept).values(RESOLVE / "scoped.py")

    assert run() == expected and len(asked) == 1 and len(kept) == 1
    monkeypatch.setattr(preprocess, "ASKED_THIS_PROCESS", {})  # a later run: only the kept answer is left
    assert run() == expected and len(asked) == 1, "a kept answer is used without importing mmengine"

    (key, answer), = kept.items()
    kept[key] = dict(answer, path=str(tmp_path / "uninstalled.py"))  # the package moved since
    monkeypatch.setattr(preprocess, "ASKED_THIS_PROCESS", {})
    assert run() == expected and len(asked) == 2 and kept[key] == answer

    # "not installed" holds only while the package still cannot be imported.
    child = tmp_path / "child.py"
    child.write_text("_base_ = ['mmdet::_base_/default_runtime.py']\n")
    monkeypatch.setattr(preprocess, "ASKED_THIS_PROCESS", {})
    kept['["package-base", ' + repr("mmdet::_base_/default_runtime.py") + "]"] = {
        "error": "mmdet is not installed, please install mmdet manually", "missing": "mmdet"}
    assert "default_scope" in Resolver(remembered=lambda: kept).values(child)
    assert asked[-1] == "mmdet::_base_/default_runtime.py"
