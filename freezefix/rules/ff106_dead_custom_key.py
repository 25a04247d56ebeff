"""FF106 dead-custom-key.

What
    A key of ``paramwise_cfg.custom_keys`` matches no parameter of the built model.

    When the detector class itself cannot be built (a plugin detector, a head that does not build),
    its own parameters are unknown: then only a key that is a likely typo of a top-level module name
    is reported (close to one by difflib, matching no parameter of the modules built, and neither a
    part nor an extension of a module name), saying the detector was not built.

Why
    mmengine and mmcv test each key as a substring of ``'{module path}.{param name}'`` and silently
    skip keys that match nothing.  A typo (``'img_bakbone'``), a renamed module or a key copied from
    another model then freezes or slows down nothing, and nobody is told.

Example
    ``custom_keys={'img_bakbone': dict(lr_mult=0.0)}`` on a model with ``img_backbone`` →
    renamed to ``'img_backbone'``.

Fix safety
    Unsafe: renaming makes the setting take effect, which changes training.  A rename is offered only
    when exactly one module path is close (difflib); otherwise the finding is reported alone.  When
    the detector could not be built, the write gate refuses the rename, since a module it cannot
    build may hold what the old key matched; ``apply --no-verify`` writes it anyway.
"""

from __future__ import annotations

import difflib
from typing import Iterator

from freezefix.analysis import ConfigView
from freezefix.rules.base import REMOVE, Change, Finding, Fix, Invalid, Options, Rule, Valid, registry

_CFG = """\
default_scope = 'mmdet'
model = dict(
    type='RetinaNet',
    backbone=dict(type='ResNet', depth=18, frozen_stages=4, norm_eval=True),
    neck=dict(type='FPN', in_channels=[64, 128, 256, 512], out_channels=32, num_outs=4),
    bbox_head=dict(
        type='RetinaHead', num_classes=2, in_channels=32, stacked_convs=1, feat_channels=32,
        anchor_generator=dict(type='AnchorGenerator', octave_base_scale=4, scales_per_octave=1,
                              ratios=[1.0], strides=[4, 8, 16, 32]),
        bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0.0] * 4, target_stds=[1.0] * 4),
        loss_cls=dict(type='FocalLoss', use_sigmoid=True), loss_bbox=dict(type='L1Loss')),
)
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.01),
    paramwise_cfg=dict(custom_keys={{'{key}': dict(lr_mult=0.0)}}),
)
"""

_DETECTOR_UNBUILT = """\
model = dict(
    type='MVXFasterRCNN',
    img_backbone=dict(type='mmdet.ResNet', depth=18, frozen_stages=4, norm_eval=True),
    pts_backbone=dict(type='SECOND', in_channels=64, out_channels=[64, 128], layer_nums=[1, 1],
                      layer_strides=[1, 2]),
    pts_bbox_head=dict(type='NoSuchHead'),
)
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.01),
    paramwise_cfg=dict(custom_keys={{'{key}': dict(lr_mult=0.0)}}),
)
"""


@registry.add
class DeadCustomKey(Rule):
    __doc__ = __doc__
    code = "FF106"
    name = "dead-custom-key"
    summary = "a custom_keys entry matches no parameter of the model"
    fix_summary = "rename to the one close module path (difflib; unsafe)"
    VALID = [Valid(_CFG.format(key="neck")), Valid(_CFG.format(key="neck.lateral_convs")),
             # not built either, and nothing close to a module name: it may be the detector's own
             Valid(_DETECTOR_UNBUILT.format(key="query_embedding"))]
    INVALID = [
        Invalid(_CFG.format(key="nekc"), fixed=_CFG.format(key="neck"), unsafe_fixes=True,
                line=15, col=45, message="did you mean 'neck'?"),
        Invalid(_CFG.format(key="img_backbone"),
                line=15, col=53, message="did you mean 'backbone'?"),
        # a detector that does not build (no head): the typo is still told from the modules built (the
        # write gate refuses the rename: the head it cannot build might hold what the old key matched)
        Invalid(_DETECTOR_UNBUILT.format(key="img_bakbone"), unsafe_fixes=True,
                line=10, col=52,
                message="the model class could not be built"),
    ]

    def check(self, view: ConfigView, options: Options) -> Iterator[Finding]:
        names = view.keyed_param_names()
        if names is None:
            if view.optimizer is not None and view.optimizer.custom_keys:
                yield from self._module_level(view)
            return
        module_paths = sorted({n.rsplit(".", 1)[0] for n in names} | {n.split(".")[0] for n in names})
        root = view.optimizer.custom_keys_key
        for key, setting in view.optimizer.custom_keys.items():
            if any(key in n for n in names) or any(key in f".{n}" for n in names):
                continue
            close = difflib.get_close_matches(key, module_paths, n=2, cutoff=0.7)
            message = f"custom key {key!r} matches none of the model's {len(names):,} parameters"
            if len(close) == 1 and close[0] not in view.optimizer.custom_keys:
                fix = Fix(
                    (Change((*root, key), REMOVE), Change((*root, close[0]), setting)),
                    safe=False,
                    why_unsafe="renaming makes the setting take effect",
                )
                yield self.finding(f"{message}; did you mean {close[0]!r}?", (*root, key), fix)
            else:
                yield self.finding(message + " (it has no effect)", (*root, key))

    def _module_level(self, view: ConfigView) -> Iterator[Finding]:
        """The detector itself could not be built: its own parameters are unknown, so only a key that is
        a likely typo of a top-level module name is reported (close to one, in no built module's
        parameters, and neither a part nor an extension of any module name)."""
        built = {m.name: view.param_names(m) for m in view.modules.values()}
        names = [n for params in built.values() for n in params]
        if not names:
            return
        why = next((n for n in view.model_facts().notes if "could not be built" in n), "the detector was not built")
        root = view.optimizer.custom_keys_key
        for key, setting in view.optimizer.custom_keys.items():
            head = key.strip(".").split(".")[0]
            if any(key in n or key in f".{n}" for n in names) or any(
                    key in m or head.startswith(m) or m.startswith(head) for m in view.modules):
                continue
            close = difflib.get_close_matches(head, list(view.modules), n=2, cutoff=0.8)
            if len(close) != 1 or close[0] in view.optimizer.custom_keys:
                continue
            renamed = close[0] + key.strip(".")[len(head):]
            fix = Fix((Change((*root, key), REMOVE), Change((*root, renamed), setting)), safe=False,
                      why_unsafe="renaming makes the setting take effect")
            yield self.finding(
                f"custom key {key!r} matches no parameter of the {len(built)} top-level modules built "
                f"({why}; the detector's own parameters are unknown); did you mean {renamed!r}?",
                (*root, key), fix)
