"""Small trainable models around REAL registry backbones, for FreezeAuditHook's runner tests.

The backbone is built from the installed stack's registry (mmdet's ResNet-50, SwinTransformer); only
the head is ours: a global pool and a linear layer with a squared-error loss, so a real Runner can
train a few iterations on the CPU.  Importable as ``tests.audit_models`` by configs' custom_imports.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import Dataset


class RandomImages(Dataset):
    """``length`` fixed random images (3×size×size) with a scalar target each."""

    def __init__(self, length: int = 16, size: int = 64, seed: int = 0):
        generator = torch.Generator().manual_seed(seed)
        self.images = torch.randn(length, 3, size, size, generator=generator)
        self.targets = torch.randn(length, generator=generator)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict:
        return {"inputs": self.images[index], "targets": self.targets[index]}


def pooled_loss(backbone: nn.Module, head: nn.Linear, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    features = backbone(inputs)[-1].mean(dim=(2, 3))
    return ((head(features).squeeze(1) - targets) ** 2).mean()


def mmengine_model_class() -> type:
    from mmengine.model import BaseModel
    from mmengine.registry import MODELS

    class PooledRegressor(BaseModel):
        """A detector-shaped model: ``backbone`` from mmdet's registry, a linear ``head``."""

        def __init__(self, backbone: dict, head_in: int = 2048, data_preprocessor: dict | None = None):
            super().__init__(data_preprocessor=data_preprocessor)
            import mmdet.models  # noqa: F401 - registers mmdet's backbones
            from mmdet.registry import MODELS as MMDET_MODELS

            self.backbone = MMDET_MODELS.build(backbone)
            self.head = nn.Linear(head_in, 1)

        def forward(self, inputs, targets=None, mode="tensor"):
            if mode == "loss":
                return {"loss": pooled_loss(self.backbone, self.head, inputs, targets)}
            return self.head(self.backbone(inputs)[-1].mean(dim=(2, 3)))

    MODELS.register_module(name="FreezeAuditPooledRegressor", module=PooledRegressor, force=True)
    return PooledRegressor


def mmcv1_model_class() -> type:
    class PooledRegressor(nn.Module):
        """The mmcv 1.x shape of the same model: ``train_step`` returns the loss for OptimizerHook."""

        def __init__(self, backbone: dict, head_in: int = 2048):
            super().__init__()
            from mmdet.models.builder import BACKBONES

            self.backbone = BACKBONES.build(backbone)
            self.head = nn.Linear(head_in, 1)

        def train_step(self, data, optimizer=None, **kwargs):
            loss = pooled_loss(self.backbone, self.head, data["inputs"], data["targets"])
            return {"loss": loss, "log_vars": {"loss": loss.item()}, "num_samples": len(data["inputs"])}

    return PooledRegressor


# Registered on import, so a config's custom_imports can name the model type.
try:
    PooledRegressor = mmengine_model_class()
except ImportError:  # the mmcv 1.x stack has no mmengine
    PooledRegressor = None


def register_dataset() -> None:
    from mmengine.registry import DATASETS

    DATASETS.register_module(name="FreezeAuditRandomImages", module=RandomImages, force=True)


if PooledRegressor is not None:
    register_dataset()
