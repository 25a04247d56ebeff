"""FF118 frozen-bn-batch-statistics.

What
    A module meant to be frozen (all its parameters frozen, or at lr 0) has BatchNorm layers left in
    training mode with ``track_running_stats`` switched off after they were built: a detector's
    ``freeze_*`` code that "freezes" BatchNorm statistics with ``bn.track_running_stats = False``
    instead of ``eval()``.

Why
    Such a layer keeps the running mean and variance it was built (or loaded) with, but in training
    mode it normalises with the statistics of each batch; in eval mode it uses the stored ones.  The
    frozen module therefore computes different features in training than at test, and the heads
    learn on features the deployed model never produces (small or single-sample batches make it
    worse).  A layer built with ``track_running_stats=False`` has no stored statistics and uses batch
    statistics in both: that is consistent and not reported.  Seen on the whole detector as the
    runner leaves it after ``train()``, so a freeze in the detector's own code is judged too.

Example
    A plugin detector whose ``freeze_img_backbone=True`` freezes the backbone's parameters and sets
    ``track_running_stats = False`` on its BatchNorm layers → reported; put the layers in eval mode
    instead (``norm_eval=True`` on an mmdet backbone).

Fix safety
    Reported only: the setting lives in the detector's code, not in the config.
"""

from __future__ import annotations

from typing import Iterator

from freezefix.analysis import ConfigView
from freezefix.rules.base import Finding, Invalid, Options, Rule, Valid, registry

_CFG = """\
model = dict(
    type='RetinaNet',
    backbone=dict(type='mmdet.ResNet', depth=18, frozen_stages={fs}, norm_eval=False,
                  norm_cfg=dict(type='BN', requires_grad=False{tracking})),
)
"""

# A plugin detector whose freeze flag "freezes" BatchNorm statistics by switching tracking off.
_PLUGIN = ("ff118_plugin/__init__.py", """\
import torch.nn as nn
from mmdet3d.models.detectors import MVXTwoStageDetector

try:  # mmdet3d >= 1.1
    from mmdet3d.registry import MODELS
except ImportError:  # mmdet3d 1.0 on mmcv-full 1.x
    from mmdet.models import DETECTORS as MODELS


@MODELS.register_module(force=True)
class StatsFrozenDetector(MVXTwoStageDetector):
    def __init__(self, freeze_img_backbone=False, **kwargs):
        super().__init__(**kwargs)
        if freeze_img_backbone:
            for param in self.img_backbone.parameters():
                param.requires_grad = False
            for layer in self.img_backbone.modules():
                if isinstance(layer, nn.modules.batchnorm._BatchNorm):
                    layer.track_running_stats = False
""")

_PLUGIN_CFG = """\
plugin = True
plugin_dir = 'ff118_plugin/'
model = dict(
    type='StatsFrozenDetector',
    freeze_img_backbone={flag},
    img_backbone=dict(type='mmdet.ResNet', depth=18, norm_eval={norm_eval}),
)
"""


@registry.add
class FrozenBnBatchStatistics(Rule):
    __doc__ = __doc__
    code = "FF118"
    name = "frozen-bn-batch-statistics"
    summary = "a frozen module's BatchNorm normalises with batch statistics in training and stored ones at test"
    VALID = [
        Valid(_CFG.format(fs=4, tracking="")),
        # built without running statistics: batch statistics in training and at test alike
        Valid(_CFG.format(fs=4, tracking=", track_running_stats=False")),
        Valid(_CFG.format(fs=-1, tracking=", track_running_stats=False")),
        Valid(_PLUGIN_CFG.format(flag=False, norm_eval=False), beside=(_PLUGIN,)),
        Valid(_PLUGIN_CFG.format(flag=True, norm_eval=True), beside=(_PLUGIN,)),  # in eval mode: stored stats
    ]
    INVALID = [
        Invalid(_PLUGIN_CFG.format(flag=True, norm_eval=False), beside=(_PLUGIN,), line=6, col=18,
                message="img_backbone is fully frozen, but 20 of its 20 BatchNorm layers stay in training mode "
                        "with track_running_stats=False"),
    ]

    def check(self, view: ConfigView, options: Options) -> Iterator[Finding]:
        if view.hidden_freeze():
            return  # what trains is decided in code no build shows
        for module in view.candidates():
            facts = view.facts(module)
            observed = facts.observed
            if observed is None or not observed.bn_batch_stats:
                continue
            frozen = observed.trainable_params == 0 and facts.total_params > 0
            if not (frozen or (facts.param_names and view.zero_lr(module))):
                continue
            yield self.finding(
                f"{module.name} is {'fully frozen' if frozen else 'given lr_mult=0.0'}, but {observed.bn_batch_stats} of "
                f"its {observed.bn_total} BatchNorm layers stay in training mode with track_running_stats=False: they normalise with each "
                "batch's statistics in training and with the stored ones at test, so the frozen module computes "
                "different features in the two; put them in eval mode instead (norm_eval=True)",
                module.key,
                module=module.name,
            )
