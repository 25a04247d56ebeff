"""Whether a setting would change anything: what the code that reads it does with and without it.

FF111 reports settings a second binding of a name dropped.  A dropped setting whose value is what
its consumer does anyway is no loss (``auto_scale_lr = dict(enable=False)`` rebound without
``enable``: mmengine's ``Runner.scale_lr`` returns unless ``enable`` is truthy).  Three consumers
are known, and each is asked of the installed stack, never written down here:

- a model class (``model.backbone.norm_eval``): the default its ``__init__`` declares, when the
  resolved config leaves the argument out;
- the optimizer constructor (``paramwise_cfg.norm_decay_mult``, a custom key's ``lr_mult``, the
  optimizer's own arguments): measured, by building what the stack's constructor builds for a small
  module with every kind of parameter those settings tell apart, with and without the setting;
- the Runner's top-level settings (``auto_scale_lr``, ``default_hooks``): the stack runs its
  Runner's own code on both (:meth:`freezefix.stacks.Stack.runner_does_the_same`).

Anything else is unknown, and counts as a change.
"""

from __future__ import annotations

import warnings
from typing import Any

from freezefix.paramwise import optimizer_roots
from freezefix.building import describe_error
from freezefix.classes import UNREADABLE, declared_parameter, find_class
from freezefix.config.locate import same_setting
from freezefix.config.plain import get_in
from freezefix.ftypes import Change, Key
from freezefix.plan import apply_change
from freezefix.stacks import current, stack_name

# paramwise_cfg settings the probe module below tells apart (each kind of parameter is in it):
# with one of these, the groups the constructor builds show everything the setting does.  Others
# (dcn_offset_lr_mult needs a deformable convolution; bypass_duplicate, shared parameters) are unknown.
_EXERCISED = ("bias_lr_mult", "bias_decay_mult", "norm_decay_mult", "dwconv_decay_mult", "flat_decay_mult",
              "custom_keys")


def changes_nothing(values: dict, key: Key, value: Any) -> bool:
    """Whether the installed stack does the same when the resolved ``values`` gain ``key=value``
    (absent from them, or set otherwise there).  True only where the consumer of ``key`` is known
    and shown to behave the same; an error along the way is a no."""
    after = apply_change(values, Change(key, value))
    try:
        if key[0] == "model":
            return _declared_default_holds(values, key, value)
        root = optimizer_roots(values, stack_name())[0]
        if key[: len(root)] == root:
            return _optimizer_unchanged(values, after, key[len(root):])
        return current().runner_does_the_same(key[0], values.get(key[0]), after.get(key[0]), values)
    except Exception:  # noqa: BLE001 - what could not be shown is a change
        return False


def _declared_default_holds(values: dict, key: Key, value: Any) -> bool:
    """The resolved config leaves the argument out of a module dict, and its class declares
    ``value`` as the argument's default."""
    holder = get_in(values, key[:-1])
    if not isinstance(holder, dict) or key[-1] in holder or not isinstance(holder.get("type"), str):
        return False
    scope = holder.get("_scope_") or values.get("default_scope")
    cls, _ = find_class(holder["type"], scope if isinstance(scope, str) else None)
    declared = declared_parameter(cls, key[-1])
    if declared is None or declared is UNREADABLE or declared.default is declared.empty:
        return False
    return same_setting(declared.default, value)


def _optimizer_unchanged(before: dict, after: dict, within: Key) -> bool:
    """``within``: the key below the optimizer setting (``optim_wrapper`` / mmcv 1.x ``optimizer``)."""
    mmcv1_era = optimizer_roots(before, stack_name())[0] == ("optimizer",)  # its top holds the optimizer's own arguments
    if not within or within[0] == "constructor" or (not mmcv1_era and within[0] not in ("optimizer", "paramwise_cfg")):
        return False  # a custom constructor may read anything; the wrapper's clipping is not measured
    if within[0] == "paramwise_cfg" and (len(within) < 2 or within[1] not in _EXERCISED):
        return False
    measured = [_groups(config) for config in (before, after)]
    return None not in measured and measured[0] == measured[1]


def optimizer_error(values: dict) -> str | None:
    """Why the stack's optimizer constructor cannot build the config's optimizer (an ``AdamW`` merged
    onto a base ``SGD`` dict keeps its ``momentum``: ``TypeError``), for any model: the Runner stops
    there.  None when it builds, when the config has no optimizer setting the stack reads, or when
    it names its own constructor (which may read the real model: ConvNeXt's layer-wise decay reads
    ``model.backbone``), since then a failure on the probe module proves nothing."""
    root = optimizer_roots(values, stack_name())[0]
    holder = values.get(root[0])
    if isinstance(holder, dict) and holder.get("constructor") is not None:
        return None
    try:
        _built_optimizer(values)
    except LookupError:
        return None  # no optimizer setting at all
    except Exception as exc:  # noqa: BLE001 - the constructor's own error is the answer
        return describe_error(exc)
    return None


def _built_optimizer(values: dict) -> tuple[Any, Any, list[str]]:
    """(the probe module, the optimizer the stack's constructor builds for it from ``values``, the
    config's custom keys)."""
    root = optimizer_roots(values, stack_name())[0]
    holder = values.get(root[0]) if isinstance(values.get(root[0]), dict) else {}
    paramwise = holder.get("paramwise_cfg") if isinstance(holder.get("paramwise_cfg"), dict) else {}
    keys = list(paramwise.get("custom_keys") or {}) if isinstance(paramwise.get("custom_keys"), dict) else []
    module = _probe_module(keys)
    stack = current()
    stack.quiet()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return module, stack.build_optimizer(module, values)[0], keys


def _groups(values: dict) -> tuple | None:
    """What the stack's constructor makes of the config's optimizer for the probe module: the
    optimizer's class and each parameter's hyper-parameters.  None when it cannot be shown (a
    custom key that matches nothing there)."""
    module, optimizer, keys = _built_optimizer(values)
    names = {id(p): n for n, p in module.named_parameters()}
    if not all(any(key in name for name in names.values()) for key in keys):
        return None
    settings = sorted((names[id(p)], sorted((k, repr(v)) for k, v in group.items() if k != "params"))
                      for group in optimizer.param_groups for p in group["params"])
    return type(optimizer).__name__, tuple((name, tuple(items)) for name, items in settings)


def _probe_module(custom_keys: list[str]) -> Any:
    """A small module with every kind of parameter paramwise settings tell apart (a convolution's
    weight and bias, BatchNorm and LayerNorm, a depthwise convolution, a linear layer), and a
    parameter for each custom key, under a module path that spells the key where it can."""
    from torch import nn

    holder = nn.Module()
    holder.add_module("conv", nn.Conv2d(4, 4, 3))
    holder.add_module("bn", nn.BatchNorm2d(4))
    holder.add_module("ln", nn.LayerNorm(4))
    holder.add_module("dw", nn.Conv2d(4, 4, 3, groups=4))
    holder.add_module("linear", nn.Linear(4, 4))
    for key in custom_keys:
        if any(key in name for name, _ in holder.named_parameters()):
            continue
        node = holder
        try:
            for part in (p for p in key.split(".") if p):
                child = dict(node.named_children()).get(part)
                if child is None:
                    child = nn.Module()
                    node.add_module(part, child)
                node = child
            node.add_module("linear", nn.Linear(2, 2))
        except (KeyError, TypeError):  # a part that is an attribute of Module ('train', 'forward')
            continue
    return holder
