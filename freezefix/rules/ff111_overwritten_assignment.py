"""FF111 overwritten-assignment.

What
    A config file binds the same top-level name to a dict twice (``model = dict(...)`` … ``model =
    dict(...)``), the file never reads the name, and settings only the first dict wrote are not in
    force in the resolved config.

Why
    Python keeps only the last binding.  mmengine and mmcv merge dicts across ``_base_`` files, never
    within one file, so everything the first dict set and the last does not re-set is silently
    dropped: a whole freeze (``img_backbone=dict(frozen_stages=4)``) written above an "append these
    settings last" block never happens, and the base's ``frozen_stages=-1`` stays in force.  Only
    dropped settings that change what runs are reported: one the bases give anyway, or one whose
    value is what the code that reads it does without it, changes nothing.  That code is asked of
    the installed stack: a model class's declared default (ResNet's ``norm_eval=True``), the
    optimizer constructor's groups with and without the setting (``norm_decay_mult=1.0``), and the
    Runner's own ``scale_lr`` / ``register_default_hooks`` (``auto_scale_lr = dict(enable=False)``).
    Any other dropped setting is reported.

Example
    ``model = dict(backbone=dict(frozen_stages=4))`` then, lower in the same file,
    ``model = dict(neck=dict(num_outs=5))`` → the second dict gains ``backbone=dict(frozen_stages=4)``.

Fix safety
    Unsafe: it makes settings take effect that never did, which changes what trains.  The dropped
    entries are merged into the last (live) assignment, in the file that holds both; the write gate
    then proves the merged config on the real model (and may refuse it: ``frozen_stages`` on a class
    that rejects it).  A name the file reads anywhere is a variable, not a setting, and is left alone
    (``model = dict(**model, ...)``, ``backbone = model['backbone']``, a ``caption_prompt`` bound per
    dataset and read by each), as are rebindings inside ``if`` / ``for`` blocks and non-literal values.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

from freezefix.analysis import ConfigFile, ConfigView
from freezefix.config.locate import COMPUTED, CONTAINER, Key, literal_leaves, same_setting
from freezefix.config.plain import MISSING, get_in
from freezefix.config.reads import name_reads
from freezefix.rules.base import Change, Finding, Fix, Invalid, Options, Rule, Valid, registry

# `{{_base_.x}}` becomes a quoted placeholder before parsing: its value is the base's, not a literal.
_BASE_PLACEHOLDER = re.compile(r"^_[\w.]+_[0-9a-f]{6}$")
_SHOWN = 4  # dropped keys named in a message; the rest are counted

_FREEZE = "# freeze the backbone\nmodel = dict(backbone=dict(frozen_stages={fs}))\n"
_MODEL = """\
# the detector, pasted from the model zoo
model = dict(
    type='RetinaNet',
    backbone=dict(type='mmdet.ResNet', depth=18{fs}),  # ResNet-18
)
"""
_SCALE = "auto_scale_lr = dict(enable={enable})\nauto_scale_lr = dict(base_batch_size=16)\n"
_DECAY = ("optim_wrapper = dict(paramwise_cfg=dict(norm_decay_mult={mult}))\n"
          "optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.01, weight_decay=0.0001))\n")


@dataclass(frozen=True)
class Rebinding:
    """Two top-level bindings of ``name`` to dicts, the first one dead."""

    name: str
    first_line: int
    last_line: int
    # Every literal leaf the first dict writes and the last one does not re-set, with its value.
    dropped: tuple[tuple[Key, Any], ...]


@registry.add
class OverwrittenAssignment(Rule):
    __doc__ = __doc__
    code = "FF111"
    name = "overwritten-assignment"
    summary = "a dict bound twice in one file: the first binding's settings are dropped"
    fix_summary = "merge the lost entries into the live (last) dict, in that file (unsafe: they start to apply)"
    VALID = [
        Valid(_MODEL.format(fs="") + "model['backbone'].update(frozen_stages=4)\n"),
        Valid(_FREEZE.format(fs=4) + "model = dict(**model, type='RetinaNet')\n"),
        # the first dict is read before the second replaces it: a temporary, not a lost setting
        Valid(_FREEZE.format(fs=4) + "frozen = model['backbone']\n" + _MODEL.format(fs="")),
        # the live dict sets the same key itself
        Valid(_FREEZE.format(fs=-1) + _MODEL.format(fs=", frozen_stages=-1")),
        # what is dropped is what its reader does without it: mmengine's Runner.scale_lr returns
        # unless `enable` is truthy; ResNet's norm_eval defaults to True; a multiplier of 1.0
        Valid(_SCALE.format(enable=False)),
        Valid("model = dict(backbone=dict(norm_eval=True))\n" + _MODEL.format(fs="")),
        Valid(_DECAY.format(mult=1.0)),
    ]
    INVALID = [
        Invalid(_FREEZE.format(fs=4) + _MODEL.format(fs=""),
                fixed=_FREEZE.format(fs=4) + _MODEL.format(fs=", frozen_stages=4"), unsafe_fixes=True,
                line=2, col=1, message="is assigned at line 2 and again at line 4"),
        Invalid(_FREEZE.format(fs=4) + _MODEL.format(fs=""),
                line=2, col=1, message="is assigned at line 2 and again at line 4"),
        Invalid(_SCALE.format(enable=True), line=1, col=1, message="so enable=True never take effect"),
        Invalid(_DECAY.format(mult=0.0), line=1, col=1,
                message="so paramwise_cfg.norm_decay_mult=0.0 never take effect"),
    ]

    def check(self, view: ConfigView, options: Options) -> Iterator[Finding]:
        for file in view.files:
            for rebinding in rebindings(file):
                # A dropped setting whose value is what its reader does without it is no loss.
                lost = [(key, value) for key, value in rebinding.dropped
                        if not _in_force(view.values, key, value)
                        and not view.facts_source.changes_nothing(view.values, key, value)]
                if not lost:
                    continue
                shown = ", ".join(f"{'.'.join(key[1:])}={value!r}" for key, value in lost[:_SHOWN])
                more = f" and {len(lost) - _SHOWN} more" if len(lost) > _SHOWN else ""
                why_unsafe = "the dropped settings never took effect; restoring them changes what trains"
                yield self.finding(
                    f"`{rebinding.name}` is assigned at line {rebinding.first_line} and again at line "
                    f"{rebinding.last_line}: the second replaces the first (configs merge dicts only "
                    f"across _base_ files, never within one), so {shown}{more} never take effect",
                    (rebinding.name,),
                    Fix(tuple(Change(key, value, written_in=file.path) for key, value in lost),
                        safe=False, why_unsafe=why_unsafe),
                    at=(file.path, rebinding.first_line, 1),
                )


def rebindings(file: ConfigFile) -> tuple[Rebinding, ...]:
    """The dead first bindings of top-level dict names in one file's module body."""
    return _rebindings(file.path, file.text, file.tree)


@lru_cache(maxsize=4096)  # a shared base is read once per config that inherits it
def _rebindings(path: Path, text: str, tree: ast.Module) -> tuple[Rebinding, ...]:
    bindings: dict[str, list[tuple[int, ast.expr]]] = {}
    for index, stmt in enumerate(tree.body):
        target = _single_name_target(stmt)
        if target is not None:
            bindings.setdefault(target, []).append((index, stmt.value))  # type: ignore[attr-defined]
    if all(len(assigned) < 2 for assigned in bindings.values()):
        return ()  # most files bind each name once: no need to walk the whole tree
    # A name the file reads anywhere is a variable: its values flow through the reads (the binding in
    # force at each), not into the resolved config as settings.  Only settings nothing reads are judged.
    read = name_reads(path, text, tree).own
    found = []
    for name, assigned in bindings.items():
        for (first, early), (last, late) in zip(assigned, assigned[1:]):
            if not (_is_dict(early) and _is_dict(late)) or _spreads(late):
                continue
            if name in read:
                continue
            kept = literal_leaves(late, text)
            dropped = tuple(
                ((name, *key), value) for key, value in literal_leaves(early, text).items()
                if value is not CONTAINER and value is not COMPUTED and not _is_placeholder(value)
                and key[-1] != "_delete_" and not _reset(key, kept)
            )
            if dropped:
                found.append(Rebinding(name, early.lineno, late.lineno, dropped))
    return tuple(found)


def _single_name_target(stmt: ast.stmt) -> str | None:
    if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
        return stmt.targets[0].id
    if isinstance(stmt, ast.AnnAssign) and stmt.value is not None and isinstance(stmt.target, ast.Name):
        return stmt.target.id
    return None


def _is_dict(node: ast.expr) -> bool:
    return isinstance(node, ast.Dict) or (
        isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict"
    )


def _spreads(node: ast.expr) -> bool:
    """``dict(**x)`` / ``{**x}`` anywhere: the keys it sets cannot be known statically."""
    for sub in ast.walk(node):
        if isinstance(sub, ast.Call) and any(k.arg is None for k in sub.keywords):
            return True
        if isinstance(sub, ast.Dict) and any(k is None for k in sub.keys):
            return True
    return False


def _reset(key: Key, kept: dict[Key, Any]) -> bool:
    """Whether the live dict writes ``key``, replaces an enclosing value, or deletes around it."""
    for depth in range(1, len(key) + 1):
        prefix = key[:depth]
        if prefix in kept and (depth == len(key) or kept[prefix] is not CONTAINER):
            return True
        if kept.get((*prefix[:-1], "_delete_")) is True:
            return True
    return False


def _is_placeholder(value: Any) -> bool:
    return isinstance(value, str) and bool(_BASE_PLACEHOLDER.match(value))


def _in_force(values: dict, key: Key, value: Any) -> bool:
    node = get_in(values, key)
    return node is not MISSING and same_setting(node, value)
