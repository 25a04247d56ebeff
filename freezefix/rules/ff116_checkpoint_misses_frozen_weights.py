"""FF116 checkpoint-misses-frozen-weights.

What
    A module the config freezes (or whose BatchNorm statistics it freezes) loads its weights only
    from local checkpoints, and they leave some of its frozen tensors at their init: keys the
    checkpoints lack (the module is named ``img_backbone`` and the checkpoint says ``backbone.``; the
    weights are nested under ``'model'``, which the loader does not unwrap), or tensors of another
    shape, which ``load_state_dict(strict=False)`` skips with a warning.

Why
    mmengine and mmcv load checkpoints with ``strict=False``: a missing key is a line in a long log,
    and training goes on with that part of the frozen module at its random init.  The keys are read
    the way the stack's loader reads them: the ``state_dict`` entry, DDP's ``module.`` stripped,
    ``PretrainedInit``'s ``prefix``; ``load_from`` after ``init_weights()``, so every source counts.

Example
    ``img_backbone=dict(type='mmdet.ResNet', depth=18, frozen_stages=4)`` with
    ``load_from='ckpts/bevdet.pth'`` whose keys say ``backbone.conv1.weight``: give the backbone
    ``init_cfg=dict(type='Pretrained', checkpoint='ckpts/bevdet.pth', prefix='backbone.')``.

Fix safety
    Unsafe: where the checkpoint holds every tensor left at init under another prefix and the module
    has no init_cfg of its own, ``init_cfg=dict(type='Pretrained', checkpoint=..., prefix=...)`` on the
    module; the module then starts from the checkpoint's weights.  The write gate proves it on the
    real class: built on the CPU from the rewritten config, ``init_weights()`` run, every tensor the
    checkpoint holds for the module must hold the checkpoint's value.  Otherwise reported.  Relative paths are read from the working directory, as the train
    scripts open them, and the finding says which directory that was.  A URL or model-zoo name is
    never fetched (the module is then not judged); a checkpoint is read without its tensors, and an
    object in it that ``weights_only`` refuses is read as an inert placeholder, never run.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterator

from freezefix.analysis import ConfigView
from freezefix.frozen_weights import (
    Coverage, FrozenPart, coverage, frozen_part, frozen_tensors, module_tensors, other_prefix, weights_of,
)
from freezefix.rules.base import Change, Checkpoint, Finding, Fix, Invalid, Options, Rule, Valid, registry
from freezefix.rules.ff115_frozen_without_weights import frozen_candidates
from freezefix.weights import WeightSource

_CFG = """\
model = dict(
    type='RetinaNet',
    backbone=dict(type='mmdet.ResNet', depth=18, base_channels=8, frozen_stages=4),
)
load_from = 'ckpt.pth'
"""
_R18 = {"type": "mmdet.ResNet", "depth": 18, "base_channels": 8}


def _ckpt(**how) -> tuple[Checkpoint, ...]:
    return (Checkpoint("ckpt.pth", _R18, **how),)


@registry.add
class CheckpointMissesFrozenWeights(Rule):
    __doc__ = __doc__
    code = "FF116"
    name = "checkpoint-misses-frozen-weights"
    summary = "the local checkpoints a frozen module loads from leave some of its frozen tensors at init"
    uncovered_by_freezing = True  # where frozen weights come from: no fix here changes it
    fix_summary = ("`init_cfg=dict(type='Pretrained', prefix=...)` where the checkpoint holds them under another "
                   "prefix (unsafe; gate-proved on the CPU); else reported")
    VALID = [
        Valid(_CFG, checkpoints=_ckpt(prefix="backbone.")),  # a detector's checkpoint, as load_from reads it
        Valid(_CFG, checkpoints=_ckpt(prefix="module.backbone.")),  # saved from DDP: module. is stripped
        Valid(_CFG, checkpoints=_ckpt(prefix="backbone.", nest=None)),  # a bare state dict
        Valid(_CFG.replace("frozen_stages=4", "frozen_stages=1"),
              checkpoints=_ckpt(prefix="backbone.", drop=("layer4.",))),  # only what trains is missing
        Valid(_CFG.replace("frozen_stages=4)", "frozen_stages=4,\n        init_cfg=dict(type='Pretrained', "
                           "checkpoint='r18.pth'))").replace("load_from = 'ckpt.pth'\n", ""),
              checkpoints=(Checkpoint("r18.pth", _R18),)),
    ]
    INVALID = [
        Invalid(_CFG, checkpoints=_ckpt(prefix="img_backbone."), line=5, col=13, unsafe_fixes=True,
                message="leaves all 176,712 frozen params and all 20 frozen BatchNorm layers' statistics at init; "
                        "the checkpoint holds them under 'img_backbone.'",
                fixed=_CFG.replace("frozen_stages=4)", "frozen_stages=4, init_cfg=dict(type='Pretrained', "
                                   "checkpoint='ckpt.pth', prefix='img_backbone.'))")),
        Invalid(_CFG, checkpoints=_ckpt(prefix="backbone.", nest="model"), line=5, col=13,
                message="nests its weights under 'model', which the loader does not unwrap"),
        Invalid(_CFG, checkpoints=_ckpt(prefix="backbone.", drop=("layer4.1.",)), line=5, col=13,
                message="leaves 73,984 of the 176,712 frozen params and 2 of the 20 frozen BatchNorm layers' statistics "
                        "at init; the first it lacks: backbone.layer4.1.conv1.weight"),
        Invalid(_CFG, checkpoints=_ckpt(prefix="backbone.", reshape=("conv1.weight",)), line=5, col=13,
                message="leaves 1,176 of the 176,712 frozen params at init, 1 of them at another shape in the "
                        "checkpoint ('conv1.weight')"),
    ]

    def check(self, view: ConfigView, options: Options) -> Iterator[Finding]:
        for module in frozen_candidates(view, options.freeze):
            part = frozen_part(view, module, options.freeze)
            if part is None:
                continue
            weights = weights_of(view, module)
            shapes = module_tensors(view, module) if weights.all_local else None
            seen = coverage(view, module, frozen_tensors(part, shapes), weights) if shapes else None
            if seen is None or not seen.left:
                continue
            found = other_prefix(seen)
            yield self.finding(_message(part, seen, found), seen.read[0][0].key, fix=_fix(part, found),
                               module=module.name)


def _message(part: FrozenPart, seen: Coverage, found: tuple[str, WeightSource] | None) -> str:
    module = part.module
    shapes = seen.frozen
    params = [n for n in part.params if n in shapes]
    left_params = [n for n in seen.left if n in part.params]
    layers = [n for n in shapes if n.endswith(".running_mean")]
    left_layers = [n for n in seen.left if n.endswith(".running_mean")]
    read = ", ".join(source.setting + ("" if Path(source.checkpoint).is_absolute() else f" (read from {keys.path})")
                     for source, keys in seen.read)
    what = []
    if left_params:
        left_size, size = (sum(math.prod(shapes[n]) for n in names) for names in (left_params, params))
        what.append(f"{_share(left_size, size)} frozen params")
    if left_layers:
        what.append(f"{_share(len(left_layers), len(layers))} frozen BatchNorm layers' statistics")
    text = (f"{module.name} ({module.type_name}): {part.describe()}, and {read} leaves {' and '.join(what)} at init")
    mismatched = [n for n in seen.left if n in seen.mismatched]
    if mismatched:
        text += f", {len(mismatched)} of them at another shape in the checkpoint ({mismatched[0]!r})"
    nested = next((keys.nested_under for _, keys in seen.read if keys.nested_under), None)
    if nested:
        text += f"; the checkpoint nests its weights under {nested!r}, which the loader does not unwrap"
    if found and not nested:
        prefix, source = found
        text += (f"; the checkpoint holds them under {prefix!r}: init_cfg=dict(type='Pretrained', "
                 f"checkpoint={source.checkpoint!r}, prefix={prefix!r}) on {module.name} loads them")
    else:
        text += f"; the first it lacks: {module.name}.{seen.left[0]}" if not mismatched else ""
    return text


def _fix(part: FrozenPart, found: tuple[str, WeightSource] | None) -> Fix | None:
    """The init_cfg that loads the frozen tensors from where the checkpoint holds them (``found``: the
    prefix and the source naming that checkpoint), when the module has no init_cfg of its own to keep."""
    if found is None or "init_cfg" in part.module.cfg:
        return None
    prefix, source = found
    change = Change((*part.module.key, "init_cfg"), {"type": "Pretrained", "checkpoint": source.checkpoint,
                                                     "prefix": prefix})
    return Fix((change,), safe=False, why_unsafe="the module starts from the checkpoint's weights instead of its init",
               loads_weights=(part.module.name,))


def _share(part: int, whole: int) -> str:
    return f"all {whole:,}" if part == whole else f"{part:,} of the {whole:,}"
