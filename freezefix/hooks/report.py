"""What ``FreezeAuditHook`` measured: serialisable records, the log table and the JSON file."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

JSON_VERSION = 1


@dataclass
class Problem:
    """A contradiction between the config and the run, in the words of the matching freezefix rule."""

    code: str  # FF101 | FF105 | FF108 | FF109 | FF115 | FF116
    name: str
    module: str | None
    message: str
    iteration: int  # the runner's iteration at which it was seen


@dataclass
class ModuleAudit:
    """One top-level module of the model (``(model)``: parameters registered on the model itself)."""

    module: str
    cls: str
    params: int = 0
    trainable: int = 0  # requires_grad after model.train(), in the first iteration
    bn_total: int = 0
    bn_training: int = 0
    # {"lr": …, "weight_decay": …, "params": …} for trainable params, as the live optimizer has them
    lr: list[dict] = field(default_factory=list)
    zero_lr: int = 0  # trainable params in groups configured with lr 0
    held_frozen: int = 0  # params the optimizer holds that do not require grad
    not_in_optimizer: int = 0  # trainable params no optimizer holds
    frozen_since_wrap: int = 0  # trainable when DDP wrapped the model, frozen after train()
    frozen_since_wrap_children: list[str] = field(default_factory=list)  # where: 'stages', 'patch_embed'
    zero_lr_grads: int = 0  # lr-0 params that received a gradient before the first step
    zero_lr_grad_children: list[str] = field(default_factory=list)  # where: 'layer4'
    zero_lr_grad_bytes: int = 0
    zero_lr_state_bytes: int = 0  # optimizer state held for lr-0 params after the first step
    bn_moved: int = 0  # BatchNorm layers whose running statistics changed (modules meant frozen)
    zero_lr_changed: int = 0  # lr-0 params whose value changed during the window
    meant_frozen: bool = False  # every parameter frozen or at lr 0
    frozen_at_init: int = 0  # frozen tensors (params, BatchNorm statistics) no checkpoint load filled

    def add_lr(self, lr: float, weight_decay: float | None, numel: int) -> None:
        for entry in self.lr:
            if entry["lr"] == lr and entry["weight_decay"] == weight_decay:
                entry["params"] += numel
                return
        self.lr.append({"lr": lr, "weight_decay": weight_decay, "params": numel})


@dataclass
class GroupAudit:
    optimizer: int
    group: int
    configured_lr: float  # initial_lr when a scheduler recorded it, else the lr the group started with
    lr: float  # at the end of the audit
    weight_decay: float | None
    params: int
    frozen_params: int  # params in the group that do not require grad (mmcv 1.x keeps them)


@dataclass
class AuditReport:
    modules: list[ModuleAudit]
    groups: list[GroupAudit]
    problems: list[Problem]
    notes: list[str]
    ddp: dict | None  # {"find_unused_parameters": …, "static_graph": …} when wrapped in DDP
    iterations: int  # iterations audited
    steps: int  # optimizer steps seen in the window
    strict: bool
    first_iteration: int = 0
    rank: int = 0
    world_size: int = 1

    def to_json(self) -> dict:
        data = asdict(self)
        data["version"] = JSON_VERSION
        for module in data["modules"]:
            module["class"] = module.pop("cls")
        return data

    def dumps(self) -> str:
        # default=str: a value of an unforeseen type (a user's lr scheduler state) must not lose the report.
        return json.dumps(self.to_json(), indent=2, sort_keys=True, default=str) + "\n"

    def render(self) -> str:
        """The table the runner's log gets, with the problems and notes below it."""
        header = ("module", "class", "params", "trainable", "BN train", "lr (wd): params",
                  "lr-0 params w/ grad", "grad bytes", "opt-state bytes", "BN moved", "frozen since wrap")
        rows = [header]
        for m in self.modules:
            lrs = "; ".join(f"{e['lr']:g} ({_wd(e['weight_decay'])}): {e['params']:,}" for e in m.lr)
            if m.held_frozen:
                lrs += ("; " if lrs else "") + f"frozen, held: {m.held_frozen:,}"
            if m.not_in_optimizer:
                lrs += ("; " if lrs else "") + f"not in optimizer: {m.not_in_optimizer:,}"
            rows.append((m.module, m.cls, f"{m.params:,}", f"{m.trainable:,}",
                         f"{m.bn_training}/{m.bn_total}" if m.bn_total else "-", lrs or "-",
                         f"{m.zero_lr_grads:,}", f"{m.zero_lr_grad_bytes:,}", f"{m.zero_lr_state_bytes:,}",
                         str(m.bn_moved) if m.meant_frozen and m.bn_total else "-", f"{m.frozen_since_wrap:,}"))
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        lines = [f"freezefix FreezeAuditHook: {self.iterations} iterations from iteration {self.first_iteration}, "
                 f"{self.steps} optimizer steps; {_ddp(self.ddp)}"]
        for n, row in enumerate(rows):
            lines.append("  ".join(cell.rjust(w) if 2 <= i <= 4 or i >= 6 else cell.ljust(w)
                                   for i, (cell, w) in enumerate(zip(row, widths))).rstrip())
            if n == 0:
                lines.append("  ".join("-" * w for w in widths))
        if not self.problems:
            lines.append("no contradiction between the config and this run: every lr-0 module computes no "
                         "gradient, no frozen module's BatchNorm statistics moved, no 0 lr was revived")
        for problem in self.problems:
            lines.append(f"{problem.code} {problem.name}: {problem.message}")
        lines.extend(f"note: {note}" for note in self.notes)
        return "\n".join(lines)


def _wd(weight_decay: float | None) -> str:
    return "-" if weight_decay is None else f"{weight_decay:g}"


def _ddp(ddp: dict | None) -> str:
    if ddp is None:
        return "not wrapped in DDP"
    flags = ", ".join(f"{k}={v}" for k, v in sorted(ddp.items()))
    return f"DDP ({flags})"
