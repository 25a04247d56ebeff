"""FF105 bn-stats-drift.

What
    A module meant to be frozen (all its parameters get lr 0, or none requires grad) still has
    BatchNorm layers in training mode after ``train()``; or a part of a module that its class froze
    (every parameter of the child frozen) keeps its BatchNorm in training mode while ``norm_eval``
    is off: mmdet's ``MobileNetV2`` freezes ``conv1`` for any ``frozen_stages >= 0`` but puts only
    ``layer1..N`` in eval mode.

Why
    A BatchNorm layer in training mode updates its running mean and variance on every batch, even
    when its weights are frozen.  The "frozen" backbone drifts towards the fine-tuning data and no
    longer computes the features it was pretrained to compute.

Example
    ``img_backbone=dict(type='mmdet.ResNet', depth=50, frozen_stages=-1, norm_eval=False)`` with
    ``lr_mult=0.0`` → ``norm_eval=True``.

Fix safety
    Unsafe: it changes the numerics of training.  Where the class has no ``norm_eval`` the finding
    is reported without a fix; so is a frozen part of a module that still trains, since
    ``norm_eval=True`` would also stop the trainable stages' statistics.
"""

from __future__ import annotations

from typing import Iterator

from freezefix.analysis import ConfigView, Module
from freezefix.facts import ClassFacts
from freezefix.rules.base import Change, Finding, Fix, Invalid, Options, Rule, Valid, registry

_CFG = """\
model = dict(
    type='RetinaNet',
    backbone=dict(type='mmdet.ResNet', depth=18, frozen_stages={fs}, norm_eval={ne}),
)
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.01),
    paramwise_cfg=dict(custom_keys={{'backbone': dict(lr_mult=0.0)}}),
)
"""

_STEM = """\
model = dict(
    type='RetinaNet',
    backbone=dict(type='mmdet.MobileNetV2', widen_factor=0.25, frozen_stages={fs}, norm_eval={ne}),
)
"""


@registry.add
class BnStatsDrift(Rule):
    __doc__ = __doc__
    code = "FF105"
    name = "bn-stats-drift"
    summary = "a module meant frozen, or a part of one its class froze, still updates BatchNorm statistics"
    fix_summary = "`norm_eval=True` where the class has it (unsafe); a frozen part of a module that trains: reported"
    VALID = [
        Valid(_CFG.format(fs=-1, ne=True)),
        Valid(_CFG.format(fs=4, ne=False)),  # ResNet puts the BatchNorm of frozen stages in eval
        Valid(_CFG.format(fs=1, ne=False).replace("'backbone': dict(lr_mult=0.0)", "'neck': dict(lr_mult=0.0)")),
        Valid(_STEM.format(fs=1, ne=True)),
        Valid(_STEM.format(fs=-1, ne=False)),  # nothing frozen
    ]
    INVALID = [
        Invalid(_CFG.format(fs=-1, ne=False), fixed=_CFG.format(fs=-1, ne=True), unsafe_fixes=True,
                line=3, col=78, message="20 of its 20 BatchNorm layers stay in training mode"),
        Invalid(_STEM.format(fs=1, ne=False), line=3, col=78,
                message="backbone: conv1 is frozen (frozen_stages=1), but its 1 BatchNorm layer stays in training mode"),
    ]

    def check(self, view: ConfigView, options: Options) -> Iterator[Finding]:
        if view.hidden_freeze():
            return  # what trains is decided in code no module build shows
        for module in view.candidates():
            facts = view.facts(module)
            observed = facts.observed
            # layers with track_running_stats=False update nothing (FF118 judges them)
            drifting = observed.bn_training - observed.bn_not_tracking if observed is not None else 0
            if not drifting:
                continue
            fully_frozen = observed.trainable_params == 0 and facts.total_params > 0
            if not (fully_frozen or (facts.param_names and view.zero_lr(module))):
                yield from self._frozen_parts(view, module, facts)
                continue
            why = "fully frozen" if fully_frozen else "given lr_mult=0.0"
            message = (
                f"{module.name} is {why}, but {drifting} of its {observed.bn_total} "
                "BatchNorm layers stay in training mode and keep updating their running statistics"
            )
            key = (*module.key, "norm_eval")
            if not facts.accepts_norm_eval:
                yield self.finding(message + f"; {facts.type_name} has no norm_eval", module.key, module=module.name)
                continue
            with_norm_eval = view.facts_source.facts({**module.cfg, "norm_eval": True}, view.default_scope, scan=False)
            if with_norm_eval.observed is None:
                # A build that failed says nothing about what norm_eval=True would do: no fix.
                yield self.finding(message + f"; with norm_eval=True {facts.type_name} does not build "
                                   f"({with_norm_eval.failure})", module.key, module=module.name)
                continue
            if with_norm_eval.observed.bn_training:
                yield self.finding(message + "; norm_eval=True does not stop it", module.key, module=module.name)
                continue
            yield self.finding(
                message + "; set norm_eval=True",
                key if "norm_eval" in module.cfg else module.key,
                Fix((Change(key, True),), safe=False, why_unsafe="it changes BatchNorm numerics in training"),
                module.name,
            )

    def _frozen_parts(self, view: ConfigView, module: Module, facts: ClassFacts) -> Iterator[Finding]:
        """The parts of a module that still trains which its class froze but left in training mode."""
        for child, count in facts.observed.frozen_children_bn_training.items():
            how = f"frozen_stages={module.cfg['frozen_stages']}" if "frozen_stages" in module.cfg else "by its class"
            layers = f"its {count} BatchNorm layer stays" if count == 1 else f"its {count} BatchNorm layers stay"
            yield self.finding(
                f"{module.name}: {child} is frozen ({how}), but {layers} in training mode after train(), "
                f"updating running statistics ({facts.type_name} does not put {child} in eval mode); norm_eval=True "
                "stops it, but also stops the statistics of the stages that train",
                (*module.key, "frozen_stages") if "frozen_stages" in module.cfg else module.key,
                module=module.name,
            )
