"""What the rules may know about the classes a config names, and the interface they ask it through.

:class:`ClassFacts` (what ``frozen_stages`` freezes, the parameters, the arguments a class takes),
:class:`ModelFacts` (the whole model's parameter names) and :class:`FactsSource`, which
:class:`freezefix.probe.Prober` implements by building the installed stack's classes.  Plain values
only: they are kept in the probe cache as JSON.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ContextManager, Protocol

MAX_PROBED_STAGES = 8
MODEL_NOT_BUILT = "the model class could not be built"  # how a whole-model build notes a detector that failed
# What an exception says when the environment lacks something, rather than the config being wrong.
_MISSING = re.compile(r"\b(ImportError|ModuleNotFoundError)\b|No module named|not installed|please install|"
                      r"cannot open shared object")


@dataclass
class FreezeState:
    """A module after ``train()``: what still trains."""

    trainable_params: int  # elements
    trainable_tensors: int
    bn_training: int
    bn_total: int
    trainable_names: list[str] = field(default_factory=list)
    # Before train(): what DDP and the optimizer see, since the Runner builds both first.
    constructed_trainable_params: int = 0
    # Direct child → its BatchNorm layers still updating running statistics after train() though
    # the child's parameters are all frozen (mmdet's MobileNetV2 freezes its stem without eval()).
    frozen_children_bn_training: dict[str, int] = field(default_factory=dict)
    # BatchNorm layers in training mode with track_running_stats=False: they update no statistics.
    bn_not_tracking: int = 0
    # Those of them that keep running statistics all the same: they normalise with batch statistics
    # in training and with the stored ones at test.
    bn_batch_stats: int = 0


@dataclass
class ModelFacts:
    """Every parameter name of a whole model (for custom_keys matching), and what each of its
    top-level modules trains once the runner's steps ran on the whole detector (its own code
    included: a ``freeze_img_backbone`` flag, an ``eval()`` in ``__init__``, a freeze in ``train()``)."""

    param_names: list[str] = field(default_factory=list)
    complete: bool = False  # the detector itself was built (not only some of its modules)
    notes: list[str] = field(default_factory=list)
    # top-level module → its state after build, init_weights() where the detector freezes there,
    # and train(); empty when the detector was not built, or its init_weights() failed
    modules: dict[str, FreezeState] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: dict) -> ModelFacts:
        data = dict(data)
        modules = {name: FreezeState(**state) for name, state in data.pop("modules", {}).items()}
        return cls(**data, modules=modules)

    @property
    def transient(self) -> bool:
        """Whether the detector failed for something missing from the environment (see ClassFacts)."""
        return not self.complete and any(missing_from_environment(note) for note in self.notes)


@dataclass
class ClassFacts:
    type_name: str
    class_path: str | None = None  # 'mmdet.models.backbones.resnet.ResNet'
    scope: str | None = None  # registry scope the class was found in
    error: str | None = None  # why the class could not be built with the config's arguments
    import_error: str | None = None  # why the class could not even be looked up
    # Why the class cannot be built with the config's arguments whatever its freeze arguments say
    # (it also fails at every frozen_stages tried, or without the freeze argument it rejects): the
    # config's own problem, so nothing about its freeze is a fact.
    unbuildable: str | None = None
    # What the environment lacked when the class was probed (plugins of the config that did not
    # import), kept with an answer the environment decides so that a cached one says it too.
    environment_notes: list[str] = field(default_factory=list)
    accepts_frozen_stages: bool = False
    accepts_norm_eval: bool = False
    total_params: int = 0
    param_names: list[str] = field(default_factory=list)
    observed: FreezeState | None = None  # with the config's own arguments
    stages: dict[int, FreezeState] = field(default_factory=dict)  # frozen_stages → state
    first_invalid: int | None = None  # smallest frozen_stages ≥ 0 that fails to build
    full_freeze: int | None = None  # smallest frozen_stages leaving the fewest trainable params
    observed_stage: int | None = None  # the config's own frozen_stages, if it gives one
    # Pretrained init_cfgs the class sets for itself when the config gives none: [part, checkpoint, prefix]
    class_inits: list[list] = field(default_factory=list)
    scanned: bool = False  # stages holds every value from -1 up (else only what was needed)
    device: str = "meta"

    @property
    def available(self) -> bool:
        return self.import_error is None

    @property
    def judgeable(self) -> bool:
        """Found, and built with the config's arguments or with a freeze argument changed: what a
        rule may read.  A class that cannot be built at all is never out of range, never ignoring
        an argument, never frozen or trainable."""
        return self.import_error is None and self.unbuildable is None

    @property
    def failure(self) -> str | None:
        """Why the config's own arguments did not build, in one line."""
        text = self.import_error or self.error
        return text.strip().splitlines()[0] if text and text.strip() else text

    @property
    def unjudged_reason(self) -> str | None:
        """Why nothing about this class was judged, for the could-not-judge summary."""
        if self.import_error is not None:
            return self.import_error
        if self.unbuildable is not None:
            return f"cannot be built: {self.unbuildable}; nothing about its freeze was judged"
        return None

    @property
    def transient(self) -> bool:
        """Whether the answer may change with no file and no keyed package changing: a class not
        found (a plugin may register it), or one whose build failed for something missing from the
        environment (``transformers is not installed``, an op library that does not load)."""
        if self.import_error is not None:
            return True
        return self.unbuildable is not None and missing_from_environment(self.unbuildable)

    @property
    def max_valid(self) -> int | None:
        if self.first_invalid is not None:
            return self.first_invalid - 1
        return max(self.stages) if self.stages else None

    @property
    def freezes_nothing_ever(self) -> bool:
        """frozen_stages is accepted but changes nothing (an ignored argument).

        Known from a full scan, or from the config's own value k ≥ 0 (a class that honours the
        argument freezes at least its stem there) compared with frozen_stages=-1.
        """
        states = dict(self.stages)
        if self.observed is not None and self.observed_stage is not None and self.observed_stage >= 0:
            states.setdefault(self.observed_stage, self.observed)
        counts = {s.trainable_params for s in states.values()}
        return -1 in states and len(states) > 1 and len(counts) == 1 and self.total_params > 0

    @property
    def residual_trainable(self) -> int | None:
        if self.full_freeze is None:
            return None
        return self.stages[self.full_freeze].trainable_params


class FactsSource(Protocol):
    """Everything a rule may know about the environment it judges configs for: which stack runs,
    what the classes a config names freeze, the whole model's parameters, what the stack's optimizer
    constructor, schedulers and DDP do.  :class:`freezefix.probe.Prober` answers by building the
    installed stack's classes; ``freezefix.testing.RecordedFacts`` answers from a table recorded
    from them, without a stack.  Rules ask through :class:`freezefix.analysis.ConfigView` only."""

    stack: str  # 'mmengine' | 'mmcv1': the stack whose code answers
    lr_schedule: str  # the setting that stack's runner schedules lrs from: 'param_scheduler' | 'lr_config'

    def judging(self, values: dict, config_path: Path, import_plugins: Callable[[], list[str]]) -> ContextManager[None]:
        """While one config is judged (``import_plugins`` imports its plugins, saying why some did not)."""

    def facts(self, module_cfg: dict, scope_hint: str | None = None, scan: bool = True) -> ClassFacts:
        """What the module's class freezes for each ``frozen_stages``, its parameters, arguments it takes."""

    def model(self, values: dict, config_path: Path) -> ModelFacts:
        """Every parameter name of the whole model the config builds."""

    def state_shapes(self, module_cfg: dict, scope_hint: str | None) -> list[list] | None:
        """Every tensor of the module's state dict (what a checkpoint loads into it), as
        ``[name, shape]`` in the module's order."""

    def optimizer_settings(self, module_cfg: dict, scope_hint: str | None, name: str,
                           optimizer_values: dict) -> dict[str, list] | None:
        """``[lr, weight_decay, elements]`` per trainable parameter of one module after ``train()``,
        from the stack's optimizer constructor."""

    def optimizer_error(self, values: dict) -> str | None:
        """Why the installed stack's optimizer constructor cannot build the config's optimizer, if it cannot."""

    def changes_nothing(self, values: dict, key: tuple[str, ...], value: Any) -> bool:
        """Whether the installed stack does the same when the resolved config ``values`` gains
        ``key=value``: True only where the code that reads the setting is known and shown to."""

    def zero_lr_peak(self, setting: str, cfg: Any, base_lr: float, epochs: int) -> float | None:
        """The highest lr a 0-lr parameter group reaches under one lr schedule (``setting``:
        ``'param_scheduler'``, one scheduler of the list; ``'lr_config'``, mmcv 1.x's hook), as the
        stack's runner runs it; None when this stack does not run such a schedule or cannot run it."""

    def ddp_accepts_static_graph(self) -> bool:
        """Whether the installed torch's DistributedDataParallel takes ``static_graph``."""

    # What is kept across runs and shared with forked workers.
    kept: dict[str, Any]

    def known(self) -> set[str]:
        """What is kept now; :meth:`learnt_since` it is what a forked worker sends back."""

    def learnt_since(self, known: set[str]) -> dict[str, Any]:
        """Answers learnt since :meth:`known` said ``known``."""

    def learn(self, answers: dict[str, Any]) -> None:
        """Keep what another process learnt."""

    def save(self) -> None:
        """Write what was learnt to the cache."""


def missing_from_environment(error: str) -> bool:
    """Whether an exception's text says the environment lacks something (a package, an op library),
    rather than that the config is wrong: such a failure may go away with no file changing."""
    return _MISSING.search(error) is not None


def facts_from_json(data: dict) -> ClassFacts | None:
    """A cached entry, or None when it is not readable (written by another freezefix version)."""
    try:
        data = dict(data)
        observed = data.pop("observed")
        stages = data.pop("stages")
        facts = ClassFacts(**data)
        facts.observed = FreezeState(**observed) if observed else None
        facts.stages = {int(k): FreezeState(**v) for k, v in stages.items()}
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    return facts


_FREEZE_FLAG = re.compile(r"(^|_)(freeze|frozen)(_|$)", re.IGNORECASE)


def detector_freeze_flags(model: Any) -> list[str]:
    """The detector's own freeze arguments that are on (UniAD-style ``freeze_img_backbone=True``,
    ``freeze_bn=True``), as ``name=value``: its code freezes, which modules built alone do not show."""
    return [f"{k}={v!r}" for k, v in (model.items() if isinstance(model, dict) else ())
            if _FREEZE_FLAG.search(k) and k != "frozen_stages" and v not in (None, False, 0, -1, "", [], {})]
