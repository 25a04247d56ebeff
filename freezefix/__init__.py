"""freezefix: find and fix inconsistent freeze settings in OpenMMLab (mmdet / mmdet3d) configs."""

from __future__ import annotations

from typing import Any

__all__ = ["RunOptions", "RunResult", "check_paths", "fix_paths"]


def __getattr__(name: str) -> Any:
    # The API is imported on first use: a training run that imports only ``freezefix.hooks`` (through
    # a config's custom_imports) must not pay for the resolver, the rules and their imports.
    if name in __all__:
        from freezefix import api

        return getattr(api, name)
    raise AttributeError(f"module 'freezefix' has no attribute {name!r}")
