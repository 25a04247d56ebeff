"""Facts about a model class, learned by building the real class from the OpenMMLab registries.

``frozen_stages`` means something different in every class, so nothing here is a
table of numbers: the class is built on the meta device (no memory, no weights) with the config's own
arguments and ``frozen_stages = -1, 0, 1, …``; after ``train()`` the trainable parameters and the
BatchNorm layers still in training mode are counted.  The smallest value that leaves the fewest
trainable parameters is the full-freeze value; the first value that fails to build is past the range.

Results are cached per (type, arguments, package versions) in memory and on disk.
"""

from __future__ import annotations

import copy
import hashlib
import json
import warnings
from collections import OrderedDict
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

from freezefix.building import WEIGHT_ARGS, describe_error, on_first_device
from freezefix.classes import declared_parameter, find_class, registries
from freezefix.cache import JsonCacheFile, freezefix_source_digest, package_versions
from freezefix.stacks import current
from freezefix.facts import MAX_PROBED_STAGES, ClassFacts, FreezeState, ModelFacts, facts_from_json

_SCHEMA = 5  # bump when ClassFacts / FreezeState change shape: old cache files are then ignored


def _accepts(cls: Any, name: str) -> bool:
    """Whether ``cls(name=...)`` reaches an ``__init__`` that names the argument."""
    return declared_parameter(cls, name) is not None


def _build(cls: Any, scope: str, kwargs: dict) -> Any:
    # As the stack's Config hands it over: nested settings read as attributes (Mask2FormerHead's
    # `transformer_decoder.layer_cfg`) fail on plain dicts, which is freezefix's fault, not the config's.
    stack = current()
    return stack.build_module(registries()[scope], stack.config_dict(dict(kwargs, type=cls)), scope)


def _state(module: Any) -> FreezeState:
    from torch.nn.modules.batchnorm import _BatchNorm

    constructed = sum(p.numel() for p in module.parameters() if p.requires_grad)
    module.train()
    trainable = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    bns = [m for m in module.modules() if isinstance(m, _BatchNorm)]
    return FreezeState(
        trainable_params=sum(p.numel() for _, p in trainable),
        trainable_tensors=len(trainable),
        bn_training=sum(1 for m in bns if m.training),
        bn_total=len(bns),
        trainable_names=[n for n, _ in trainable],
        constructed_trainable_params=constructed,
    )


def _clean_kwargs(cfg: dict) -> dict:
    kwargs = {k: copy.deepcopy(v) for k, v in cfg.items() if k not in (*WEIGHT_ARGS, "type")}
    kwargs.pop("_scope_", None)
    return kwargs


class FactsFile(JsonCacheFile):
    """The probe cache on disk: what was learnt about classes, one JSON file per set of package
    versions (and freezefix source), so an upgrade never reads stale facts."""

    def __init__(self, cache_dir: Path | None):
        super().__init__()
        self.cache_dir = cache_dir

    def location(self) -> Path | None:
        if self.cache_dir is None:
            return None
        # freezefix's own source too: a probe that failed through freezefix's fault must not outlive the fix.
        versions = {**package_versions(), "freezefix-probe-schema": _SCHEMA, "freezefix-source": freezefix_source_digest()}
        tag = hashlib.sha256(json.dumps(versions, sort_keys=True).encode()).hexdigest()[:16]
        return self.cache_dir / f"probe-{tag}.json"

    # A forked worker probes into its own copy of the cache; the parent takes what it learnt.
    def known(self) -> set[str]:
        return set(self.entries)

    def learnt_since(self, known: set[str]) -> dict[str, dict]:
        return {k: v for k, v in self.entries.items() if k not in known}

    def learn(self, entries: dict[str, dict]) -> None:
        self.entries.update(entries)


class Prober:
    """Probes classes once per (type, arguments); thread-unsafe, one per process."""

    def __init__(self, cache_dir: Path | None = None, device: str = "meta"):
        self.device = device
        self.memory: dict[str, ClassFacts] = {}
        self.file = FactsFile(cache_dir)
        # Called once before the first build a cache miss needs (then cleared): what must be
        # imported for the classes to be found, such as a config's plugins; it returns why some
        # did not import.  Nothing heavy is imported while every fact comes from the cache.
        self.before_building: Callable[[], list[str]] | None = None
        # A plugin of the config being judged did not import: a build that fails may fail for
        # want of a class it would register, so such a failure is kept for this environment only.
        self.plugins_missing = False
        self.plugin_notes: list[str] = []  # why those plugins did not import
        # Set per config by whoever judges it: what an answer the environment decides (a class not
        # found, a package missing) depends on there (cache.environment_key); None keeps none.
        self.environment: Callable[[], str] | None = None
        # The modules last built with a config's own arguments: FF113 runs the optimizer
        # constructor on the same module right after the other rules probed it.
        self._built: OrderedDict[str, Any] = OrderedDict()

    def _prepare_to_build(self) -> None:
        prepare, self.before_building = self.before_building, None
        if prepare is not None:
            self.plugin_notes = list(prepare())
            self.plugins_missing = bool(self.plugin_notes)

    def save(self) -> None:
        self.file.save()

    def facts(self, module_cfg: dict, scope_hint: str | None = None, scan: bool = True) -> ClassFacts:
        type_name = module_cfg.get("type")
        if not isinstance(type_name, str):
            return ClassFacts(type_name=repr(type_name), import_error="type is not a string")
        scope_hint = module_cfg.get("_scope_") or scope_hint
        kwargs = _clean_kwargs(module_cfg)
        key = self._key(type_name, scope_hint, kwargs, scan)
        if key in self.memory:
            return self.memory[key]
        disk = self.file.entries
        facts = facts_from_json(disk[key]) if key in disk else None
        if facts is None:
            scoped = self._in_this_environment(key)
            kept = facts_from_json(disk[scoped]) if scoped in disk else None
            if kept is not None:
                return kept
            self._prepare_to_build()
            facts = self._probe(type_name, scope_hint, kwargs, scan)
            if facts.transient or (facts.unbuildable is not None and self.plugins_missing):
                # Not found is no fact about the class: a plugin imported later (this run, or after
                # the user repairs it, or installs what the class needs) may register it.  Kept
                # only for the environment and plugins it was found in.
                facts.environment_notes = list(self.plugin_notes)
                if scoped is not None:
                    disk[scoped] = asdict(facts)
                return facts
            disk[key] = asdict(facts)
        self.memory[key] = facts
        return facts

    def _in_this_environment(self, key: str) -> str | None:
        """``key`` for an answer the environment decides, as seen by the config being judged (its
        ``environment`` callable); None when none is set."""
        return None if self.environment is None else json.dumps(["environment", self.environment(), key])

    def facts_key(self, module_cfg: dict, scope_hint: str | None = None, scan: bool = True) -> str:
        """What the facts of a module config are kept under: its type, scope, arguments that shape
        the module (not weights to load), and the device the probe builds on."""
        return self._key(module_cfg.get("type"), module_cfg.get("_scope_") or scope_hint, _clean_kwargs(module_cfg), scan)

    def _key(self, type_name: str, scope_hint: str | None, kwargs: dict, scan: bool) -> str:
        return json.dumps([type_name, scope_hint, repr(sorted(kwargs.items())), scan, self.device])

    def remembered(self, key: list, compute):
        """``compute()`` once per key and package versions (JSON-able results), kept in the disk cache."""
        text = json.dumps(["memo", *key], default=repr)
        disk = self.file.entries
        if text not in disk:
            self._prepare_to_build()
            disk[text] = compute()
        return disk[text]

    def changes_nothing(self, values: dict, key: tuple[str, ...], value: Any) -> bool:
        """Whether the installed stack does the same when the resolved ``values`` gain ``key=value``
        (see :mod:`freezefix.consumers`), asked once per config and setting."""
        def compute() -> bool:
            from freezefix.consumers import changes_nothing  # libcst and the stack: only on a miss

            return changes_nothing(values, key, value)

        digest = hashlib.sha256(repr(values).encode()).hexdigest()[:16]
        return self.remembered(["changes-nothing", list(key), repr(value), digest], compute)

    def optimizer_error(self, values: dict) -> str | None:
        """Why the stack's constructor cannot build the config's optimizer, once per optimizer setting."""
        def compute() -> str | None:
            from freezefix.consumers import optimizer_error  # libcst and the stack: only on a miss

            return optimizer_error(values)

        return self.remembered(["optimizer-error", repr(values.get("optim_wrapper")), repr(values.get("optimizer"))],
                               compute)

    def optimizer_settings(self, module_cfg: dict, scope_hint: str | None, name: str,
                           optimizer_values: dict) -> dict[str, list] | None:
        """``[lr, weight_decay]`` of each trainable parameter of one module, named as in the model
        (``img_backbone.layer1.0.bn1.weight``), from the installed stack's own optimizer constructor run
        on the module built alone under its model name, after ``train()``.  ``optimizer_values`` holds
        the config's ``optim_wrapper`` / ``optimizer``.  None when the module or optimizer cannot be built."""
        type_name = module_cfg.get("type")
        if not isinstance(type_name, str):
            return None
        scope_hint = module_cfg.get("_scope_") or scope_hint
        kwargs = _clean_kwargs(module_cfg)

        built = self._built.get(_built_key(type_name, scope_hint, kwargs))
        return self.remembered(["optimizer-settings", type_name, scope_hint, repr(sorted(kwargs.items())), name,
                                repr(optimizer_values), self.device],
                               lambda: _optimizer_settings(type_name, scope_hint, kwargs, name, optimizer_values,
                                                           self.device, built))

    def model(self, values: dict, config_path: Path) -> ModelFacts:
        """Build the whole model once per (model dict, scope, plugins) and list its parameters."""
        from freezefix.models import build

        key = json.dumps(
            ["model", repr(values.get("model")), values.get("default_scope"), values.get("plugin_dir"),
             repr(values.get("custom_imports")), self.device]
        )
        disk = self.file.entries
        scoped = self._in_this_environment(key)
        for kept in (key, scoped):
            if kept in disk:
                try:
                    return ModelFacts(**disk[kept])
                except TypeError:
                    pass
        self._prepare_to_build()
        built = build(values, config_path, device=self.device)
        facts = ModelFacts(notes=list(built.notes))
        if built.model is not None:
            facts.param_names = [n for n, _ in built.model.named_parameters()]
            facts.complete = built.level == "model"
        elif built.error:
            facts.notes.append(built.error)
        if not (facts.transient or (not facts.complete and self.plugins_missing)):
            disk[key] = asdict(facts)
        elif scoped is not None:  # a failure that installing something may undo: for this environment
            disk[scoped] = asdict(facts)
        return facts

    def _probe(self, type_name: str, scope_hint: str | None, kwargs: dict, scan: bool) -> ClassFacts:
        facts = ClassFacts(type_name=type_name, device=self.device)
        try:
            cls, scope = find_class(type_name, scope_hint)
        except LookupError as exc:
            facts.import_error = str(exc)
            return facts
        facts.class_path = f"{cls.__module__}.{cls.__qualname__}"
        facts.scope = scope
        facts.accepts_frozen_stages = _accepts(cls, "frozen_stages")
        facts.accepts_norm_eval = _accepts(cls, "norm_eval")
        try:
            module = self._build(cls, scope, kwargs)
            self._keep(_built_key(type_name, scope_hint, kwargs), module)
        except Exception as exc:  # noqa: BLE001 - the class's own error is the finding
            facts.error = f"{type(exc).__name__}: {exc}"
            self._blame(facts, cls, scope, kwargs, describe_error(exc))
            return facts
        facts.observed = _state(module)
        facts.total_params = sum(p.numel() for p in module.parameters())
        facts.param_names = [n for n, _ in module.named_parameters()]
        given = kwargs.get("frozen_stages")
        if isinstance(given, int) and not isinstance(given, bool):
            facts.observed_stage = given
        if scan and facts.accepts_frozen_stages:
            self._scan(facts, cls, scope, kwargs)
        elif facts.accepts_frozen_stages and facts.observed_stage is not None and facts.observed_stage >= 0:
            # One more build tells whether the argument does anything at all (FF104).
            try:
                facts.stages[-1] = _state(self._build(cls, scope, {**kwargs, "frozen_stages": -1}))
            except Exception:  # noqa: BLE001 - then the class has no -1; nothing to compare
                pass
        return facts

    def _blame(self, facts: ClassFacts, cls: Any, scope: str, kwargs: dict, error: str) -> None:
        """The config's own build failed: find out whether a freeze argument is to blame.

        Only a failure that goes away when the freeze argument changes says something about the
        freeze: a ``frozen_stages`` past the range (some other value builds), or an argument the
        class rejects (the build without it succeeds).  A failure that stays (DetectoRS_ResNet's
        ``conv_cfg`` with ``dcn`` asserts at every ``frozen_stages``) is the config's own problem,
        and the class is marked unbuildable: no range, no full-freeze value, no finding.
        """
        if "frozen_stages" in kwargs and facts.accepts_frozen_stages:
            # Out-of-range frozen_stages fails to build; learn the range without it.
            self._scan(facts, cls, scope, kwargs)
            if not facts.stages:
                facts.unbuildable = error
            return
        rejected = [arg for arg in FREEZE_ARGS if arg in kwargs and not _accepts(cls, arg)]
        if rejected:
            try:
                self._build(cls, scope, {k: v for k, v in kwargs.items() if k not in rejected})
                return
            except Exception as exc:  # noqa: BLE001 - fails without them too: not their fault
                facts.unbuildable = f"{error} (and without {' / '.join(rejected)}: {describe_error(exc)})"
                return
        facts.unbuildable = error

    def _keep(self, key: str, module: Any) -> None:
        first = next(iter(module.parameters()), None)
        if first is None or not first.is_meta:
            return  # built on the CPU (a class meta cannot build): not worth the memory it holds
        self._built[key] = module
        self._built.move_to_end(key)
        while len(self._built) > _KEPT_MODULES:
            self._built.popitem(last=False)

    def _build(self, cls: Any, scope: str, kwargs: dict) -> Any:
        return on_first_device(lambda: _build(cls, scope, kwargs), self.device)[0]

    def _scan(self, facts: ClassFacts, cls: Any, scope: str, kwargs: dict) -> None:
        facts.scanned = True
        for k in range(-1, MAX_PROBED_STAGES + 1):
            try:
                module = self._build(cls, scope, {**kwargs, "frozen_stages": k})
            except Exception:  # noqa: BLE001 - past the class's range, if a smaller value built
                if k >= 0 and facts.stages:
                    facts.first_invalid = k
                    break
                if k >= 1:
                    break  # -1, 0 and 1 all failed: not the value's fault, the class does not build
                continue
            facts.stages[k] = _state(module)
            if k >= 0 and facts.stages[k].trainable_params == 0:
                break  # nothing left to freeze; larger values can only fail or repeat
        if not facts.stages:
            return
        if not facts.total_params:
            facts.total_params = max(s.trainable_params for s in facts.stages.values())
        fewest = min(s.trainable_params for s in facts.stages.values())
        if len(facts.stages) > 1 and not facts.freezes_nothing_ever:
            facts.full_freeze = min(k for k, s in facts.stages.items() if s.trainable_params == fewest)


_KEPT_MODULES = 8
FREEZE_ARGS = ("frozen_stages", "norm_eval")


def _built_key(type_name: str, scope_hint: str | None, kwargs: dict) -> str:
    return json.dumps([type_name, scope_hint, repr(sorted(kwargs.items()))])


def _optimizer_settings(type_name: str, scope_hint: str | None, kwargs: dict, name: str,
                        optimizer_values: dict, device: str, built: Any = None) -> dict[str, list] | None:
    """The module alone as ``name`` of a holder model, after ``train()`` (``built``: already built
    with these arguments on ``device``, or built here), and the stack's optimizer constructor run on
    it: trainable parameter name → [lr, weight_decay]."""
    import torch

    try:
        module = built
        if module is None:
            cls, scope = find_class(type_name, scope_hint)
            module = on_first_device(lambda: _build(cls, scope, kwargs), device)[0]
        module.train()
        holder = torch.nn.Module()
        holder.add_module(name, module)
        stack = current()
        stack.quiet()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            optimizer, _ = stack.build_optimizer(holder, copy.deepcopy(optimizer_values))
    except Exception:  # noqa: BLE001 - nothing can be said about this module's groups
        return None
    names = {id(p): n for n, p in holder.named_parameters() if p.requires_grad}
    return {names[id(p)]: [group.get("lr"), group.get("weight_decay")]
            for group in optimizer.param_groups for p in group["params"] if id(p) in names}
