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
bn-stats-drift, FF108 zero-lr-revived-by-scheduler, FF109 ddp-unused-params, FF115
frozen-without-weights and FF116 checkpoint-misses-frozen-weights: from what the runner's own loads
filled between ``model_wrapped`` and the first iteration, :mod:`freezefix.hooks.weight_loads`).
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from freezefix.hooks.model_state import ddp_settings, unwrap
from freezefix.hooks.report import AuditReport, Problem
from freezefix.hooks.training_state import TrainingState, build_report, check_frozen_since_wrap
from freezefix.hooks.weight_loads import WeightsAudit


class FreezeAuditError(RuntimeError):
    """``strict=True``: the run contradicts its config; raised before the optimizer step."""


class FreezeAudit:
    """When each measurement of a :class:`TrainingState` is taken in the run's life (the moments the
    runner adapters report), hooking the optimizers' steps for the first iterations only; what is
    found, in order, in ``report`` once the window is over."""

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
        self._state: TrainingState | None = None  # from the first iteration on
        self._done = False
        self._wrap_trainable: dict[str, bool] | None = None
        self._ddp: dict[str, bool] | None = None
        self._seen_iterations = self._steps = 0
        self._iteration = 0  # the runner's count, at the iteration being audited
        self._handles: list[Any] = []
        self._notes, self._problems = [], []  # type: list[str], list[Problem]
        self._weights = WeightsAudit()  # what the runner's own loads fill, until the first iteration

    # -- the moments the runner reports ---------------------------------------------------------

    def model_wrapped(self, model: nn.Module, records_loads: bool = True) -> None:
        self._ddp = ddp_settings(model)
        self._wrap_trainable = {name: p.requires_grad for name, p in unwrap(model).named_parameters()}
        self._weights.start(unwrap(model), records_loads, self._notes)

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
        self._state.check_revived_groups(iteration, when="after iteration")
        if self._seen_iterations >= self.iterations and (
                self._steps or not self._optimizers or not self._step_hooks):
            self.finish()

    def finish(self) -> AuditReport | None:
        """End the audit (the window is over, or training ended first): compare, report, unhook."""
        if self._done:
            return self.report
        self._done = True
        self._weights.stop()
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
            self._state.compare_values(self._first_step_judged, self._seen_iterations, self._iteration)
            self.report = build_report(self._state, self._ddp, self._seen_iterations, self._steps, self.strict)
            self._weights.annotate(self.report.modules)
            self._state.release()
        if self._emit is not None:
            self._emit(self.report)
        return self.report

    def abort(self) -> None:
        """The audit broke: unhook the optimizers and drop the snapshots; training goes on."""
        self._done = True
        self._weights.stop()
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        if self._state is not None:
            self._state.release()

    # -- first iteration: the state training runs in -------------------------------------------

    def _start(self, model: nn.Module, optimizers: list[torch.optim.Optimizer], iteration: int) -> None:
        self._state = TrainingState(model, optimizers, iteration, self._problems, self._notes)
        self._weights.judge(model, self._state.zero_lr, iteration, self._problems)
        self._optimizers = optimizers
        self._stepped: list[torch.optim.Optimizer] = []
        check_frozen_since_wrap(self._state, self._wrap_trainable, self._ddp, iteration)
        self._state.check_revived_groups(iteration, when="at the start of iteration")
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

    # -- optimizer steps: judged before any weight changes --------------------------------------

    def _before_step(self, optimizer: torch.optim.Optimizer) -> None:
        self._state.check_revived_groups(self._iteration, when="at the optimizer step of iteration")
        if not self._first_step_judged:
            # The first step of any optimizer: backward has run, no weight has changed yet, and only
            # the forward has touched BatchNorm statistics (other hooks run after the iteration).
            self._first_step_judged = True
            self._state.measure_first_gradients(self._iteration)
            self._state.check_bn_statistics(self._iteration)
        self._raise_if_strict()

    def _after_step(self, optimizer: torch.optim.Optimizer) -> None:
        if optimizer not in self._stepped:
            self._stepped.append(optimizer)
            self._state.measure_state(optimizer)
        self._steps += 1

    def _raise_if_strict(self) -> None:
        if not self.strict or not self._problems:
            return
        problems = list(self._problems)
        try:
            self.finish()  # the table and the JSON first, so the user sees why the run stopped
        except Exception as exc:  # noqa: BLE001 - strict still stops the run when reporting fails
            problems.append(Problem("", "", None, f"(the report could not be written: {type(exc).__name__}: {exc})",
                                    self._iteration))
        raise FreezeAuditError(_why_stopped(problems))


def _why_stopped(problems: list[Problem]) -> str:
    first = problems[0]
    return (f"FreezeAuditHook(strict=True) stopped training before the optimizer changed any weight: "
            f"{first.code} {first.name}: {first.message}"
            + (f" (and {len(problems) - 1} more: see the freeze audit above)" if len(problems) > 1 else ""))
