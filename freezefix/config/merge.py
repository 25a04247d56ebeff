"""How mmengine combines a config with its bases, re-implemented on plain dicts (mmengine's own
helpers work on ConfigDicts, which cost many times more to build for every child of a repository):
``_base_`` as an attribute dict, ``_delete_`` merging, ``{{_base_.x}}`` placeholders."""

from __future__ import annotations

import copy
from typing import Any, Callable

from freezefix.config.errors import DELETE_KEY
from freezefix.config.plain import map_tree

class AttrDict(dict):
    """What ``_base_`` is inside a config: a dict whose keys read as attributes (``_base_.model``).

    mmengine hands configs a ConfigDict; this plain-dict subclass behaves the same for what configs
    do with it (read, copy, update) and costs a fraction to build for every child.
    """

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"'ConfigDict' object has no attribute '{name}'") from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __delattr__(self, name: str) -> None:  # `del _base_.tta_model` drops a key from the bases
        try:
            del self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __deepcopy__(self, memo: dict) -> AttrDict:
        return AttrDict({copy.deepcopy(k, memo): copy.deepcopy(v, memo) for k, v in self.items()})


def attr_copy(value: Any, scope: str | None = None) -> Any:
    """Copy of plain config data with dicts as AttrDicts; for a ``pkg::`` base, the outermost dicts
    with a ``type`` get ``_scope_`` as mmengine's ``_dict_to_config_dict`` gives them."""
    def scoped(node: dict, recurse: Callable[[Any], Any], has_scope: bool = True) -> AttrDict:
        out = AttrDict()
        if has_scope and "type" in node:
            has_scope = False
            if scope is not None and node.get("_scope_") is None:
                out["_scope_"] = scope
        # below a dict with a type, no dict gets a scope (mmengine sets the outermost only)
        inner = recurse if has_scope else (lambda v: map_tree(v, on_dict=lambda d, r: scoped(d, r, False)))
        for k, v in node.items():
            if k == "_scope_" and k in out:
                continue
            out[k] = inner(v)
        if "_scope_" in out and list(out)[0] == "_scope_" and "_scope_" not in node:
            # mmengine appends the key after the existing ones.
            out["_scope_"] = out.pop("_scope_")
        return out

    return map_tree(value, on_dict=scoped)


def merge_a_into_b(a: dict, b: dict) -> dict:
    """mmengine's ``Config.merge_a_into_b`` (allow_list_keys=False) on plain dicts."""
    b = dict(b)
    for k, v in a.items():
        if isinstance(v, dict):
            if k in b and not v.pop(DELETE_KEY, False):
                if not isinstance(b[k], dict):
                    raise TypeError(
                        f"{k}={v} in child config cannot inherit from base because {k} is a dict in the "
                        f"child config but is of type {type(b[k])} in base config. You may set "
                        f"`{DELETE_KEY}=True` to ignore the base config."
                    )
                b[k] = merge_a_into_b(v, b[k])
            else:
                b[k] = v
        else:
            b[k] = v
    return b


def substitute_base_vars(cfg: Any, placeholders: dict[str, str], base_cfg: dict) -> Any:
    """mmengine's ``Config.substitute_base_vars``: placeholder strings → the base values they name."""
    def base_value(value: Any) -> Any:
        if isinstance(value, str) and value in placeholders:
            node = base_cfg
            for part in placeholders[value].split("."):
                node = node[part]
            return node
        return value

    return map_tree(cfg, base_value, lambda d, recurse: type(d)({k: recurse(v) for k, v in d.items()}))
