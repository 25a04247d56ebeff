"""FF113 custom-key-drops-decay-rules.

What
    ``paramwise_cfg`` sets a rule for kinds of parameters (``norm_decay_mult``, ``bias_decay_mult``,
    ``bias_lr_mult``, ``dwconv_decay_mult``, ``flat_decay_mult``, ``dcn_offset_lr_mult``) and a
    ``custom_keys`` entry matches some of those parameters: they get the key's multipliers alone, not
    the key's on top of the rule.

Why
    In mmengine's (and mmcv 1.x's) optimizer constructor a parameter that matches a custom key skips
    every other paramwise rule.  ``paramwise_cfg=dict(norm_decay_mult=0., custom_keys={'backbone':
    dict(lr_mult=0.1)})`` gives every norm weight of the backbone full weight decay, silently.  The
    stack's own constructor is asked for each parameter's lr and weight decay with and without the
    custom keys; a parameter is reported when what it gets differs from the rule's value times the
    key's own ``lr_mult`` / ``decay_mult``.  Parameters at lr 0 are left out: neither lr nor decay
    moves them.

Example
    ``paramwise_cfg=dict(norm_decay_mult=0.0, custom_keys={'backbone': dict(lr_mult=0.1)})`` on a
    ResNet backbone → its 53 norm weights and biases decay at the optimizer's weight_decay.

Fix safety
    None: restate the multiplier in the key (``'backbone': dict(lr_mult=0.1, decay_mult=0.0)`` covers
    norms and convolutions alike), or add keys for those parameters that are longer than the one that
    takes them (the longest matching key wins, so ``'bn'`` never beats ``'backbone'``) — which one is
    meant is the user's call.
"""

from __future__ import annotations

import copy
import math
from collections import defaultdict
from typing import Any, Iterator

from freezefix.analysis import ConfigView
from freezefix.rules.base import Finding, Invalid, Options, Rule, Valid, fmt_count, registry

PARAMWISE_RULES = ("norm_decay_mult", "bias_decay_mult", "bias_lr_mult", "dwconv_decay_mult", "flat_decay_mult",
                   "dcn_offset_lr_mult")

_CFG = """\
model = dict(
    type='RetinaNet',
    backbone=dict(type='mmdet.ResNet', depth=18, frozen_stages={fs}),
)
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=0.0001),
    paramwise_cfg=dict({rules}custom_keys={{'backbone': dict({key})}}),
)
"""


@registry.add
class CustomKeyDropsDecayRules(Rule):
    __doc__ = __doc__
    code = "FF113"
    name = "custom-key-drops-decay-rules"
    summary = "a custom key silently switches off norm/bias/dwconv decay and lr rules for what it matches"
    fix_summary = "reported (restate the multiplier in the key, or add longer keys)"
    VALID = [
        Valid(_CFG.format(fs=-1, rules="", key="lr_mult=0.1")),
        Valid(_CFG.format(fs=-1, rules="norm_decay_mult=0.0, ", key="lr_mult=0.0")),  # lr 0: nothing moves
        # a rule that changes nothing (multiplier 1.0) is nothing to drop
        Valid(_CFG.format(fs=-1, rules="bias_decay_mult=1.0, ", key="lr_mult=0.1")),
    ]
    INVALID = [Invalid(_CFG.format(fs=-1, rules="norm_decay_mult=0.0, ", key="lr_mult=0.1"),
                       line=7, col=70,
                       message="takes 40 params out of norm_decay_mult=0.0")]

    def check(self, view: ConfigView, options: Options) -> Iterator[Finding]:
        if view.hidden_freeze():
            return  # what trains is decided in code no module build shows
        optimizer = view.optimizer
        if optimizer is None or not optimizer.custom_keys:
            return
        holder = view.values.get(optimizer.root[0])
        paramwise = holder.get("paramwise_cfg") if isinstance(holder, dict) else None
        rules = {r: paramwise[r] for r in PARAMWISE_RULES if isinstance(paramwise, dict) and paramwise.get(r) is not None}
        if not rules:
            return
        as_written = {optimizer.root[0]: holder}
        without_keys = copy.deepcopy(as_written)
        without_keys[optimizer.root[0]]["paramwise_cfg"].pop("custom_keys")
        shown_rules = ", ".join(f"{k}={v}" for k, v in rules.items())
        for module in view.modules.values():
            keyed = [n for n in view.param_names(module) if optimizer.match(n)]
            if not keyed:
                continue
            scope = view.default_scope
            got = view.facts_source.optimizer_settings(module.cfg, scope, module.name, as_written)
            ruled = view.facts_source.optimizer_settings(module.cfg, scope, module.name, without_keys)
            if not got or not ruled:
                continue
            # custom key → (parameter, what it gets, what the rule times the key would give)
            dropped: dict[str, list[tuple[str, str, Any, Any]]] = defaultdict(list)
            for name in keyed:
                if name not in got or name not in ruled or not got[name][0]:
                    continue
                key = optimizer.match(name)
                setting = optimizer.custom_keys[key] if isinstance(optimizer.custom_keys[key], dict) else {}
                (lr, wd), (rule_lr, rule_wd) = got[name][:2], ruled[name][:2]
                meant_lr = rule_lr * float(setting.get("lr_mult", 1.0))
                if not _same(lr, meant_lr):
                    dropped[key].append((name, "lr", lr, meant_lr))
                elif wd is not None and rule_wd is not None:
                    meant_wd = rule_wd * float(setting.get("decay_mult", 1.0))
                    if not _same(wd, meant_wd):
                        dropped[key].append((name, "weight decay", wd, meant_wd))
            for key, params in dropped.items():
                example, what, actual, meant = params[0]
                yield self.finding(
                    f"{module.name}: custom key {key!r} takes {fmt_count(len(params))} params out of "
                    f"{shown_rules} (a matched parameter skips every other paramwise rule): e.g. "
                    f"{example} gets {what} {actual:g} instead of {meant:g}; restate the multiplier in the "
                    "key, or add longer keys for those params (the longest matching key wins)",
                    (*optimizer.custom_keys_key, key),
                    module=module.name,
                )


def _same(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-15)
