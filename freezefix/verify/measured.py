"""What the verification worker measured on a real model, as the values the gate, ``explain`` and
the answers cache read; the worker writes them as one JSON line per job (``to_json`` /
``from_json``), since it runs in its own process."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

NOT_IN_OPTIMIZER = "not in optimizer"  # the lr histogram's key for params the optimizer does not hold
OPTIMIZER_NOT_BUILT = "optimizer could not be built"


@dataclass(frozen=True)
class ModuleMeasure:
    """One module of the built model (a top-level child, or a child of one: a backbone stage),
    after construction, after ``train()``, and in the optimizer the stack's constructor built."""

    class_name: str
    params: int
    trainable_constructed: int  # requires_grad before train(): what DDP and the optimizer see
    trainable_train: int  # requires_grad after train()
    trainable_zero_lr: int  # trainable after train(), and given lr 0
    bn_total: int
    bn_training: int  # BatchNorm layers still in training mode after train()
    # lr → elements, over the params trainable at construction: repr(lr), or NOT_IN_OPTIMIZER
    lr: dict[str, int] = field(default_factory=dict)
    # weight decay → elements, over the same params the optimizer holds: repr(weight_decay)
    decay: dict[str, int] = field(default_factory=dict)
    # lr → the custom key that set it → elements, over the same params (the key the constructor's own
    # rule picks, credited only where the lr is the one that key gives)
    lr_keys: dict[str, dict[str, int]] = field(default_factory=dict)
    # lr → elements, over params frozen at construction that the optimizer holds anyway (mmcv 1.x)
    frozen_in_optimizer: dict[str, int] = field(default_factory=dict)
    children: dict[str, ModuleMeasure] = field(default_factory=dict)

    @property
    def at_zero_lr_or_left_out(self) -> int:
        """Trainable-at-construction elements the optimizer gives lr 0 or does not hold."""
        return self.lr.get("0.0", 0) + self.lr.get(NOT_IN_OPTIMIZER, 0)

    @property
    def live_lrs(self) -> dict[str, int]:
        """The non-zero lrs the optimizer gives this module's params, lr → elements."""
        return {lr: n for lr, n in self.lr.items() if lr not in ("0.0", NOT_IN_OPTIMIZER)}

    def to_json(self) -> dict:
        data = asdict(self)
        data["class"] = data.pop("class_name")
        data["children"] = {name: child.to_json() for name, child in self.children.items()}
        return data

    @classmethod
    def from_json(cls, data: dict) -> ModuleMeasure:
        data = dict(data)
        data["class_name"] = data.pop("class")
        data["children"] = {name: cls.from_json(child) for name, child in data.get("children", {}).items()}
        return cls(**data)


@dataclass(frozen=True)
class BuildAnswer:
    """The worker's answer to one job: the config as the stack loads it, and the model it builds."""

    id: Any
    ok: bool = False
    error: str | None = None
    stack: str | None = None  # 'mmengine' | 'mmcv1'
    values: dict | None = None  # the stack's resolved config, as JSON reads it back; None: did not load
    built: bool = False  # False: an identical (model, optimizer) was built before, or the answer was kept
    build_seconds: float = 0.0
    level: str = "model"  # 'model': the detector was built; 'module': only its modules could be
    device: str | None = None  # where it was built; None: it was not
    substitutions: dict[str, str] = field(default_factory=dict)  # unscoped type → the scoped name it was built as
    optimizer_error: str | None = None  # why the stack's constructor could not build the optimizer
    notes: list[str] = field(default_factory=list)
    optimizer_log: list[str] | None = None
    modules: dict[str, ModuleMeasure] = field(default_factory=dict)
    base_lr: float | None = None
    total_params: int | None = None
    trainable_params: int | None = None
    trainable_zero_lr: int | None = None
    # module → [tensors holding the checkpoint's value, tensors its init_cfg's checkpoint holds for it],
    # after init_weights() on the CPU (the modules a fix gives weights to load); a string: why not measured
    weights_loaded: dict[str, Any] = field(default_factory=dict)
    traceback: str | None = None

    def to_json(self) -> dict:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["modules"] = {name: module.to_json() for name, module in self.modules.items()}
        return data

    @classmethod
    def from_json(cls, data: dict) -> BuildAnswer:
        known = {f.name for f in fields(cls)}
        data = {k: v for k, v in data.items() if k in known}
        data["modules"] = {name: ModuleMeasure.from_json(m) for name, m in data.get("modules", {}).items()}
        return cls(**data)
