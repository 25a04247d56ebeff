"""FF107 overbroad-custom-key.

What
    A custom key names a module but matches parameters of more than one top-level module
    (``'backbone'`` reaches ``img_backbone.*`` and ``pts_backbone.*``), or it is shadowed: every
    parameter it matches is taken by a longer key first, so it applies to nothing.  A key that asks
    no lr of its own, shadowed only by keys at lr 0, is not reported: at lr 0 its weight decay is moot.

Why
    Matching is a substring test, longest key first, first match wins.  ``'backbone': dict(lr_mult=0)``
    written for the camera backbone silently freezes the LiDAR backbone too.

Example
    ``custom_keys={'backbone': dict(lr_mult=0.0)}`` on a model with ``img_backbone`` and
    ``pts_backbone`` → reported; write ``'img_backbone.'`` (a trailing dot makes a key an exact prefix).

Fix safety
    Reported only: which modules were meant is the user's call.
"""

from __future__ import annotations

from typing import Iterator

from freezefix.analysis import ConfigView
from freezefix.paramwise import key_lr_mult
from freezefix.rules.base import Finding, Invalid, Options, Rule, Valid, registry

_CFG = """\
model = dict(
    type='MVXFasterRCNN',
    img_backbone=dict(type='mmdet.ResNet', depth=18, norm_eval=True),
    pts_backbone=dict(type='SECOND', in_channels=64, out_channels=[64, 128], layer_nums=[1, 1], layer_strides=[2, 2]),
)
default_scope = 'mmdet3d'
optim_wrapper = dict(optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.01), paramwise_cfg=dict(custom_keys={keys}))
"""


@registry.add
class OverbroadCustomKey(Rule):
    __doc__ = __doc__
    code = "FF107"
    name = "overbroad-custom-key"
    summary = "a custom key reaches several top-level modules, or is shadowed by longer keys"
    fix_summary = "reported (suggests `'img_backbone.'`)"
    VALID = [
        Valid(_CFG.format(keys="{'img_backbone': dict(lr_mult=0.0)}")),
        Valid(_CFG.format(keys="{'norm': dict(decay_mult=0.0)}")),  # broad on purpose: not a module name
        # shadowed, but only by a key at lr 0, under which its decay is moot
        Valid(_CFG.format(keys="{'img_backbone': dict(lr_mult=0.0), 'bn': dict(decay_mult=0.0)}")),
    ]
    INVALID = [
        Invalid(_CFG.format(keys="{'backbone': dict(lr_mult=0.0)}"),
                line=7, col=124,
                message="reaches 2 top-level modules (img_backbone, pts_backbone)"),
        Invalid(_CFG.format(keys="{'img_backbone': dict(lr_mult=0.0), 'img_backbone.': dict(lr_mult=0.1)}"),
                line=7, col=128, message="is shadowed"),
    ]

    def check(self, view: ConfigView, options: Options) -> Iterator[Finding]:
        names = view.keyed_param_names()
        if names is None:
            return
        root = view.optimizer.custom_keys_key
        tops = sorted({n.split(".")[0] for n in names})
        winners: dict[str, list[str]] = {}
        for name in names:
            winner = view.optimizer.match(name)
            if winner is not None:
                winners.setdefault(winner, []).append(name)
        for key in view.optimizer.custom_keys:
            matched = [n for n in names if key in n]
            if not matched:
                continue  # FF106's business
            reached = sorted({n.split(".")[0] for n in matched})
            names_a_module = any(key in top or top in key for top in tops) and not key.endswith(".")
            if len(reached) > 1 and names_a_module:
                exact = ", ".join(f"'{r}.'" for r in reached)
                yield self.finding(
                    f"custom key {key!r} reaches {len(reached)} top-level modules ({', '.join(reached)}); "
                    f"if one was meant, write it as an exact prefix ({exact})",
                    (*root, key),
                )
            if key not in winners:
                longer = sorted({view.optimizer.match(n) for n in matched} - {None}, key=len, reverse=True)
                if _moot_under_zero_lr(view, key, longer):
                    continue
                yield self.finding(
                    f"custom key {key!r} is shadowed: every parameter it matches is taken first by "
                    f"{', '.join(repr(k) for k in longer)}, so its settings apply to nothing",
                    (*root, key),
                )


def _moot_under_zero_lr(view: ConfigView, key: str, longer: list[str]) -> bool:
    """Whether shadowing ``key`` changes nothing: every key that takes its parameters gives them lr 0,
    and ``key`` asks no lr of its own (Swin's ``'norm': dict(decay_mult=0.)`` under a frozen
    ``'backbone': dict(lr_mult=0.)``).  At lr 0 neither SGD nor Adam(W) moves a parameter, so its
    weight decay is moot."""
    settings = view.optimizer.custom_keys
    asked = settings[key].get("lr_mult") if isinstance(settings[key], dict) else None
    return asked in (None, 0) and all(key_lr_mult(settings[k]) == 0.0 for k in longer)
