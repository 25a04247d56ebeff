"""Where the run's frozen weights came from, seen from inside it: the weights half of ``FreezeAuditHook``
(FF115 frozen-without-weights, FF116 checkpoint-misses-frozen-weights).

mmengine's ``Runner.train`` calls the hooks' ``before_run``, then ``init_weights()`` (where every
``Pretrained`` init_cfg loads), then ``load_or_resume()``.  Both loads end in
``mmengine.runner.checkpoint.load_state_dict``: :class:`LoadRecorder` wraps it from ``before_run`` to
the first iteration and notes, for every call, which tensors of the model the stack's own load
filled (present in the state dict at the module's shape; a tensor of another shape is skipped by the
load).  Nothing is read twice: the recorder sees the state dicts the runner already holds.

mmcv 1.x's train scripts call ``init_weights()`` and load the checkpoint before the runner calls any
hook: there the hook cannot see the loads, and says so.
"""

from __future__ import annotations

from typing import Any, Callable

from torch import nn

from freezefix.building import is_batchnorm
from freezefix.hooks.model_state import top_module
from freezefix.hooks.report import ModuleAudit, Problem

_STATS = ("running_mean", "running_var")
UNSEEN_UNDER_MMCV1 = ("mmcv 1.x's train scripts load checkpoints before the runner calls any hook: where the "
                      "frozen weights came from (FF115, FF116) was not audited; freezefix check judges it")


class LoadRecorder:
    """The tensors (by model name) that the stack's loader filled while it was recording."""

    def __init__(self) -> None:
        self.loaded: set[str] = set()
        self.loads = 0  # load_state_dict calls into this model
        self._undo: Callable[[], None] | None = None

    def start(self, model: nn.Module) -> None:
        from mmengine.runner import checkpoint

        original = checkpoint.load_state_dict
        names = {id(module): name for name, module in model.named_modules()}

        def recording(module: nn.Module, state_dict: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                self._record(names.get(id(module)), module, state_dict)
            except Exception:  # noqa: BLE001 - noting a load must never stop it
                pass
            return original(module, state_dict, *args, **kwargs)

        checkpoint.load_state_dict = recording
        self._undo = lambda: setattr(checkpoint, "load_state_dict", original)

    def stop(self) -> None:
        if self._undo is not None:
            self._undo()
            self._undo = None

    def _record(self, prefix: str | None, module: nn.Module, state_dict: Any) -> None:
        if prefix is None:
            return  # not a part of this model
        self.loads += 1
        own = module.state_dict()
        for key, value in state_dict.items():
            if key in own and tuple(getattr(value, "shape", ())) == tuple(own[key].shape):
                self.loaded.add(f"{prefix}.{key}" if prefix else key)


class WeightsAudit:
    """The weights half of the audit: recording from ``before_run``, judged at the first iteration."""

    def __init__(self) -> None:
        self.recorder: LoadRecorder | None = None
        self.left_at_init: dict[str, int] = {}  # top-level module → its frozen tensors no load filled

    def start(self, model: nn.Module, records_loads: bool, notes: list[str]) -> None:
        """``records_loads``: the runner loads weights after this moment (mmengine), not before (mmcv 1.x)."""
        if not records_loads:
            notes.append(UNSEEN_UNDER_MMCV1)
            return
        self.recorder = LoadRecorder()
        self.recorder.start(model)

    def judge(self, model: nn.Module, zero_lr: set[str], iteration: int, problems: list[Problem]) -> None:
        if self.recorder is not None:
            self.recorder.stop()
            self.left_at_init = check_frozen_weights(model, zero_lr, self.recorder, iteration, problems)

    def stop(self) -> None:
        if self.recorder is not None:
            self.recorder.stop()

    def annotate(self, modules: list[ModuleAudit]) -> None:
        for module in modules:
            module.frozen_at_init = self.left_at_init.get(module.module, 0)


def check_frozen_weights(model: nn.Module, zero_lr: set[str], recorder: LoadRecorder, iteration: int,
                         problems: list[Problem]) -> dict[str, int]:
    """FF115 / FF116 for each top-level module with frozen tensors (parameters that do not require grad
    or have lr 0, running statistics of BatchNorm layers in eval mode) that no load filled; returns
    module → how many of its frozen tensors are still at their init."""
    children = {name for name, _ in model.named_children()}
    frozen: dict[str, list[str]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad or name in zero_lr:
            frozen.setdefault(top_module(name, children), []).append(name)
    for name, layer in model.named_modules():
        if is_batchnorm(layer) and not layer.training and getattr(layer, "running_mean", None) is not None:
            frozen.setdefault(top_module(name, children), []).extend(f"{name}.{s}" for s in _STATS)
    left_at_init = {}
    for module, names in sorted(frozen.items()):
        left = [n for n in names if n not in recorder.loaded]
        if not left:
            continue
        left_at_init[module] = len(left)
        params, left_params = ([n for n in among if not n.endswith(_STATS)] for among in (names, left))
        what = (f"{len(left_params)} of its {len(params)} frozen param tensors and "
                f"{(len(left) - len(left_params)) // 2} BatchNorm layers' statistics")
        if recorder.loads == 0:
            problems.append(Problem("FF115", "frozen-without-weights", module,
                                    f"{module}: nothing loaded any weights in this run (init_weights() and "
                                    f"load_from / resume loaded no checkpoint): {what} keep their random init "
                                    "for the whole run", iteration))
        else:
            problems.append(Problem("FF116", "checkpoint-misses-frozen-weights", module,
                                    f"{module}: the checkpoints this run loaded left {what} at their init "
                                    f"(the first: {left[0]})", iteration))
    return left_at_init
