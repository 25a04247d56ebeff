"""FF114 ignored-setting.

What
    A setting the installed stack never reads, and no code of the config reads either, in a config
    that also has the setting the stack does read:
    a top-level ``optimizer=dict(..., paramwise_cfg=...)`` beside ``optim_wrapper`` under mmengine
    (or the reverse under mmcv 1.x), mmcv 1.x's ``lr_config`` / ``optimizer_config`` /
    ``momentum_config`` / ``runner`` / ``total_epochs`` in an mmengine config (``param_scheduler``
    in an mmcv 1.x one), and a top-level ``find_unused_parameters`` while ``model_wrapper_cfg`` is set.

Why
    A freeze written where nothing reads it does nothing.  mmengine's Runner builds the optimizer
    from ``optim_wrapper`` alone, so ``custom_keys={'img_backbone': dict(lr_mult=0.0)}`` left in an
    ``optimizer=`` copied from an mmcv 1.x config trains the backbone at full lr, silently.
    ``Runner.wrap_model`` reads the top-level ``find_unused_parameters`` only when
    ``model_wrapper_cfg`` is None: with a wrapper config, DDP runs without it.

Example
    ``optim_wrapper = dict(optimizer=dict(type='AdamW', lr=2e-4))`` and
    ``optimizer = dict(type='AdamW', lr=2e-4, paramwise_cfg=dict(custom_keys=...))`` →
    ``optim_wrapper`` gains that ``paramwise_cfg``.

Fix safety
    ``find_unused_parameters``: safe (it goes where the Runner reads it, and means what it meant).
    ``paramwise_cfg``: unsafe (the multipliers start to apply, which changes what trains), and only
    offered when the setting that is read has no ``paramwise_cfg`` of its own; the ignored copy is
    left for the user to delete.  The other settings are reported only: their mmengine equivalents
    (``param_scheduler``, ``train_cfg``, ``optim_wrapper.clip_grad``) are not one-to-one.
"""

from __future__ import annotations

from typing import Any, Iterator

from freezefix.analysis import ConfigView
from freezefix.paramwise import optimizer_roots
from freezefix.rules.base import Change, Finding, Fix, Invalid, Options, Rule, Valid, registry

# Top-level settings of one era that the other era's runner never reads, with where it reads instead.
_MMCV1_ONLY = {
    "lr_config": "mmengine's Runner schedules the lr from `param_scheduler`",
    "momentum_config": "mmengine's Runner schedules momentum from `param_scheduler`",
    "optimizer_config": "mmengine's Runner clips and accumulates gradients as `optim_wrapper` says "
                        "(`clip_grad`, `accumulative_counts`)",
    "runner": "mmengine's Runner takes the loop and its length from `train_cfg`",
    "total_epochs": "mmengine's Runner takes the number of epochs from `train_cfg.max_epochs`",
}
_MMENGINE_ONLY = {"param_scheduler": "the mmcv 1.x runner schedules the lr from `lr_config`"}

_MODEL = """\
model = dict(
    type='RetinaNet',
    backbone=dict(type='mmdet.ResNet', depth=18, frozen_stages=-1),
)
"""
_WRAPPER = "optim_wrapper = dict(optimizer=dict(type='AdamW', lr=0.0002){extra})\n"
_PARAMWISE = "paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=0.0)})"
_EPOCHS = "total_epochs = 24\n"
# What mmengine's Runner does not read is mmengine's: these hold on that stack only.
_MMENGINE = ("mmengine",)
_MMCV1_CFG = """\
model = dict(type='RetinaNet', backbone=dict(type='ResNet', depth=18, frozen_stages=-1))
optimizer = dict(type='AdamW', lr=0.0002)
lr_config = dict(policy='step', step=[8, 11])
param_scheduler = [dict(type='MultiStepLR', by_epoch=True, milestones=[8, 11], gamma=0.1)]
"""
_DDP = "model_wrapper_cfg = dict(type='MMDistributedDataParallel', broadcast_buffers=False{extra})\n"


@registry.add
class IgnoredSetting(Rule):
    __doc__ = __doc__
    code = "FF114"
    name = "ignored-setting"
    summary = "a setting the installed stack never reads (optimizer= beside optim_wrapper, ...)"
    fix_summary = (
        "`find_unused_parameters` into `model_wrapper_cfg` (safe); `paramwise_cfg` into `optim_wrapper` "
        "when it has none (unsafe); the rest reported"
    )
    VALID = [
        Valid(_MODEL + _WRAPPER.format(extra=", " + _PARAMWISE)),
        # the top-level optimizer feeds optim_wrapper: it is read, through the variable
        Valid(_MODEL + "optimizer = dict(type='AdamW', lr=0.0002)\noptim_wrapper = dict(optimizer=optimizer)\n"),
        Valid(_MODEL + _DDP.format(extra=", find_unused_parameters=True")),
        Valid(_MODEL + "find_unused_parameters = True\n"),
        # a variable, read where it takes effect (mmdet3d's DETR3D configs have this shape)
        Valid(_MODEL + _WRAPPER.format(extra="") + _EPOCHS
                + "train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=total_epochs)\n"),
    ]
    INVALID = [
        Invalid(_MODEL + _WRAPPER.format(extra="") + f"optimizer = dict(type='AdamW', lr=0.0002, {_PARAMWISE})\n",
                fixed=_MODEL + _WRAPPER.format(extra=", " + _PARAMWISE)
                + f"optimizer = dict(type='AdamW', lr=0.0002, {_PARAMWISE})\n",
                unsafe_fixes=True, line=6, col=57, message="is never read", stacks=_MMENGINE),
        Invalid(_MODEL + _DDP.format(extra="") + "find_unused_parameters = True\n",
                fixed=_MODEL + _DDP.format(extra=", find_unused_parameters=True") + "find_unused_parameters = True\n",
                line=6, col=26, message="model_wrapper_cfg", stacks=_MMENGINE),
        Invalid(_MODEL + _WRAPPER.format(extra="") + "lr_config = dict(policy='step', step=[8, 11])\n",
                line=6, col=13, message="is never read", stacks=_MMENGINE),
        Invalid(_MODEL + _WRAPPER.format(extra="") + _EPOCHS
                + "train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=24)\n",
                line=6, col=16, message="`total_epochs` is never read", stacks=_MMENGINE),
        # the reverse under mmcv 1.x: its runner schedules from lr_config, never param_scheduler
        Invalid(_MMCV1_CFG, stacks=("mmcv1",), line=4, col=19, message="`param_scheduler` is never read"),
    ]

    def check(self, view: ConfigView, options: Options) -> Iterator[Finding]:
        for finding in (*self._paramwise(view), *self._other_era(view), *self._wrapper_flag(view)):
            name = finding.key[0]
            # A name code reads is a variable: what it sets takes effect where it is read
            # (`max_epochs=total_epochs`), here or in a config that inherits this one.
            if not view.reads(name):
                finding.unless_read = name
                yield finding

    def _paramwise(self, view: ConfigView) -> Iterator[Finding]:
        read_root, ignored_root = optimizer_roots(view.values, view.facts_source.stack)
        read, ignored = view.values.get(read_root[0]), view.values.get(ignored_root[0])
        if not (isinstance(read, dict) and isinstance(ignored, dict)):
            return
        lost = ignored.get("paramwise_cfg")
        if not lost or not isinstance(lost, dict) or lost == read.get("paramwise_cfg"):
            return
        if isinstance(read.get("optimizer"), dict) and read["optimizer"] == ignored:
            return  # `optim_wrapper = dict(optimizer=optimizer)`: read (and rejected by the optimizer class)
        current = read.get("paramwise_cfg")
        now = "has no paramwise_cfg" if not current else f"has its own paramwise_cfg {_brief(current)}"
        fix = None
        if not current:
            fix = Fix((Change((*read_root, "paramwise_cfg"), lost),), safe=False,
                      why_unsafe="the multipliers start to apply, which changes what trains")
        yield self.finding(
            f"{ignored_root[0]}.paramwise_cfg {_brief(lost)} is never read: {_runner(view)} builds the "
            f"optimizer from `{read_root[0]}` only, which {now}",
            (*ignored_root, "paramwise_cfg"),
            fix,
        )

    def _other_era(self, view: ConfigView) -> Iterator[Finding]:
        read_root, _ = optimizer_roots(view.values, view.facts_source.stack)
        if not isinstance(view.values.get(read_root[0]), dict):
            return
        engine_config = read_root == ("optim_wrapper",)
        if engine_config != (view.facts_source.stack == "mmengine"):
            return  # a config of the other era, read as written (it has only the other optimizer)
        foreign = _MMCV1_ONLY if engine_config else _MMENGINE_ONLY
        for name, instead in foreign.items():
            if name in view.values and view.values[name] is not None:
                yield self.finding(f"`{name}` is never read: {instead}; what it sets does not happen", (name,))

    def _wrapper_flag(self, view: ConfigView) -> Iterator[Finding]:
        wrapper = view.values.get("model_wrapper_cfg")
        flag = view.values.get("find_unused_parameters")
        if view.facts_source.stack != "mmengine" or not isinstance(wrapper, dict) or flag is not True:
            return
        kind = str(wrapper.get("type", "MMDistributedDataParallel")).split(".")[-1]
        if not kind.endswith("DistributedDataParallel"):
            return  # FSDP and other wrappers have no such flag
        if wrapper.get("find_unused_parameters") is True:
            return
        fix = None
        if "find_unused_parameters" not in wrapper:
            fix = Fix((Change(view.settings.find_unused_parameters, True),), safe=True)
        said = ("does not set it" if "find_unused_parameters" not in wrapper
                else f"sets it to {wrapper['find_unused_parameters']!r}")
        yield self.finding(
            "find_unused_parameters = True is never read: mmengine's Runner.wrap_model reads it only "
            f"when model_wrapper_cfg is None, and model_wrapper_cfg ({kind}) {said}",
            ("find_unused_parameters",),
            fix,
        )


def _runner(view: ConfigView) -> str:
    return "mmengine's Runner" if view.facts_source.stack == "mmengine" else "the mmcv 1.x runner"


def _brief(paramwise: Any) -> str:
    keys = paramwise.get("custom_keys") if isinstance(paramwise, dict) else None
    if isinstance(keys, dict) and keys:
        shown = ", ".join(f"{k!r}: {v}" for k, v in list(keys.items())[:3])
        return f"(custom_keys {{{shown}{', ...' if len(keys) > 3 else ''}}})"
    return f"({', '.join(sorted(paramwise))})" if isinstance(paramwise, dict) else ""
