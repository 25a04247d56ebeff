"""The facts rules ask for, answered by the installed stack and kept on disk.

:class:`Prober` is the :class:`freezefix.facts.FactsSource` of a run: every question a rule may ask
(what a class freezes, the whole model's parameter names, the lr the stack's optimizer constructor
gives, how a schedule runs, ...) is a typed method, answered once per (question, package versions)
and kept in the probe cache (:class:`KeptAnswers`: what is kept, shared with forked workers, and
what an answer depends on while one config is judged).  How classes are built to answer is :mod:`freezefix.class_probe`.

Each question has its key, written by the ``*_question`` functions here: the cache keeps answers
under it, and a table of recorded answers (``freezefix.testing.RecordedFacts``) looks them up by it.
An answer the environment decides (a class not found, a package missing) is kept only for the
environment of the config being judged (:func:`freezefix.cache.environment_key`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Iterator

from freezefix.cache import JsonCacheFile, environment_key, freezefix_source_digest, package_versions
from freezefix.class_probe import (
    KeptModules, clean_kwargs, has_plugin_init_weights, module_key, observe_whole_model, optimizer_settings,
    probe_class, shaping_args, state_shapes,
)
from freezefix.facts import ClassFacts, ModelFacts, detector_freeze_flags, facts_from_json
from freezefix.stacks import current, stack_name

_SCHEMA = 9  # bump when ClassFacts / FreezeState change shape: old cache files are then ignored


def class_question(module_cfg: dict, scope_hint: str | None, scan: bool, device: str) -> str:
    """What the facts of a module config are kept under: its type, scope, arguments that shape
    the module (not weights to load), and the device the probe builds on."""
    type_name = module_cfg.get("type")
    scope = module_cfg.get("_scope_") or scope_hint
    return json.dumps([type_name, scope, _args_key(module_cfg), scan, device])


def _args_key(module_cfg: dict) -> str:
    return repr(sorted(shaping_args(module_cfg).items()))


def model_question(values: dict, device: str) -> str:
    return json.dumps(["model", repr(values.get("model")), values.get("default_scope"), values.get("plugin_dir"),
                       repr(values.get("custom_imports")), device])


def memo_question(*parts: Any) -> str:
    """A question about the installed stack that is no class's facts (how a schedule runs, ...)."""
    return json.dumps(["memo", *parts], default=repr)


def optimizer_settings_question(module_cfg: dict, scope_hint: str | None, name: str, optimizer_values: dict,
                                device: str) -> str:
    scope = module_cfg.get("_scope_") or scope_hint
    return memo_question("optimizer-settings", module_cfg.get("type"), scope,
                         _args_key(module_cfg), name, repr(optimizer_values), device)


def state_shapes_question(module_cfg: dict, scope_hint: str | None, device: str) -> str:
    scope = module_cfg.get("_scope_") or scope_hint
    return memo_question("state-shapes", module_cfg.get("type"), scope, _args_key(module_cfg),
                         device)


def optimizer_error_question(values: dict) -> str:
    return memo_question("optimizer-error", repr(values.get("optim_wrapper")), repr(values.get("optimizer")))


def changes_nothing_question(values: dict, key: tuple[str, ...], value: Any) -> str:
    return memo_question("changes-nothing", list(key), repr(value), hashlib.sha256(repr(values).encode()).hexdigest()[:16])


def zero_lr_peak_question(setting: str, cfg: Any, base_lr: float, epochs: int) -> str:
    return memo_question("zero-lr-peak", setting, repr(cfg), base_lr, epochs)


DDP_STATIC_GRAPH_QUESTION = memo_question("ddp-static-graph")


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


class KeptAnswers:
    """The answers a run gave, kept in the probe cache and shared with forked workers, and what they
    depend on while one config is judged (its plugins, its environment)."""

    def __init__(self, cache_dir: Path | None, record: bool):
        self.file = FactsFile(cache_dir)
        self.answered: dict[str, Any] | None = {} if record else None  # question → answer, when recording
        self._config = _Judging()

    # -- one config at a time --------------------------------------------------------------------
    @contextlib.contextmanager
    def judging(self, values: dict, config_path: Path, import_plugins: Callable[[], list[str]]) -> Iterator[None]:
        """While one config is judged: its plugins are imported before the first build a cache miss
        needs (never when every answer is kept), and answers the environment decides are kept for
        its environment."""
        self._config = _Judging(import_plugins, lambda: environment_key(values, config_path))
        try:
            yield
        finally:
            self._config = _Judging()

    # -- what is kept, and shared with forked workers -------------------------------------------------
    @property
    def kept(self) -> dict[str, Any]:
        """Every answer kept (the probe cache): the resolver keeps what only the installed packages
        decide there too (where a ``pkg::`` base is)."""
        return self.file.entries

    def known(self) -> set[str]:
        """What is kept now: a forked worker sends back what it learnt since (:meth:`learnt_since`)."""
        return set(self.file.entries)

    def learnt_since(self, known: set[str]) -> dict[str, Any]:
        return {k: v for k, v in self.file.entries.items() if k not in known}

    def learn(self, answers: dict[str, Any]) -> None:
        self.file.entries.update(answers)

    def save(self) -> None:
        self.file.save()

    def _remembered(self, question: str, compute: Callable[[], Any]) -> Any:
        """``compute()``'s JSON-able answer to ``question``, once per question and package versions."""
        disk = self.file.entries
        if question not in disk:
            self._config.prepare()
            disk[question] = compute()
        if self.answered is not None:
            self.answered[question] = disk[question]
        return disk[question]

    def _kept(self, question: str, decode: Callable[[Any], Any]) -> Any:
        """The kept answer to ``question``, decoded (None: none, or one written by another freezefix),
        for any environment or for the one of the config being judged."""
        disk = self.file.entries
        for key in (question, self._config.in_environment(question)):
            if key is not None and key in disk:
                answer = decode(disk[key])
                if answer is not None:
                    if self.answered is not None:
                        self.answered[question] = disk[key]
                    return answer
        return None

    def _keep(self, question: str, answer: Any, for_environment: bool = False) -> None:
        key = self._config.in_environment(question) if for_environment else question
        if key is not None:
            self.file.entries[key] = answer
        if self.answered is not None:
            self.answered[question] = answer


class Prober(KeptAnswers):
    """Answers the rules' questions by building the installed stack's classes; thread-unsafe, one
    per process.  ``record``: keep every answer given (:attr:`answered`), for a table of recorded facts."""

    def __init__(self, cache_dir: Path | None = None, device: str = "meta", record: bool = False):
        super().__init__(cache_dir, record)
        self.device = device
        self.memory: dict[str, ClassFacts] = {}
        self.kept_modules = KeptModules()
        self.classes_built = 0  # classes probed this process (each costs builds): tests count them

    # -- which stack answers ------------------------------------------------------------------------
    @property
    def stack(self) -> str:
        return stack_name()

    @property
    def lr_schedule(self) -> str:
        return current().lr_schedule

    # -- the questions ---------------------------------------------------------------------------
    def facts(self, module_cfg: dict, scope_hint: str | None = None, scan: bool = True) -> ClassFacts:
        type_name = module_cfg.get("type")
        if not isinstance(type_name, str):
            return ClassFacts(type_name=repr(type_name), import_error="type is not a string")
        question = class_question(module_cfg, scope_hint, scan, self.device)
        facts = self.memory.get(question)
        if facts is None:
            facts = self._kept(question, facts_from_json)
        if facts is None:
            self._config.prepare()
            self.classes_built += 1
            facts = probe_class(type_name, module_cfg.get("_scope_") or scope_hint, clean_kwargs(module_cfg), scan,
                                self.device, self.kept_modules)
            # Not found is no fact about the class: a plugin imported later (this run, or after the
            # user repairs it, or installs what the class needs) may register it.
            if facts.transient or (facts.unbuildable is not None and self._config.plugins_missing):
                facts.environment_notes = list(self._config.plugin_notes)
                self._keep(question, asdict(facts), for_environment=True)
                return facts
            self._keep(question, asdict(facts))
        self.memory[question] = facts
        return facts

    def model(self, values: dict, config_path: Path) -> ModelFacts:
        """Build the whole model once per (model dict, scope, plugins) and list its parameters."""
        question = model_question(values, self.device)
        kept = self._kept(question, _model_facts)
        if kept is not None:
            return kept
        from freezefix.models import build

        self._config.prepare()
        built = build(values, config_path, device=self.device)
        facts = ModelFacts(notes=list(built.notes))
        if built.model is not None:
            facts.param_names = [n for n, _ in built.model.named_parameters()]
            facts.complete = built.level == "model"
            if facts.complete and detector_freeze_flags(values.get("model")):  # what its own code freezes
                model = built.model
                if has_plugin_init_weights(model) and built.device == "meta":
                    on_cpu = build(values, config_path, device="cpu")
                    model = on_cpu.model if on_cpu.model is not None and on_cpu.level == "model" else model
                facts.modules, note = observe_whole_model(model)
                facts.notes.extend([note] if note else [])
        elif built.error:
            facts.notes.append(built.error)
        # A failure that installing something may undo is kept for this environment only.
        self._keep(question, asdict(facts),
                   for_environment=facts.transient or (not facts.complete and self._config.plugins_missing))
        return facts

    def optimizer_settings(self, module_cfg: dict, scope_hint: str | None, name: str,
                           optimizer_values: dict) -> dict[str, list] | None:
        """``[lr, weight_decay]`` of each trainable parameter of one module, named as in the model
        (``img_backbone.layer1.0.bn1.weight``), from the installed stack's own optimizer constructor run
        on the module built alone under its model name, after ``train()``.  ``optimizer_values`` holds
        the config's ``optim_wrapper`` / ``optimizer``.  None when the module or optimizer cannot be built."""
        if not isinstance(module_cfg.get("type"), str):
            return None

        def compute() -> dict[str, list] | None:
            *module, built = self._kept_module(module_cfg, scope_hint)
            return optimizer_settings(*module, name, optimizer_values, self.device, built)

        return self._remembered(
            optimizer_settings_question(module_cfg, scope_hint, name, optimizer_values, self.device), compute)

    def state_shapes(self, module_cfg: dict, scope_hint: str | None) -> list[list] | None:
        if not isinstance(module_cfg.get("type"), str):
            return None

        def compute() -> list[list] | None:
            *module, built = self._kept_module(module_cfg, scope_hint)
            return state_shapes(*module, self.device, built)

        return self._remembered(state_shapes_question(module_cfg, scope_hint, self.device), compute)

    def _kept_module(self, module_cfg: dict, scope_hint: str | None) -> tuple[str, str | None, dict, Any]:
        """(type, scope, arguments, the module last built with them or None) of a module config whose
        type is a name: asked only when an answer is not kept (the arguments are copied)."""
        type_name = module_cfg["type"]
        scope = module_cfg.get("_scope_") or scope_hint
        kwargs = clean_kwargs(module_cfg)
        return type_name, scope, kwargs, self.kept_modules.get(module_key(type_name, scope, kwargs))

    def optimizer_error(self, values: dict) -> str | None:
        """Why the stack's constructor cannot build the config's optimizer, once per optimizer setting."""
        def compute() -> str | None:
            from freezefix.consumers import optimizer_error  # libcst and the stack: only on a miss

            return optimizer_error(values)

        return self._remembered(optimizer_error_question(values), compute)

    def changes_nothing(self, values: dict, key: tuple[str, ...], value: Any) -> bool:
        """Whether the installed stack does the same when the resolved ``values`` gain ``key=value``
        (see :mod:`freezefix.consumers`), asked once per config and setting."""
        def compute() -> bool:
            from freezefix.consumers import changes_nothing  # libcst and the stack: only on a miss

            return changes_nothing(values, key, value)

        return self._remembered(changes_nothing_question(values, key, value), compute)

    def zero_lr_peak(self, setting: str, cfg: Any, base_lr: float, epochs: int) -> float | None:
        """The highest lr a 0-lr group reaches under one schedule, run the way the stack's runner
        runs it (:meth:`freezefix.stacks.Stack.zero_lr_peak`)."""
        return self._remembered(zero_lr_peak_question(setting, cfg, base_lr, epochs),
                                lambda: current().zero_lr_peak(setting, cfg, base_lr, epochs))

    def ddp_accepts_static_graph(self) -> bool:
        """Whether the installed torch's DistributedDataParallel takes ``static_graph``."""
        return self._remembered(DDP_STATIC_GRAPH_QUESTION, _ddp_accepts_static_graph)


class _Judging:
    """What the prober holds about the config being judged: how to import its plugins (once, before
    the first build a cache miss needs), whether they imported, and its environment key."""

    def __init__(self, import_plugins: Callable[[], list[str]] | None = None,
                 environment: Callable[[], str] | None = None):
        self._import_plugins = import_plugins
        self._environment = environment
        self._environment_key: str | None = None
        self.plugin_notes: list[str] = []  # why its plugins did not import

    @property
    def plugins_missing(self) -> bool:
        # A build that fails may fail for want of a class a plugin that did not import would register.
        return bool(self.plugin_notes)

    def prepare(self) -> None:
        prepare, self._import_plugins = self._import_plugins, None
        if prepare is not None:
            self.plugin_notes = list(prepare())

    def in_environment(self, question: str) -> str | None:
        """``question`` as kept for this config's environment; None outside a config's judging."""
        if self._environment is None:
            return None
        if self._environment_key is None:
            self._environment_key = self._environment()
        return json.dumps(["environment", self._environment_key, question])


def _model_facts(data: Any) -> ModelFacts | None:
    try:
        return ModelFacts.from_json(data)
    except (TypeError, AttributeError):
        return None


def _ddp_accepts_static_graph() -> bool:
    import inspect

    from torch.nn.parallel import DistributedDataParallel

    return "static_graph" in inspect.signature(DistributedDataParallel.__init__).parameters
