"""What ``paramwise_cfg.custom_keys`` gives a parameter, as mmengine's and mmcv 1.x's optimizer
constructors decide it: where the settings live for each stack, and which key a parameter matches.
Kept free of config loading so the verification worker can credit each lr to its key."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from freezefix.ftypes import Key


@dataclass
class Optimizer:
    """Where param-wise settings live: ``optim_wrapper=`` (mmengine) or ``optimizer=`` (mmcv 1.x)."""

    era: str  # 'mmengine' | 'mmcv1'
    root: Key
    custom_keys: dict[str, dict]
    type_name: str = "optimizer"  # the torch optimizer it names: 'AdamW'
    # Every rule asks about every parameter of every module: match once per name.
    _matches: dict[str, str | None] = field(default_factory=dict, repr=False, compare=False)
    _ordered: list[str] | None = field(default=None, repr=False, compare=False)

    @property
    def custom_keys_key(self) -> Key:
        return (*self.root, "paramwise_cfg", "custom_keys")

    def ordered_keys(self) -> list[str]:
        # mmengine and mmcv 1.x: longest key first, ties alphabetical; first substring match wins.
        return sorted(sorted(self.custom_keys), key=len, reverse=True)

    def match(self, param_name: str) -> str | None:
        if param_name not in self._matches:
            if self._ordered is None:
                self._ordered = self.ordered_keys()
            self._matches[param_name] = next((k for k in self._ordered if k in param_name), None)
        return self._matches[param_name]

    def lr_mult(self, param_name: str) -> float:
        key = self.match(param_name)
        return 1.0 if key is None else key_lr_mult(self.custom_keys[key])

    def at_lr_mult_zero(self, prefix: str, names: list[str]) -> list[str]:
        """Those of ``names`` whose parameter ``prefix + name`` gets lr_mult 0."""
        if not self.custom_keys:
            return []
        return list(_at_lr_mult_zero(prefix, tuple(names), self._lr_mults()))

    def count_lr_mults(self, names: list[str]) -> Counter:
        """lr_mult → how many of ``names`` get it."""
        if not self.custom_keys:
            return Counter({1.0: len(names)})
        # Every rule asks this of the same modules, and the configs of a repository share their
        # backbones and custom keys: counted once per (parameter names, the keys' lr_mults).
        return Counter(_count_lr_mults(tuple(names), self._lr_mults()))  # a copy: callers may change theirs

    def _lr_mults(self) -> tuple[tuple[str, float], ...]:
        """(custom key, its lr_mult): all that decides an lr_mult, hashable for the caches below."""
        return tuple((k, key_lr_mult(v)) for k, v in self.custom_keys.items())


def key_lr_mult(setting: Any) -> float:
    """The lr_mult a custom key's setting gives (1.0 unless it says)."""
    return float(setting.get("lr_mult", 1.0)) if isinstance(setting, dict) else 1.0


def optimizer_roots(values: dict, stack: str) -> tuple[Key, Key]:
    """(the optimizer setting ``stack``'s runner reads, the one it ignores): mmengine's Runner
    builds ``optim_wrapper`` and never looks at a top-level ``optimizer``; mmcv 1.x's the reverse.
    Only a config that has both is judged by the stack; one that has either is read as written."""
    read: Key = ("optim_wrapper",)
    ignored: Key = ("optimizer",)
    if stack == "mmcv1":
        read, ignored = ignored, read
    if isinstance(values.get(read[0]), dict) or not isinstance(values.get(ignored[0]), dict):
        return read, ignored
    # A config of the other era (it has only the other setting): judged as the era it was written for.
    return ignored, read


def optimizer_of(values: dict, stack: str) -> Optimizer | None:
    """Where the config's param-wise settings live for ``stack``, and its custom keys; None without an optimizer."""
    root = optimizer_roots(values, stack)[0]
    holder = values.get(root[0])
    if not isinstance(holder, dict):
        return None
    era = "mmengine" if root == ("optim_wrapper",) else "mmcv1"
    paramwise = holder.get("paramwise_cfg")
    keys = paramwise.get("custom_keys") if isinstance(paramwise, dict) else None
    optimizer = holder.get("optimizer") if era == "mmengine" else holder
    named = optimizer.get("type") if isinstance(optimizer, dict) else None
    return Optimizer(era, root, dict(keys) if isinstance(keys, dict) else {}, str(named) if named else "optimizer")


@lru_cache(maxsize=4096)  # a process checking many repositories keeps the last ones
def _count_lr_mults(names: tuple[str, ...], mults: tuple[tuple[str, float], ...]) -> Counter:
    """lr_mult → how many of ``names`` get it under custom keys with these lr_mults."""
    return Counter(_matcher(mults).lr_mult(n) for n in names)


@lru_cache(maxsize=4096)
def _at_lr_mult_zero(prefix: str, names: tuple[str, ...], mults: tuple[tuple[str, float], ...]) -> tuple[str, ...]:
    matcher = _matcher(mults)
    return tuple(n for n in names if matcher.lr_mult(prefix + n) == 0)


def _matcher(mults: tuple[tuple[str, float], ...]) -> Optimizer:
    return Optimizer("", (), {key: {"lr_mult": mult} for key, mult in mults})
