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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from freezefix.building import WEIGHT_ARGS, describe_error, on_first_device, without_weight_args
from freezefix.classes import find_class, registries
from freezefix.config.plain import map_tree
from freezefix.facts import MODEL_NOT_BUILT
from freezefix.plugins import import_plugins
from freezefix.stacks import current


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
    elif isinstance(model_type, str):
        # An mmcv-1.x era config names its detector bare: the first scope that registers it is the
        # one its code expects to build in (nuImages' CascadeRCNN is mmdet's, not mmdet3d's).
        package = next((s for s in current().sibling_scopes if s in available and available[s].get(model_type)), None)
    else:
        package = None
    if package in available:
        return package
    return "mmdet3d" if "mmdet3d" in available else "mmdet"


def scope_types(cfg: Any, scope: str, substitutions: dict[str, str]) -> Any:
    """Copy of ``cfg`` with unscoped types the default scope lacks rewritten to a sibling scope: model
    classes, and the task utils (``DeltaXYWHBBoxCoder``, ``MaxIoUAssigner``) nested in heads, which
    mmdet3d 1.x builds from its own task-util registry."""
    models, task_utils = registries(), current().task_util_registries()

    def holders(of: str) -> list[Any]:
        return [r for r in (models.get(of), task_utils.get(of)) if r is not None]

    def scoped(node: dict, recurse: Callable[[Any], Any]) -> dict:
        out = {k: recurse(v) for k, v in node.items() if k not in WEIGHT_ARGS}
        type_name = node.get("type")
        if isinstance(type_name, str) and "." not in type_name and scope in models and "_scope_" not in node:
            if all(r.get(type_name) is None for r in holders(scope)):
                for sibling in current().sibling_scopes:
                    if sibling != scope and any(type_name in r.module_dict for r in holders(sibling)):
                        out["type"] = substitutions[type_name] = f"{sibling}.{type_name}"
                        if sibling in task_utils and type_name in task_utils[sibling].module_dict:
                            # A task util builds its own defaults (MaxIoUAssigner's BboxOverlaps2D)
                            # in the default scope: build it in the scope that has them, and keep
                            # what it nests from the config's scope (BboxOverlapsNearest3D) there.
                            out = pin_types(dict(out, _scope_=sibling), scope, holders)
                        break
        return out

    return map_tree(cfg, on_dict=scoped)


def pin_types(node: dict, scope: str, holders: Callable[[str], list[Any]]) -> dict:
    """``node`` with the unscoped types nested in it that ``scope`` registers written as ``scope.X``:
    built under another ``_scope_``, they would be looked up there."""
    def pinned(inner: dict, recurse: Callable[[Any], Any]) -> dict:
        out = {k: recurse(v) for k, v in inner.items()}
        type_name = inner.get("type")
        if (inner is not node and isinstance(type_name, str) and "." not in type_name
                and any(r.get(type_name) is not None for r in holders(scope))):
            out["type"] = f"{scope}.{type_name}"
        return out

    return map_tree(node, on_dict=pinned)


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
        cfg = without_weight_args(model_cfg)
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
