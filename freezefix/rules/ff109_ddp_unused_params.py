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
    ``find_unused_parameters=True`` → ``find_unused_parameters = True``.

Fix safety
    Safe: DDP then looks for unused parameters each step (a little slower), and nothing else changes.
"""

from __future__ import annotations

from typing import Iterator

from freezefix.analysis import ConfigView
from freezefix.rules.base import Change, Example, Finding, Fix, Options, Rule, fmt_count, registry

_CFG = """\
model = dict(
    type='RetinaNet',
    backbone=dict(type='mmdet.SwinTransformer', embed_dims=32, depths=(1, 1), num_heads=(1, 2),
                  strides=(4, 2), out_indices=(1, ), frozen_stages={fs}),
)
"""


@registry.add
class DdpUnusedParams(Rule):
    __doc__ = __doc__
    code = "FF109"
    name = "ddp-unused-params"
    summary = "frozen only in train(): DDP waits for gradients that never come"
    VALID = [Example(_CFG.format(fs=-1)), Example(_CFG.format(fs=2) + "find_unused_parameters = True\n")]
    INVALID = [Example(_CFG.format(fs=2), fixed=_CFG.format(fs=2) + "find_unused_parameters = True\n")]

    def check(self, view: ConfigView, options: Options) -> Iterator[Finding]:
        if view.finds_unused_parameters():
            return
        for module in view.candidates():
            observed = view.facts(module).observed
            if observed is None:
                continue
            late = observed.constructed_trainable_params - observed.trainable_params
            if late <= 0:
                continue
            key = view.find_unused_parameters
            yield self.finding(
                f"{module.name}: {fmt_count(late)} params are trainable when DDP wraps the model but "
                f"frozen by {view.facts(module).type_name}.train(); without find_unused_parameters=True "
                "distributed training stops with 'Expected to have finished reduction'",
                module.key,
                Fix((Change(key, True),), safe=True),
                module.name,
            )
