"""FF103 frozen-stages-out-of-range.

What
    ``frozen_stages`` lies outside what the class accepts, as probed on the real class.

Why
    Above the range, the model fails to build (mmdet's ResNet: ``AttributeError: ... no attribute
    'layer5'``).  Below -1, nothing is frozen and nothing says so.

Example
    ``dict(type='mmdet.ResNet', depth=50, frozen_stages=5)`` → ``frozen_stages=4``.

Fix safety
    Safe when the value is above the range (the config could not build, so no run depends on it);
    a value below -1 is reported only, since the intent is unknown.
"""

from __future__ import annotations

from typing import Iterator

from freezefix.analysis import ConfigView
from freezefix.rules.base import Change, Finding, Fix, Invalid, Options, Rule, Valid, registry

_CFG = """\
model = dict(
    type='RetinaNet',
    backbone=dict(type='mmdet.ResNet', depth=50, frozen_stages={fs}, norm_eval=True),
)
"""


@registry.add
class FrozenStagesOutOfRange(Rule):
    __doc__ = __doc__
    code = "FF103"
    name = "frozen-stages-out-of-range"
    summary = "frozen_stages outside the range the class accepts"
    fix_summary = "clamp to the full-freeze value (safe); below -1 reported only"
    VALID = [Valid(_CFG.format(fs=-1)), Valid(_CFG.format(fs=4))]
    INVALID = [
        Invalid(_CFG.format(fs=5), fixed=_CFG.format(fs=4),
                line=3, col=64, message="past the range of mmdet.ResNet (-1..4)"),
        Invalid(_CFG.format(fs=-2), line=3, col=64, message="freezes nothing, silently"),
    ]

    def check(self, view: ConfigView, options: Options) -> Iterator[Finding]:
        for module in view.candidates():
            value = view.frozen_stages(module)
            if not isinstance(value, int) or isinstance(value, bool):
                continue
            facts = view.facts(module)
            if not facts.judgeable or not facts.accepts_frozen_stages:
                continue
            key = (*module.key, "frozen_stages")
            observed = facts.observed
            if value < -1:
                if observed is None or observed.trainable_params != facts.total_params:
                    continue  # the class gives negative values a meaning of its own
                yield self.finding(
                    f"{module.name}: frozen_stages={value} freezes nothing, silently "
                    f"(all {facts.total_params:,} params of {facts.type_name} train); "
                    "write -1 if that is meant",
                    key,
                    module=module.name,
                )
                continue
            max_valid = facts.max_valid
            if facts.error is None or max_valid is None or value <= max_valid:
                continue
            message = (f"{module.name}: frozen_stages={value} is past the range of {facts.type_name} "
                       f"({min(facts.stages)}..{max_valid}); building it fails with {facts.failure}")
            target = facts.full_freeze
            if target is None:
                # No value freezes more than another: there is nothing to clamp to that keeps the
                # intent (freeze everything) rather than silently undoing it.
                yield self.finding(message, key, module=module.name)
                continue
            yield self.finding(
                f"{message}. frozen_stages={target} freezes everything",
                key,
                Fix((Change(key, target),), safe=True, repairs=(module.name,)),
                module.name,
            )
