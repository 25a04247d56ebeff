"""FF108 zero-lr-revived-by-scheduler.

What
    A module relies on ``lr_mult=0.0`` to stay still, but a learning-rate scheduler gives parameter
    groups whose lr is 0 a non-zero lr.

Why
    Schedulers with an absolute floor or peak rewrite every group: mmengine's ``CosineAnnealingLR``
    with ``eta_min`` (and mmcv 1.x ``CosineAnnealing`` with ``min_lr``) anneals a 0-lr group *up* to
    the floor; ``OneCycleLR`` with a scalar ``eta_max`` (mmcv 1.x ``OneCycle`` with a scalar
    ``max_lr``) overwrites every group.  The "frozen" module then trains.  ``eta_min_ratio`` /
    ``min_lr_ratio`` and LinearLR warm-up keep 0 at 0.

Example
    ``param_scheduler=[dict(type='CosineAnnealingLR', T_max=12, eta_min=1e-6)]`` with
    ``custom_keys={'img_backbone': dict(lr_mult=0.0)}`` → reported: use ``eta_min_ratio``, or freeze
    the module with ``frozen_stages`` instead.

Fix safety
    Reported only.  The claim is checked by running the configured schedule on a real optimizer
    with a 0-lr group, with the installed stack's own code: mmengine's ``param_scheduler`` classes,
    or mmcv 1.x's ``LrUpdaterHook`` for ``lr_config``.  An mmcv 1.x ``lr_config`` in an mmengine
    environment (which has no such hooks) is judged from the policies' documented formulas.
"""

from __future__ import annotations

from typing import Any, Iterator

from freezefix.analysis import ConfigView
from freezefix.rules.base import Finding, Invalid, Options, Rule, Valid, registry

_CFG = """\
model = dict(
    type='RetinaNet',
    backbone=dict(type='mmdet.ResNet', depth=18, frozen_stages=-1, norm_eval=True),
)
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.01),
    paramwise_cfg=dict(custom_keys={{'backbone': dict(lr_mult=0.0)}}),
)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=10),
    dict(type='CosineAnnealingLR', T_max=12, by_epoch=True, begin=0, end=12, {floor}),
]
"""
_MMCV1 = """\
model = dict(
    type='RetinaNet',
    backbone=dict(type='ResNet', depth=18, frozen_stages=-1, norm_eval=True),
)
optimizer = dict(type='SGD', lr=0.01, paramwise_cfg=dict(custom_keys={{'backbone': dict(lr_mult=0.0)}}))
lr_config = dict(policy='CosineAnnealing', warmup='linear', warmup_iters=10, warmup_ratio=0.001, {floor})
runner = dict(type='EpochBasedRunner', max_epochs=12)
"""


@registry.add
class ZeroLrRevivedByScheduler(Rule):
    __doc__ = __doc__
    code = "FF108"
    name = "zero-lr-revived-by-scheduler"
    summary = "a scheduler gives 0-lr parameter groups a non-zero lr"
    VALID = [Valid(_CFG.format(floor="eta_min_ratio=0.01")),
             Valid(_MMCV1.format(floor="min_lr_ratio=0.001"))]
    # mmengine's schedulers run only where mmengine is installed; mmcv 1.x's lr_config is judged by
    # its own hook there, and by what its settings say elsewhere
    INVALID = [Invalid(_CFG.format(floor="eta_min=1e-6"), stacks=("mmengine",),
                       line=9, col=19, message="gives 0-lr groups lr up to"),
               Invalid(_MMCV1.format(floor="min_lr=1e-6"), line=6, col=13,
                       message="lr_config policy='CosineAnnealing'")]

    def check(self, view: ConfigView, options: Options) -> Iterator[Finding]:
        if view.optimizer is None:
            return
        zero_keys = [k for k, v in view.optimizer.custom_keys.items() if isinstance(v, dict) and v.get("lr_mult", 1.0) == 0]
        if not zero_keys:
            return
        base_lr = _base_lr(view)
        if view.optimizer.era == "mmengine":
            schedulers = view.values.get("param_scheduler")
            # Running a scheduler means importing mmengine.optim (and torch.distributed): once per
            # distinct schedule, then from the cache.
            listed = [schedulers] if isinstance(schedulers, dict) else schedulers if isinstance(schedulers, list) else []
            for culprit in listed:
                peak = view.facts_source.zero_lr_peak("param_scheduler", culprit, base_lr, 0)
                if not peak:
                    continue
                yield self.finding(
                    f"{culprit['type']} gives 0-lr groups lr up to {peak:.3g}: the modules behind "
                    f"{', '.join(repr(k) for k in zero_keys)} train after all (use eta_min_ratio, or "
                    "freeze them with frozen_stages)",
                    ("param_scheduler",),
                )
        else:
            lr_config = view.values.get("lr_config")
            if view.facts_source.lr_schedule == "lr_config":
                epochs = _mmcv1_max_epochs(view.values)
                # None: the stack's own hook could not run this schedule: not judged.
                peak = view.facts_source.zero_lr_peak("lr_config", lr_config, base_lr, epochs)
                why = f"policy={lr_config['policy']!r} gives 0-lr groups lr up to {peak:.3g}" if peak else None
            else:  # a stack that never runs lr_config: what its settings say they would do
                why = _mmcv1_revives(lr_config)
            if why:
                yield self.finding(
                    f"lr_config {why}: the modules behind {', '.join(repr(k) for k in zero_keys)} train "
                    "after all (use min_lr_ratio, or freeze them with frozen_stages)",
                    ("lr_config",),
                )


def _base_lr(view: ConfigView) -> float:
    holder = view.values.get("optim_wrapper", {}).get("optimizer") if view.optimizer.era == "mmengine" else view.values.get("optimizer")
    lr = holder.get("lr") if isinstance(holder, dict) else None
    return float(lr) if isinstance(lr, (int, float)) else 0.01


def _mmcv1_max_epochs(values: dict) -> int:
    runner = values.get("runner")
    for epochs in (runner.get("max_epochs") if isinstance(runner, dict) else None, values.get("total_epochs")):
        if isinstance(epochs, int) and epochs > 0:
            return epochs
    return 12


def _mmcv1_revives(lr_config: Any) -> str | None:
    if not isinstance(lr_config, dict):
        return None
    policy = str(lr_config.get("policy", "")).lower()
    floor = lr_config.get("min_lr")
    if policy in ("cosineannealing", "cosinerestart", "poly", "flatcosineannealing") and floor:
        return f"policy={lr_config['policy']!r} with absolute min_lr={floor} anneals 0-lr groups up to it"
    if policy == "onecycle" and not isinstance(lr_config.get("max_lr"), dict):
        return "policy='OneCycle' with a scalar max_lr sets every group's lr"
    return None
