"""What a config freezes in each module, and whether the weights it freezes are loaded from anywhere.

A frozen tensor keeps its value from the start of training to the end.  :func:`frozen_part` says
which of a module's tensors a config freezes (by ``frozen_stages``, lr 0, the ``--freeze`` policy,
the detector's own code, or only its BatchNorm statistics by ``norm_eval=True``), read off the
real class.  :func:`weights_of` says where the module's weights come from
(:mod:`freezefix.weights`), and :func:`coverage` how many of its frozen tensors local checkpoints
load, the way the stack's loader would (:mod:`freezefix.checkpoints`).  What freezefix cannot see
(a plugin's own loader, a checkpoint it cannot read) is kept on the view as not judged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from freezefix.analysis import ConfigView, Module
from freezefix.checkpoints import CheckpointKeys, loaded_by, prefix_holding, read_checkpoint, resolve_checkpoint
from freezefix.weights import ModuleWeights, WeightSource, module_weights

_BN_STATS = (".running_mean", ".running_var")
BY_THE_DETECTOR = "by the detector's own code"


@dataclass
class FrozenPart:
    """The tensors of one module that a config freezes."""

    module: Module
    how: str  # what freezes them, as a finding says it: 'frozen_stages=4', "lr 0 ('img_backbone')"
    params: set[str]  # frozen parameter names, relative to the module
    total_params: int  # elements of the module
    frozen_params: int  # elements of ``params``
    stats: bool = False  # its BatchNorm statistics are frozen (norm_eval=True, or their layer frozen)
    bn_layers: int = 0

    @property
    def stats_only(self) -> bool:
        return not self.params

    def describe(self) -> str:
        if self.stats_only:
            return f"its BatchNorm statistics are frozen ({self.how}: {self.bn_layers} layers in eval mode)"
        if self.frozen_params == self.total_params:
            return f"all {self.total_params:,} of its params are frozen ({self.how})"
        return f"{self.frozen_params:,} of its {self.total_params:,} params are frozen ({self.how})"


def frozen_part(view: ConfigView, module: Module, policy: tuple[str, ...] = ()) -> FrozenPart | None:
    """What the config freezes in ``module``; None when nothing, or when the class could not be built
    (nothing is then known) or what trains is decided where no build shows it."""
    # FF115 and FF116 both ask, of every candidate
    return view.derive(("frozen part", module.name, policy), lambda: _frozen_part(view, module, policy))


def _frozen_part(view: ConfigView, module: Module, policy: tuple[str, ...]) -> FrozenPart | None:
    if view.hidden_freeze():
        return None
    facts = view.facts(module)
    observed = facts.observed
    if not facts.judgeable or observed is None or not facts.param_names:
        return None
    names = facts.param_names
    hows, frozen = [], set()
    if module.name in policy:
        hows.append("the --freeze policy")
        frozen = set(names)
    zero = view.optimizer.at_lr_mult_zero(f"{module.name}.", names) if view.optimizer is not None else []
    if zero and not frozen:
        hows.append(f"lr 0 from custom key {view.optimizer.match(f'{module.name}.{zero[0]}')!r}")
        frozen |= set(zero)
    by_code = set(names) - set(observed.trainable_names)
    how, stage = frozen_by(view, module), module.cfg.get("frozen_stages")
    if by_code - frozen and ((isinstance(stage, int) and stage >= 0) or how.startswith(BY_THE_DETECTOR)):
        hows.append(how)
        frozen |= by_code
    stats = module.cfg.get("norm_eval") is True and facts.accepts_norm_eval and observed.bn_total > 0
    if stats and not frozen:
        hows.append("norm_eval=True")
    if not frozen and not stats:
        return None
    shapes = module_tensors(view, module) or {}
    return FrozenPart(module, ", ".join(hows), frozen, facts.total_params,
                      sum(math.prod(shapes.get(n, (0,))) for n in frozen), stats=stats, bn_layers=observed.bn_total)


def frozen_by(view: ConfigView, module: Module) -> str:
    """What freezes the module, as a finding says it: the detector's own flags where what it trains
    was read off the whole model, else its frozen_stages."""
    if view.settings.freeze_flags and view.model_if_asked and module.name in view.model_if_asked.modules:
        return f"{BY_THE_DETECTOR}: {', '.join(view.settings.freeze_flags)}"
    return f"frozen_stages={view.frozen_stages(module)}"


def weights_of(view: ConfigView, module: Module) -> ModuleWeights:
    """Where ``module``'s weights come from."""
    facts = view.facts(module)
    inits = tuple((part, checkpoint, prefix) for part, checkpoint, prefix in facts.class_inits)
    return module_weights(view.values, view.facts_source.stack, module.name, inits)


def unseen_loader(view: ConfigView, module: Module, weights: ModuleWeights) -> None:
    """Keep as not judged that a loader freezefix cannot read decides what the module's frozen
    weights are: said only where it changes the verdict (nothing else loads them, or what the
    readable checkpoints load leaves some at init)."""
    view.not_judged[f"{module.name} weights"] = f"{weights.unknown}; where its frozen weights come from was not judged"


@dataclass
class Coverage:
    """How many of a module's frozen tensors the local checkpoints of its sources load."""

    frozen: dict[str, tuple[int, ...]]  # frozen tensor (relative to the module) → shape
    loaded: set[str] = field(default_factory=set)
    mismatched: set[str] = field(default_factory=set)  # at another shape in every checkpoint that has them
    read: list[tuple[WeightSource, CheckpointKeys]] = field(default_factory=list)

    @property
    def left(self) -> list[str]:
        return [n for n in self.frozen if n not in self.loaded]


def coverage(view: ConfigView, module: Module, wanted: dict[str, tuple[int, ...]], weights: ModuleWeights
             ) -> Coverage | None:
    """What the module's sources load of ``wanted`` (its tensors, relative to it → shape); None when
    one of them cannot be read here (a URL, a model-zoo name, the latest checkpoint of a work_dir, a
    file that is not there): then what it loads is not known, and nothing is judged."""
    if not weights.all_local:
        return None
    out = Coverage(frozen=wanted)
    for source in weights.sources:
        keys = checkpoint_keys(view, source.checkpoint)
        if keys.error:
            view.not_judged[source.setting] = (f"{keys.path} (relative paths from the working directory "
                                               f"{Path.cwd()}): {keys.error}; what it loads into frozen modules "
                                               "was not judged")
            return None
        loaded, mismatched = loaded_by(source, keys, module.name, wanted)
        out.loaded |= loaded
        out.mismatched |= mismatched
        out.read.append((source, keys))
    out.mismatched -= out.loaded
    if weights.unknown and out.left:
        unseen_loader(view, module, weights)
        return None
    return out


def module_tensors(view: ConfigView, module: Module) -> dict[str, tuple[int, ...]] | None:
    """Every tensor of the module's state dict, relative to it → shape (None: it cannot be built)."""
    def compute() -> dict[str, tuple[int, ...]] | None:
        shapes = view.facts_source.state_shapes(module.cfg, view.default_scope)
        return {name: tuple(shape) for name, shape in shapes} if shapes else None

    return view.derive(("tensors", module.name), compute)


def checkpoint_keys(view: ConfigView, checkpoint: str) -> CheckpointKeys:
    """The keys of a local checkpoint, read once per config (its answer depends on the file and the
    working directory, so the config's result is not kept in the results cache)."""
    path = resolve_checkpoint(checkpoint)
    if str(path) not in view.checkpoints:
        view.checkpoints[str(path)] = read_checkpoint(path)
    return view.checkpoints[str(path)]


def other_prefix(coverage_: Coverage) -> tuple[str, WeightSource] | None:
    """A prefix under which one of the checkpoints read holds every frozen tensor left at init, and
    the source that names that checkpoint."""
    left = {n: coverage_.frozen[n] for n in coverage_.left}
    for source, keys in coverage_.read:
        found = prefix_holding(keys, left)
        if found is not None:
            return found, source
    return None


def frozen_tensors(part: FrozenPart, shapes: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    """The frozen parameters, and the running statistics of every BatchNorm layer whose statistics are
    frozen: all of them under norm_eval=True, else those of layers whose weight is frozen.  In the
    module's own order, so a finding names the first one."""
    frozen = {}
    for name, shape in shapes.items():
        layer = name.rsplit(".", 1)[0]
        if name in part.params or (name.endswith(_BN_STATS) and (part.stats or f"{layer}.weight" in part.params)):
            frozen[name] = shape
    return frozen


def weights_summary(view: ConfigView, module: Module) -> dict:
    """Where the module's weights come from, for ``explain``: its sources, how many of its parameters
    the local checkpoints among them load, and one line saying it."""
    weights = weights_of(view, module)
    out = {"sources": [{"kind": s.kind, "setting": s.setting, "checkpoint": s.checkpoint, "prefix": s.prefix,
                        "read": not s.remote} for s in weights.sources],
           "unknown": weights.unknown, "loaded_params": None, "params": None}
    if weights.unknown:
        out["text"] = "unknown (plugin loader)"
        return out
    if weights.from_nowhere:
        out["text"] = "random init"
        return out
    text = ", ".join(dict.fromkeys(_state(view, source) for source in weights.sources))
    shapes = module_tensors(view, module)
    names = set(view.facts(module).param_names)
    params = {n: s for n, s in (shapes or {}).items() if n in names}
    seen = coverage(view, module, params, weights) if params else None
    if seen is not None:
        out["loaded_params"] = sum(math.prod(params[n]) for n in seen.loaded)
        out["params"] = sum(math.prod(s) for s in params.values())
        text += f" ({out['loaded_params']:,} / {out['params']:,} params)"
    out["text"] = text
    return out


def _state(view: ConfigView, source: WeightSource) -> str:
    if source.remote:
        return f"{source.describe()} (trusted, not fetched)"
    keys = checkpoint_keys(view, source.checkpoint)
    return f"{source.describe()} ({keys.error})" if keys.error else source.describe()

