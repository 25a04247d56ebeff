"""From fixes on resolved configs to edits on the files that own the values.

Every fix is a set of changes to keys of one config's *resolved* dict.  The planner first places
each change in the file that writes the value (for a new key: the file that writes the enclosing
dict).  Such a file may be a base shared by other configs, so the plan is then simulated: every
affected config is re-resolved with the edited texts, and each must come out exactly as the changes
it asked for say — no more, no less.  An edit to a shared base that changes a config which did not
ask for it is moved into the children that did ask, as overrides (mmengine merges them over the
base); a change that cannot be placed without collateral is dropped with a reason.
"""

from __future__ import annotations

import copy
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from freezefix.config.graph import BaseGraph
from freezefix.config.locate import Key, Location
from freezefix.config.plain import differing_keys, has_in
from freezefix.config.resolve import ConfigError, NotAnalysable, Resolver
from freezefix.rewrite import AppendAssignment, FileEdit, InsertEntry, RemoveEntry, ReplaceValue, RewriteError, apply_edits
from freezefix.ftypes import REMOVE, Change


@dataclass
class Placement:
    """One edit to one file, and the changes (per config) it serves."""

    file: Path
    kind: str  # 'replace' | 'insert' | 'remove' | 'append'
    location: Location | None  # value span (replace) or container span (insert/remove)
    subkey: Key  # insert: path below the container; remove: (key,); append: (name, ...)
    value: Any
    served: list[tuple[Path, Change]] = field(default_factory=list)  # (config, change)
    override: bool = False  # written into the config itself rather than the owner of the value

    def identity(self) -> tuple:
        loc = (self.location.line, self.location.col) if self.location else None
        return (self.file, self.kind, loc, self.subkey, repr(self.value))


@dataclass
class Plan:
    texts: dict[Path, tuple[str, str]] = field(default_factory=dict)  # file → (old, new)
    placements: list[Placement] = field(default_factory=list)
    dropped: list[tuple[Path, Change, str]] = field(default_factory=list)  # config, change, why
    errors: dict[Path, str] = field(default_factory=dict)  # file → why it could not be rewritten
    boms: set[Path] = field(default_factory=set)  # files that start with a UTF-8 BOM (for the diff)


def apply_change(values: dict, change: Change) -> dict:
    """What a resolved config should look like after ``change`` (the planner's postcondition)."""
    result = copy.deepcopy(values)
    node = result
    for part in change.key[:-1]:
        node = node.setdefault(part, {})
    if change.value is REMOVE:
        node.pop(change.key[-1], None)
    else:
        node[change.key[-1]] = copy.deepcopy(change.value)
    return result


class Planner:
    """``entries`` are the configs whose resolution must come out as asked; ``editable`` the files
    freezefix may write (those under the paths it was given: never an installed package's base)."""

    def __init__(self, resolver: Resolver, entries: Iterable[Path], editable: Iterable[Path]):
        self.resolver = resolver
        self.entries = [Path(p) for p in entries]
        self.editable = {Path(p) for p in editable}

    # -- placement ----------------------------------------------------------------------------
    def _owner_placement(self, config: Path, change: Change) -> Placement | str:
        values = self.resolver.values(config)
        key = change.key
        if change.value is REMOVE:
            origin = self.resolver.origin(config, key)
            parent = self.resolver.origin(config, key[:-1]) if len(key) > 1 else None
            if origin is None or parent is None or parent.path != origin.path or not parent.editable:
                return f"cannot remove {'.'.join(key)}: it is not written as a literal entry"
            return Placement(origin.path, "remove", parent.location, (key[-1],), None)
        if has_in(values, key):
            origin = self.resolver.origin(config, key)
            if origin is None or not origin.editable:
                how = origin.how if origin else "not attributable"
                return f"{'.'.join(key)} is {how} in {origin.path.name if origin else 'its config'}"
            return Placement(origin.path, "replace", origin.location, (), change.value)
        depth = _deepest_prefix(values, key)
        if depth == 0:
            return self._override_placement(config, change)
        container = self.resolver.origin(config, key[:depth])
        if container is None or not container.editable or container.location.container is None:
            return self._override_placement(config, change)
        return Placement(container.path, "insert", container.location, key[depth:], change.value)

    def _override_placement(self, config: Path, change: Change) -> Placement | str:
        """Write ``change`` into ``config`` itself (or the file it names), over what its bases say."""
        if change.value is REMOVE:
            return f"cannot remove {'.'.join(change.key)} from a base by an override"
        if change.written_in is not None:
            config = Path(change.written_in)
            if config not in self.editable:
                return f"{config.name} is not among the files being fixed"
        unit = self.resolver.unit(config)
        key = change.key
        own = unit.own
        depth = 0
        while depth < len(key) and isinstance(own, dict) and key[depth] in own:
            own = own[key[depth]]
            depth += 1
        if depth == 0:
            return Placement(config, "append", None, key, change.value, override=True)
        if depth == len(key):
            location = unit.locations.get(key)
            if location is None or location.how == "computed":
                return f"{'.'.join(key)} is computed in {config.name}"
            return Placement(config, "replace", location, (), change.value, override=True)
        location = unit.locations.get(key[:depth])
        if location is None or location.container is None or location.how == "computed":
            if unit.new_style and depth < len(key):
                # `model.neck.num_outs = 6` writes into `model` without a dict literal to insert into:
                # a new-style override merges a new `model.update(...)` statement instead.
                return Placement(config, "append", None, key, change.value, override=True)
            return f"{'.'.join(key[:depth])} is computed in {config.name}; cannot add an override to it"
        return Placement(config, "insert", location, key[depth:], change.value, override=True)

    def _aliases(self, config: Path, change: Change, placement: Placement) -> list[Change]:
        """The other resolved keys an edit also changes: a value written through a module-level variable
        (``img_backbone = dict(...)``, then ``model = dict(img_backbone=img_backbone)``) is also the
        top-level key ``img_backbone`` (mmengine keeps every module-level name), so editing it changes
        both; the plan, and the write gate after it, expect exactly both."""
        location = placement.location
        if placement.kind not in ("replace", "insert") or location is None or location.via is None:
            return []
        written = change.key[:len(change.key) - len(placement.subkey)] if placement.kind == "insert" else change.key
        locations = self.resolver.unit(placement.file).locations
        entry = next((depth for depth in range(1, len(written) + 1)
                      if getattr(locations.get(written[:depth]), "via", None) == location.via), None)
        if entry is None or location.via not in self.resolver.values(config):
            return []
        return [Change((location.via, *change.key[entry:]), change.value)]

    # -- planning -----------------------------------------------------------------------------
    def plan(self, wanted: dict[Path, list[Change]]) -> Plan:
        plan = Plan()
        wanted = {c: _dedupe(ch) for c, ch in wanted.items() if ch}
        placements: dict[tuple, Placement] = {}
        by_config: dict[Path, dict[Change, tuple]] = defaultdict(dict)

        def place(config: Path, change: Change, placement: Placement | str) -> None:
            if isinstance(placement, str):
                plan.dropped.append((config, change, placement))
                return
            ident = placement.identity()
            for served in (change, *self._aliases(config, change, placement)):
                placements.setdefault(ident, placement).served.append((config, served))
                by_config[config][served] = ident

        for config, changes in wanted.items():
            for change in changes:
                if change.written_in is not None:
                    place(config, change, self._override_placement(config, change))
                    continue
                placement = self._owner_placement(config, change)
                if isinstance(placement, Placement) and placement.file not in self.editable:
                    # e.g. a `mmdet::` base inside site-packages: override it from the config.
                    placement = self._override_placement(config, change)
                place(config, change, placement)

        # Simulate; move edits that hit configs which did not ask for them into overrides.  An
        # override that still hits another config (the config is itself a base), or anything still
        # wrong in the last round, is dropped with its reason: the plan never keeps collateral.
        rounds = 4
        for round_ in range(rounds):
            texts, errors = _render(self.resolver, placements.values())
            bad = _collateral(self.resolver, self.entries, texts, by_config, placements)
            bad.update({i: errors[p.file] for i, p in placements.items() if p.file in errors})
            if not bad:
                break
            for ident, why in bad.items():
                placement = placements.pop(ident)
                for config, change in placement.served:
                    del by_config[config][change]
                    if placement.override or placement.file == config or round_ == rounds - 1:
                        plan.dropped.append((config, change, why))
                    else:
                        place(config, change, self._override_placement(config, change))
        texts, errors = _render(self.resolver, placements.values())
        plan.errors.update(errors)
        plan.placements = list(placements.values())
        plan.texts = {p: t for p, t in texts.items() if t[0] != t[1]}
        plan.boms = {p for p in plan.texts if self.resolver.unit(p).source.has_bom}
        return plan


def _render(resolver: Resolver, placements: Iterable[Placement]) -> tuple[dict[Path, tuple[str, str]], dict[Path, str]]:
    """Each file's placements rendered as its new text: path → (old, new); path → why it could not be."""
    per_file: dict[Path, list[Placement]] = defaultdict(list)
    for placement in placements:
        per_file[placement.file].append(placement)
    texts: dict[Path, tuple[str, str]] = {}
    errors: dict[Path, str] = {}
    for path, group in per_file.items():
        unit = resolver.unit(path)
        old = unit.source.text
        inherited = {name for name, value in unit.merged.items() if isinstance(value, dict)} if unit.new_style else set()
        try:
            texts[path] = (old, apply_edits(old, file_edits(group, inherited)))
        except (RewriteError, Exception) as exc:  # noqa: BLE001 - reported per file
            errors[path] = f"could not rewrite: {exc}"
    return texts, errors

def _collateral(resolver: Resolver, entries: list[Path], texts: dict[Path, tuple[str, str]], by_config: dict,
                placements: dict) -> dict[tuple, str]:
    """Placements whose edit changes a config in a way it did not ask for, each with the reason."""
    overlay = {path: new for path, (_, new) in texts.items()}
    after = resolver.with_overlay(overlay)
    edited = set(overlay)
    graph = BaseGraph(resolver)
    bad: dict[tuple, str] = {}
    for config in entries:
        touched = {config, *graph.ancestors(config)} & edited
        if not touched:
            continue
        expected = resolver.values(config)
        for change in by_config.get(config, {}):
            expected = apply_change(expected, change)
        try:
            actual = after.values(config)
        except (ConfigError, NotAnalysable):
            actual = None
        if actual == expected:
            continue
        differing = differing_keys(expected, actual or {})
        suspects = [i for i, p in placements.items() if p.file in touched and any(
            _related(k, change.key) for k in differing for _, change in p.served)]
        if not suspects:
            # A change far from every planned key (a variable that also feeds `teacher.backbone`):
            # only the edits to this config's files can have made it.
            suspects = [i for i, p in placements.items() if p.file in touched]
        shown = ".".join(map(str, differing[0])) if differing and differing[0] else "its values"
        for ident in suspects:
            placement = placements[ident]
            if any(served == config for served, _ in placement.served):
                why = f"editing {placement.file.name} would also change {shown}, which no fix asked for"
            else:
                why = (f"editing {placement.file.name} would also change {config.name} ({shown}), "
                       "which inherits it and did not ask for this")
            bad.setdefault(ident, why)
    return bad


def file_edits(group: list[Placement], inherited: set[str] = frozenset()) -> list[FileEdit]:
    """Placements → rewrite edits; new entries under one new key are merged into one nested dict
    (two changes that both need a missing ``paramwise_cfg`` create it once).  An override of a name
    in ``inherited`` (a new-style config's, from its bases) is merged into it, never rebound."""
    edits: list[FileEdit] = []
    new_entries: dict[tuple, Any] = {}  # (kind, container, first key) → value
    for p in group:
        if p.kind == "replace":
            edits.append(ReplaceValue(p.location, p.value))
        elif p.kind == "remove":
            edits.append(RemoveEntry(p.location, p.subkey[0]))
        else:
            slot = (p.kind, p.location, p.subkey[0])
            if len(p.subkey) == 1:
                new_entries[slot] = p.value
            else:
                tree = new_entries.setdefault(slot, {})
                node = tree
                for part in p.subkey[1:-1]:
                    node = node.setdefault(part, {})
                node[p.subkey[-1]] = p.value
    for (kind, location, name), value in new_entries.items():
        edits.append(InsertEntry(location, name, value) if kind == "insert"
                     else AppendAssignment(name, value, merge=name in inherited and isinstance(value, dict)))
    return edits


def _deepest_prefix(values: Any, key: Key) -> int:
    node, depth = values, 0
    for part in key[:-1]:
        if not isinstance(node, dict) or part not in node or not isinstance(node[part], dict):
            break
        node = node[part]
        depth += 1
    return depth


def _related(a: Key, b: Key) -> bool:
    n = min(len(a), len(b))
    return a[:n] == b[:n]


def _dedupe(changes: list[Change]) -> list[Change]:
    seen: dict[Key, Change] = {}
    for change in changes:
        seen.setdefault(change.key, change)
    return list(seen.values())
