"""FF109 ddp-unused-params.

What
    A module has trainable parameters right after construction that its own ``train()`` then freezes
    (it applies ``frozen_stages`` only in ``train()``), and ``find_unused_parameters`` is not True.

Why
    The Runner wraps the model in DistributedDataParallel and builds the optimizer *before* the train
    loop calls ``model.train()``.  DDP then waits for gradients that never come:
    ``RuntimeError: Expected to have finished reduction in the prior iteration …``.  mmdet's Swin and
    the VoVNet of DETR3D / PETR / BEVFormer freeze this way; mmdet's ResNet freezes in ``__init__``.

Example
    ``backbone=dict(type='mmdet.SwinTransformer', frozen_stages=4, …)`` without
    ``find_unused_parameters=True`` → ``find_unused_parameters = True``.  Where a module that trains
    checkpoints its activations (``with_cp=True``), that flag would stop training too (FF112), so the
    fix is ``model_wrapper_cfg = dict(type='MMDistributedDataParallel', broadcast_buffers=False,
    static_graph=True)`` instead (mmengine; ``static_graph`` is set in an existing wrapper config).

Fix safety
    ``find_unused_parameters``: safe, DDP then looks for unused parameters each step (a little slower),
    and nothing else changes.  ``static_graph``: unsafe, it assumes every iteration uses the same
    parameters (true of a frozen stage, not of a forward that skips modules by data).  Under mmcv 1.x,
    whose train scripts cannot pass ``static_graph``, no fix is offered where a module checkpoints.
"""

from __future__ import annotations

from typing import Iterator

from freezefix.analysis import ConfigView, Module
from freezefix.frozen_weights import BY_THE_DETECTOR, frozen_by
from freezefix.rules.base import (
    Change, Finding, Fix, Invalid, Options, Rule, Valid, checkpointed_trainable, fmt_count, registry,
)

_CFG = """\
model = dict(
    type='RetinaNet',
    backbone=dict(type='mmdet.SwinTransformer', embed_dims=32, depths=(1, 1), num_heads=(1, 2),
                  strides=(4, 2), out_indices=(1, ), frozen_stages={fs}),
)
"""
_CHECKPOINTED = """\
model = dict(
    type='RetinaNet',
    backbone=dict(type='mmdet.SwinTransformer', embed_dims=16, depths=(1, 2), num_heads=(1, 2),
                  strides=(4, 2), window_size=2, out_indices=(1, ), frozen_stages=1, with_cp=True),
)
"""
_STATIC_GRAPH = "model_wrapper_cfg = dict(type='MMDistributedDataParallel', broadcast_buffers=False, static_graph=True)\n"


@registry.add
class DdpUnusedParams(Rule):
    __doc__ = __doc__
    code = "FF109"
    name = "ddp-unused-params"
    summary = "frozen only in train(): DDP waits for gradients that never come"
    fix_summary = (
        "`find_unused_parameters = True`, where mmengine's Runner reads it (safe); where a module that "
        "trains checkpoints (`with_cp=True`), DDP's `static_graph=True` in `model_wrapper_cfg` instead "
        "(unsafe; none under mmcv 1.x)"
    )
    VALID = [Valid(_CFG.format(fs=-1)), Valid(_CFG.format(fs=2) + "find_unused_parameters = True\n"),
             Valid(_CHECKPOINTED + _STATIC_GRAPH)]
    INVALID = [Invalid(_CFG.format(fs=2), fixed=_CFG.format(fs=2) + "find_unused_parameters = True\n",
                       line=3, col=14, message="73,403 params are trainable when DDP wraps the model"),
               # mmcv 1.x train scripts cannot pass static_graph to DDP: there it is reported only
               Invalid(_CHECKPOINTED, fixed=_CHECKPOINTED + _STATIC_GRAPH, unsafe_fixes=True, stacks=("mmengine",),
                       line=3, col=14, message="6,281 params are trainable when DDP wraps the model")]

    def check(self, view: ConfigView, options: Options) -> Iterator[Finding]:
        if view.hidden_freeze():
            return  # what trains is decided in code no module build shows
        if view.settings.finds_unused_parameters() or view.settings.static_graph():
            return
        for module in view.candidates():
            observed = view.facts(module).observed
            if observed is None:
                continue
            late = observed.constructed_trainable_params - observed.trainable_params
            if late <= 0:
                continue
            message = (f"{module.name}: {fmt_count(late)} params are trainable when DDP wraps the model but "
                       f"frozen {_when(view, module)}; without find_unused_parameters=True "
                       "distributed training stops with 'Expected to have finished reduction'")
            checkpointed = checkpointed_trainable(view)
            if not checkpointed:
                fix = Fix((Change(view.settings.find_unused_parameters, True),), safe=True)
                yield self.finding(message, module.key, fix, module.name)
                continue
            fix, why = _static_graph_fix(view, [m for m, _ in checkpointed])
            yield self.finding(message + why, module.key, fix, module.name)


def _static_graph_fix(view: ConfigView, checkpointed: list[Module]) -> tuple[Fix | None, str]:
    """DDP's static_graph=True instead of find_unused_parameters, which checkpointing modules forbid (FF112)."""
    names = ", ".join(m.name for m in checkpointed)
    said = (f"; but {names} checkpoint activations (with_cp=True) and still train, and with "
            "find_unused_parameters=True DDP stops at the first backward instead (FF112)")
    # A fact about the installed torch, kept with the class facts.
    if view.facts_source.stack != "mmengine" or not view.facts_source.ddp_accepts_static_graph():
        return None, said + ": no fix here, static_graph cannot be passed to DDP; set with_cp=False"
    wrapper = view.values.get("model_wrapper_cfg")
    if isinstance(wrapper, dict):
        change = Change(("model_wrapper_cfg", "static_graph"), True)
    else:
        # The Runner's own wrapping, plus static_graph: it passes broadcast_buffers=False itself.
        change = Change(("model_wrapper_cfg",), {"type": "MMDistributedDataParallel", "broadcast_buffers": False,
                                                 "static_graph": True})
    why = "static_graph assumes every iteration uses the same parameters (a forward that skips modules breaks it)"
    return Fix((change,), safe=False, why_unsafe=why), said + "; DDP's static_graph=True handles both"


def _when(view: ConfigView, module: Module) -> str:
    if frozen_by(view, module).startswith(BY_THE_DETECTOR):
        return f"afterwards {frozen_by(view, module)} (in its train() or init_weights())"
    return f"by {view.facts(module).type_name}.train()"
