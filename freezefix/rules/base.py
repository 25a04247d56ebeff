"""What a rule is and what it returns.

A rule looks at one resolved config (a :class:`~freezefix.analysis.ConfigView`) and yields
findings.  A finding may carry a fix: changes to keys of the *resolved* config.  Rules never edit
files; the planner decides which file owns each key and whether a shared base may change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterator

from freezefix.analysis import ConfigView
from freezefix.config.locate import Key


class _Remove:
    def __repr__(self) -> str:
        return "REMOVE"

    def __reduce__(self) -> str:
        return "REMOVE"  # unpickles as the module's singleton, so `value is REMOVE` survives processes


REMOVE: Any = _Remove()


@dataclass(frozen=True)
class Change:
    key: Key  # in the resolved config of the checked file
    value: Any  # REMOVE deletes the key
    # The file whose own text must hold the value (FF111 restores settings in the file that lost
    # them); None lets the planner choose the file that writes the value now.
    written_in: Path | None = None

    def __hash__(self) -> int:  # values may be dicts (a new custom_keys entry)
        return hash((self.key, repr(self.value), self.written_in))


@dataclass(frozen=True)
class Fix:
    changes: tuple[Change, ...]
    safe: bool
    why_unsafe: str | None = None
    # Findings the fix knowingly leaves behind, as (code, module): giving SECOND lr 0 makes its
    # BatchNorm drift a finding (FF105) that no config setting can fix.  The write gate accepts
    # these; any other new finding after the rewrite fails it.
    announces: tuple[tuple[str, str], ...] = ()


@dataclass
class Finding:
    code: str
    name: str
    message: str
    key: Key  # the key the finding is about (reported where it is written)
    fix: Fix | None = None
    module: str | None = None
    # Where to report it, when that is not where ``key`` is written: FF111's key is the name whose
    # first binding was dropped, which the resolved config attributes to the live binding.
    at: tuple[Path, int, int] | None = None


@dataclass(frozen=True)
class Example:
    """A single-file config a rule's tests load; ``fixed`` is the file after ``apply``."""

    source: str
    fixed: str | None = None
    freeze: tuple[str, ...] = ()
    unsafe_fixes: bool = False


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
    VALID: ClassVar[list[Example]] = []
    INVALID: ClassVar[list[Example]] = []

    def check(self, view: ConfigView, options: Options) -> Iterator[Finding]:
        raise NotImplementedError

    def finding(self, message: str, key: Key, fix: Fix | None = None, module: str | None = None,
                at: tuple[Path, int, int] | None = None) -> Finding:
        return Finding(self.code, self.name, message, key, fix, module, at)


def run_rules(view: ConfigView, rules: list[Rule], options: Options) -> tuple[list[Finding], list[tuple[str, str]]]:
    """Every rule on one config: the findings, and (code, 'ExcType: message') for each rule that raised.
    One rule's crash must not hide the others, nor end a run: check and the write gate both run rules here."""
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
    reason = view.resumes
    if reason:
        return (
            f"the config resumes a run ({reason}): a checkpoint saved before the fix holds optimizer "
            "state for different param groups and cannot be loaded after it"
        )
    return None


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
