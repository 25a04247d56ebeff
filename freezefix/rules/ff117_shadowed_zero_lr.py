"""FF117 shadowed-zero-lr.

What
    A custom key gives a module lr 0 (``'backbone': dict(lr_mult=0.0)``), but a longer key that only
    meant to change weight decay (``'relative_position_bias_table': dict(decay_mult=0.0)``) matches
    some of the module's parameters first, so they train at the optimizer's full lr.

Why
    mmengine and mmcv 1.x sort custom keys longest first and the first substring match wins; the
    winning key's missing ``lr_mult`` means 1.0, not "whatever the shorter key said".  mmdet's Swin
    configs bring ``'relative_position_bias_table'``, ``'absolute_pos_embed'`` and ``'norm'`` keys, so
    a "fixed feature" Swin-T with ``'backbone': dict(lr_mult=0.0)`` trains its 23,322 relative position
    bias parameters anyway.  The parameters are counted on the real class with the stack's own
    optimizer constructor.  A longer key that names the zero-lr key inside it
    (``'backbone.layer4'`` under ``'backbone'``), or that sets an ``lr_mult`` of its own, is a
    deliberate refinement and is left alone.

Example
    Swin with ``custom_keys={'backbone': dict(lr_mult=0.0), 'relative_position_bias_table':
    dict(decay_mult=0.0)}`` → ``frozen_stages`` set to the class's full freeze, which also ends the
    gradients lr 0 would discard.  On a module without a full freeze, ``lr_mult=0.0`` is added to the
    longer key when every parameter it matches in the whole model belongs to that module.

Fix safety
    Unsafe: it changes what trains.  The write gate proves it on the real model with the stack's own
    optimizer: afterwards every parameter under the module is frozen or at lr 0, and no parameter of
    another module changes its lr or weight decay.  When the longer key also matches other modules'
    parameters, or the whole model cannot be built to tell, the finding is reported only.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Iterator

from freezefix.analysis import ConfigView, Module
from freezefix.paramwise import Optimizer, key_lr_mult
from freezefix.rules.base import (
    Change, Finding, Fix, Invalid, Options, Rule, Valid, fmt_count, full_freeze_changes, full_freeze_hazards, registry,
)

_SWIN = """\
model = dict(
    type='MVXFasterRCNN',
    img_backbone=dict(type='mmdet.SwinTransformer', embed_dims=24, depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1),
                      out_indices=(0, 1, 2, 3){fs}),
)
optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.05),
    paramwise_cfg=dict(custom_keys={{'img_backbone': dict(lr_mult=0.0), {longer}}}),
)
{ddp}"""

_NECK = """\
model = dict(
    type='MVXFasterRCNN',
    img_backbone=dict(type='mmdet.ResNet', depth=18, frozen_stages=4, norm_eval=True),
    img_neck=dict(type='mmdet.FPN', in_channels=[64, 128, 256, 512], out_channels=16, num_outs=4),
)
optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.01),
    paramwise_cfg=dict(custom_keys={{'img_neck': dict(lr_mult=0.0), 'lateral_convs': dict({longer})}}),
)
"""


@registry.add
class ShadowedZeroLr(Rule):
    __doc__ = __doc__
    code = "FF117"
    name = "shadowed-zero-lr"
    summary = "a longer custom key takes params of a zero-lr module first and trains them at a non-zero lr"
    fix_summary = "the class's full `frozen_stages`, else `lr_mult=0.0` on the longer key (unsafe; gate-proved)"
    VALID = [
        Valid(_SWIN.format(fs="", longer="'relative_position_bias_table': dict(decay_mult=0.0, lr_mult=0.0)", ddp="")),
        Valid(_SWIN.format(fs=", frozen_stages=4", longer="'relative_position_bias_table': dict(decay_mult=0.0)",
                           ddp="find_unused_parameters = True\n")),
        # a longer key that sets its own lr says so on purpose
        Valid(_SWIN.format(fs="", longer="'relative_position_bias_table': dict(lr_mult=1.0)", ddp="")),
        Valid(_NECK.format(longer="decay_mult=0.0, lr_mult=0.0")),
        # 'img_neck.lateral_convs' names the zero-lr key inside it: a deliberate refinement
        Valid(_NECK.format(longer="decay_mult=0.0").replace("'lateral_convs'", "'img_neck.lateral_convs'")),
    ]
    INVALID = [
        Invalid(_SWIN.format(fs="", longer="'relative_position_bias_table': dict(decay_mult=0.0)", ddp=""),
                fixed=_SWIN.format(fs=",\n                      frozen_stages=4",
                                   longer="'relative_position_bias_table': dict(decay_mult=0.0)",
                                   ddp="find_unused_parameters = True\n"),
                line=8, col=53, message="'relative_position_bias_table' (676 params at lr 0.0001)", unsafe_fixes=True),
        Invalid(_NECK.format(longer="decay_mult=0.0"), fixed=_NECK.format(longer="decay_mult=0.0, lr_mult=0.0"),
                line=8, col=49, message="'lateral_convs' (15,424 params at lr 0.0001)", unsafe_fixes=True),
    ]

    def check(self, view: ConfigView, options: Options) -> Iterator[Finding]:
        optimizer = view.optimizer
        if view.hidden_freeze() or optimizer is None:
            return  # what trains is decided in code no module build shows
        zeros = [k for k, v in optimizer.custom_keys.items() if isinstance(v, dict) and key_lr_mult(v) == 0.0]
        if not zeros:
            return
        for module in view.candidates():
            facts = view.facts(module)
            if not facts.judgeable or facts.observed is None:
                continue
            names = view.param_names(module)
            shadowed = {n: z for n in names for z in zeros if z in n and _revives(optimizer, n, z)}
            if not shadowed:
                continue
            settings = view.facts_source.optimizer_settings(
                module.cfg, view.default_scope, module.name, {optimizer.root[0]: view.values.get(optimizer.root[0])})
            if not settings:
                continue  # the stack's constructor could not tell: nothing is claimed
            revived: dict[str, list[tuple[float, int]]] = defaultdict(list)  # longer key → (lr, elements)
            for name in shadowed:
                lr, _, elements = settings.get(name, (0, None, 0))
                if lr:
                    revived[optimizer.match(name)].append((lr, elements))
            if not revived:
                continue
            zero = min(shadowed[n] for n in shadowed if optimizer.match(n) in revived)
            took = "; ".join(f"{key!r} ({fmt_count(sum(e for _, e in got))} params at lr "
                             f"{', '.join(f'{lr:g}' for lr in sorted({lr for lr, _ in got}))})"
                             for key, got in sorted(revived.items()))
            total = sum(e for got in revived.values() for _, e in got)
            message = (f"{module.name}: custom key {zero!r} gives lr 0, but longer keys match first and train "
                       f"{fmt_count(total)} of its params: {took}; a key without lr_mult means lr_mult=1.0")
            fix, note = self._fix(view, module, set(shadowed), zeros, sorted(revived), total)
            yield self.finding(message + note, (*optimizer.custom_keys_key, zero), fix, module.name)

    def _fix(self, view: ConfigView, module: Module, shadowed: set[str], zeros: list[str], longer: list[str],
             total: int) -> tuple[Fix | None, str]:
        """The class's full freeze when the whole module is meant at lr 0, else ``lr_mult=0.0`` on each
        longer key that matches nothing outside the module's zero-lr params; and what the message adds."""
        optimizer = view.optimizer
        names = view.param_names(module)
        stops = f"it stops {fmt_count(total)} params training that train now"
        # Meant frozen whole: every param is at lr 0, or would be but for a key that revives it.
        meant_frozen = all(optimizer.lr_mult(n) == 0.0 or n in shadowed for n in names)
        facts = view.facts(module, scan=True) if meant_frozen and view.facts(module).accepts_frozen_stages else None
        full = facts.full_freeze if facts is not None else None
        if facts is not None and full is not None and facts.stages[full].trainable_params == 0:
            changes, note = full_freeze_changes(view, module, facts, full)
            why = "; ".join([stops, *full_freeze_hazards(view, facts, full)])
            return (Fix(tuple(changes), safe=False, why_unsafe=why, stops_training=(module.name,)),
                    f"; frozen_stages={full} freezes all of {module.name} ({facts.type_name}){note}")
        everywhere = view.keyed_param_names()
        if everywhere is None:
            return None, "; the whole model could not be built to tell what else the longer keys match, so no fix"
        outside = sorted({key for n in everywhere for key in longer if optimizer.match(n) == key
                          and not (n.startswith(f"{module.name}.") and any(z in n for z in zeros))})
        if outside:
            return None, (f"; {', '.join(repr(k) for k in outside)} also set params outside {module.name}'s zero-lr "
                          "keys, so which lr they meant is the user's call")
        changes = tuple(Change((*optimizer.custom_keys_key, key, "lr_mult"), 0.0) for key in longer)
        return Fix(changes, safe=False, why_unsafe=stops, stops_training=(module.name,)), ""


def _revives(optimizer: Optimizer, name: str, zero: str) -> bool:
    """Whether the key that takes ``name`` first is a longer one that drops ``zero``'s lr 0 by accident:
    it sets no lr_mult of its own and does not name ``zero`` inside it."""
    winner = optimizer.match(name)
    setting = optimizer.custom_keys.get(winner)
    return (winner is not None and winner != zero and zero not in winner
            and not (isinstance(setting, dict) and "lr_mult" in setting))

