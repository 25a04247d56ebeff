"""FF112 checkpointing-with-unused-params.

What
    A module checkpoints its activations (``with_cp=True``) and keeps trainable parameters after
    ``train()``, while DDP runs with ``find_unused_parameters=True``.

Why
    mmdet's and mmdet3d's backbones (and the plugin backbones built like them) checkpoint with torch's
    reentrant ``checkpoint``.  DDP's unused-parameter search cannot see the parameters inside it and
    marks them ready, then the recomputation in backward marks them again: distributed training stops
    at the first backward with ``Expected to mark a variable ready only once``.  DDP's
    ``static_graph=True`` supports both reentrant checkpointing and parameters that never get a
    gradient (a stage frozen in ``train()``); mmengine's ``model_wrapper_cfg`` passes it to DDP.

Example
    ``backbone=dict(type='mmdet.SwinTransformer', with_cp=True, frozen_stages=1, ...)`` with
    ``find_unused_parameters = True`` → replace the flag by
    ``model_wrapper_cfg = dict(type='MMDistributedDataParallel', broadcast_buffers=False, static_graph=True)``.

Fix safety
    None offered: ``static_graph`` assumes every iteration uses the same parameters, which only the
    user knows (a model whose forward skips modules by data needs ``find_unused_parameters`` and must
    turn ``with_cp`` off).  FF109 offers ``static_graph`` instead of ``find_unused_parameters`` where a
    module checkpoints, so its fix never creates this finding.  A trainable stage of a single block
    right after frozen ones is not checkpointed by mmdet (its input needs no gradient); freezefix does
    not model that case and reports the module.
"""

from __future__ import annotations

from typing import Iterator

from freezefix.analysis import ConfigView
from freezefix.rules.base import Finding, Invalid, Options, Rule, Valid, checkpointed_trainable, fmt_count, registry

_CFG = """\
model = dict(
    type='RetinaNet',
    backbone=dict(type='mmdet.SwinTransformer', embed_dims=16, depths=(1, 2), num_heads=(1, 2),
                  strides=(4, 2), window_size=2, out_indices=(1, ), frozen_stages={fs}, with_cp={cp}),
)
"""


@registry.add
class CheckpointingWithUnusedParams(Rule):
    __doc__ = __doc__
    code = "FF112"
    name = "checkpointing-with-unused-params"
    summary = "with_cp=True on a module that trains, under find_unused_parameters=True: DDP stops"
    fix_summary = "reported, suggesting `static_graph=True` or `with_cp=False`"
    VALID = [
        Valid(_CFG.format(fs=1, cp=False) + "find_unused_parameters = True\n"),
        Valid(_CFG.format(fs=2, cp=True) + "find_unused_parameters = True\n"),  # nothing left to train
        Valid(_CFG.format(fs=1, cp=True)
                + "model_wrapper_cfg = dict(type='MMDistributedDataParallel', broadcast_buffers=False, static_graph=True)\n"),
    ]
    INVALID = [Invalid(_CFG.format(fs=1, cp=True) + "find_unused_parameters = True\n",
                       line=4, col=94, message="keeps 25,508 trainable params")]

    def check(self, view: ConfigView, options: Options) -> Iterator[Finding]:
        if not view.settings.finds_unused_parameters():
            return
        instead = ("replace find_unused_parameters by model_wrapper_cfg = dict(type='MMDistributedDataParallel', "
                   "broadcast_buffers=False, static_graph=True) if every iteration uses the same parameters, "
                   "or set with_cp=False" if view.facts_source.stack == "mmengine" else
                   "mmcv 1.x train scripts cannot pass static_graph to DDP: set with_cp=False, or freeze the module")
        for module, trainable in checkpointed_trainable(view):
            yield self.finding(
                f"{module.name} checkpoints its activations (with_cp=True) and keeps {fmt_count(trainable)} "
                f"trainable params, while DDP runs with find_unused_parameters=True: distributed training stops "
                f"at the first backward with 'Expected to mark a variable ready only once'; {instead}",
                (*module.key, "with_cp"),
                module=module.name,
            )
