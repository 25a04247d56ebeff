"""``FreezeAuditHook`` for the two runners OpenMMLab configs train with.

- mmengine's ``Runner``: registered in mmengine's root ``HOOKS`` registry, which every scope
  (``default_scope='mmdet3d'`` too) falls back to;
- mmcv 1.x's ``EpochBasedRunner`` / ``IterBasedRunner``: registered in ``mmcv.runner.HOOKS``.

Both classes take the same arguments and produce the same report; only the moments differ in name.
A failure of the audit itself never stops the user's training: it is logged and the hook retires.
Only ``strict=True`` stops training, on purpose, with :class:`FreezeAuditError`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from freezefix.hooks.audit import FreezeAudit, FreezeAuditError
from freezefix.hooks.report import AuditReport
from freezefix.textio import replace_file

DEFAULT_OUT_FILE = "freeze_audit.json"


def rank_and_world_size() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def torch_optimizers(holder: Any) -> list[torch.optim.Optimizer]:
    """The torch optimizers behind what a runner holds: an mmengine OptimWrapper (Amp… too), an
    OptimWrapperDict, an mmcv 1.x optimizer or dict of optimizers, or nothing."""
    if holder is None:
        return []
    if isinstance(holder, torch.optim.Optimizer):
        return [holder]
    wrappers = getattr(holder, "optim_wrappers", None)  # mmengine's OptimWrapperDict
    if isinstance(wrappers, dict):
        return [o for wrapper in wrappers.values() for o in torch_optimizers(wrapper)]
    if isinstance(holder, dict):
        return [o for value in holder.values() for o in torch_optimizers(value)]
    inner = getattr(holder, "optimizer", None)
    return [inner] if isinstance(inner, torch.optim.Optimizer) else []


class AuditHookBase:
    """The runner-independent half of both hook classes."""

    def __init__(self, strict: bool = False, iterations: int = 3, out_file: str | None = DEFAULT_OUT_FILE):
        super().__init__()
        self.strict = strict
        self.out_file = out_file
        self.audit = FreezeAudit(iterations=iterations, strict=strict, emit=self._emit, failed=self._switch_off)
        self._runner: Any = None
        self._retired = False

    # Subclasses say where the runner keeps its optimizer(s).
    def optimizers(self, runner: Any) -> list[torch.optim.Optimizer]:
        raise NotImplementedError

    def _guarded(self, runner: Any, step: str, call: Any) -> None:
        if self._retired:
            return
        self._runner = runner
        try:
            call()
        except FreezeAuditError:
            raise
        except Exception as exc:  # noqa: BLE001 - the audit must never be what stops a training run
            self.audit.abort()
            self._switch_off(step, exc)

    def _switch_off(self, step: str, exc: Exception) -> None:
        self._retired = True
        self._logger().warning(f"freezefix FreezeAuditHook: the audit failed at {step} and is switched off; "
                               f"training goes on: {type(exc).__name__}: {exc}")

    # Whether the runner initialises weights and loads its checkpoint after before_run (mmengine).
    records_loads = True

    def run_starts(self, runner: Any) -> None:
        self._guarded(runner, "before_run", lambda: self.audit.model_wrapped(runner.model, self.records_loads))

    def iteration_starts(self, runner: Any) -> None:
        self._guarded(runner, "before_train_iter",
                      lambda: self.audit.iteration_starts(runner.model, self.optimizers(runner), runner.iter))

    def iteration_ends(self, runner: Any) -> None:
        self._guarded(runner, "after_train_iter", lambda: self.audit.iteration_ends(runner.iter))

    def run_ends(self, runner: Any) -> None:
        self._guarded(runner, "after_run", self.audit.finish)

    def _logger(self) -> Any:
        return getattr(self._runner, "logger", None) or logging.getLogger("freezefix")

    def _emit(self, report: AuditReport) -> None:
        report.rank, report.world_size = rank_and_world_size()
        if report.rank != 0:
            return  # every rank audits (strict must stop them all); one writes
        logger = self._logger()
        work_dir = getattr(self._runner, "work_dir", None)
        if self.out_file and work_dir:
            target = Path(work_dir) / self.out_file
            try:
                replace_file(target, report.dumps().encode())
                report.notes.append(f"written to {target}")
            except OSError as exc:
                report.notes.append(f"could not write {target}: {exc}")
        elif self.out_file:
            report.notes.append("the runner has no work_dir: no JSON file written")
        logger.info("\n" + report.render())


def mmengine_hook_class() -> type | None:
    try:
        from mmengine.hooks import Hook
        from mmengine.registry import HOOKS
    except ImportError:
        return None

    @HOOKS.register_module(name="FreezeAuditHook", force=True)
    class FreezeAuditHook(AuditHookBase, Hook):
        """Audits the freeze of the run it is in; see :mod:`freezefix.hooks`."""

        # After ParamSchedulerHook (LOW) in after_train_iter, so a revived lr is seen the iteration
        # the scheduler sets it.
        priority = "VERY_LOW"

        def optimizers(self, runner: Any) -> list[torch.optim.Optimizer]:
            return torch_optimizers(getattr(runner, "optim_wrapper", None))

        def before_run(self, runner: Any) -> None:
            self.run_starts(runner)

        def before_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None) -> None:
            self.iteration_starts(runner)

        def after_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: Any = None) -> None:
            self.iteration_ends(runner)

        def after_train(self, runner: Any) -> None:
            self.run_ends(runner)

    return FreezeAuditHook


def mmcv1_hook_class() -> type | None:
    try:
        from mmcv import __version__ as mmcv_version
        if mmcv_version.split(".")[0] not in ("0", "1"):
            return None  # mmcv 2.x has no runner: mmengine's is used
        from mmcv.runner import HOOKS, Hook
    except ImportError:
        return None

    @HOOKS.register_module(name="FreezeAuditHook", force=True)
    class FreezeAuditHook(AuditHookBase, Hook):
        """Audits the freeze of the run it is in; see :mod:`freezefix.hooks`.  mmcv's runner gives
        custom hooks priority NORMAL: after the OptimizerHook (ABOVE_NORMAL), which runs backward
        and the step in ``after_train_iter``."""

        records_loads = False  # the train scripts load weights before the runner calls any hook

        def optimizers(self, runner: Any) -> list[torch.optim.Optimizer]:
            return torch_optimizers(getattr(runner, "optimizer", None))

        def before_run(self, runner: Any) -> None:
            self.run_starts(runner)

        def before_train_iter(self, runner: Any) -> None:
            self.iteration_starts(runner)

        def after_train_iter(self, runner: Any) -> None:
            self.iteration_ends(runner)

        def after_run(self, runner: Any) -> None:
            self.run_ends(runner)

    return FreezeAuditHook
