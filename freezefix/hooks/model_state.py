"""Reading a torch model's freeze state: the pieces FreezeAudit measures with."""

from __future__ import annotations

from typing import Any, Iterable

import torch
from torch import nn

WHOLE_MODEL = "(model)"  # parameters registered on the model itself, outside any child


def unwrap(model: nn.Module) -> nn.Module:
    """The user's model inside DataParallel / DistributedDataParallel (torch's, mmengine's, mmcv's)."""
    while isinstance(getattr(model, "module", None), nn.Module) and "DataParallel" in type(model).__name__:
        model = model.module
    return model


def ddp_settings(model: nn.Module) -> dict[str, bool] | None:
    """How DDP wrapped the model (None when it is not wrapped in DDP)."""
    if not isinstance(model, nn.parallel.DistributedDataParallel):
        return None
    return {"find_unused_parameters": bool(getattr(model, "find_unused_parameters", False)),
            "static_graph": bool(getattr(model, "static_graph", False))}


def top_module(name: str, children: set[str]) -> str:
    head = name.split(".", 1)[0]
    return head if head in children else WHOLE_MODEL


def sub_module(model: nn.Module, name: str) -> str:
    """The stage a parameter belongs to: 'img_backbone.layer4.0.conv1.weight' → 'layer4',
    'backbone.stages.0.blocks.0.attn.w' → 'stages.0' (the items of a ModuleList are the stages)."""
    parts = name.split(".")
    if len(parts) <= 2:
        return parts[-1]
    child = getattr(getattr(model, parts[0], None), parts[1], None)
    if isinstance(child, nn.ModuleList) and len(parts) > 3:
        return f"{parts[1]}.{parts[2]}"
    return parts[1]


def tensor_bytes(tensors: Iterable[Any]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors if torch.is_tensor(t))


def running_stats(layer: nn.Module) -> dict[str, torch.Tensor]:
    # The statistics themselves: num_batches_tracked also counts batches of a layer with momentum 0.
    return {name: buffer.detach().to("cpu", copy=True) for name, buffer in layer.named_buffers(recurse=False)
            if name in ("running_mean", "running_var") and buffer is not None}


def same_values(before: torch.Tensor, now: torch.Tensor) -> bool:
    now = now.detach().cpu()
    return before.shape == now.shape and bool(torch.equal(before, now) or (
        before.is_floating_point() and torch.allclose(before, now, rtol=0.0, atol=0.0, equal_nan=True)))


def number(value: Any) -> Any:
    """An lr or weight decay as JSON can hold it (torch accepts tensors there too)."""
    if torch.is_tensor(value):
        return value.item()
    return value


def freeze_setting(module: nn.Module | None, name: str) -> str:
    """The config setting that freezes them, in the words of the module's own arguments."""
    if module is not None and isinstance(getattr(module, "frozen_stages", None), int):
        return (f"raise model.{name}.frozen_stages (it is {module.frozen_stages} now) to the class's "
                "full-freeze value (`freezefix check` computes it)")
    return "freeze them with requires_grad=False (the class has no frozen_stages)"


def listed(names: list[str], at_most: int = 6) -> str:
    return ", ".join(names) if len(names) <= at_most else ", ".join(names[:at_most]) + f" and {len(names) - at_most} more"
