"""What a rule is and what it returns.

A rule looks at one resolved config (a :class:`~freezefix.analysis.ConfigView`) and yields
findings.  A finding may carry a fix: changes to keys of the *resolved* config.  Rules never edit
files; the planner decides which file owns each key and whether a shared base may change.
"""

from __future__ import annotations

import inspect
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Iterator

from freezefix.analysis import ConfigView, Module
from freezefix.facts import ClassFacts
from freezefix.ftypes import REMOVE, Change, Finding, Fix, Key

__all__ = ["REMOVE", "Change", "Checkpoint", "Finding", "Fix", "Invalid", "Options", "Rule", "Valid", "registry", "run_rules"]


ALL_STACKS = ("mmengine", "mmcv1")


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint an example's config loads, which the test harness writes with ``torch.save`` from
    the real class built on the CPU (``module``: its config), as a training run would have saved it."""

    path: str  # relative to the example's directory, where the example runs
    module: dict
    prefix: str = ""  # every key under it ('backbone.': a detector's checkpoint; 'module.backbone.': DDP's)
    nest: str | None = "state_dict"  # the entry the weights are under (mmengine / mmcv 1.x); None: a bare state dict
    drop: tuple[str, ...] = ()  # keys (relative to the module) starting with these are left out
    reshape: tuple[str, ...] = ()  # keys saved with one more row than the module has


@dataclass(frozen=True)
class Valid:
    """A single-file config the rule must accept (``freeze``: the freeze policy it is checked with)."""

    source: str
    freeze: tuple[str, ...] = ()
    unsafe_fixes: bool = False
    stacks: tuple[str, ...] = ALL_STACKS  # the stacks it holds on (what a stack's runner reads differs)
    # Files written beside the config, as (relative path, text): the plugin package its plugin_dir
    # names, for a shape only a detector's own code makes.
    beside: tuple[tuple[str, str], ...] = ()
    checkpoints: tuple[Checkpoint, ...] = ()  # written beside the config by the test harness


@dataclass(frozen=True)
class Invalid:
    """A single-file config the rule must report: at ``line``:``col`` (1-based, where the finding is
    written), with ``message`` in its text; ``fixed`` is the file after ``apply`` (None: no fix is
    applied, the file must stay as it is)."""

    source: str
    line: int
    col: int
    message: str
    fixed: str | None = None
    freeze: tuple[str, ...] = ()
    unsafe_fixes: bool = False
    stacks: tuple[str, ...] = ALL_STACKS
    beside: tuple[tuple[str, str], ...] = ()  # as Valid's
    checkpoints: tuple[Checkpoint, ...] = ()  # as Valid's


@dataclass
class Options:
    freeze: tuple[str, ...] = ()  # policy: modules the user wants fully frozen


class Rule:
    """Base class: subclasses set the class attributes and implement :meth:`check`.

    The docstring of a subclass is its documentation (What / Why / Example / Fix safety), shown by
    ``freezefix rules CODE``.
    """

    code: ClassVar[str]
    name: ClassVar[str]
    summary: ClassVar[str]
    VALID: ClassVar[list[Valid]] = []
    INVALID: ClassVar[list[Invalid]] = []

    # The fix in a few words, for the README's rule table (scripts/document_rules.py).
    fix_summary: ClassVar[str] = "reported"
    # The rule judges what frozen modules need, whatever froze them: a fix that freezes a module (or
    # makes it buildable) may uncover its finding, which was there all along; the write gate accepts it.
    uncovered_by_freezing: ClassVar[bool] = False

    def check(self, view: ConfigView, options: Options) -> Iterator[Finding]:
        raise NotImplementedError

    @classmethod
    def documentation(cls) -> str:
        """The docstring below its title line: the What / Why / Example / Fix safety sections."""
        doc = inspect.cleandoc(cls.__doc__ or "")
        return doc.split("\n", 1)[1].strip("\n") if "\n" in doc else ""

    @classmethod
    def sections(cls) -> dict[str, str]:
        """``documentation`` by heading (a line that is not indented), bodies dedented."""
        sections: dict[str, list[str]] = {}
        heading = None
        for line in cls.documentation().splitlines():
            if line and not line[0].isspace():
                heading = line.strip()
                sections[heading] = []
            elif heading is not None:
                sections[heading].append(line)
        return {h: textwrap.dedent("\n".join(body)).strip() for h, body in sections.items()}

    def finding(self, message: str, key: Key, fix: Fix | None = None, module: str | None = None,
                at: tuple[Path, int, int] | None = None) -> Finding:
        return Finding(self.code, self.name, message, key, fix, module, at)


def run_rules(view: ConfigView, rules: list[Rule], options: Options) -> tuple[list[Finding], list[tuple[str, str]]]:
    """Every rule on one config: the findings, and (code, 'ExcType: message') for each rule that raised.
    One rule's crash must not hide the others, nor end a run (``freezefix.engine.judge`` runs every
    rule through here, for check and the write gate alike)."""
    findings: list[Finding] = []
    crashes: list[tuple[str, str]] = []
    for rule in rules:
        try:
            findings.extend(rule.check(view, options))
        except Exception as exc:  # noqa: BLE001 - reported per config by the caller
            crashes.append((rule.code, f"{type(exc).__name__}: {exc}"))
    return findings, crashes


def resume_hazard(view: ConfigView) -> str | None:
    """Fixes that change which params require grad change mmengine's param groups."""
    reason = view.settings.resumes
    if reason:
        return (
            f"the config resumes a run ({reason}): a checkpoint saved before the fix holds optimizer "
            "state for different param groups and cannot be loaded after it"
        )
    return None


def full_freeze_changes(view: ConfigView, module: Module, facts: ClassFacts, full: int) -> tuple[list[Change], str]:
    """The changes that set ``module``'s ``frozen_stages`` to its class's full-freeze value ``full``,
    and what the finding should add about them."""
    after = facts.stages[full]
    changes = [Change((*module.key, "frozen_stages"), full)]
    if after.constructed_trainable_params > after.trainable_params and not view.settings.finds_unused_parameters():
        # The class freezes only in train(): without this, DDP would wait for gradients that never
        # come (FF109), so the fix carries it.
        changes.append(Change(view.settings.find_unused_parameters, True))
        return changes, "; it freezes only in train(), so find_unused_parameters=True comes with it"
    return changes, ""


def full_freeze_hazards(view: ConfigView, facts: ClassFacts, full: int) -> list[str]:
    """Why raising a module to its full freeze changes more than which parameters compute gradients."""
    after, now = facts.stages[full], facts.observed
    reasons = []
    if now is not None and after.bn_training != now.bn_training:
        reasons.append(f"it also puts {now.bn_training - after.bn_training} BatchNorm layers "
                       "in eval mode (norm_eval is not True)")
    if resume_hazard(view):
        reasons.append(resume_hazard(view))
    return reasons


def checkpointed_trainable(view: ConfigView) -> list[tuple[Module, int]]:
    """Modules that checkpoint activations (``with_cp=True``) and keep trainable parameters after
    ``train()``, with how many: DDP with ``find_unused_parameters=True`` cannot train them (mmdet's
    and mmdet3d's backbones call torch's reentrant checkpoint).  Modules whose class could not be
    built are left out: nothing is claimed about them."""
    found = []
    for module in view.modules.values() if not view.hidden_freeze() else ():
        if module.cfg.get("with_cp") is not True:
            continue
        observed = view.facts(module).observed
        if observed is not None and observed.trainable_params > 0:
            found.append((module, observed.trainable_params))
    return found


def add_zero_lr_key(view: ConfigView, module_name: str) -> Change:
    """The change that gives ``module_name`` its own ``custom_keys`` entry with lr_mult 0.0."""
    root = view.optimizer.root if view.optimizer else ("optim_wrapper",)
    return Change((*root, "paramwise_cfg", "custom_keys", module_name), {"lr_mult": 0.0})


@dataclass
class Registry:
    rules: dict[str, Rule] = field(default_factory=dict)

    def add(self, rule_cls: type[Rule]) -> type[Rule]:
        self.rules[rule_cls.code] = rule_cls()
        return rule_cls


registry = Registry()


def fmt_count(n: int) -> str:
    return f"{n:,}"
