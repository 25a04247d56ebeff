"""The model and optimizers a freeze audit watches, as training starts, and what the audit finds
in them: parameters frozen after DDP wrapped the model (FF109), gradients at lr 0 (FF101), BatchNorm
statistics moving in a frozen module (FF105), lr-0 groups revived or lr-0 values changed (FF108),
optimizer state held for lr-0 parameters; and the report of it all.  :class:`FreezeAudit` decides
when each is measured."""

from __future__ import annotations

from collections import defaultdict

import torch
from torch import nn

from freezefix.building import is_batchnorm
from freezefix.hooks.model_state import (
    WHOLE_MODEL, freeze_setting, listed, number, running_stats, same_values, sub_module, tensor_bytes, top_module,
)
from freezefix.hooks.report import AuditReport, GroupAudit, ModuleAudit, Problem


class _Slot:
    """Where the optimizer holds one parameter."""

    __slots__ = ("optimizer", "group")

    def __init__(self, optimizer: int, group: int):
        self.optimizer, self.group = optimizer, group


class TrainingState:
    def __init__(self, model: nn.Module, optimizers: list[torch.optim.Optimizer], iteration: int,
                 problems: list[Problem], notes: list[str]):
        self.problems, self.notes = problems, notes  # the audit's own lists: what is found goes there
        self.model = model
        self.optimizers = optimizers
        self.first_iteration = iteration
        self.children = {name for name, _ in model.named_children()}
        self.params = dict(model.named_parameters())
        self.names = {id(p): name for name, p in self.params.items()}
        self.slots: dict[int, _Slot] = {}
        for index, optimizer in enumerate(optimizers):
            for group_index, group in enumerate(optimizer.param_groups):
                for p in group["params"]:
                    self.slots.setdefault(id(p), _Slot(index, group_index))
        if not optimizers:
            self.notes.append("the runner has no optimizer: lrs, gradients at lr 0 and optimizer state were "
                              "not audited")
        # Groups configured with lr 0 (lr_mult 0): schedulers keep the configured lr as initial_lr.
        # A group whose parameters are all frozen trains nothing whatever its lr: not a concern here.
        self.zero_groups = {(i, g) for i, optimizer in enumerate(optimizers)
                            for g, group in enumerate(optimizer.param_groups)
                            if self.configured_lr(group) == 0 and any(p.requires_grad for p in group["params"])}
        self.zero_lr = {name for name, p in self.params.items()
                        if p.requires_grad and self._slot_is_zero(id(p))}
        self.meant_frozen = self._modules_meant_frozen()
        self.bn_snapshot = {
            name: running_stats(layer) for name, layer in model.named_modules()
            if is_batchnorm(layer) and top_module(name, self.children) in self.meant_frozen
            and running_stats(layer)}
        self.param_snapshot = {name: self.params[name].detach().to("cpu", copy=True) for name in self.zero_lr}
        self.zero_lr_grads: dict[str, int] = {}
        self.zero_lr_grad_bytes: dict[str, int] = defaultdict(int)
        self.zero_lr_state_bytes: dict[str, int] = defaultdict(int)
        self.bn_moved: set[str] = set()
        self.changed: set[str] = set()
        self.revived: dict[tuple[int, int], tuple[int, float, str]] = {}
        self.frozen_since_wrap: dict[str, int] = {}
        self.frozen_since_wrap_children: dict[str, list[str]] = {}
        self.zero_lr_grad_children: dict[str, list[str]] = {}

    def configured_lr(self, group: dict) -> float:
        return number(group.get("initial_lr", group.get("lr")))

    def _slot_is_zero(self, key: int) -> bool:
        slot = self.slots.get(key)
        return slot is not None and (slot.optimizer, slot.group) in self.zero_groups

    def _modules_meant_frozen(self) -> set[str]:
        """Top-level modules whose every parameter is frozen or has lr 0."""
        verdict: dict[str, bool] = {}
        for name, p in self.params.items():
            module = top_module(name, self.children)
            still = (not p.requires_grad) or name in self.zero_lr
            verdict[module] = verdict.get(module, True) and still
        return {module for module, frozen in verdict.items() if frozen}

    def measure_first_gradients(self, iteration: int) -> None:
        """FF101: lr-0 parameters that received gradients (at the first step, before any weight changed)."""
        for name in self.zero_lr:
            grad = self.params[name].grad
            if grad is not None:
                self.zero_lr_grads[name] = grad.numel()
                self.zero_lr_grad_bytes[top_module(name, self.children)] += tensor_bytes([grad])
        by_module: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for name, numel in self.zero_lr_grads.items():
            by_module[top_module(name, self.children)][sub_module(self.model, name)] += numel
        self.zero_lr_grad_children = {module: list(stages) for module, stages in by_module.items()}
        for module, stages in sorted(by_module.items()):
            count = sum(stages.values())
            where = listed(list(stages))
            setting = freeze_setting(getattr(self.model, module, None), module)
            self.problems.append(Problem(
                "FF101", "partial-freeze-zero-lr", module,
                f"{module}: {count:,} params with lr 0 received gradients ({where}; "
                f"{self.zero_lr_grad_bytes[module]:,} gradient bytes): lr 0 is not frozen, they compute "
                f"gradients every step that lr 0 then throws away — {setting}", iteration))

    def check_bn_statistics(self, iteration: int) -> None:
        """FF105: BatchNorm running statistics that moved in a module meant frozen."""
        moved = defaultdict(list)
        for name, before in self.bn_snapshot.items():
            layer = self.model.get_submodule(name)
            if any(not same_values(before[k], v) for k, v in running_stats(layer).items()):
                self.bn_moved.add(name)
                moved[top_module(name, self.children)].append(name)
        for module, layers in sorted(moved.items()):
            owner = getattr(self.model, module, None)
            if hasattr(owner, "norm_eval"):
                advice = f"set model.{module}.norm_eval=True (it is {owner.norm_eval} now)"
            else:
                advice = (f"{type(owner).__name__} has no norm_eval: put its BatchNorm layers in eval mode "
                          "(a frozen norm_cfg, or eval() after train())")
            self.problems.append(Problem(
                "FF105", "bn-stats-drift", module,
                f"{module}: {len(layers)} BatchNorm layers changed their running statistics in the first "
                "forward although every parameter of the module is frozen or has lr 0: the frozen module "
                f"drifts towards the new data — {advice}", iteration))

    def measure_state(self, optimizer: torch.optim.Optimizer) -> None:
        """Optimizer state held for lr-0 parameters after the optimizer's first step (AdamW: two
        moments and a step count each)."""
        for name in self.zero_lr:
            p = self.params[name]
            state = optimizer.state.get(p)
            if state:
                self.zero_lr_state_bytes[top_module(name, self.children)] += tensor_bytes(state.values())

    def check_revived_groups(self, iteration: int, when: str) -> None:
        for key in sorted(self.zero_groups):
            if key in self.revived:
                continue
            optimizer, group_index = key
            group = self.optimizers[optimizer].param_groups[group_index]
            lr = number(group["lr"])
            if lr != 0:
                modules = sorted({top_module(self.names.get(id(p), "?"), self.children) for p in group["params"]})
                self.revived[key] = (iteration, lr, ", ".join(modules))
                self.problems.append(Problem(
                    "FF108", "zero-lr-revived-by-scheduler", modules[0] if len(modules) == 1 else None,
                    f"param group {group_index} ({', '.join(modules)}) is configured with lr 0 but has lr "
                    f"{lr:g} {when} {iteration}: a scheduler with an absolute floor or peak revived "
                    "it (eta_min / min_lr / a scalar OneCycle max); use eta_min_ratio / min_lr_ratio, or "
                    "freeze the module", iteration))

    def compare_values(self, first_step_judged: bool, seen_iterations: int, iteration: int) -> None:
        """FF108 (and FF105 when no step was seen): lr-0 parameters whose values changed in the window."""
        if not first_step_judged:
            # No step was seen (no optimizer, torch < 2.0): the statistics are judged at the end of the
            # window instead, when other hooks (EMA, buffer syncing) may also have touched them.
            self.check_bn_statistics(iteration)
        for name, before in self.param_snapshot.items():
            if not same_values(before, self.params[name]):
                self.changed.add(name)
        changed = defaultdict(int)
        for name in self.changed:
            changed[top_module(name, self.children)] += self.params[name].numel()
        for module, count in sorted(changed.items()):
            self.problems.append(Problem(
                "FF108", "zero-lr-revived-by-scheduler", module,
                f"{module}: {count:,} params with lr 0 changed value during the first {seen_iterations} "
                "iterations (a revived lr, or weight decay applied with one)", iteration))

    def release(self) -> None:
        # Snapshots can hold a copy of a whole backbone: nothing of the audit outlives its window.
        self.param_snapshot = {}
        self.bn_snapshot = {}


def check_frozen_since_wrap(state: TrainingState, wrap_trainable: dict[str, bool] | None, ddp: dict[str, bool] | None,
                            iteration: int) -> None:
    """FF109: parameters that were trainable when DDP wrapped the model and are frozen now."""
    if wrap_trainable is None:
        state.notes.append("the hook did not see the model before training started (before_run): "
                           "parameters frozen after DDP wrapped the model were not checked")
        return
    late: dict[str, int] = defaultdict(int)
    state.frozen_since_wrap_children = defaultdict(list)
    for name, p in state.params.items():
        if wrap_trainable.get(name) and not p.requires_grad:
            module = top_module(name, state.children)
            late[module] += p.numel()
            if sub_module(state.model, name) not in state.frozen_since_wrap_children[module]:
                state.frozen_since_wrap_children[module].append(sub_module(state.model, name))
    state.frozen_since_wrap = dict(late)
    if not late:
        return
    if ddp is None:
        state.notes.append("not wrapped in DDP; under DDP, the parameters counted in 'frozen since wrap' "
                           "need find_unused_parameters=True")
        return
    if ddp["find_unused_parameters"] or ddp["static_graph"]:
        return
    for module, count in sorted(late.items()):
        cls = type(getattr(state.model, module, state.model)).__name__
        state.problems.append(Problem(
            "FF109", "ddp-unused-params", module,
            f"{module}: {count:,} params were trainable when DDP wrapped the model but are frozen after "
            f"train() ({cls}.train() freezes them: {listed(state.frozen_since_wrap_children[module])}); without find_unused_parameters=True distributed "
            "training stops with 'Expected to have finished reduction' — set find_unused_parameters=True "
            "(inside model_wrapper_cfg when the config has one)", iteration))


def build_report(state: TrainingState, ddp: dict[str, bool] | None, iterations: int, steps: int,
                 strict: bool) -> AuditReport:
    """Per top-level module and per optimizer group, what the audit saw, with its problems and notes."""
    modules: dict[str, ModuleAudit] = {}
    bn_layers = defaultdict(lambda: [0, 0])
    for name, layer in state.model.named_modules():
        if name and is_batchnorm(layer):
            counts = bn_layers[top_module(name, state.children)]
            counts[0] += 1
            counts[1] += bool(layer.training)
    held = defaultdict(int)
    for name, p in state.params.items():
        module = top_module(name, state.children)
        audit = modules.get(module)
        if audit is None:
            owner = state.model if module == WHOLE_MODEL else getattr(state.model, module)
            audit = modules[module] = ModuleAudit(module, type(owner).__name__)
        audit.params += p.numel()
        audit.trainable += p.numel() if p.requires_grad else 0
        slot = state.slots.get(id(p))
        if slot is None:
            if p.requires_grad and state.optimizers:
                audit.not_in_optimizer += p.numel()
            continue
        if not p.requires_grad:
            held[module] += p.numel()
            continue
        group = state.optimizers[slot.optimizer].param_groups[slot.group]
        audit.add_lr(number(group["lr"]), number(group.get("weight_decay")), p.numel())
        if name in state.zero_lr:
            audit.zero_lr += p.numel()
    for module, audit in modules.items():
        audit.bn_total, audit.bn_training = bn_layers[module]
        audit.held_frozen = held[module]
        audit.frozen_since_wrap = state.frozen_since_wrap.get(module, 0)
        audit.frozen_since_wrap_children = list(state.frozen_since_wrap_children.get(module, []))
        audit.zero_lr_grad_children = list(state.zero_lr_grad_children.get(module, []))
        audit.zero_lr_grads = sum(n for name, n in state.zero_lr_grads.items()
                                  if top_module(name, state.children) == module)
        audit.zero_lr_grad_bytes = state.zero_lr_grad_bytes.get(module, 0)
        audit.zero_lr_state_bytes = state.zero_lr_state_bytes.get(module, 0)
        audit.bn_moved = sum(1 for name in state.bn_moved if top_module(name, state.children) == module)
        audit.zero_lr_changed = sum(state.params[name].numel() for name in state.changed
                                    if top_module(name, state.children) == module)
        audit.meant_frozen = module in state.meant_frozen
    groups = [GroupAudit(i, g, state.configured_lr(group), number(group["lr"]), number(group.get("weight_decay")),
                         sum(p.numel() for p in group["params"]),
                         sum(p.numel() for p in group["params"] if not p.requires_grad))
              for i, optimizer in enumerate(state.optimizers) for g, group in enumerate(optimizer.param_groups)]
    return AuditReport(modules=list(modules.values()), groups=groups, problems=state.problems,
                       notes=state.notes, ddp=ddp, iterations=iterations, steps=steps,
                       strict=strict, first_iteration=state.first_iteration)
