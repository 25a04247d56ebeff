"""The OpenMMLab stack freezefix runs in: one interface, two implementations.

freezefix runs inside the user's training environment and asks that environment's own code every
question about a model: which class a type names, what it freezes, which lr each parameter gets.
Two stacks are in use and they answer differently:

- ``mmengine``: mmengine + mmcv 2.x + mmdet 3.x + mmdet3d ≥ 1.1 — ``mmengine.Config``, scoped
  ``MODELS`` registries with ``DefaultScope``, ``build_optim_wrapper``;
- ``mmcv1``: mmcv-full 1.x + mmdet 2.x + mmdet3d 1.0 — ``mmcv.Config``, parent/child registries
  whose build helpers fall back from mmdet3d to mmdet, ``mmcv.runner.build_optimizer`` (which keeps
  frozen parameters in the optimizer as their own groups at the base lr).

The stack is chosen by what is installed: mmcv 1.x (``mmcv-full``) means ``mmcv1``, anything else
with mmengine means ``mmengine``.  ``FREEZEFIX_STACK=mmengine|mmcv1`` forces one.  Loading configs,
building classes and models, building optimizers and running lr schedules all go through
:func:`current`.  Only what exists in one stack alone is imported where it is used: mmengine's
lazy-import test and ``pkg::`` base lookup in the resolver, guarded by :func:`stack_name`.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import warnings
from functools import lru_cache
from typing import Any, ContextManager, Protocol

from freezefix.stacks.common import installed_version

# Import-time noise of the mmcv 1.x stack that says nothing about the user's configs: mmcv 1.7's
# notice of the 2.0 rename, and torch's "No CUDA runtime is found" when mmcv loads its C++ helpers.
# Set here, before anything in freezefix can import mmcv.
warnings.filterwarnings("ignore", message="On January 1, 2023, MMCV will release v2.0.0", category=UserWarning)
logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)


class Stack(Protocol):
    name: str  # 'mmengine' | 'mmcv1'
    # Scopes tried, in order, for a type written without one (`type='ResNet'` in mmdet3d configs).
    sibling_scopes: tuple[str, ...]
    # Whether unscoped types must be rewritten to the scope that has them before a whole-model
    # build (mmengine), or the stack's own build helpers fall back by themselves (mmcv 1.x).
    rewrites_unscoped_types: bool
    # Where a scope's MODELS registry lives ('{scope}.registry', '{scope}.models.builder').
    registry_module: str
    # Whether the model's init_weights() runs before DDP and the optimizer are built (mmcv 1.x's
    # train scripts call it right after building the model) or after (mmengine's Runner.train).
    init_weights_before_wrap: bool
    # The setting the stack's runner schedules lrs from: 'param_scheduler' (mmengine) or 'lr_config'.
    lr_schedule: str
    # Why the stack's optimizer constructor logs no per-parameter lines; None when it does, and
    # capture_optimizer_log() returns them.
    no_optimizer_log: str | None

    def describe(self) -> str:
        """'mmcv-full 1.7.0, mmdet 2.28.2, mmdet3d 1.0.0rc6' — for reports."""

    def registries(self) -> dict[str, Any]:
        """scope → the registry its model classes are in, with the model modules imported."""

    def task_util_registries(self) -> dict[str, Any]:
        """scope → the registry of its task utils (box coders, assigners, samplers), which detectors
        build themselves from nested configs; empty where unscoped types are never rewritten."""

    def build_module(self, registry: Any, cfg: dict, scope: str) -> Any:
        """Build one module config (``type`` may be the class itself) as that scope's code would."""

    def config_dict(self, cfg: dict) -> Any:
        """The stack's ConfigDict (attribute access), which detectors expect for nested settings."""

    def build_model(self, model_cfg: dict, values: dict, scope: str) -> Any:
        """Build a whole detector the way the stack's train script does."""

    def load_config(self, path: str) -> dict:
        """The stack's own ``Config.fromfile`` (custom imports not run), as plain dicts and lists."""

    def build_optimizer(self, model: Any, values: dict) -> tuple[Any, float | None]:
        """The torch optimizer the stack's own constructor builds for ``model``, and the base lr."""

    def quiet(self) -> None:
        """Silence the stack's per-parameter log lines (they are not news to a freezefix user)."""

    def capture_optimizer_log(self) -> ContextManager[list[str]]:
        """Collect, while open, what the optimizer constructor logs, each line as the training log
        file writes it without its timestamp; LookupError(no_optimizer_log) when it logs nothing."""

    def runner_does_the_same(self, setting: str, before: Any, after: Any, values: dict) -> bool:
        """Whether the stack's runner does the same with the top-level ``setting`` as ``before`` and as
        ``after`` (None: absent), the rest of the config being ``values``: the runner's own code is run
        on both where the stack knows which code reads the setting; False where it does not."""

    def zero_lr_peak(self, setting: str, cfg: Any, base_lr: float, epochs: int) -> float | None:
        """Run one lr schedule the way the stack's runner would, on an optimizer whose first group
        has lr 0, and return the highest lr that group reaches (0.0: it stays at 0).  ``setting``
        names the schedule: ``'param_scheduler'`` (one scheduler of mmengine's list) or
        ``'lr_config'`` (mmcv 1.x's hook); None when this stack does not run such a schedule (its
        ``lr_schedule`` is the other one), or this one cannot be built or run here."""


def missing() -> str | None:
    """Why no stack can be used here, or None; from package metadata, importing nothing."""
    from importlib.util import find_spec

    absent = [name for name in ("torch", "mmdet") if find_spec(name) is None]
    if not absent:
        return None
    return (f"{' and '.join(absent)} not installed in this Python ({sys.executable}). freezefix reads what it "
            "checks off the real model classes, so it runs in the environment your configs train in: "
            "mmdet / mmdet3d with mmengine, or with mmcv-full 1.x")


def stack_name() -> str:
    """Which stack this environment has, without importing it (cheap: package metadata only)."""
    forced = os.environ.get("FREEZEFIX_STACK")
    if forced in ("mmengine", "mmcv1"):
        return forced
    mmcv = installed_version("mmcv-full", "mmcv")
    if mmcv is not None and mmcv.split(".")[0] in ("0", "1"):
        return "mmcv1"
    return "mmengine"


@lru_cache(maxsize=None)
def current() -> Stack:
    if stack_name() == "mmcv1":
        from freezefix.stacks.mmcv1_stack import Mmcv1Stack

        return Mmcv1Stack()
    from freezefix.stacks.mmengine_stack import MmengineStack

    return MmengineStack()


@lru_cache(maxsize=None)
def _registered_names() -> dict[int, str]:
    """id(class) → the name the stack builds it under: 'mmdet.ResNet' for what a scope's registries
    hold (models first, then task utils and the rest), the bare name for what mmengine's root
    registries hold (optimizers, schedulers, wrappers, hooks)."""
    names: dict[int, str] = {}
    current().registries()  # imports each scope's models, which registers their classes

    def add(module_name: str, prefix: str) -> None:
        try:
            module = importlib.import_module(module_name)
            from mmengine.registry import Registry
        except ImportError:
            return
        # A scope's registry module also re-exports mmengine's root registries (MMENGINE_MODELS …):
        # only its own count, so that AdamW stays 'AdamW' and not 'mmdet3d.AdamW'.
        own_scope = prefix.rstrip(".") or "mmengine"
        registries = [r for r in vars(module).values() if isinstance(r, Registry) and r.scope == own_scope]
        registries.sort(key=lambda r: r.name != "model")
        for registry in registries:
            for name, cls in registry.module_dict.items():
                names.setdefault(id(cls), f"{prefix}{name}")

    for scope in current().sibling_scopes:
        add(f"{scope}.registry", f"{scope}.")
    add("mmengine.registry", "")
    return names


def registered_name(obj: Any) -> str | None:
    """The registry name of a class a new-style config imports (``type=ResNet``), or None."""
    return _registered_names().get(id(obj))


def registered_names_changed() -> None:
    """Plugins were imported: classes may have been registered since the names were read."""
    _registered_names.cache_clear()
