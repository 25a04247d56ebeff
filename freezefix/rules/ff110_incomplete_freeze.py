"""FF110 incomplete-freeze.

What
    Policy mode (``--freeze img_backbone,…`` or ``[tool.freezefix] freeze``): a module the user asked
    to freeze is not fully frozen.  Without a policy: a module is given lr 0 while a module that
    feeds it in the same branch (pts_voxel_encoder → pts_middle_encoder → pts_backbone → pts_neck,
    img_backbone → img_neck) still trains.

Why
    Freezing takes up to three settings that must agree: ``frozen_stages`` at the class's
    full-freeze value, ``norm_eval=True``, and ``lr_mult=0.0`` in ``custom_keys``.  Classes without
    ``frozen_stages`` (SECOND, SparseEncoder, VFEs) can only get the last one.

Example
    ``--freeze img_backbone,pts_backbone`` on a config with ``frozen_stages=3`` and only an
    ``img_backbone`` custom key → ``frozen_stages=4`` and ``custom_keys['pts_backbone'] =
    dict(lr_mult=0.0)`` (``paramwise_cfg`` and ``custom_keys`` are created where missing, under
    ``optim_wrapper=`` or mmcv 1.x's ``optimizer=``).

Fix safety
    Safe in policy mode (the user said what to freeze); unsafe otherwise.
"""

from __future__ import annotations

from typing import Iterator

from freezefix.analysis import BRANCHES, ConfigView, Module
from freezefix.rules.base import Change, Finding, Fix, Invalid, Options, Rule, Valid, add_zero_lr_key, registry, resume_hazard

_CFG = """\
model = dict(
    type='RetinaNet',
    backbone=dict(type='mmdet.ResNet', depth=18, frozen_stages={fs}, norm_eval=True),
    neck=dict(type='mmdet.FPN', in_channels=[64, 128, 256, 512], out_channels=64, num_outs=4),
)
optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.01){paramwise})
"""
_KEYS = ", paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=0.0)})"


@registry.add
class IncompleteFreeze(Rule):
    __doc__ = __doc__
    code = "FF110"
    name = "incomplete-freeze"
    summary = "a module meant frozen is not fully frozen (policy), or is fed by a module that trains"
    fix_summary = (
        "full `frozen_stages`, `norm_eval=True`, add missing `custom_keys` (creating `paramwise_cfg` "
        "under `optim_wrapper=` or mmcv 1.x `optimizer=`)"
    )
    VALID = [
        Valid(_CFG.format(fs=4, paramwise=_KEYS), freeze=("backbone",)),
        Valid(_CFG.format(fs=1, paramwise="")),  # no policy, no lr 0: ordinary fine-tuning
    ]
    INVALID = [
        Invalid(_CFG.format(fs=1, paramwise=""), fixed=_CFG.format(fs=4, paramwise=_KEYS), freeze=("backbone",),
                line=3, col=14, message="not fully frozen: needs frozen_stages=4"),
    ]

    def check(self, view: ConfigView, options: Options) -> Iterator[Finding]:
        if view.hidden_freeze():
            return  # what trains is decided in code no module build shows
        if options.freeze:
            for name in options.freeze:
                module = view.modules.get(name)
                if module is not None:
                    yield from self._complete(view, module, policy=True)
            return
        if not view.optimizer:
            return
        candidates = {m.name for m in view.candidates()}
        for branch in BRANCHES:
            present = [view.modules[n] for n in branch if n in view.modules]
            for i, module in enumerate(present):
                if module.name not in candidates or not view.facts(module).param_names or not view.zero_lr(module):
                    continue
                for upstream in present[:i]:
                    if view.facts(upstream).param_names and not view.zero_lr(upstream):
                        yield from self._complete(view, upstream, policy=False, because=module.name)

    def _complete(self, view: ConfigView, module: Module, policy: bool, because: str | None = None) -> Iterator[Finding]:
        facts = view.facts(module, scan=True)
        changes: list[Change] = []
        todo: list[str] = []
        notes: list[str] = []
        announces: list[tuple[str, str]] = []
        if not facts.judgeable or facts.observed is None:
            # Not built with these arguments: the could-not-judge summary, FF103 or FF104 says why.
            return
        current = view.frozen_stages(module)
        full = facts.full_freeze
        if facts.accepts_frozen_stages and full is not None and facts.observed.trainable_params and (
            not isinstance(current, int) or current < full
        ):
            changes.append(Change((*module.key, "frozen_stages"), full))
            todo.append(f"frozen_stages={full}")
        elif facts.observed.trainable_params and not facts.accepts_frozen_stages:
            notes.append(f"{facts.type_name} has no frozen_stages: its gradients are still computed")
        if facts.observed.bn_training:
            if facts.accepts_norm_eval and module.cfg.get("norm_eval") is not True:
                changes.append(Change((*module.key, "norm_eval"), True))
                todo.append("norm_eval=True")
            elif not facts.accepts_norm_eval:
                notes.append(
                    f"{facts.observed.bn_training} BatchNorm layers keep updating their statistics "
                    f"({facts.type_name} has no norm_eval)"
                )
                announces.append(("FF105", module.name))
        if not facts.total_params:
            return  # nothing to freeze (e.g. HardSimpleVFE has no parameters)
        if not view.zero_lr(module):
            changes.append(add_zero_lr_key(view, module.name))
            todo.append(f"custom_keys[{module.name!r}] = dict(lr_mult=0.0)")
        if not changes:
            return
        reason = (
            f"{module.name} is in the freeze policy" if policy
            else f"{because} has lr 0 but {module.name}, which feeds it, still trains"
        )
        message = f"{reason}; not fully frozen: needs {', '.join(todo)}"
        if notes:
            message += " (" + "; ".join(notes) + ")"
        hazard = resume_hazard(view)
        safe = policy and hazard is None
        why = hazard if hazard else (None if policy else "freezing a module changes what trains (no freeze policy given)")
        fix = Fix(tuple(changes), safe=safe, why_unsafe=why, announces=tuple(announces))
        yield self.finding(message, module.key, fix, module.name)
