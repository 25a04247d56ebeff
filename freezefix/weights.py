"""Where a module's weights come from when a config trains: the sources the stack's runner applies.

A frozen module keeps whatever its weights were when training started.  They come from one of:

- the run's checkpoint: ``load_from`` (mmengine's ``Runner.load_or_resume``, after
  ``init_weights()``; mmcv 1.x's ``train_detector``, unless ``resume_from`` is set, which wins), or
  the checkpoint a run resumes;
- an ``init_cfg=dict(type='Pretrained', ...)`` that ``BaseModule.init_weights()`` applies: on the
  module, on the detector (covering every module, its ``prefix`` picking the checkpoint's keys), or
  one a class sets for itself or for a part of itself;
- ``pretrained=`` that the installed stack turns into such an init_cfg: a backbone's own (mmdet's
  ``ResNet``), or the detector's (mmdet 2.x and mmdet3d 1.0 detectors hand a string to ``backbone``,
  mmdet3d's ``MVXTwoStageDetector`` a dict's ``img`` / ``pts`` to ``img_backbone`` / ``pts_backbone``).

A setting whose name says it loads weights and that none of these reads (``load_img_from=`` on a
plugin's detector, ``checkpoint=`` on a plugin's backbone) is a loader of the plugin's own: what it
loads is not known, and nothing about the module's weights is judged.  Plain values only, no stack.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

# Schemes mmengine's and mmcv's CheckpointLoader fetch (torchvision://, open-mmlab://, https://,
# s3://, …): no network here, so such a checkpoint is trusted and never read.
_REMOTE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
# Arguments whose name says they load weights.
_LOADER_NAME = re.compile(r"(^|_)(load|loads|pretrain|pretrained|ckpt|checkpoint)(_|$)", re.IGNORECASE)
_READ_BY_THE_STACK = ("init_cfg", "pretrained")


@dataclass(frozen=True)
class WeightSource:
    """One source of a module's weights, as the config (or its class) says it."""

    kind: str  # 'load_from' | 'resume' | 'init_cfg' | 'pretrained' | 'class init_cfg'
    setting: str  # how it reads: "load_from='ckpts/bevdet.pth'"
    checkpoint: str | None  # None: the run decides (the latest checkpoint of its work_dir)
    # What the checkpoint is loaded into: '' the whole detector, else a module or a part of one
    # ('img_backbone', 'img_backbone.dcn'); its keys are relative to that.
    into: str = ""
    prefix: str | None = None  # PretrainedInit's prefix: only the checkpoint's keys under it, stripped
    key: tuple[str, ...] = ()  # where the config sets it (a finding about it is reported there)

    @property
    def remote(self) -> bool:
        """A URL or model-zoo name: fetched by the run, never by freezefix (no network)."""
        return self.checkpoint is None or _REMOTE.match(self.checkpoint) is not None

    @property
    def strips_module_prefix(self) -> bool:
        """``load_checkpoint`` strips DDP's ``module.``; a prefixed PretrainedInit reads the keys as they are."""
        return self.prefix is None

    def describe(self) -> str:
        if self.kind in ("init_cfg", "class init_cfg"):
            return f"{self.kind} Pretrained" + (f" (prefix {self.prefix!r})" if self.prefix else "")
        return self.kind


@dataclass
class ModuleWeights:
    """Where one top-level module's weights come from."""

    module: str
    sources: list[WeightSource] = field(default_factory=list)
    # A loader freezefix cannot read (a plugin's own argument): then nothing about them is judged.
    unknown: str | None = None

    @property
    def from_nowhere(self) -> bool:
        return not self.sources and self.unknown is None

    @property
    def all_local(self) -> bool:
        """Every source is a file freezefix can read here (none a URL, a model-zoo name, a work_dir)."""
        return bool(self.sources) and not any(source.remote for source in self.sources)


def module_weights(values: dict, stack: str, module: str, class_inits: tuple[tuple[str, str, str | None], ...] = ()
                   ) -> ModuleWeights:
    """Where ``module``'s weights come from, for the resolved config ``values`` on ``stack``
    ('mmengine' | 'mmcv1').  ``class_inits``: the Pretrained init_cfgs the module's class sets for
    itself when built without the config's (``(part, checkpoint, prefix)``, part '' the module itself)."""
    out = ModuleWeights(module)
    model = values.get("model") if isinstance(values.get("model"), dict) else {}
    cfg = model.get(module) if isinstance(model.get(module), dict) else {}
    out.sources += _run_checkpoints(values, stack)
    out.sources += _pretrained_inits(model.get("init_cfg"), ("model", "init_cfg"), into="")
    out.sources += _pretrained_inits(cfg.get("init_cfg"), ("model", module, "init_cfg"), into=module)
    own = cfg.get("pretrained")
    if isinstance(own, str) and own:
        out.sources.append(WeightSource("pretrained", f"{module}.pretrained={own!r}", own, into=module,
                                        key=("model", module, "pretrained")))
    elif own not in (None, False, ""):
        out.unknown = f"{module}.pretrained={own!r}, which the class reads in its own code"
    detector, why = _detector_pretrained(model.get("pretrained"), module, model)
    out.sources += detector
    out.unknown = out.unknown or why
    out.sources += [WeightSource("class init_cfg", f"{module}{'.' + part if part else ''} sets it in its class",
                                 checkpoint, into=f"{module}.{part}" if part else module, prefix=prefix,
                                 key=("model", module))
                    for part, checkpoint, prefix in class_inits]
    out.unknown = out.unknown or _own_loader(model, "the detector") or _own_loader(cfg, module)
    return out


def _run_checkpoints(values: dict, stack: str) -> list[WeightSource]:
    """What the runner loads into the whole model after init_weights()."""
    load_from = values.get("load_from")
    load_from = load_from if isinstance(load_from, str) and load_from else None
    if stack == "mmengine":
        # Runner.load_or_resume: resume=True resumes load_from, or the latest checkpoint of work_dir.
        if values.get("resume") is True:
            return [WeightSource("resume", "resume=True" + (f", load_from={load_from!r}" if load_from else
                                                            " (the latest checkpoint of work_dir)"), load_from,
                                 key=("resume",))]
        return [WeightSource("load_from", f"load_from={load_from!r}", load_from, key=("load_from",))] if load_from else []
    # mmcv 1.x train scripts: resume_from wins over load_from; auto_resume looks in work_dir first.
    sources = []
    resume_from = values.get("resume_from")
    if isinstance(resume_from, str) and resume_from:
        return [WeightSource("resume", f"resume_from={resume_from!r}", resume_from, key=("resume_from",))]
    if values.get("auto_resume") is True:
        sources.append(WeightSource("resume", "auto_resume=True (the latest checkpoint of work_dir)", None,
                                    key=("auto_resume",)))
    if load_from:
        sources.append(WeightSource("load_from", f"load_from={load_from!r}", load_from, key=("load_from",)))
    return sources


def _pretrained_inits(init_cfg: Any, key: tuple[str, ...], into: str) -> list[WeightSource]:
    where = ".".join(key[1:])
    entries = init_cfg if isinstance(init_cfg, list) else [init_cfg]
    sources = []
    for entry in entries:
        if isinstance(entry, dict) and entry.get("type") == "Pretrained" and isinstance(entry.get("checkpoint"), str):
            prefix = entry.get("prefix") if isinstance(entry.get("prefix"), str) else None
            sources.append(WeightSource("init_cfg", f"{where} Pretrained checkpoint={entry['checkpoint']!r}",
                                        entry["checkpoint"], into=into, prefix=prefix, key=key))
    return sources


def _detector_pretrained(pretrained: Any, module: str, model: dict) -> tuple[list[WeightSource], str | None]:
    """The detector's ``pretrained=``: mmdet 2.x / mmdet3d 1.0 detectors set ``backbone.pretrained``
    from a string; ``MVXTwoStageDetector`` reads a dict's ``img`` and ``pts``."""
    if pretrained in (None, "", False):
        return [], None
    if isinstance(pretrained, str):
        targets = {"backbone": pretrained}
    elif isinstance(pretrained, dict) and set(pretrained) <= {"img", "pts"}:
        targets = {f"{k}_backbone": v for k, v in pretrained.items() if isinstance(v, str) and v}
    else:
        targets = {}
    if not targets or not set(targets) <= set(model):
        return [], f"the detector's pretrained={pretrained!r}, which freezefix does not map to its modules"
    if module not in targets:
        return [], None
    return [WeightSource("pretrained", f"model.pretrained={pretrained!r}", targets[module], into=module,
                         key=("model", "pretrained"))], None


def _own_loader(cfg: dict, owner: str) -> str | None:
    """A setting whose name says it loads weights and that the stack does not read: a plugin's loader."""
    for name, value in cfg.items():
        # A path or a dict of them; a flag (use_checkpoint=True: activation checkpointing) loads
        # nothing, and a dict with a type is a module (a 'pretrain_head').
        loads = isinstance(value, str) or (isinstance(value, dict) and "type" not in value)
        if loads and value and name not in _READ_BY_THE_STACK and _LOADER_NAME.search(name):
            return f"{owner} has {name}={value!r}, a loader of its own code that freezefix does not read"
    return None
