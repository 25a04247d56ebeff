"""The plugins a config names — ``custom_imports`` modules and an mmcv-1.x ``plugin_dir`` — read,
located and imported the way those repos' train scripts do: one module for ``check``, ``doctor``,
the caches, the probes and the verification worker."""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from freezefix.classes import registries
from freezefix.stacks import registered_names_changed

PLUGIN_FILES_MAX = 2000  # a plugin package bigger than this is not hashed: its configs are not cached


def custom_import_names(values: dict) -> list[Any]:
    """The modules a config's ``custom_imports`` names, as both stacks read it (one string, or a
    list); entries are returned as written, for callers to judge."""
    imports = values.get("custom_imports")
    names = (imports.get("imports") or []) if isinstance(imports, dict) else []
    return [names] if isinstance(names, str) else list(names) if isinstance(names, (list, tuple)) else []


def plugins_named(values: dict) -> tuple[tuple[str, ...], str | None]:
    """The plugins a config names: its ``custom_imports`` modules and its mmcv-1.x ``plugin_dir``."""
    return tuple(n for n in custom_import_names(values) if isinstance(n, str)), plugin_dir_setting(values)


def plugin_dir_setting(values: dict) -> str | None:
    """The mmcv-1.x ``plugin_dir`` a config has its train script import (``plugin=True`` with it)."""
    plugin_dir = values.get("plugin_dir")
    return plugin_dir if values.get("plugin") and isinstance(plugin_dir, str) else None


def plugin_dir_location(values: dict, config_path: Path) -> tuple[Path, Path | None] | None:
    """An mmcv-1.x ``plugin_dir`` as the repos' train scripts read it: (the directory relative to the
    repository root, that root — the nearest ancestor of the config holding it — or None); None when
    the config names no plugin_dir."""
    plugin_dir = plugin_dir_setting(values)
    if plugin_dir is None:
        return None
    rel = Path(plugin_dir.strip("/"))
    # Looked for from the config file's real directory up (every config of a repository names the
    # same plugin_dir, so per directory).
    real = os.path.realpath(config_path) if os.path.islink(config_path) else os.path.abspath(config_path)
    return rel, _nearest_holding(rel, os.path.dirname(real))


@lru_cache(maxsize=None)
def _nearest_holding(rel: Path, directory: str) -> Path | None:
    """The nearest of ``directory`` (resolved) and its ancestors that holds the directory ``rel``."""
    start = Path(directory).resolve()
    return next((p for p in (start, *start.parents) if (p / rel).is_dir()), None)


def forget_plugin_locations() -> None:
    """A run starts: plugin directories may have been created or removed since the last one."""
    _nearest_holding.cache_clear()


@dataclass
class PluginImport:
    """One plugin module a config names (``custom_imports`` entry or mmcv-1.x ``plugin_dir``) and
    whether importing it worked."""

    kind: str  # 'custom_imports' | 'plugin_dir'
    name: str  # as the config writes it
    module: str | None = None  # the dotted module imported; None when the plugin_dir was not found
    root: Path | None = None  # plugin_dir: the repository root put on sys.path to import it
    error: str | None = None  # 'not importable: ImportError: …' | 'not found in the config's directory …'

    @property
    def note(self) -> str:
        return f"{self.kind} {self.name!r} {self.error or 'imported'}"


def plugin_imports(values: dict, config_path: Path) -> list[PluginImport]:
    """Import ``custom_imports`` and an mmcv-1.x ``plugin_dir`` the way those repos' train scripts do.

    ``plugin_dir='projects/mmdet3d_plugin/'`` is a path relative to the repository root, which is the
    nearest ancestor of the config that contains it; it is imported as the dotted module path.
    A plugin that cannot be imported is reported in its entry, never raised: verification then
    falls back to module level, and ``doctor`` names it.
    """
    found: list[PluginImport] = []
    for name in custom_import_names(values):
        entry = PluginImport("custom_imports", name, module=name)
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - a missing plugin is reported, not fatal
            entry.error = f"not importable: {type(exc).__name__}: {exc}"
        found.append(entry)
    located = plugin_dir_location(values, config_path)
    if located is not None:
        rel, root = located
        entry = PluginImport("plugin_dir", values["plugin_dir"], root=root)
        if root is None:
            # Said the same for every config that names it: one note, however the run is split.
            entry.error = "not found in the config's directory or any directory above it"
        else:
            entry.module = ".".join(rel.parts)
            if str(root) not in sys.path:
                sys.path.insert(0, str(root))
            try:
                importlib.import_module(entry.module)
            except Exception as exc:  # noqa: BLE001
                entry.error = f"not importable: {type(exc).__name__}: {exc}"
        found.append(entry)
    return found


def import_plugins(values: dict, config_path: Path) -> list[str]:
    """Import the config's plugins (:func:`plugin_imports`); notes for those that could not be imported.
    The registries are looked at afresh afterwards: a plugin registers its classes as it imports."""
    notes = [entry.note for entry in plugin_imports(values, config_path) if entry.error]
    registries.cache_clear()
    registered_names_changed()
    return notes


class PluginImporter:
    """Imports a run's plugins, each distinct plugin setting once (a plugin that imports mmdet3d costs
    seconds): what did not import, as notes."""

    def __init__(self) -> None:
        self._notes: dict[tuple, list[str]] = {}

    def notes(self, values: dict, path: Path) -> list[str]:
        """The config's plugins imported (they register classes such as VoVNet); notes for those that
        do not import."""
        if not (values.get("plugin_dir") or values.get("custom_imports")):
            return []
        located = plugin_dir_location(values, path)
        key = (repr(values.get("custom_imports")), repr(values.get("plugin_dir")), repr(located))
        if key not in self._notes:
            self._notes[key] = import_plugins(values, path)
        return self._notes[key]


def plugin_specs(custom_imports: tuple[str, ...], plugin_dir: str | None, config_path: Path) -> tuple:
    """Where each plugin a config names would be imported from now: the top-level module of each
    ``custom_imports`` entry (``find_spec``'s origin, None when it is not importable) and the
    repository root above the config that holds the mmcv-1.x ``plugin_dir``."""
    found: list[tuple[str, str | None]] = []
    for name in custom_imports:
        spec = top_level_spec(name)
        found.append((name, None if spec is None else str(spec.origin or spec.submodule_search_locations)))
    if plugin_dir:
        located = plugin_dir_location({"plugin": True, "plugin_dir": plugin_dir}, config_path)
        found.append((plugin_dir, None if located is None or located[1] is None else str(located[1])))
    return tuple(found)


def plugin_files(values: dict, config_path: Path) -> list[Path] | None:
    """Local plugin code a config imports (``custom_imports``, mmcv-1.x ``plugin_dir``), as
    :func:`import_plugins` finds it; None when it cannot be pinned down (not cached).

    Installed packages are not listed: their versions are part of the cache key.
    """
    found: list[Path] = []
    for name in custom_import_names(values):
        if not isinstance(name, str) or not name:
            return None
        spec = top_level_spec(name)
        if spec is None or not spec.origin or not os.path.isabs(spec.origin):
            continue  # not importable (the model facts say so), or built in
        origin = Path(spec.origin)
        if {"site-packages", "dist-packages"} & set(origin.parts):
            continue
        if spec.submodule_search_locations:
            found.extend(sorted(Path(spec.submodule_search_locations[0]).rglob("*.py")))
        else:
            found.append(origin)
    located = plugin_dir_location(values, config_path)
    if located is not None and located[1] is not None:
        rel, root = located
        found.extend(sorted((root / rel).rglob("*.py")))
    return found if len(found) <= PLUGIN_FILES_MAX else None


def top_level_spec(name: str) -> Any:
    """``find_spec`` of a dotted module's top-level package (importing nothing of it), or None."""
    import importlib.util

    try:
        return importlib.util.find_spec(name.split(".")[0])
    except (ImportError, ValueError):
        return None
