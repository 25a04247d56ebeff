"""A resolved config seen the way the freeze rules need it: modules, optimizer era, custom keys."""

from __future__ import annotations

import ast
import re
from collections import Counter
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, TypeVar

from freezefix.config.locate import Key
from freezefix.config.plain import get_in
from freezefix.config.reads import NameReads, name_reads
from freezefix.config.resolve import Resolver
from freezefix.facts import ClassFacts, FactsSource, ModelFacts, detector_freeze_flags
from freezefix.paramwise import Optimizer, optimizer_of

T = TypeVar("T")

# Modules that feed each other, upstream first (FF110).  Freezing a module while
# one that feeds it still trains is legal but rarely meant.
BRANCHES = (
    ("pts_voxel_encoder", "pts_middle_encoder", "pts_backbone", "pts_neck"),
    ("img_backbone", "img_neck"),
    ("voxel_encoder", "middle_encoder", "backbone", "neck"),
)


@dataclass(frozen=True)
class ConfigFile:
    """One file of a config's ``_base_`` chain as written, for rules that read the source itself."""

    path: Path
    tree: ast.Module
    text: str
    new_style: bool = False  # a `with read_base()` config: its statements mutate inherited values

    @property
    def reads(self) -> NameReads:
        """The top-level names this file reads as variables, its own and its bases'."""
        return name_reads(self.path, self.text, self.tree, self.new_style)


@dataclass
class Module:
    name: str
    cfg: dict

    @property
    def key(self) -> Key:
        return ("model", self.name)

    @property
    def type_name(self) -> str:
        return str(self.cfg.get("type"))


@dataclass(frozen=True)
class RunSettings:
    """What the runner of ``stack`` does with a config's top-level settings that decide how a
    model trains: a freeze in the detector's own code, resuming, DDP's flags."""

    values: dict
    stack: str

    @cached_property  # every rule asks, of every module
    def freeze_flags(self) -> list[str]:
        """The detector's own freeze arguments that are on (UniAD-style ``freeze_img_backbone=True``,
        ``freeze_bn=True``): its code freezes, which modules built alone do not show."""
        return detector_freeze_flags(self.values.get("model"))

    @property
    def read_off_whole_model(self) -> bool:
        """What trains is read off the whole detector: its own flags freeze, and no hook does."""
        return bool(self.freeze_flags) and not self.freeze_hooks

    @property
    def freeze_hooks(self) -> list[str]:
        """Hooks in ``custom_hooks`` that freeze or unfreeze during training: no build shows what they do."""
        return [str(h.get("type")) for h in (self.values.get("custom_hooks") or []) if isinstance(h, dict)
                and "freeze" in str(h.get("type")).lower() and "FreezeAuditHook" not in str(h.get("type"))]

    def unseen_freeze(self, whole: ModelFacts | None) -> str | None:
        """Why what trains cannot be judged, if it cannot: a hook that freezes during training, or a
        detector that freezes in its own code and was not observed on the whole (``whole``: the
        detector as built, build, init_weights() where it freezes there, train()).  The rules that
        judge what trains then say nothing rather than guess."""
        flags, hooks = self.freeze_flags, self.freeze_hooks
        if not (flags or hooks) or (whole is not None and whole.modules):
            return None
        what = ", ".join([*flags, *(f"custom hook {h}" for h in hooks)])
        why = f"it freezes in its own code ({what}), which freezefix does not see on modules built alone"
        if whole is not None:
            why += f", nor on the whole detector ({'; '.join(whole.notes) or 'the detector could not be built'})"
        return why + "; what trains was not judged (FreezeAuditHook shows it in a training run)"

    @property
    def resumes(self) -> str | None:
        """Why a run from this config resumes an optimizer state, if it does."""
        if self.values.get("resume") is True:
            return "resume=True"
        if self.values.get("resume_from"):
            return "resume_from is set"
        if self.values.get("auto_resume") is True:
            return "auto_resume=True"
        return None

    @property
    def find_unused_parameters(self) -> Key:
        """Where DDP's find_unused_parameters is read from (FF109 writes it there, FF114 moves it)."""
        return find_unused_parameters_key(self.values, self.stack)

    def finds_unused_parameters(self) -> bool:
        return get_in(self.values, self.find_unused_parameters) is True

    def static_graph(self) -> bool:
        wrapper = self.values.get("model_wrapper_cfg")
        return isinstance(wrapper, dict) and wrapper.get("static_graph") is True


@dataclass
class ConfigView:
    path: Path
    values: dict
    facts_source: FactsSource  # everything the rules may know about the environment: they ask here
    modules: dict[str, Module] = field(default_factory=dict)
    optimizer: Optimizer | None = None
    files: tuple[ConfigFile, ...] = ()  # the config and the bases it reaches by relative path
    settings: RunSettings | None = None  # what the runner does with the config's top-level settings
    # What a rule could not judge beyond the classes it probed (a plugin's own weight loader), what → why.
    not_judged: dict[str, str] = field(default_factory=dict)
    checkpoints: dict[str, Any] = field(default_factory=dict)  # local checkpoints read: path → their keys
    # What is derived from the view and asked by several rules (its candidates, what a module
    # freezes, its tensors), by (what, module name, ...): see :meth:`derive`.
    derived: dict[tuple, Any] = field(default_factory=dict)
    _facts: dict[str, ClassFacts] = field(default_factory=dict)
    _model: ModelFacts | None = None

    @classmethod
    def of(cls, path: Path, values: dict, facts_source: FactsSource, files: tuple[ConfigFile, ...] = ()) -> ConfigView:
        view = cls(path, values, facts_source, files=files)
        model = values.get("model")
        if isinstance(model, dict):
            for name, sub in model.items():
                # `init_cfg=dict(type='Pretrained', ...)` of the detector is a weight-loading setting
                if isinstance(sub, dict) and isinstance(sub.get("type"), str) and name not in _NOT_MODULES:
                    view.modules[name] = Module(name, sub)
        view.optimizer = optimizer_of(values, facts_source.stack)
        view.settings = RunSettings(values, facts_source.stack)
        return view

    @property
    def model_type(self) -> str:
        model = self.values.get("model")
        return str(model.get("type")) if isinstance(model, dict) else "model"

    @property
    def default_scope(self) -> str | None:
        scope = self.values.get("default_scope")
        return scope if isinstance(scope, str) else None

    def reads(self, name: str) -> bool:
        """Whether a file of the config's chain reads the top-level ``name`` as a variable: then it is
        not a setting on its own, and what it does is decided where it is read."""
        return any(name in file.reads for file in self.files)

    def derive(self, key: tuple, compute: Callable[[], T]) -> T:
        """``compute()``, once per config: what several rules ask of the same view."""
        if key not in self.derived:
            self.derived[key] = compute()
        return self.derived[key]

    @property
    def model_if_asked(self) -> ModelFacts | None:
        """The whole model's facts, when a rule asked for them."""
        return self._model

    def model_facts(self) -> ModelFacts:
        """Every parameter name of the whole built model (built once, cached like class facts)."""
        if self._model is None:
            self._model = self.facts_source.model(self.values, self.path)
        return self._model

    def hidden_freeze(self) -> str | None:
        """Why what trains cannot be judged, if it cannot (see RunSettings.unseen_freeze); a detector
        whose flags freeze is otherwise judged on the whole model, where :meth:`facts` reads it."""
        return self.derive(("hidden freeze",), lambda: self.settings.unseen_freeze(
            self.model_facts() if self.settings.read_off_whole_model else None))

    def keyed_param_names(self) -> list[str] | None:
        """Every parameter name of the built model, when custom keys exist to match against it.

        None when there are no custom keys, or when the detector itself could not be built: a
        module that was not built might hold the parameters a key is for, so rules never guess.
        """
        if self.optimizer is None or not self.optimizer.custom_keys:
            return None
        model = self.model_facts()
        return model.param_names if model.complete and model.param_names else None

    def candidates(self) -> list[Module]:
        """Modules whose freeze settings can be inconsistent, the only ones worth building.

        A module qualifies when it carries a freeze argument, or when a custom key with
        ``lr_mult=0`` may reach its parameters: a key inside its name (``'img_backbone'``,
        ``'backbone'``), under it (``'img_backbone.layer4'``), or one naming no module at all
        (``'norm'``), which can only be decided on the built parameter names.
        """
        return list(self.derive(("candidates",), lambda: _candidates(self)))

    def facts(self, module: Module, scan: bool = False) -> ClassFacts:
        """What building the module's class tells; ``scan`` adds every frozen_stages value
        (needed for the full-freeze value, which costs one build per value).  Where the detector
        freezes in its own code, what the module trains (``observed``) is read off the whole model."""
        cached = self._facts.get(module.name)
        if cached is None or (scan and not cached.scanned and cached.accepts_frozen_stages):
            cached = self._facts[module.name] = self.facts_source.facts(module.cfg, self.default_scope, scan=scan)
        if cached.observed is not None and self.settings.read_off_whole_model:
            whole = self.model_facts().modules.get(module.name)
            if whole is not None and whole is not cached.observed:
                cached = self._facts[module.name] = replace(cached, observed=whole)
        return cached

    def probed(self) -> dict[str, ClassFacts]:
        """What the rules learnt about each module they asked about, by module name."""
        return dict(self._facts)

    def param_names(self, module: Module) -> list[str]:
        return [f"{module.name}.{n}" for n in self.facts(module).param_names]

    def lr_mults(self, module: Module, names: list[str] | None = None) -> Counter:
        """lr_mult → number of the module's parameters (by name, or of ``names``) that get it."""
        if self.optimizer is None:
            return Counter({1.0: 1})
        if names is None:
            names = self.param_names(module)
        if not names:  # class not built: the keys that cover the whole module decide
            return Counter({self.optimizer.lr_mult(f"{module.name}."): 1})
        return self.optimizer.count_lr_mults(names)

    def zero_lr(self, module: Module, names: list[str] | None = None) -> bool:
        mults = self.lr_mults(module, names)
        return bool(mults) and set(mults) == {0.0}

    def covering_key(self, module: Module) -> str | None:
        """The custom key that every parameter of the module goes through, if a single one does."""
        if self.optimizer is None:
            return None
        names = self.param_names(module) or [f"{module.name}."]
        keys = {self.optimizer.match(n) for n in names}
        return keys.pop() if len(keys) == 1 else None

    def frozen_stages(self, module: Module) -> Any:
        return module.cfg.get("frozen_stages")


def _candidates(view: ConfigView) -> list[Module]:
    zero_keys = [k for k, v in (view.optimizer.custom_keys.items() if view.optimizer else ())
                 if isinstance(v, dict) and v.get("lr_mult", 1.0) == 0]
    unanchored = [k for k in zero_keys if not any(k.startswith(n) or k in f"{n}." for n in view.modules)]
    # A detector that freezes in its own code may freeze any of its modules.
    flagged = view.settings.freeze_flags and not view.hidden_freeze()
    chosen = []
    for module in view.modules.values():
        prefix = f"{module.name}."
        if (
            "frozen_stages" in module.cfg
            or "norm_eval" in module.cfg
            or unanchored
            or flagged
            or any(k in prefix or k.startswith(prefix) or k == module.name for k in zero_keys)
        ):
            chosen.append(module)
    return chosen


_NOT_MODULES = ("init_cfg",)


def names_read_of_bases(files: tuple[ConfigFile, ...]) -> frozenset[str]:
    """Every top-level name a file of a config's chain reads from a base: what decides, over a
    whole run, whether a name a base binds is read by a config that inherits it."""
    return frozenset().union(*(file.reads.of_bases for file in files))


def config_files(resolver: Resolver, path: Path) -> tuple[ConfigFile, ...]:
    """``path`` and its bases reached by relative path, as written (installed bases are not the user's)."""
    files = []
    for file in resolver.local_files(path):
        unit = resolver.units[file]
        files.append(ConfigFile(file, unit.tree, unit.source.text, unit.new_style))
    return tuple(files)


def find_unused_parameters_key(values: dict, stack: str) -> Key:
    """mmengine's ``Runner.wrap_model`` reads ``model_wrapper_cfg`` when it is set and the top-level
    flag only when it is not; mmcv 1.x train scripts read the top-level flag alone."""
    if stack == "mmengine" and isinstance(values.get("model_wrapper_cfg"), dict):
        return ("model_wrapper_cfg", "find_unused_parameters")
    return ("find_unused_parameters",)


def stage_summary(names: list[str], prefix: str = "") -> str:
    """'layer4' for the names of layer4's params; 'layer3, layer4' for two stages."""
    heads = sorted({n.split(".")[0] for n in names}, key=_natural)
    if not heads:
        return "nothing"
    text = ", ".join(heads[:4]) + (f" and {len(heads) - 4} more" if len(heads) > 4 else "")
    return f"{prefix}{text}"


def _natural(text: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", text))
