"""What both stack implementations share, importing nothing of theirs: package versions and
the import of each scope's model registry."""

from __future__ import annotations

import importlib
from functools import lru_cache
from typing import Any


@lru_cache(maxsize=None)  # read per rule and config: metadata parsing is slow, and it does not change
def installed_version(*names: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version  # 20 ms to import: only when asked

    for name in names:
        try:
            return version(name)
        except PackageNotFoundError:
            continue
    return None


def import_registries(scopes: tuple[str, ...], registry_module: str,
                      errors: dict[str, str] | None = None, name: str = "MODELS") -> dict[str, Any]:
    """scope → its ``MODELS`` registry (or the one called ``name``) in ``registry_module`` formatted
    with the scope, with the scope's model classes registered; a package that is absent or broken
    simply does not count (``errors``, when given, gets why: scope → 'ImportError: …')."""
    registries = {}
    for scope in scopes:
        try:
            importlib.import_module(f"{scope}.models")
            registries[scope] = getattr(importlib.import_module(registry_module.format(scope=scope)), name)
        except Exception as exc:  # noqa: BLE001
            if errors is not None:
                errors[scope] = f"{type(exc).__name__}: {exc}"
    return registries


def describe_versions(names: tuple[str, ...]) -> str:
    found = [(n, installed_version(n)) for n in names]
    return ", ".join(f"{n} {v}" for n, v in found if v) or "no OpenMMLab package"


def optimizer_with_a_zero_lr_group(base_lr: float) -> Any:
    """A torch SGD optimizer of two one-parameter groups: the first at lr 0 (what a frozen module's
    ``lr_mult=0`` gives), the second at ``base_lr``; for running lr schedules on."""
    import torch

    frozen, live = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    return torch.optim.SGD([{"params": [frozen], "lr": 0.0}, {"params": [live], "lr": base_lr}], lr=base_lr)
