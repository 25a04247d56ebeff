"""What a training run really freezes, measured inside it: the engine behind ``FreezeAuditHook``.

Runner-independent.  The runner adapters (:mod:`freezefix.hooks`) call, in this order:

- :meth:`FreezeAudit.model_wrapped` once the model is wrapped (DDP or not) and before the loop calls
  ``model.train()``: which parameters require grad at that moment is what DDP registered;
- :meth:`FreezeAudit.iteration_starts` before each training iteration: the first call reads the
  state the loop trains in (after ``model.train()``, the optimizer built, a checkpoint loaded) and
  hooks the optimizers' ``step``, which is where gradients and running statistics are judged —
  *before* the step changes any weight, so ``strict=True`` can stop a run that contradicts its config;
- :meth:`FreezeAudit.iteration_ends` after each iteration: after ``iterations`` iterations (and at
  least one optimizer step) the audit compares values, reports once and removes every hook: after
  that window it costs one attribute test per hook call.

Words and codes are those of the matching freezefix rules (FF101 partial-freeze-zero-lr, FF105
bn-stats-drift, FF108 zero-lr-revived-by-scheduler, FF109 ddp-unused-params).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Callable

import torch
from torch import nn

from freezefix.hooks.model_state import (
    WHOLE_MODEL, ddp_settings, freeze_setting, is_batchnorm, listed, number, running_stats, same_values, sub_module,
    tensor_bytes, top_module, unwrap,
)
from freezefix.hooks.report import AuditReport, GroupAudit, ModuleAudit, Problem

class FreezeAuditError(RuntimeError):
    """``strict=True``: the run contradicts its config; raised before the optimizer step."""


class _Slot:
    """Where the optimizer holds one parameter."""

    __slots__ = ("optimizer", "group")

    def __init__(self, optimizer: int, group: int):
        self.optimizer, self.group = optimizer, group


class FreezeAudit:
    def __init__(self, iterations: int = 3, strict: bool = False,
                 emit: Callable[[AuditReport], None] | None = None,
                 failed: Callable[[str, Exception], None] | None = None):
        if iterations < 1:
            raise ValueError(f"FreezeAuditHook: iterations must be at least 1, got {iterations}")
        self.iterations, self.strict, self._emit = iterations, strict, emit
        # Told when the audit breaks inside an optimizer step, where no runner hook guards it.
        self._failed = failed
        self._step_hooks = True  # torch >= 2.0: gradients are judged at the optimizer's step
        self._first_step_judged = False
        self.report: AuditReport | None = None  # set once the audit is over
        self._started = False
        self._done = False
        self._wrap_trainable: dict[str, bool] | None = None
        self._ddp: dict[str, bool] | None = None
        self._seen_iterations = 0
        self._iteration = 0  # the runner's count, at the iteration being audited
        self._steps = 0
        self._handles: list[Any] = []
        self._notes: list[str] = []
        self._problems: list[Problem] = []

    # -- the moments the runner reports ---------------------------------------------------------

    def model_wrapped(self, model: nn.Module) -> None:
        self._ddp = ddp_settings(model)
        self._wrap_trainable = {name: p.requires_grad for name, p in unwrap(model).named_parameters()}

    def iteration_starts(self, model: nn.Module, optimizers: list[torch.optim.Optimizer],
                         iteration: int) -> None:
        if self._done:
            return
        self._iteration = iteration
        if not self._started:
            self._started = True
            self._start(unwrap(model), optimizers, iteration)
            self._raise_if_strict()

    def iteration_ends(self, iteration: int) -> None:
        if self._done or not self._started:
            return
        self._seen_iterations += 1
        self._check_revived_groups(iteration, when="after iteration")
        if self._seen_iterations >= self.iterations and (
                self._steps or not self._optimizers or not self._step_hooks):
            self.finish()

    def finish(self) -> AuditReport | None:
        """End the audit (the window is over, or training ended first): compare, report, unhook."""
        if self._done:
            return self.report
        self._done = True
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        if not self._started:
            self._notes.append("training ran no iteration: nothing was audited")
            self.report = AuditReport(modules=[], groups=[], problems=[], notes=self._notes, ddp=self._ddp,
                                      iterations=0, steps=0, strict=self.strict)
        else:
            if self._steps == 0 and self._optimizers and self._step_hooks:
                self._notes.append(f"no optimizer step ran in the {self._seen_iterations} audited iterations "
                                   "(gradient accumulation longer than the run?): gradients at lr 0 and "
                                   "optimizer state were not measured")
            self._compare_values()
            self.report = self._build_report()
            self._release()
        if self._emit is not None:
            self._emit(self.report)
        return self.report

    def abort(self) -> None:
        """The audit broke: unhook the optimizers and drop the snapshots; training goes on."""
        self._done = True
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._release()

    # -- first iteration: the state training runs in -------------------------------------------

    def _start(self, model: nn.Module, optimizers: list[torch.optim.Optimizer], iteration: int) -> None:
        self._model = model
        self._optimizers = optimizers
        self._first_iteration = iteration
        self._children = {name for name, _ in model.named_children()}
        self._params = dict(model.named_parameters())
        self._names = {id(p): name for name, p in self._params.items()}
        self._slots: dict[int, _Slot] = {}
        for index, optimizer in enumerate(optimizers):
            for group_index, group in enumerate(optimizer.param_groups):
                for p in group["params"]:
                    self._slots.setdefault(id(p), _Slot(index, group_index))
        if not optimizers:
            self._notes.append("the runner has no optimizer: lrs, gradients at lr 0 and optimizer state were "
                               "not audited")
        # Groups configured with lr 0 (lr_mult 0): schedulers keep the configured lr as initial_lr.
        # A group whose parameters are all frozen trains nothing whatever its lr: not a concern here.
        self._zero_groups = {(i, g) for i, optimizer in enumerate(optimizers)
                             for g, group in enumerate(optimizer.param_groups)
                             if self._configured_lr(group) == 0 and any(p.requires_grad for p in group["params"])}
        self._zero_lr = {name for name, p in self._params.items()
                         if p.requires_grad and self._slot_is_zero(id(p))}
        self._meant_frozen = self._modules_meant_frozen()
        self._bn_snapshot = {
            name: running_stats(layer) for name, layer in model.named_modules()
            if is_batchnorm(layer) and top_module(name, self._children) in self._meant_frozen
            and running_stats(layer)}
        self._param_snapshot = {name: self._params[name].detach().to("cpu", copy=True) for name in self._zero_lr}
        self._zero_lr_grads: dict[str, int] = {}
        self._zero_lr_grad_bytes: dict[str, int] = defaultdict(int)
        self._zero_lr_state_bytes: dict[str, int] = defaultdict(int)
        self._bn_moved: set[str] = set()
        self._changed: set[str] = set()
        self._revived: dict[tuple[int, int], tuple[int, float, str]] = {}
        self._stepped: list[torch.optim.Optimizer] = []
        self._frozen_since_wrap: dict[str, int] = {}
        self._frozen_since_wrap_children: dict[str, list[str]] = {}
        self._zero_lr_grad_children: dict[str, list[str]] = {}
        self._check_frozen_since_wrap()
        self._check_revived_groups(iteration, when="at the start of iteration")
        if not all(hasattr(o, "register_step_pre_hook") for o in optimizers):
            self._step_hooks = False
            self._notes.append("torch < 2.0 has no optimizer step hooks: gradients at lr 0, optimizer state and "
                               "BatchNorm statistics before the first step were not measured")
            return
        for optimizer in optimizers:
            self._handles.append(optimizer.register_step_pre_hook(self._guard(self._before_step)))
            self._handles.append(optimizer.register_step_post_hook(self._guard(self._after_step)))

    def _guard(self, step_hook: Callable) -> Callable:
        """Run inside optimizer.step(): only FreezeAuditError (strict=True) may reach training."""
        def guarded(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
            if self._done:
                return
            try:
                step_hook(optimizer)
            except FreezeAuditError:
                raise
            except Exception as exc:  # noqa: BLE001 - a broken audit must not stop the user's training
                self.abort()
                if self._failed is not None:
                    self._failed("the optimizer step", exc)
        return guarded

    def _configured_lr(self, group: dict) -> float:
        return number(group.get("initial_lr", group.get("lr")))

    def _slot_is_zero(self, key: int) -> bool:
        slot = self._slots.get(key)
        return slot is not None and (slot.optimizer, slot.group) in self._zero_groups

    def _modules_meant_frozen(self) -> set[str]:
        """Top-level modules whose every parameter is frozen or has lr 0."""
        verdict: dict[str, bool] = {}
        for name, p in self._params.items():
            module = top_module(name, self._children)
            still = (not p.requires_grad) or name in self._zero_lr
            verdict[module] = verdict.get(module, True) and still
        return {module for module, frozen in verdict.items() if frozen}

    def _check_frozen_since_wrap(self) -> None:
        if self._wrap_trainable is None:
            self._notes.append("the hook did not see the model before training started (before_run): "
                               "parameters frozen after DDP wrapped the model were not checked")
            return
        late: dict[str, int] = defaultdict(int)
        self._frozen_since_wrap_children = defaultdict(list)
        for name, p in self._params.items():
            if self._wrap_trainable.get(name) and not p.requires_grad:
                module = top_module(name, self._children)
                late[module] += p.numel()
                if sub_module(self._model, name) not in self._frozen_since_wrap_children[module]:
                    self._frozen_since_wrap_children[module].append(sub_module(self._model, name))
        self._frozen_since_wrap = dict(late)
        if not late:
            return
        ddp = self._ddp
        if ddp is None:
            self._notes.append("not wrapped in DDP; under DDP, the parameters counted in 'frozen since wrap' "
                               "need find_unused_parameters=True")
            return
        if ddp["find_unused_parameters"] or ddp["static_graph"]:
            return
        for module, count in sorted(late.items()):
            cls = type(getattr(self._model, module, self._model)).__name__
            self._problems.append(Problem(
                "FF109", "ddp-unused-params", module,
                f"{module}: {count:,} params were trainable when DDP wrapped the model but are frozen after "
                f"train() ({cls}.train() freezes them: {listed(self._frozen_since_wrap_children[module])}); without find_unused_parameters=True distributed "
                "training stops with 'Expected to have finished reduction' — set find_unused_parameters=True "
                "(inside model_wrapper_cfg when the config has one)", self._iteration))

    # -- optimizer steps: judged before any weight changes --------------------------------------

    def _before_step(self, optimizer: torch.optim.Optimizer) -> None:
        self._check_revived_groups(self._iteration, when="at the optimizer step of iteration")
        if not self._first_step_judged:
            # The first step of any optimizer: backward has run, no weight has changed yet, and only
            # the forward has touched BatchNorm statistics (other hooks run after the iteration).
            self._first_step_judged = True
            self._measure_first_gradients()
            self._check_bn_statistics()
        self._raise_if_strict()

    def _after_step(self, optimizer: torch.optim.Optimizer) -> None:
        if optimizer not in self._stepped:
            self._stepped.append(optimizer)
            self._measure_state(optimizer)
        self._steps += 1

    def _measure_first_gradients(self) -> None:
        for name in self._zero_lr:
            grad = self._params[name].grad
            if grad is not None:
                self._zero_lr_grads[name] = grad.numel()
                self._zero_lr_grad_bytes[top_module(name, self._children)] += tensor_bytes([grad])
        by_module: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for name, numel in self._zero_lr_grads.items():
            by_module[top_module(name, self._children)][sub_module(self._model, name)] += numel
        self._zero_lr_grad_children = {module: list(stages) for module, stages in by_module.items()}
        for module, stages in sorted(by_module.items()):
            count = sum(stages.values())
            where = listed(list(stages))
            setting = freeze_setting(getattr(self._model, module, None), module)
            self._problems.append(Problem(
                "FF101", "partial-freeze-zero-lr", module,
                f"{module}: {count:,} params with lr 0 received gradients ({where}; "
                f"{self._zero_lr_grad_bytes[module]:,} gradient bytes): lr 0 is not frozen, they compute "
                f"gradients every step that lr 0 then throws away — {setting}", self._iteration))

    def _check_bn_statistics(self) -> None:
        moved = defaultdict(list)
        for name, before in self._bn_snapshot.items():
            layer = self._model.get_submodule(name)
            if any(not same_values(before[k], v) for k, v in running_stats(layer).items()):
                self._bn_moved.add(name)
                moved[top_module(name, self._children)].append(name)
        for module, layers in sorted(moved.items()):
            owner = getattr(self._model, module, None)
            if hasattr(owner, "norm_eval"):
                advice = f"set model.{module}.norm_eval=True (it is {owner.norm_eval} now)"
            else:
                advice = (f"{type(owner).__name__} has no norm_eval: put its BatchNorm layers in eval mode "
                          "(a frozen norm_cfg, or eval() after train())")
            self._problems.append(Problem(
                "FF105", "bn-stats-drift", module,
                f"{module}: {len(layers)} BatchNorm layers changed their running statistics in the first "
                "forward although every parameter of the module is frozen or has lr 0: the frozen module "
                f"drifts towards the new data — {advice}", self._iteration))

    def _measure_state(self, optimizer: torch.optim.Optimizer) -> None:
        """Optimizer state held for lr-0 parameters after the optimizer's first step (AdamW: two
        moments and a step count each)."""
        for name in self._zero_lr:
            p = self._params[name]
            state = optimizer.state.get(p)
            if state:
                self._zero_lr_state_bytes[top_module(name, self._children)] += tensor_bytes(state.values())

    def _check_revived_groups(self, iteration: int, when: str) -> None:
        for key in sorted(self._zero_groups):
            if key in self._revived:
                continue
            optimizer, group_index = key
            group = self._optimizers[optimizer].param_groups[group_index]
            lr = number(group["lr"])
            if lr != 0:
                modules = sorted({top_module(self._names.get(id(p), "?"), self._children) for p in group["params"]})
                self._revived[key] = (iteration, lr, ", ".join(modules))
                self._problems.append(Problem(
                    "FF108", "zero-lr-revived-by-scheduler", modules[0] if len(modules) == 1 else None,
                    f"param group {group_index} ({', '.join(modules)}) is configured with lr 0 but has lr "
                    f"{lr:g} {when} {iteration}: a scheduler with an absolute floor or peak revived "
                    "it (eta_min / min_lr / a scalar OneCycle max); use eta_min_ratio / min_lr_ratio, or "
                    "freeze the module", iteration))

    # -- end of the window ---------------------------------------------------------------------

    def _compare_values(self) -> None:
        if not self._first_step_judged:
            # No step was seen (no optimizer, torch < 2.0): the statistics are judged at the end of the
            # window instead, when other hooks (EMA, buffer syncing) may also have touched them.
            self._check_bn_statistics()
        for name, before in self._param_snapshot.items():
            if not same_values(before, self._params[name]):
                self._changed.add(name)
        changed = defaultdict(int)
        for name in self._changed:
            changed[top_module(name, self._children)] += self._params[name].numel()
        for module, count in sorted(changed.items()):
            self._problems.append(Problem(
                "FF108", "zero-lr-revived-by-scheduler", module,
                f"{module}: {count:,} params with lr 0 changed value during the first {self._seen_iterations} "
                "iterations (a revived lr, or weight decay applied with one)", self._iteration))

    def _raise_if_strict(self) -> None:
        if not self.strict or not self._problems:
            return
        problems = list(self._problems)
        try:
            self.finish()  # the table and the JSON first, so the user sees why the run stopped
        except Exception as exc:  # noqa: BLE001 - strict still stops the run when reporting fails
            problems.append(Problem("", "", None, f"(the report could not be written: {type(exc).__name__}: {exc})",
                                    self._iteration))
        first = problems[0]
        raise FreezeAuditError(
            f"FreezeAuditHook(strict=True) stopped training before the optimizer changed any weight: "
            f"{first.code} {first.name}: {first.message}"
            + (f" (and {len(problems) - 1} more: see the freeze audit above)" if len(problems) > 1 else ""))

    def _release(self) -> None:
        # Snapshots can hold a copy of a whole backbone: nothing of the audit outlives its window.
        self._param_snapshot = {}
        self._bn_snapshot = {}

    def _build_report(self) -> AuditReport:
        modules: dict[str, ModuleAudit] = {}
        bn_layers = defaultdict(lambda: [0, 0])
        for name, layer in self._model.named_modules():
            if name and is_batchnorm(layer):
                counts = bn_layers[top_module(name, self._children)]
                counts[0] += 1
                counts[1] += bool(layer.training)
        held = defaultdict(int)
        for name, p in self._params.items():
            module = top_module(name, self._children)
            audit = modules.get(module)
            if audit is None:
                owner = self._model if module == WHOLE_MODEL else getattr(self._model, module)
                audit = modules[module] = ModuleAudit(module, type(owner).__name__)
            audit.params += p.numel()
            audit.trainable += p.numel() if p.requires_grad else 0
            slot = self._slots.get(id(p))
            if slot is None:
                if p.requires_grad and self._optimizers:
                    audit.not_in_optimizer += p.numel()
                continue
            if not p.requires_grad:
                held[module] += p.numel()
                continue
            group = self._optimizers[slot.optimizer].param_groups[slot.group]
            audit.add_lr(number(group["lr"]), number(group.get("weight_decay")), p.numel())
            if name in self._zero_lr:
                audit.zero_lr += p.numel()
        for module, audit in modules.items():
            audit.bn_total, audit.bn_training = bn_layers[module]
            audit.held_frozen = held[module]
            audit.frozen_since_wrap = self._frozen_since_wrap.get(module, 0)
            audit.frozen_since_wrap_children = list(self._frozen_since_wrap_children.get(module, []))
            audit.zero_lr_grad_children = list(self._zero_lr_grad_children.get(module, []))
            audit.zero_lr_grads = sum(n for name, n in self._zero_lr_grads.items()
                                      if top_module(name, self._children) == module)
            audit.zero_lr_grad_bytes = self._zero_lr_grad_bytes.get(module, 0)
            audit.zero_lr_state_bytes = self._zero_lr_state_bytes.get(module, 0)
            audit.bn_moved = sum(1 for name in self._bn_moved if top_module(name, self._children) == module)
            audit.zero_lr_changed = sum(self._params[name].numel() for name in self._changed
                                        if top_module(name, self._children) == module)
            audit.meant_frozen = module in self._meant_frozen
        groups = [GroupAudit(i, g, self._configured_lr(group), number(group["lr"]), number(group.get("weight_decay")),
                             sum(p.numel() for p in group["params"]),
                             sum(p.numel() for p in group["params"] if not p.requires_grad))
                  for i, optimizer in enumerate(self._optimizers) for g, group in enumerate(optimizer.param_groups)]
        return AuditReport(modules=list(modules.values()), groups=groups, problems=self._problems,
                           notes=self._notes, ddp=self._ddp, iterations=self._seen_iterations, steps=self._steps,
                           strict=self.strict, first_iteration=self._first_iteration)
