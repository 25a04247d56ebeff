"""FF105 bn-stats-drift.

What
    A module meant to be frozen (all its parameters get lr 0, or none requires grad) still has
    BatchNorm layers in training mode after ``train()``.

Why
    A BatchNorm layer in training mode updates its running mean and variance on every batch, even
    when its weights are frozen.  The "frozen" backbone drifts towards the fine-tuning data and no
    longer computes the features it was pretrained to compute.

Example
    ``img_backbone=dict(type='mmdet.ResNet', depth=50, frozen_stages=-1, norm_eval=False)`` with
    ``lr_mult=0.0`` → ``norm_eval=True``.

Fix safety
    Unsafe: it changes the numerics of training.  Where the class has no ``norm_eval`` the finding
    is reported without a fix.
"""

from __future__ import annotations

from typing import Iterator

from freezefix.analysis import ConfigView
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


@registry.add
class BnStatsDrift(Rule):
    __doc__ = __doc__
    code = "FF105"
    name = "bn-stats-drift"
    summary = "a module meant frozen still updates BatchNorm statistics"
    fix_summary = "`norm_eval=True` where the class has it (unsafe)"
    VALID = [
        Valid(_CFG.format(fs=-1, ne=True)),
        Valid(_CFG.format(fs=4, ne=False)),  # ResNet puts the BatchNorm of frozen stages in eval
    ]
    INVALID = [Invalid(_CFG.format(fs=-1, ne=False), fixed=_CFG.format(fs=-1, ne=True), unsafe_fixes=True,
                       line=3, col=78, message="20 of its 20 BatchNorm layers stay in training mode")]

    def check(self, view: ConfigView, options: Options) -> Iterator[Finding]:
        if view.settings.hidden_freeze:
            return  # what trains is decided in code no module build shows
        for module in view.candidates():
            facts = view.facts(module)
            observed = facts.observed
            if observed is None or not observed.bn_training:
                continue
            fully_frozen = observed.trainable_params == 0 and facts.total_params > 0
            if not (fully_frozen or (facts.param_names and view.zero_lr(module))):
                continue
            why = "fully frozen" if fully_frozen else "given lr_mult=0.0"
            message = (
                f"{module.name} is {why}, but {observed.bn_training} of its {observed.bn_total} "
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
