"""What building a model class tells about its freeze, learnt from the real class of the installed
registries.

``frozen_stages`` means something different in every class, so nothing here is a table of
numbers: the class is built on the meta device (no memory, no weights) with the config's own
arguments and ``frozen_stages = -1, 0, 1, …``; after ``train()`` the trainable parameters and the
BatchNorm layers still in training mode are counted.  The smallest value that leaves the fewest
trainable parameters is the full-freeze value; the first value that fails to build, after a smaller
one built, is past the range.  A build that fails whatever the freeze argument says is no fact about
the freeze: the class is marked unbuildable.

:class:`freezefix.probe.Prober` asks these questions once per (type, arguments) and keeps the answers.
"""

from __future__ import annotations

import copy
import json
import logging
import warnings
from collections import OrderedDict
from functools import lru_cache
from typing import Any, Callable, TypeVar

from freezefix.building import WEIGHT_ARGS, describe_error, is_batchnorm, on_first_device
from freezefix.classes import declared_parameter, find_class, registries
from freezefix.facts import MAX_PROBED_STAGES, ClassFacts, FreezeState
from freezefix.stacks import current

T = TypeVar("T")

FREEZE_ARGS = ("frozen_stages", "norm_eval")


def accepts(cls: Any, name: str) -> bool:
    """Whether ``cls(name=...)`` reaches an ``__init__`` that names the argument."""
    return declared_parameter(cls, name) is not None


def shaping_args(cfg: dict) -> dict:
    """A module config's arguments that shape the module: not its type, scope or weights to load
    (the config's own values, not copies)."""
    return {k: v for k, v in cfg.items() if k not in (*WEIGHT_ARGS, "type", "_scope_")}


def clean_kwargs(cfg: dict) -> dict:
    """:func:`shaping_args` copied, for a build to change as it likes."""
    return copy.deepcopy(shaping_args(cfg))


def module_key(type_name: str, scope_hint: str | None, kwargs: dict) -> str:
    """What one build of a module config is known by (device aside)."""
    return json.dumps([type_name, scope_hint, repr(sorted(kwargs.items()))])


class KeptModules:
    """The modules last built on meta with a config's own arguments: FF113 runs the optimizer
    constructor on the same module right after the other rules probed it.  A module the CPU had to
    build is not kept (its memory)."""

    LIMIT = 8

    def __init__(self) -> None:
        self.modules: OrderedDict[str, Any] = OrderedDict()
        self.hits = 0  # modules handed out again instead of being built a second time

    def keep(self, key: str, module: Any) -> None:
        first = next(iter(module.parameters()), None)
        if first is None or not first.is_meta:
            return
        self.modules[key] = module
        self.modules.move_to_end(key)
        while len(self.modules) > self.LIMIT:
            self.modules.popitem(last=False)

    def get(self, key: str) -> Any:
        module = self.modules.get(key)
        self.hits += module is not None
        return module


def probe_class(type_name: str, scope_hint: str | None, kwargs: dict, scan: bool, device: str,
                kept: KeptModules) -> ClassFacts:
    """What building ``type_name`` with ``kwargs`` tells: the state after ``train()`` with the
    config's own arguments and, with ``scan`` (or when those fail), for every ``frozen_stages``."""
    facts = ClassFacts(type_name=type_name, device=device)
    try:
        cls, scope = find_class(type_name, scope_hint)
    except LookupError as exc:
        facts.import_error = str(exc)
        return facts
    facts.class_path = f"{cls.__module__}.{cls.__qualname__}"
    facts.scope = scope
    facts.accepts_frozen_stages = accepts(cls, "frozen_stages")
    facts.accepts_norm_eval = accepts(cls, "norm_eval")

    def build(arguments: dict) -> Any:
        return on_first_device(lambda: build_module(cls, scope, arguments), device)[0]

    try:
        module = build(kwargs)
        kept.keep(module_key(type_name, scope_hint, kwargs), module)
    except Exception as exc:  # noqa: BLE001 - the class's own error is the finding
        facts.error = f"{type(exc).__name__}: {exc}"
        _blame(facts, cls, kwargs, build, describe_error(exc))
        return facts
    facts.class_inits = pretrained_inits(module)
    facts.observed = freeze_state(module)
    facts.total_params = sum(p.numel() for p in module.parameters())
    facts.param_names = [n for n, _ in module.named_parameters()]
    given = kwargs.get("frozen_stages")
    if isinstance(given, int) and not isinstance(given, bool):
        facts.observed_stage = given
    if scan and facts.accepts_frozen_stages:
        _scan(facts, kwargs, build)
    elif facts.accepts_frozen_stages and facts.observed_stage is not None and facts.observed_stage >= 0:
        # One more build tells whether the argument does anything at all (FF104).
        try:
            facts.stages[-1] = freeze_state(build({**kwargs, "frozen_stages": -1}))
        except Exception:  # noqa: BLE001 - then the class has no -1; nothing to compare
            pass
    return facts


def _blame(facts: ClassFacts, cls: Any, kwargs: dict, build: Callable[[dict], Any], error: str) -> None:
    """The config's own build failed: find out whether a freeze argument is to blame.

    Only a failure that goes away when the freeze argument changes says something about the
    freeze: a ``frozen_stages`` past the range (some other value builds), or an argument the
    class rejects (the build without it succeeds).  A failure that stays (DetectoRS_ResNet's
    ``conv_cfg`` with ``dcn`` asserts at every ``frozen_stages``) is the config's own problem,
    and the class is marked unbuildable: no range, no full-freeze value, no finding.
    """
    if "frozen_stages" in kwargs and facts.accepts_frozen_stages:
        # Out-of-range frozen_stages fails to build; learn the range without it.
        _scan(facts, kwargs, build)
        if not facts.stages:
            facts.unbuildable = error
        return
    rejected = [arg for arg in FREEZE_ARGS if arg in kwargs and not accepts(cls, arg)]
    if rejected:
        try:
            build({k: v for k, v in kwargs.items() if k not in rejected})
            return
        except Exception as exc:  # noqa: BLE001 - fails without them too: not their fault
            facts.unbuildable = f"{error} (and without {' / '.join(rejected)}: {describe_error(exc)})"
            return
    facts.unbuildable = error


def _scan(facts: ClassFacts, kwargs: dict, build: Callable[[dict], Any]) -> None:
    facts.scanned = True
    for k in range(-1, MAX_PROBED_STAGES + 1):
        try:
            module = build({**kwargs, "frozen_stages": k})
        except Exception:  # noqa: BLE001 - past the class's range, if a smaller value built
            if k >= 0 and facts.stages:
                facts.first_invalid = k
                break
            if k >= 1:
                break  # -1, 0 and 1 all failed: not the value's fault, the class does not build
            continue
        facts.stages[k] = freeze_state(module)
        if k >= 0 and facts.stages[k].trainable_params == 0:
            break  # nothing left to freeze; larger values can only fail or repeat
    if not facts.stages:
        return
    if not facts.total_params:
        facts.total_params = max(s.trainable_params for s in facts.stages.values())
    fewest = min(s.trainable_params for s in facts.stages.values())
    if len(facts.stages) > 1 and not facts.freezes_nothing_ever:
        facts.full_freeze = min(k for k, s in facts.stages.items() if s.trainable_params == fewest)


def pretrained_inits(module: Any) -> list[list]:
    """The ``Pretrained`` init_cfgs the module's class sets for itself or for a part of itself, the
    config's own left out of the build: ``[part, checkpoint, prefix]``, part '' for the module."""
    found = []
    for part, sub in module.named_modules():
        init_cfg = getattr(sub, "init_cfg", None)
        for entry in init_cfg if isinstance(init_cfg, list) else [init_cfg]:
            if isinstance(entry, dict) and entry.get("type") == "Pretrained" and isinstance(entry.get("checkpoint"), str):
                prefix = entry.get("prefix")
                found.append([part, entry["checkpoint"], prefix if isinstance(prefix, str) else None])
    return found


def state_shapes(type_name: str, scope_hint: str | None, kwargs: dict, device: str, built: Any = None
                 ) -> list[list] | None:
    """Every tensor a checkpoint may load into the module (its state dict), as ``[name, shape]`` in
    the module's order; None when it cannot be built.  ``built``: already built on ``device``."""
    try:
        module = built if built is not None else _build(type_name, scope_hint, kwargs, device)
        return [[name, list(tensor.shape)] for name, tensor in module.state_dict().items()]
    except Exception:  # noqa: BLE001 - nothing can be said about its tensors
        return None


def _build(type_name: str, scope_hint: str | None, kwargs: dict, device: str) -> Any:
    cls, scope = find_class(type_name, scope_hint)
    return on_first_device(lambda: build_module(cls, scope, kwargs), device)[0]


def build_module(cls: Any, scope: str, kwargs: dict) -> Any:
    # As the stack's Config hands it over: nested settings read as attributes (Mask2FormerHead's
    # `transformer_decoder.layer_cfg`) fail on plain dicts, which is freezefix's fault, not the config's.
    stack = current()
    return stack.build_module(registries()[scope], stack.config_dict(dict(kwargs, type=cls)), scope)


def freeze_state(module: Any) -> FreezeState:
    """What trains after ``train()``, and what did right after construction (DDP and the optimizer
    see that: the Runner builds both first)."""
    constructed = sum(p.numel() for p in module.parameters() if p.requires_grad)
    module.train()
    return settled_state(module, constructed)


def settled_state(module: Any, constructed: int) -> FreezeState:
    """What trains in ``module`` as it is now (after ``train()``), ``constructed`` elements having
    required grad when DDP and the optimizer were built."""
    trainable = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    bns = [m for m in module.modules() if is_batchnorm(m)]
    not_tracking = [m for m in bns if m.training and not getattr(m, "track_running_stats", True)]
    return FreezeState(
        trainable_params=sum(p.numel() for _, p in trainable),
        trainable_tensors=len(trainable),
        bn_training=sum(1 for m in bns if m.training),
        bn_total=len(bns),
        trainable_names=[n for n, _ in trainable],
        constructed_trainable_params=constructed,
        frozen_children_bn_training=frozen_children_bn_training(module),
        bn_not_tracking=len(not_tracking),
        bn_batch_stats=sum(1 for m in not_tracking if getattr(m, "running_mean", None) is not None),
    )


def observe_whole_model(model: Any) -> tuple[dict[str, FreezeState], str | None]:
    """Each top-level module of a built detector after the runner's steps (:func:`as_the_runner`),
    then ``train()``.  Empty, with why, when ``init_weights()`` fails: nothing is then observed."""
    constructed, failed = as_the_runner(model, lambda: {
        name: sum(p.numel() for p in child.parameters() if p.requires_grad) for name, child in model.named_children()})
    if failed:
        return {}, failed
    model.train()
    return {name: settled_state(child, constructed[name]) for name, child in model.named_children()
            if any(True for _ in child.parameters())}, None


def as_the_runner(model: Any, at_wrap: Callable[[], T]) -> tuple[T | None, str | None]:
    """The runner's steps before ``train()``, the detector's own code included: ``init_weights()``
    where a plugin's class of the model has its own (it may freeze there), run where the stack's runner
    runs it — mmcv 1.x's train scripts before DDP and the optimizer are built, mmengine's Runner after
    — and ``at_wrap`` where they are built.  What ``at_wrap`` gave, or why ``init_weights()`` failed."""
    runs_init = has_plugin_init_weights(model)
    before_wrap = current().init_weights_before_wrap
    if runs_init and before_wrap and (failed := _run_init_weights(model)):
        return None, failed
    wrapped = at_wrap()
    if runs_init and not before_wrap and (failed := _run_init_weights(model)):
        return None, failed
    return wrapped, None


def has_plugin_init_weights(model: Any) -> bool:
    """Whether some class of the model has an ``init_weights`` from outside the OpenMMLab packages
    (it cannot run on meta tensors: such a model is observed on the CPU)."""
    return any(_own_init_weights(cls) for cls in {type(m) for m in model.modules()})


def _run_init_weights(model: Any) -> str | None:
    """Run the model's ``init_weights()``; why it failed, if it did."""
    logging.disable(logging.INFO)  # mmengine logs every parameter's initialisation
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.init_weights()
    except Exception as exc:  # noqa: BLE001 - said, and nothing observed
        return f"init_weights() failed ({describe_error(exc)}): what the model freezes there was not observed"
    finally:
        logging.disable(logging.NOTSET)
    return None


# Packages whose init_weights() only initialises; a plugin's may freeze (BEV repos do).
_INITIALISES_ONLY = ("torch", "mmengine", "mmcv", "mmdet", "mmdet3d", "mmpretrain", "mmcls", "mmseg")


@lru_cache(maxsize=None)
def _own_init_weights(cls: type) -> bool:
    """Whether ``cls`` has an ``init_weights`` of its own or a base's from outside the OpenMMLab
    packages: what it does (it may freeze) is only seen by running it."""
    for klass in cls.__mro__:
        if "init_weights" in klass.__dict__:
            return klass.__module__.split(".")[0] not in _INITIALISES_ONLY
    return False


def frozen_children_bn_training(module: Any) -> dict[str, int]:
    """Direct child → BatchNorm layers in it that update their running statistics (training mode,
    ``track_running_stats``) although every parameter of the child is frozen."""
    found = {}
    for name, child in module.named_children():
        params = list(child.parameters())
        if not params or any(p.requires_grad for p in params):
            continue
        drifting = sum(1 for m in child.modules()
                       if is_batchnorm(m) and m.training and getattr(m, "track_running_stats", True))
        if drifting:
            found[name] = drifting
    return found


def optimizer_settings(type_name: str, scope_hint: str | None, kwargs: dict, name: str,
                       optimizer_values: dict, device: str, built: Any = None) -> dict[str, list] | None:
    """The module alone as ``name`` of a holder model, after ``train()`` (``built``: already built
    with these arguments on ``device``, or built here), and the stack's optimizer constructor run on
    it: trainable parameter name → [lr, weight_decay, elements].  None when the module or optimizer
    cannot be built."""
    import torch

    try:
        module = built if built is not None else _build(type_name, scope_hint, kwargs, device)
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
    return {names[id(p)]: [group.get("lr"), group.get("weight_decay"), p.numel()]
            for group in optimizer.param_groups for p in group["params"] if id(p) in names}
