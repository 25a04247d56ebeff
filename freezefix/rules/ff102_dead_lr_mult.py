"""FF102 dead-lr-mult.

What
    A module is fully frozen (no parameter requires grad after ``train()``), yet the custom key that
    covers it sets an ``lr_mult`` other than 0.

Why
    The setting has no effect: frozen parameters get no gradient (and mmengine ≥ 0.10.4 leaves them
    out of the optimizer).  A reader sees ``lr_mult=0.1`` and believes the module fine-tunes.

Example
    ``backbone=dict(type='mmdet.ResNet', depth=50, frozen_stages=4)`` with
    ``custom_keys={'backbone': dict(lr_mult=0.1)}`` → ``lr_mult=0.0``.

Fix safety
    Safe: the module trains the same either way.  No fix is offered when the key also matches
    parameters of a module that still trains (changing it would freeze those).
"""

from __future__ import annotations

from typing import Iterator

from freezefix.analysis import ConfigView
from freezefix.frozen_weights import frozen_by
from freezefix.rules.base import Change, Finding, Fix, Invalid, Options, Rule, Valid, registry

_CFG = """\
model = dict(
    type='RetinaNet',
    backbone=dict(type='mmdet.ResNet', depth=18, frozen_stages={fs}, norm_eval=True),
    neck=dict(type='mmdet.FPN', in_channels=[64, 128, 256, 512], out_channels=64, num_outs=4),
)
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.01, momentum=0.9),
    paramwise_cfg=dict(custom_keys={{'backbone': dict(lr_mult={lr})}}),
)
"""


@registry.add
class DeadLrMult(Rule):
    __doc__ = __doc__
    code = "FF102"
    name = "dead-lr-mult"
    summary = "lr_mult other than 0 on a module that is fully frozen"
    fix_summary = "`lr_mult` → 0.0 (safe; none if the key also reaches a module that trains)"
    VALID = [Valid(_CFG.format(fs=4, lr=0.0)), Valid(_CFG.format(fs=3, lr=0.1))]
    INVALID = [Invalid(_CFG.format(fs=4, lr=0.1), fixed=_CFG.format(fs=4, lr=0.0),
                       line=8, col=62, message="has no effect")]

    def check(self, view: ConfigView, options: Options) -> Iterator[Finding]:
        if view.optimizer is None:
            return
        for module in view.candidates():
            facts = view.facts(module)
            if facts.observed is None or facts.observed.trainable_params or not facts.param_names:
                continue
            key = view.covering_key(module)
            if key is None:
                continue
            setting = view.optimizer.custom_keys.get(key)
            mult = setting.get("lr_mult") if isinstance(setting, dict) else None
            if mult is None or float(mult) == 0.0:
                continue
            where = (*view.optimizer.custom_keys_key, key, "lr_mult")
            others = _trainable_modules_matching(view, key, exclude=module)
            message = (
                f"{module.name} is fully frozen ({frozen_by(view, module)}), so "
                f"lr_mult={mult} from custom key {key!r} has no effect"
            )
            if others:
                message += f"; the key also matches {', '.join(others)}, which trains: no fix offered"
                yield self.finding(message, where, None, module.name)
            else:
                yield self.finding(message, where, Fix((Change(where, 0.0),), safe=True), module.name)


def _trainable_modules_matching(view: ConfigView, key: str, exclude) -> list[str]:
    """Other modules the key reaches that still train (unprobed modules are assumed to train)."""
    probed = {m.name for m in view.candidates()}
    found = []
    for other in view.modules.values():
        if other is exclude:
            continue
        if other.name in probed:
            names = view.param_names(other) or [f"{other.name}."]
            observed = view.facts(other).observed
            trains = observed is None or observed.trainable_params > 0
        else:
            names, trains = [f"{other.name}."], True
        if trains and any(view.optimizer.match(n) == key for n in names):
            found.append(other.name)
    return found
