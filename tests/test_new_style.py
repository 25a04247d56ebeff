"""New-style (``with read_base()``) configs: resolved as mmengine's own loader resolves them, checked,
and fixed where the value is written (``model.update(dict(...))``, ``model['k'] = v``, ``model.k = v``).

The fixtures (tests/fixtures/new_style) are ours: read_base chains over three files, relative imports
and an absolute import of a config module inside an installed package (new_style_pkg), classes as
``type``, ``.update()`` and item / attribute assignment, the seed's trap, a computed value, and a shared
base that one child wants changed and another does not.
"""

from __future__ import annotations

import importlib
import json
import shutil
from pathlib import Path

import pytest

from freezefix.stacks import stack_name

from .conftest import FIXTURES, snapshot

pytestmark = pytest.mark.skipif(stack_name() != "mmengine", reason="new-style configs need mmengine's loader")

NEW_STYLE = FIXTURES / "new_style"
PACKAGE_ROOT = FIXTURES / "new_style_pkg"
CONFIGS = sorted(p for p in (NEW_STYLE / "configs").rglob("*.py"))
ENTRY_CONFIGS = [p for p in CONFIGS if "_base_" not in p.parts]


@pytest.fixture
def package_on_path(monkeypatch):
    """The fixture package importable here and in the verification worker."""
    monkeypatch.syspath_prepend(str(PACKAGE_ROOT))
    monkeypatch.setenv("PYTHONPATH", str(PACKAGE_ROOT))
    importlib.invalidate_caches()


def _class_of(type_name: str):
    """Our type string → the class, looked up by name in the registries ('mmdet.X': mmdet's)."""
    from mmengine.registry import Registry

    scope, _, name = type_name.rpartition(".")
    if "." in scope:  # a class no registry holds, by its import path
        return getattr(importlib.import_module(scope), name)
    module = importlib.import_module(f"{scope}.registry" if scope else "mmengine.registry")
    for registry in vars(module).values():
        if isinstance(registry, Registry) and name in registry.module_dict:
            return registry.module_dict[name]
    raise LookupError(type_name)


def _differences(ours, theirs, key: str = "") -> list[str]:
    """Where our resolved values differ from mmengine's: equal everywhere, except that where mmengine
    holds an imported class (a LazyObject) we hold a name the registries map to that same class."""
    from mmengine.config.lazy import LazyAttr, LazyObject

    if isinstance(theirs, (LazyObject, LazyAttr)):
        return [] if isinstance(ours, str) and _class_of(ours) is theirs.build() else [f"{key}: {ours!r} vs {theirs}"]
    if isinstance(theirs, dict):
        if not isinstance(ours, dict) or set(ours) != set(theirs):
            return [f"{key}: keys {sorted(ours) if isinstance(ours, dict) else ours!r} vs {sorted(theirs)}"]
        return [d for k in theirs for d in _differences(ours[k], theirs[k], f"{key}.{k}")]
    if isinstance(theirs, (list, tuple)):
        if type(ours) is not type(theirs) or len(ours) != len(theirs):
            return [f"{key}: {ours!r} vs {theirs!r}"]
        return [d for i, (a, b) in enumerate(zip(ours, theirs)) for d in _differences(a, b, f"{key}[{i}]")]
    return [] if type(ours) is type(theirs) and ours == theirs else [f"{key}: {ours!r} vs {theirs!r}"]


@pytest.mark.slow
@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: str(p.relative_to(NEW_STYLE)))
def test_values_identical_to_mmengines_loader(config, package_on_path):
    from mmengine.config import Config

    from freezefix.config.resolve import Resolver
    from freezefix.stacks import registered_name

    ours = Resolver(registered_name=registered_name).values(config)
    assert _differences(ours, Config.fromfile(str(config))._to_lazy_dict()) == []
    if "model" in ours:  # a class as `type` becomes the name it is built under, never the class object
        assert ours["model"]["backbone"]["type"] in ("mmdet.ResNet", "ffcfgpkg.backbones.PluginResNet")


@pytest.mark.slow
def test_provenance_points_at_the_statement_that_wrote_the_value():
    from freezefix.config.resolve import Resolver
    from freezefix.stacks import registered_name

    resolver = Resolver(registered_name=registered_name)
    frozen = ("model", "backbone", "frozen_stages")
    cases = {
        "retinanet/seed_trap_update.py": ("retinanet/seed_trap_update.py", 8, "dict-call", 3),  # .update(dict(...))
        "retinanet/seed_trap_item.py": ("retinanet/seed_trap_item.py", 7, "assignment", 2),  # model['k']['j'] = 2
        "retinanet/seed_trap_attribute.py": ("retinanet/seed_trap_attribute.py", 7, "assignment", 3),
        "retinanet/computed.py": ("retinanet/computed.py", 8, "computed", None),
        # Not written by the child: the shared base's `.update(frozen_stages=3)`.
        "shared/head_only.py": ("_base_/retinanet_layer4_trainable.py", 7, "dict-call", 3),
        # Keyword arguments of `.update(...)`.
        "retinanet/consistent.py": ("retinanet/consistent.py", 7, "dict-call", 4),
    }
    for config, (owner, line, how, literal) in cases.items():
        origin = resolver.origin(NEW_STYLE / "configs" / config, frozen)
        assert origin.path == NEW_STYLE / "configs" / owner, config
        assert (origin.location.line, origin.how) == (line, how), config
        assert origin.editable == (how != "computed") and (literal is None or origin.location.literal == literal)
    key = ("optim_wrapper", "paramwise_cfg", "custom_keys", "backbone", "lr_mult")
    origin = resolver.origin(NEW_STYLE / "configs/retinanet/finetune_layer4.py", key)
    assert origin.path.name == "finetune_layer4.py" and origin.location.literal == 0.1


def _copy(tmp_path: Path, monkeypatch) -> Path:
    target = tmp_path / "new_style"
    shutil.copytree(NEW_STYLE, target)
    monkeypatch.chdir(target)
    return target


@pytest.mark.slow
def test_check_finds_exactly_the_traps_written_into_the_fixtures(tmp_path, monkeypatch, cli, package_on_path):
    _copy(tmp_path, monkeypatch)
    result = cli("check", "configs", "--format", "json", "--no-cache")
    data = json.loads(result.stdout)
    found = sorted((f["path"], f["line"], f["code"], tuple(f["configs"])) for f in data["findings"])
    assert found == [
        ("configs/_base_/retinanet_head_only.py", 8, "FF101",
         ("configs/shared/head_only_12e.py", "configs/shared/head_only_24e.py")),
        ("configs/_base_/retinanet_layer4_trainable.py", 7, "FF101", ("configs/shared/head_only.py",)),
        ("configs/packaged/package_schedule.py", 8, "FF101", ("configs/packaged/package_schedule.py",)),
        ("configs/packaged/plugin_backbone.py", 9, "FF101", ("configs/packaged/plugin_backbone.py",)),
        ("configs/retinanet/computed.py", 8, "FF101", ("configs/retinanet/computed.py",)),
        ("configs/retinanet/seed_trap_attribute.py", 7, "FF101", ("configs/retinanet/seed_trap_attribute.py",)),
        ("configs/retinanet/seed_trap_item.py", 7, "FF101", ("configs/retinanet/seed_trap_item.py",)),
        ("configs/retinanet/seed_trap_update.py", 8, "FF101", ("configs/retinanet/seed_trap_update.py",)),
    ]
    # consistent.py and the two layer4 fine-tuning configs: nothing; no file skipped, none failed.
    assert data["errors"] == [] and data["skipped"] == []
    assert data["summary"]["configs_checked"] == len(ENTRY_CONFIGS)
    item = next(f for f in data["findings"] if f["path"].endswith("seed_trap_item.py"))
    assert "22,063,104 params (layer3, layer4)" in item["message"]
    # A plugin class no registry holds: its facts come from the class itself.
    plugin = next(f for f in data["findings"] if f["path"].endswith("plugin_backbone.py"))
    assert "frozen_stages=4 freezes everything (ffcfgpkg.backbones.PluginResNet)" in plugin["message"]


@pytest.mark.slow
def test_apply_edits_each_literal_where_it_is_written_and_never_guesses(tmp_path, monkeypatch, cli, package_on_path):
    from mmengine.config import Config

    root = _copy(tmp_path, monkeypatch)
    before = snapshot(root)
    result = cli("apply", "configs")
    assert result.exit_code == 1, result.output  # the computed value stays a finding
    after = snapshot(root)
    changed = {path for path in before if before[path] != after[path]}
    assert changed == {
        "configs/retinanet/seed_trap_update.py", "configs/retinanet/seed_trap_item.py",
        "configs/retinanet/seed_trap_attribute.py", "configs/shared/head_only.py",
        "configs/packaged/package_schedule.py", "configs/packaged/plugin_backbone.py",
        "configs/_base_/retinanet_head_only.py",  # every config of this base asked for the change
    }
    text = lambda p: after[p].decode()  # noqa: E731
    assert before["configs/retinanet/seed_trap_update.py"].replace(b"frozen_stages=3", b"frozen_stages=4") == \
        after["configs/retinanet/seed_trap_update.py"]  # the comment after it kept, nothing else touched
    assert "model['backbone']['frozen_stages'] = 4\n" in text("configs/retinanet/seed_trap_item.py")
    assert "model.backbone.frozen_stages = 4\n" in text("configs/retinanet/seed_trap_attribute.py")
    # The shared base also serves layer4_finetune.py, which trains layer4 on purpose: it stays, and the
    # child that wanted the change gets an override that merges (rebinding `model` would drop the rest).
    assert text("configs/shared/head_only.py").endswith("model.update(dict(backbone=dict(frozen_stages=4)))\n")
    assert "model.backbone.frozen_stages = 4  # every config" in text("configs/_base_/retinanet_head_only.py")
    for config, frozen in [("retinanet/seed_trap_update.py", 4), ("retinanet/seed_trap_item.py", 4),
                           ("retinanet/seed_trap_attribute.py", 4), ("shared/head_only.py", 4),
                           ("shared/layer4_finetune.py", 3), ("retinanet/computed.py", 3),
                           ("retinanet/finetune_layer4.py", 3), ("packaged/package_schedule.py", 4),
                           ("packaged/plugin_backbone.py", 4), ("shared/head_only_12e.py", 4),
                           ("shared/head_only_24e.py", 4)]:
        cfg = Config.fromfile(str(root / "configs" / config))
        assert cfg.model.backbone.frozen_stages == frozen, config
        assert cfg.model.neck.out_channels == 256 and cfg.model.bbox_head.num_classes == 10, config
    assert "model.backbone.frozen_stages is computed in computed.py" in result.output
    again = cli("apply", "configs")
    assert snapshot(root) == after and again.exit_code == 1


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


READ_BASE = "from mmengine.config import read_base\n\nwith read_base():\n"


@pytest.mark.slow
def test_real_imports_in_a_base_and_names_imported_one_by_one(tmp_path):
    """`import sys` in a base stays a module in the config (mmengine keeps it); `from .sched import
    optim_wrapper` brings only that name, so `model` is owned by the base imported with `*`."""
    from mmengine.config import Config

    from freezefix.config.resolve import Resolver
    from freezefix.stacks import registered_name

    root = tmp_path / "new_style"
    shutil.copytree(NEW_STYLE, root)
    configs = root / "configs"
    _write(configs, {
        "_base_/with_sys.py": "import sys\nfrom mmdet.models.backbones import ResNet\n\n"
                              "model = dict(backbone=dict(type=ResNet, depth=18, frozen_stages=0))\n",
        "_base_/sched_with_model.py": READ_BASE + "    from .models.retinanet_r50 import *\n    "
                                     "from .schedules.adamw_frozen_backbone import *\n",
        "picked/child.py": READ_BASE + "    from .._base_.with_sys import *\n"
                           "    from .._base_.sched_with_model import optim_wrapper\n",
    })
    child = configs / "picked/child.py"
    values = Resolver(registered_name=registered_name).values(child)
    assert _differences(values, Config.fromfile(str(child))._to_lazy_dict()) == []
    assert values["model"]["backbone"]["depth"] == 18  # from with_sys.py, not retinanet_r50.py
    origin = Resolver(registered_name=registered_name).origin(child, ("model", "backbone", "frozen_stages"))
    assert origin.path == configs / "_base_/with_sys.py" and origin.location.line == 4


@pytest.mark.slow
def test_override_merges_into_a_name_the_child_only_mutates(tmp_path, monkeypatch, cli):
    """The shared base must stay (layer4_finetune.py trains layer4); this child writes
    `model.neck.num_outs = 5` itself, so it has no dict literal to insert into: the override is a new
    `model.update(...)` statement."""
    from mmengine.config import Config

    root = _copy(tmp_path, monkeypatch)
    _write(root / "configs", {"shared/head_only_neck.py": READ_BASE + (
        "    from .._base_.retinanet_layer4_trainable import *\n"
        "    from .._base_.schedules.adamw_frozen_backbone import *\n\n"
        "model.neck.num_outs = 5\n")})
    result = cli("apply", "configs/shared")
    assert result.exit_code == 0, result.output
    text = (root / "configs/shared/head_only_neck.py").read_text()
    assert text.endswith("model.neck.num_outs = 5\nmodel.update(dict(backbone=dict(frozen_stages=4)))\n")
    cfg = Config.fromfile(str(root / "configs/shared/head_only_neck.py"))
    assert cfg.model.backbone.frozen_stages == 4 and cfg.model.neck.num_outs == 5
    assert Config.fromfile(str(root / "configs/shared/layer4_finetune.py")).model.backbone.frozen_stages == 3


def test_overrides_merge_only_dicts_into_inherited_dicts():
    from freezefix.plan import Placement, file_edits

    model = Placement(Path("c.py"), "append", None, ("model", "backbone", "frozen_stages"), 4)
    flag = Placement(Path("c.py"), "append", None, ("find_unused_parameters",), True)
    edits = {e.name: e for e in file_edits([model, flag], inherited={"model"})}
    assert edits["model"].merge and edits["model"].value == {"backbone": {"frozen_stages": 4}}
    assert not edits["find_unused_parameters"].merge  # `find_unused_parameters = True`, never `.update(True)`


@pytest.mark.slow
def test_a_plugin_class_file_is_part_of_what_the_result_depends_on(package_on_path):
    """A new-style config names a plugin class directly: its source file joins the config's
    dependencies (the results cache hashes them), installed packages' files do not."""
    from freezefix.config.resolve import Resolver
    from freezefix.stacks import registered_name

    resolver = Resolver(registered_name=registered_name)
    config = NEW_STYLE / "configs/packaged/plugin_backbone.py"
    resolver.values(config)
    deps = set(resolver.deps[config])
    assert (PACKAGE_ROOT / "ffcfgpkg/backbones.py").resolve() in deps
    assert NEW_STYLE / "configs/_base_/models/retinanet_r50.py" in deps
    assert not [d for d in deps if "site-packages" in str(d)]  # mmdet's own classes are not plugin code
