"""Building whole models (or their top-level modules) from a resolved config's ``model`` dict.

Shared by the in-process rules that need every parameter name (FF106, FF107), the verification
worker and ``bench``; the building itself is the installed stack's (``freezefix.stacks``).
mmcv-1.x era configs name mmdet classes without a scope (``type='ResNet'``) and carry no
``default_scope``; under mmengine's registries such a type is looked up in the sibling scopes and
rewritten as ``mmdet.ResNet``, and every such substitution is reported.  The mmcv 1.x stack's own
build helpers make that fallback themselves, so there nothing is rewritten.
"""

from __future__ import annotations

import copy
import importlib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from freezefix.building import WEIGHT_ARGS, describe_error, on_first_device
from freezefix.classes import find_class, registries
from freezefix.facts import MODEL_NOT_BUILT
from freezefix.stacks import current, registered_names_changed


@dataclass
class Built:
    model: Any = None
    level: str = "model"  # 'model' | 'module' (the detector class itself could not be built)
    device: str = "meta"
    substitutions: dict[str, str] = field(default_factory=dict)  # 'ResNet' → 'mmdet.ResNet'
    notes: list[str] = field(default_factory=list)
    error: str | None = None


def default_scope_of(values: dict) -> str:
    scope = values.get("default_scope")
    if isinstance(scope, str):
        return scope
    available = registries()
    # Without a default_scope, a model named with its package ('mmdet.RetinaNet', or the class itself
    # in a new-style config) is built in that package's scope, as its nested task utils expect.
    model = values.get("model")
    model_type = model.get("type") if isinstance(model, dict) else None
    if isinstance(model_type, type):
        package = model_type.__module__.split(".")[0]
    elif isinstance(model_type, str) and "." in model_type:
        package = model_type.split(".")[0]
    else:
        package = None
    if package in available:
        return package
    return "mmdet3d" if "mmdet3d" in available else "mmdet"


def scope_types(cfg: Any, scope: str, substitutions: dict[str, str]) -> Any:
    """Copy of ``cfg`` with unscoped types the default scope lacks rewritten to a sibling scope."""
    available = registries()
    default = available.get(scope)
    if isinstance(cfg, dict):
        out = {k: scope_types(v, scope, substitutions) for k, v in cfg.items() if k not in WEIGHT_ARGS}
        type_name = cfg.get("type")
        if isinstance(type_name, str) and "." not in type_name and default is not None and "_scope_" not in cfg:
            if default.get(type_name) is None:
                for sibling in current().sibling_scopes:
                    registry = available.get(sibling)
                    if sibling != scope and registry is not None and type_name in registry.module_dict:
                        out["type"] = substitutions[type_name] = f"{sibling}.{type_name}"
                        break
        return out
    if isinstance(cfg, list):
        return [scope_types(v, scope, substitutions) for v in cfg]
    if isinstance(cfg, tuple):
        return tuple(scope_types(v, scope, substitutions) for v in cfg)
    return cfg


def custom_import_names(values: dict) -> list[Any]:
    """The modules a config's ``custom_imports`` names, as both stacks read it (one string, or a
    list); entries are returned as written, for callers to judge."""
    imports = values.get("custom_imports")
    names = (imports.get("imports") or []) if isinstance(imports, dict) else []
    return [names] if isinstance(names, str) else list(names) if isinstance(names, (list, tuple)) else []


def plugins_named(values: dict) -> tuple[tuple[str, ...], str | None]:
    """The plugins a config names: its ``custom_imports`` modules and its mmcv-1.x ``plugin_dir``."""
    return tuple(n for n in custom_import_names(values) if isinstance(n, str)), plugin_dir_setting(values)


def plugin_dir_setting(values: dict) -> str | None:
    """The mmcv-1.x ``plugin_dir`` a config has its train script import (``plugin=True`` with it)."""
    plugin_dir = values.get("plugin_dir")
    return plugin_dir if values.get("plugin") and isinstance(plugin_dir, str) else None


def plugin_dir_location(values: dict, config_path: Path) -> tuple[Path, Path | None] | None:
    """An mmcv-1.x ``plugin_dir`` as the repos' train scripts read it: (the directory relative to the
    repository root, that root — the nearest ancestor of the config holding it — or None); None when
    the config names no plugin_dir."""
    plugin_dir = plugin_dir_setting(values)
    if plugin_dir is None:
        return None
    rel = Path(plugin_dir.strip("/"))
    return rel, next((p for p in Path(config_path).resolve().parents if (p / rel).is_dir()), None)


@dataclass
class PluginImport:
    """One plugin module a config names (``custom_imports`` entry or mmcv-1.x ``plugin_dir``) and
    whether importing it worked."""

    kind: str  # 'custom_imports' | 'plugin_dir'
    name: str  # as the config writes it
    module: str | None = None  # the dotted module imported; None when the plugin_dir was not found
    root: Path | None = None  # plugin_dir: the repository root put on sys.path to import it
    error: str | None = None  # 'not importable: ImportError: …' | 'not found above …'

    @property
    def note(self) -> str:
        return f"{self.kind} {self.name!r} {self.error or 'imported'}"


def plugin_imports(values: dict, config_path: Path) -> list[PluginImport]:
    """Import ``custom_imports`` and an mmcv-1.x ``plugin_dir`` the way those repos' train scripts do.

    ``plugin_dir='projects/mmdet3d_plugin/'`` is a path relative to the repository root, which is the
    nearest ancestor of the config that contains it; it is imported as the dotted module path.
    A plugin that cannot be imported is reported in its entry, never raised: verification then
    falls back to module level, and ``doctor`` names it.
    """
    found: list[PluginImport] = []
    for name in custom_import_names(values):
        entry = PluginImport("custom_imports", name, module=name)
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - a missing plugin is reported, not fatal
            entry.error = f"not importable: {type(exc).__name__}: {exc}"
        found.append(entry)
    located = plugin_dir_location(values, config_path)
    if located is not None:
        rel, root = located
        entry = PluginImport("plugin_dir", values["plugin_dir"], root=root)
        if root is None:
            entry.error = f"not found above {config_path}"
        else:
            entry.module = ".".join(rel.parts)
            if str(root) not in sys.path:
                sys.path.insert(0, str(root))
            try:
                importlib.import_module(entry.module)
            except Exception as exc:  # noqa: BLE001
                entry.error = f"not importable: {type(exc).__name__}: {exc}"
        found.append(entry)
    return found


def import_plugins(values: dict, config_path: Path) -> list[str]:
    """Import the config's plugins (:func:`plugin_imports`); notes for those that could not be imported.
    The registries are looked at afresh afterwards: a plugin registers its classes as it imports."""
    notes = [entry.note for entry in plugin_imports(values, config_path) if entry.error]
    registries.cache_clear()
    registered_names_changed()
    return notes


def build(values: dict, config_path: Path, device: str = "meta", modules: list[str] | None = None,
          initialise: bool = False) -> Built:
    """Build the config's model on ``device``; fall back to its top-level modules in a container.
    Weights are left uninitialised (structure only) unless ``initialise``: a model that runs forward."""
    import torch

    stack = current()
    result = Built(device=device)
    model_cfg = values.get("model")
    if not isinstance(model_cfg, dict):
        result.error = "the config has no model dict"
        return result
    result.notes.extend(import_plugins(values, config_path))
    scope = default_scope_of(values)
    if stack.rewrites_unscoped_types:
        cfg = scope_types(model_cfg, scope, result.substitutions)
    else:
        cfg = {k: v for k, v in model_cfg.items() if k not in WEIGHT_ARGS}
    try:
        result.model, result.device = on_first_device(lambda: stack.build_model(copy.deepcopy(cfg), values, scope), device,
                                                        initialise)
        return result
    except Exception as exc:  # noqa: BLE001 - then module level
        error = describe_error(exc)
    result.notes.append(f"{MODEL_NOT_BUILT} ({error})")
    container = torch.nn.Module()
    names = modules if modules is not None else [k for k, v in cfg.items() if isinstance(v, dict) and "type" in v]
    built_any = False
    for name in names:
        sub = cfg.get(name)
        if not isinstance(sub, dict) or "type" not in sub:
            continue
        try:
            cls, found_in = find_class(sub["type"], scope)
            part_cfg = stack.config_dict(dict(copy.deepcopy(sub), type=cls))
            part, result.device = on_first_device(lambda: stack.build_module(registries()[found_in], part_cfg, found_in),
                                                  device, initialise)
            container.add_module(name, part)
            built_any = True
        except Exception as exc:  # noqa: BLE001
            result.notes.append(f"{name} could not be built: {describe_error(exc)}")
    if not built_any:
        result.error = error
        return result
    result.model = container
    result.level = "module"
    return result
