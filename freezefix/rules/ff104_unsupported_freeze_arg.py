"""FF104 unsupported-freeze-arg.

What
    ``frozen_stages`` or ``norm_eval`` is given to a class that does not take it: the build fails
    with ``TypeError: ... unexpected keyword argument 'frozen_stages'``, or the class swallows it
    through ``**kwargs`` and ignores it.

Why
    mmdet3d's SECOND, SECONDFPN, SparseEncoder, HardSimpleVFE and DynamicVFE take no freeze
    argument.  The seed document suggests freezing SECOND "if it supports it"; it does not.

Example
    ``pts_backbone=dict(type='SECOND', frozen_stages=4, ...)`` → the argument is removed and
    ``custom_keys['pts_backbone'] = dict(lr_mult=0.0)`` is added, the only config-level freeze such a
    class has.

Fix safety
    Unsafe: lr 0 is not a freeze.  Gradients are still computed for the module, and its BatchNorm
    statistics keep updating; the message says so.
"""

from __future__ import annotations

from typing import Iterator

from freezefix.analysis import ConfigView
from freezefix.rules.base import REMOVE, Change, Finding, Fix, Invalid, Options, Rule, Valid, add_zero_lr_key, registry

_CFG = """\
model = dict(
    type='MVXFasterRCNN',
    pts_backbone=dict(type='SECOND', in_channels=64, out_channels=[64, 128], layer_nums=[1, 1],
                      layer_strides=[2, 2]{extra}),
)
optim_wrapper = dict(optimizer=dict(type='AdamW', lr=2e-4){paramwise})
"""
_KEYS = ",\n                     paramwise_cfg=dict(custom_keys={'pts_backbone': dict(lr_mult=0.0)})"


@registry.add
class UnsupportedFreezeArg(Rule):
    __doc__ = __doc__
    code = "FF104"
    name = "unsupported-freeze-arg"
    summary = "frozen_stages / norm_eval given to a class that rejects or ignores it"
    fix_summary = "remove it, add `lr_mult=0.0` (unsafe: gradients are still computed)"
    VALID = [Valid(_CFG.format(extra="", paramwise=""))]
    INVALID = [
        Invalid(
            _CFG.format(extra=", frozen_stages=4", paramwise=""),
            fixed=_CFG.format(extra="", paramwise="").replace(
                "lr=2e-4)", "lr=2e-4), paramwise_cfg=dict(custom_keys={'pts_backbone': dict(lr_mult=0.0)})"
            ),
            unsafe_fixes=True, line=4, col=59, message="SECOND does not accept frozen_stages",
        ),
        Invalid(_CFG.format(extra=", norm_eval=True", paramwise=_KEYS),
                line=4, col=55, message="SECOND does not accept norm_eval"),
    ]

    def check(self, view: ConfigView, options: Options) -> Iterator[Finding]:
        for module in view.candidates():
            given = [arg for arg in ("frozen_stages", "norm_eval") if arg in module.cfg]
            if not given:
                continue
            facts = view.facts(module)
            if not facts.judgeable:
                continue
            rejected = [
                arg for arg in given
                if not getattr(facts, f"accepts_{arg}") and facts.error and arg in facts.error
            ]
            for arg, why in _ignored(view, module, facts, given, rejected):
                yield self.finding(f"{module.name}: {facts.type_name} ignores {arg}: {why}", (*module.key, arg), module=module.name)
            if not rejected:
                continue
            changes = [Change((*module.key, arg), REMOVE) for arg in rejected]
            wants_freeze = "frozen_stages" in rejected and _int(module.cfg["frozen_stages"]) >= 0
            lr_note = ""
            if wants_freeze and not view.zero_lr(module):
                changes.append(add_zero_lr_key(view, module.name))
                lr_note = f" and add custom_keys[{module.name!r}] = dict(lr_mult=0.0)"
            yield self.finding(
                f"{module.name}: {facts.type_name} does not accept {' / '.join(rejected)}; the model "
                f"fails to build ({facts.failure}). Fix: remove it{lr_note}; "
                "note that lr 0 still computes gradients for this module",
                (*module.key, rejected[0]),
                Fix(
                    tuple(changes),
                    safe=False,
                    why_unsafe="lr_mult 0 is the only freeze this class has: gradients are still "
                    "computed and BatchNorm statistics still update",
                    announces=(("FF105", module.name),) if lr_note else (),
                    repairs=(module.name,),
                ),
                module.name,
            )


def _ignored(view: ConfigView, module, facts, given: list[str], rejected: list[str]) -> Iterator[tuple[str, str]]:
    """Arguments the class takes without error but that change nothing on the built module."""
    if facts.error is not None or facts.observed is None:
        return
    for arg in given:
        if arg in rejected:
            continue
        if not getattr(facts, f"accepts_{arg}"):
            yield arg, "no __init__ in its class hierarchy names it (swallowed by **kwargs)"
        elif arg == "frozen_stages" and facts.freezes_nothing_ever:
            yield arg, f"every value from -1 to {max(facts.stages)} leaves the same parameters trainable"
        elif arg == "norm_eval" and module.cfg.get("norm_eval") is True and facts.observed.bn_training:
            yield arg, f"with norm_eval=True, {facts.observed.bn_training} BatchNorm layers still train"


def _int(value: object) -> int:
    return value if isinstance(value, int) else -1
