"""What the rules may know about the classes a config names, and the interface they ask it through.

:class:`ClassFacts` (what ``frozen_stages`` freezes, the parameters, the arguments a class takes),
:class:`ModelFacts` (the whole model's parameter names) and :class:`FactsSource`, which
:class:`freezefix.probe.Prober` implements by building the installed stack's classes.  Plain values
only: they are kept in the probe cache as JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

MAX_PROBED_STAGES = 8


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


@dataclass
class ModelFacts:
    """Every parameter name of a whole model (for custom_keys matching)."""

    param_names: list[str] = field(default_factory=list)
    complete: bool = False  # the detector itself was built (not only some of its modules)
    notes: list[str] = field(default_factory=list)


@dataclass
class ClassFacts:
    type_name: str
    class_path: str | None = None  # 'mmdet.models.backbones.resnet.ResNet'
    scope: str | None = None  # registry scope the class was found in
    error: str | None = None  # why the class could not be built with the config's arguments
    import_error: str | None = None  # why the class could not even be looked up
    accepts_frozen_stages: bool = False
    accepts_norm_eval: bool = False
    total_params: int = 0
    param_names: list[str] = field(default_factory=list)
    observed: FreezeState | None = None  # with the config's own arguments
    stages: dict[int, FreezeState] = field(default_factory=dict)  # frozen_stages → state
    first_invalid: int | None = None  # smallest frozen_stages ≥ 0 that fails to build
    full_freeze: int | None = None  # smallest frozen_stages leaving the fewest trainable params
    observed_stage: int | None = None  # the config's own frozen_stages, if it gives one
    scanned: bool = False  # stages holds every value from -1 up (else only what was needed)
    device: str = "meta"

    @property
    def available(self) -> bool:
        return self.import_error is None

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
    """What rules may ask about the classes a config names.  :class:`Prober` answers by building
    the installed stack's classes; the tests' table of recorded answers answers without a stack."""

    # Called before the first answer that needs a build (a config's plugins are imported there).
    before_building: Callable[[], None] | None

    def facts(self, module_cfg: dict, scope_hint: str | None = None, scan: bool = True) -> ClassFacts:
        """What the module's class freezes for each ``frozen_stages``, its parameters, arguments it takes."""

    def model(self, values: dict, config_path: Path) -> ModelFacts:
        """Every parameter name of the whole model the config builds."""

    def optimizer_settings(self, module_cfg: dict, scope_hint: str | None, name: str,
                           optimizer_values: dict) -> dict[str, list] | None:
        """``[lr, weight_decay]`` per trainable parameter of one module, from the stack's optimizer constructor."""

    def remembered(self, key: list, compute: Callable[[], Any]) -> Any:
        """``compute()``'s JSON-able answer to a question about the installed stack, asked once."""


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
