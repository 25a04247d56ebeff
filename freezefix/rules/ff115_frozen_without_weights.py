"""FF115 frozen-without-weights.

What
    A module the config freezes (``frozen_stages``, lr 0, the ``--freeze`` policy, the detector's own
    freeze flags), or whose BatchNorm statistics it freezes (``norm_eval=True``), and whose weights
    come from nowhere: no ``load_from`` and no resume, no ``init_cfg=dict(type='Pretrained', ...)`` on
    the module, on the detector, or set by its class, no ``pretrained=`` that the stack turns into one.

Why
    A frozen tensor keeps the value it had when training started.  With nothing loaded that is its
    random init, for the whole run: the "frozen backbone" computes random features, and BatchNorm
    statistics frozen by ``norm_eval`` stay at mean 0 / variance 1.  The run trains without an error;
    mmengine says nothing, since nothing was asked to load.

Example
    ``backbone=dict(type='mmdet.ResNet', depth=18, frozen_stages=4)`` and no ``load_from``: add
    ``init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet18')`` to the backbone (or a
    ``load_from`` of the model), or stop freezing it.

Fix safety
    Reported only: which checkpoint was meant is the user's to say.  A URL or model-zoo name counts
    as a source without being fetched; a loader of a plugin's own (``load_img_from=`` on its detector)
    leaves the module not judged, and the report says so.
"""

from __future__ import annotations

from typing import Iterator

from freezefix.analysis import ConfigView, Module
from freezefix.frozen_weights import FrozenPart, frozen_part, unseen_loader, weights_of
from freezefix.ftypes import Key
from freezefix.rules.base import Finding, Invalid, Options, Rule, Valid, registry

_CFG = """\
model = dict(
    type='RetinaNet',{detector}
    backbone=dict(type='mmdet.ResNet', depth=18, {freeze}{weights}),
){tail}
"""


def _cfg(freeze: str = "frozen_stages=4", weights: str = "", detector: str = "", tail: str = "") -> str:
    return _CFG.format(freeze=freeze, weights=weights, detector=detector, tail=tail)


_ZERO_LR = """
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.01),
    paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=0.0)}),
)"""
_TORCHVISION = ", init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet18')"

# A plugin backbone that loads its own weights unless told otherwise: its class sets the init_cfg.
_PLUGIN = ("ff115_plugin/__init__.py", """\
from mmdet.models.backbones import ResNet

try:  # mmdet >= 3
    from mmdet.registry import MODELS
except ImportError:  # mmdet 2.x on mmcv-full 1.x
    from mmdet.models import BACKBONES as MODELS


@MODELS.register_module(force=True)
class SelfLoadingResNet(ResNet):
    def __init__(self, weights='torchvision://resnet18', **kwargs):
        super().__init__(**kwargs)
        if weights:
            self.init_cfg = dict(type='Pretrained', checkpoint=weights)
""")
_PLUGIN_CFG = """\
plugin = True
plugin_dir = 'ff115_plugin/'
model = dict(
    type='RetinaNet',
    backbone=dict(type='SelfLoadingResNet', depth=18, frozen_stages=4{weights}),
)
"""


@registry.add
class FrozenWithoutWeights(Rule):
    __doc__ = __doc__
    code = "FF115"
    name = "frozen-without-weights"
    summary = "a frozen module (or one whose BatchNorm statistics are frozen) whose weights nothing loads"
    uncovered_by_freezing = True  # where frozen weights come from: no fix here changes it
    VALID = [
        Valid(_cfg(weights=_TORCHVISION)),
        Valid(_cfg(tail="\nload_from = 'https://download.example.org/retinanet_r18.pth'")),
        Valid(_cfg(tail="\nresume = True"), stacks=("mmengine",)),
        Valid(_cfg(tail="\nresume_from = 'work_dirs/retinanet/latest.pth'"), stacks=("mmcv1",)),
        Valid(_cfg(detector="\n    init_cfg=dict(type='Pretrained', checkpoint='https://example.org/det.pth'),")),
        Valid(_cfg(weights=", pretrained='torchvision://resnet18'")),
        Valid(_cfg(detector="\n    pretrained='torchvision://resnet18',"), stacks=("mmcv1",)),
        Valid(_cfg(freeze="frozen_stages=-1, norm_eval=False")),  # nothing frozen
        # a plugin's own loader: not judged (and said), never guessed
        Valid(_cfg(detector="\n    load_img_from='ckpts/img_backbone.pth',")),
        Valid(_PLUGIN_CFG.format(weights=""), beside=(_PLUGIN,)),  # its class loads them
    ]
    INVALID = [
        Invalid(_cfg(), line=3, col=64, message="all 11,176,512 of its params are frozen (frozen_stages=4), "
                "but nothing loads its weights"),
        Invalid(_cfg(freeze="norm_eval=True"), line=3, col=60,
                message="its BatchNorm statistics are frozen (norm_eval=True: 20 layers in eval mode), but nothing "
                        "loads them: they stay at mean 0 / variance 1"),
        Invalid(_cfg(freeze="frozen_stages=-1", tail=_ZERO_LR), line=7, col=49,
                message="all 11,176,512 of its params are frozen (lr 0 from custom key 'backbone')"),
        # the detector's pretrained= goes to `backbone` only (mmdet 2.x), never to the neck
        Invalid(_cfg(detector="\n    pretrained='torchvision://resnet18',\n    neck=dict(type='mmdet.FPN', in_channels=[64, "
                     "128, 256, 512], out_channels=64, num_outs=5),", tail=_ZERO_LR.replace("'backbone'", "'neck'")),
                stacks=("mmcv1",), line=9, col=45, message="neck (mmdet.FPN): all 209,408 of its params are frozen"),
        Invalid(_PLUGIN_CFG.format(weights=", weights=None"), beside=(_PLUGIN,), line=5, col=69,
                message="backbone (SelfLoadingResNet): all 11,176,512 of its params are frozen"),
    ]

    def check(self, view: ConfigView, options: Options) -> Iterator[Finding]:
        for module in frozen_candidates(view, options.freeze):
            part = frozen_part(view, module, options.freeze)
            weights = weights_of(view, module) if part is not None else None
            if weights is None or weights.sources:
                continue
            if weights.unknown:
                unseen_loader(view, module, weights)
                continue
            what = ("nothing loads them: they stay at mean 0 / variance 1 for the whole run" if part.stats_only else
                    "nothing loads its weights: the frozen ones keep their random init for the whole run")
            yield self.finding(
                f"{module.name} ({module.type_name}): {part.describe()}, but {what} (no load_from or resume, no "
                "init_cfg=dict(type='Pretrained', ...) on it or on the detector, no pretrained=)",
                freeze_key(view, part), module=module.name)


def frozen_candidates(view: ConfigView, policy: tuple[str, ...]) -> list[Module]:
    """The modules whose settings may freeze something, and those the policy freezes."""
    chosen = view.candidates()
    return chosen + [m for name, m in view.modules.items() if name in policy and m not in chosen]


def freeze_key(view: ConfigView, part: FrozenPart) -> Key:
    """Where the setting that freezes the module is written."""
    module = part.module
    if part.how.startswith("lr 0") and view.optimizer is not None:
        key = view.optimizer.match(f"{module.name}.{next(iter(part.params))}")
        return (*view.optimizer.custom_keys_key, key)
    if part.how.startswith("frozen_stages"):
        return (*module.key, "frozen_stages")
    if part.how.startswith("norm_eval"):
        return (*module.key, "norm_eval")
    return module.key
