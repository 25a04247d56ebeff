"""FF101 partial-freeze-zero-lr.

What
    A module's parameters all get lr 0 from ``paramwise_cfg.custom_keys``, but its ``frozen_stages``
    is below the class's full-freeze value, so after ``train()`` some stages still have
    ``requires_grad=True``.

Why
    lr 0 is not frozen.  Those parameters still compute gradients every step (and all-reduce them
    under DDP), and AdamW keeps two state tensors for each — memory and time spent on updates that
    are multiplied by zero.  The seed case: ResNet50 with ``frozen_stages=3`` and
    ``custom_keys={'img_backbone': dict(lr_mult=0.0)}`` leaves layer4's 14.9 M params trainable.

Example
    ``img_backbone=dict(type='ResNet', depth=50, frozen_stages=3, norm_eval=True)`` with
    ``custom_keys={'img_backbone': dict(lr_mult=0.0)}`` → ``frozen_stages=4``.  The full-freeze value
    is probed on the real class (4 for ResNet50, 3 for a ResNet with ``num_stages=3``).

Fix safety
    Safe when BatchNorm behaviour is unchanged by the fix (``norm_eval=True`` or no BatchNorm in the
    newly frozen stages) and the config does not resume a run; unsafe otherwise, since freezing a
    stage also puts its BatchNorm layers in eval mode and changes mmengine's param groups.
"""

from __future__ import annotations

from typing import Iterator

from freezefix.analysis import ConfigView, stage_summary
from freezefix.rules.base import (
    Finding, Fix, Invalid, Options, Rule, Valid, fmt_count, full_freeze_changes, full_freeze_hazards, registry,
)

_SEED = """\
model = dict(
    type='MVXFasterRCNN',
    img_backbone=dict(type='mmdet.ResNet', depth=50, num_stages=4, out_indices=(1, 2, 3),
                      frozen_stages={fs}, norm_eval=True, style='pytorch'),
    img_neck=dict(type='mmdet.FPN', in_channels=[512, 1024, 2048], out_channels=256, num_outs=3),
)
optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=2e-4, weight_decay=0.01),
    paramwise_cfg=dict(custom_keys={{'img_backbone': dict(lr_mult={lr})}}),
)
"""


@registry.add
class PartialFreezeZeroLr(Rule):
    __doc__ = __doc__
    code = "FF101"
    name = "partial-freeze-zero-lr"
    summary = "lr_mult 0 on a module whose frozen_stages leaves stages trainable"
    fix_summary = (
        "`frozen_stages` → the class's full-freeze value (safe if BN behaviour is unchanged and the "
        "config does not resume)"
    )
    VALID = [
        Valid(_SEED.format(fs=4, lr=0.0)),  # fully frozen: nothing computes gradients
        Valid(_SEED.format(fs=3, lr=0.1)),  # fine-tuning layer4 on purpose
    ]
    INVALID = [
        Invalid(_SEED.format(fs=3, lr=0.0), fixed=_SEED.format(fs=4, lr=0.0),
                line=4, col=37, message="leaves 14,964,736 params (layer4) trainable"),
        Invalid(_SEED.format(fs=1, lr=0.0), fixed=_SEED.format(fs=4, lr=0.0),
                line=4, col=37, message="(layer2, layer3, layer4) trainable"),
    ]

    def check(self, view: ConfigView, options: Options) -> Iterator[Finding]:
        if view.hidden_freeze():
            return  # what trains is decided in code no module build shows
        for module in view.candidates():
            facts = view.facts(module)
            if not facts.judgeable or facts.observed is None or not facts.accepts_frozen_stages:
                continue
            trainable = [f"{module.name}.{n}" for n in facts.observed.trainable_names]
            if not trainable or not view.zero_lr(module, trainable):
                continue
            facts = view.facts(module, scan=True)
            full = facts.full_freeze
            current = view.frozen_stages(module)
            if full is None or (isinstance(current, int) and current >= full):
                continue
            after = facts.stages[full]
            if after.trainable_params >= facts.observed.trainable_params:
                continue
            key = view.covering_key(module)
            reasons = full_freeze_hazards(view, facts, full)
            shown = "not set" if current is None else f"={current}"
            changes, note = full_freeze_changes(view, module, facts, full)
            message = (
                f"{module.name}: lr_mult=0.0{f' (custom key {key!r})' if key else ''} but "
                f"frozen_stages{shown} leaves {fmt_count(facts.observed.trainable_params)} params "
                f"({stage_summary(facts.observed.trainable_names)}) trainable: they compute gradients "
                f"that lr 0 discards; frozen_stages={full} freezes "
                + ("everything" if after.trainable_params == 0 else f"all but {fmt_count(after.trainable_params)}")
                + f" ({facts.type_name})" + note
            )
            fix = Fix(tuple(changes), safe=not reasons, why_unsafe="; ".join(reasons) or None)
            yield self.finding(message, (*module.key, "frozen_stages"), fix, module.name)
