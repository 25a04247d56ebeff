"""``freezefix doctor``: can freezefix work in this Python, and with these configs' plugins?

freezefix reads every fact off the real model classes, so it has to run in the environment the
configs train in: that environment's torch, OpenMMLab stack and plugin packages.  A user who installs
freezefix there asks first whether the install took, and what freezefix sees; this answers, in one
:class:`Diagnosis`: freezefix's version and location, the Python, torch and CUDA, the stack
:mod:`freezefix.stacks` picks and its versions, which sibling registries import, whether mmcv's
compiled ops load, where the caches live, and, for configs under the given paths, whether the
``custom_imports`` and ``plugin_dir`` they name import (with the code the verification worker uses).

Usable (exit 0) needs torch, mmdet and a stack whose installed packages import, and every plugin the
given configs name.  Anything else is exit 2, like any input freezefix cannot judge.
"""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import asdict, dataclass, field
from importlib.util import find_spec
from pathlib import Path
from typing import Any

OK, INFO, WARN, FAIL = "ok", "info", "warn", "FAIL"


@dataclass
class Item:
    """One line of the report: what was looked at, how it stands, and what was found."""

    label: str  # 'torch', 'stack', 'registries', 'plugin_dir' …
    status: str  # OK | INFO | WARN | FAIL; only FAIL makes the environment unusable
    detail: str


@dataclass
class PluginCheck:
    kind: str  # 'custom_imports' | 'plugin_dir'
    name: str  # as the config writes it
    module: str | None
    location: str | None  # the file it was imported from: a same-named package elsewhere shows here
    error: str | None
    configs: list[str] = field(default_factory=list)  # the configs naming it


@dataclass
class Diagnosis:
    freezefix: dict[str, Any] = field(default_factory=dict)  # version, location
    python: dict[str, Any] = field(default_factory=dict)  # version, executable
    torch: dict[str, Any] = field(default_factory=dict)  # version, cuda_available, cuda_build, devices | error
    stack: dict[str, Any] = field(default_factory=dict)  # name, forced, versions | missing
    registries: dict[str, str] = field(default_factory=dict)  # scope → 'ok' | 'not installed' | the error
    compiled_ops: str | None = None  # 'ok' or why mmcv's compiled ops do not load
    caches: dict[str, Any] = field(default_factory=dict)
    plugins: list[PluginCheck] = field(default_factory=list)
    unreadable_configs: list[tuple[str, str]] = field(default_factory=list)  # (path, why): plugins unknown
    items: list[Item] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        return [f"{item.label}: {item.detail}" for item in self.items if item.status == FAIL]

    @property
    def exit_code(self) -> int:
        return 2 if self.problems else 0

    def to_json(self) -> dict:
        return {
            "version": 1, "ok": not self.problems, "exit_code": self.exit_code, "freezefix": self.freezefix,
            "python": self.python, "torch": self.torch, "stack": self.stack, "registries": self.registries,
            "compiled_ops": self.compiled_ops, "caches": self.caches,
            "plugins": [asdict(p) for p in self.plugins],
            "unreadable_configs": [{"path": p, "error": e} for p, e in self.unreadable_configs],
            "items": [asdict(i) for i in self.items], "problems": self.problems,
        }


def diagnose(paths: list[Path] | None = None) -> Diagnosis:
    """Everything ``freezefix doctor`` reports; imports the stack and the plugins, changes nothing."""
    out = Diagnosis()
    _freezefix(out)
    _python(out)
    torch_ok = _torch(out)
    stack_ok = _stack(out) if torch_ok else _no_stack(out)
    _caches(out)
    if paths:
        _plugins(out, paths, stack_ok)
    return out


def _freezefix(out: Diagnosis) -> None:
    import freezefix
    from freezefix.stacks import installed_version

    location = str(Path(freezefix.__file__).resolve().parent)
    version = installed_version("freezefix")
    out.freezefix = {"version": version, "location": location}
    out.items.append(Item("freezefix", OK, f"{version or 'not installed (imported from a source tree)'} "
                                           f"from {location}"))


def _python(out: Diagnosis) -> None:
    version = ".".join(str(v) for v in sys.version_info[:3])
    out.python = {"version": version, "executable": sys.executable}
    out.items.append(Item("Python", OK, f"{version} ({sys.executable})"))


def _torch(out: Diagnosis) -> bool:
    from freezefix.stacks import missing

    if find_spec("torch") is None:
        out.torch = {"error": "not installed"}
        out.items.append(Item("torch", FAIL, missing() or "not installed"))
        return False
    try:
        import torch
    except Exception as exc:  # noqa: BLE001 - a broken install (CUDA libraries, ABI) is the finding
        out.torch = {"error": f"{type(exc).__name__}: {exc}"}
        out.items.append(Item("torch", FAIL, f"installed but does not import: {out.torch['error']}"))
        return False
    available = bool(torch.cuda.is_available())
    devices = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if available else []
    out.torch = {"version": torch.__version__, "cuda_build": torch.version.cuda, "cuda_available": available,
                 "devices": devices}
    if available:
        cuda = f"CUDA {torch.version.cuda}: {len(devices)} device{'s' * (len(devices) != 1)} ({', '.join(devices)})"
        where = "cuda"
    else:
        cuda = "CUDA not available" + ("" if torch.version.cuda else " (a CPU-only build)")
        where = "meta (no memory needed)"
    out.items.append(Item("torch", OK, f"{torch.__version__}; {cuda}; --device auto builds models on {where}"))
    return True


def _no_stack(out: Diagnosis) -> bool:
    from freezefix.stacks import missing

    out.stack = {"name": None, "missing": missing()}
    out.items.append(Item("stack", INFO, "not looked for: it needs torch"))
    return False


def _stack(out: Diagnosis) -> bool:
    from freezefix.stacks import current, missing, stack_name
    from freezefix.stacks.common import import_registries

    why = missing()
    forced = os.environ.get("FREEZEFIX_STACK") or None
    if why:
        out.stack = {"name": None, "missing": why, "forced": forced}
        out.items.append(Item("stack", FAIL, why))
        return False
    stack = current()
    out.stack = {"name": stack_name(), "forced": forced, "versions": stack.describe()}
    how = " (forced by FREEZEFIX_STACK)" if forced else ""
    out.items.append(Item("stack", OK, f"{stack.name}{how}: {stack.describe()}"))
    errors: dict[str, str] = {}
    found = import_registries(stack.sibling_scopes, stack.registry_module, errors)
    broken = []
    for scope in stack.sibling_scopes:
        if scope in found:
            out.registries[scope] = "ok"
        elif find_spec(scope) is None:
            out.registries[scope] = "not installed"
        else:  # installed, yet its models do not import: configs using it cannot be built
            out.registries[scope] = errors.get(scope, "does not import")
            broken.append(f"{scope} is installed but its models do not import: {out.registries[scope]}")
    summary = ", ".join(f"{scope} {state if state in ('ok', 'not installed') else 'BROKEN'}"
                        for scope, state in out.registries.items())
    out.items.append(Item("registries", FAIL if broken else OK, "; ".join([summary, *broken])))
    out.compiled_ops = _compiled_ops()
    if out.compiled_ops == "ok":
        out.items.append(Item("mmcv ops", OK, "compiled ops load (mmcv._ext)"))
    else:
        out.items.append(Item("mmcv ops", WARN, f"compiled ops do not load ({out.compiled_ops}): models with "
                                                "mmcv.ops layers (sparse conv, voxelization, DCN) cannot be "
                                                "built whole; freezefix then verifies at module level"))
    return not broken


def _compiled_ops() -> str:
    try:
        importlib.import_module("mmcv._ext")
    except Exception as exc:  # noqa: BLE001 - mmcv without ops (mmcv-lite) or built for another torch
        return f"{type(exc).__name__}: {exc}"
    return "ok"


def _caches(out: Diagnosis) -> None:
    from freezefix.cache import cache_location

    location = cache_location()
    source = ("FREEZEFIX_CACHE_DIR" if os.environ.get("FREEZEFIX_CACHE_DIR")
              else "XDG_CACHE_HOME" if os.environ.get("XDG_CACHE_HOME") else "default")
    off = bool(os.environ.get("FREEZEFIX_NO_CACHE"))
    probe = sorted(location.glob("probe-*.json")) if location.is_dir() else []
    results = sorted(location.glob("results-*.pickle")) if location.is_dir() else []
    size = sum(f.stat().st_size for f in probe + results)
    existing = next(p for p in (location, *location.parents) if p.exists())
    writable = os.access(existing, os.W_OK)
    out.caches = {"dir": str(location), "source": source, "enabled": not off, "writable": writable,
                  "probe_files": len(probe), "results_files": len(results), "bytes": size}
    contents = (f"{len(probe)} probe file{'s' * (len(probe) != 1)}, {len(results)} results "
                f"file{'s' * (len(results) != 1)}, {size / 1e6:.1f} MB" if location.is_dir() else "not created yet")
    if off:
        out.items.append(Item("caches", INFO, f"off (FREEZEFIX_NO_CACHE is set); would be {location}"))
    elif not writable:
        out.items.append(Item("caches", WARN, f"{location} is not writable: nothing is cached "
                                              "(FREEZEFIX_CACHE_DIR moves it)"))
    else:
        hint = "" if source == "FREEZEFIX_CACHE_DIR" else "; FREEZEFIX_CACHE_DIR moves it"
        out.items.append(Item("caches", OK, f"{location} ({contents}){hint}; FREEZEFIX_NO_CACHE=1 turns them off"))


def _plugins(out: Diagnosis, paths: list[Path], stack_ok: bool) -> None:
    """Import what the configs under ``paths`` name, each plugin once, as the verification worker does."""
    from freezefix.config.resolve import ConfigError, NotAnalysable, Resolver
    from freezefix.discover import discover, looks_like_config
    from freezefix.plugins import plugin_imports
    from freezefix.stacks import registered_name
    from freezefix.textio import SourceError, display_path

    discovery = discover(paths)
    for path in discovery.missing:
        out.items.append(Item("path", FAIL, f"{path}: no such file or directory"))
    resolver = Resolver(registered_name=registered_name)
    named: dict[tuple, tuple[dict, Path]] = {}  # plugin identity → (the values naming it, first config)
    configs: dict[tuple, list[str]] = {}
    for path in discovery.config_candidates:
        try:
            if path not in discovery.named and looks_like_config(resolver.sources.parsed(path)[1]):
                continue  # a script, not a config: check skips it too
            values = resolver.values(path)
        except (ConfigError, NotAnalysable, SourceError) as exc:
            out.unreadable_configs.append((display_path(path), str(exc)))
            continue
        for key, subset in _plugin_settings(values, path):
            named.setdefault(key, (subset, path))
            configs.setdefault(key, []).append(display_path(path))
    if out.unreadable_configs:
        out.items.append(Item("configs", INFO, f"{len(out.unreadable_configs)} could not be read, so their "
                                               "plugins are not checked (`freezefix check` says why)"))
    if not named:
        out.items.append(Item("plugins", INFO, f"none named by the configs under {', '.join(map(str, paths))}"))
        return
    if not stack_ok:
        out.items.append(Item("plugins", INFO, f"{len(named)} named, not imported: there is no usable stack"))
        return
    for key, (subset, path) in named.items():
        for entry in plugin_imports(subset, path):
            module = sys.modules.get(entry.module or "")
            location = getattr(module, "__file__", None) if module is not None and not entry.error else None
            check = PluginCheck(entry.kind, entry.name, entry.module, location, entry.error, configs[key])
            out.plugins.append(check)
            used = f"{len(check.configs)} config{'s' * (len(check.configs) != 1)}, e.g. {check.configs[0]}"
            if entry.error:
                out.items.append(Item(entry.kind, FAIL, f"{entry.name!r} {entry.error} ({used})"))
            else:
                out.items.append(Item(entry.kind, OK, f"{entry.name!r} imports as {entry.module} from "
                                                      f"{location} ({used})"))


def _plugin_settings(values: dict, path: Path):
    """(identity, the settings naming it) per plugin a config names: identical names from the same
    repository root are one plugin."""
    from freezefix.plugins import custom_import_names, plugin_dir_location

    for name in custom_import_names(values):
        yield ("custom_imports", name), {"custom_imports": {"imports": [name]}}
    located = plugin_dir_location(values, path)
    if located is not None:
        subset = {k: values[k] for k in ("plugin", "plugin_dir")}
        yield ("plugin_dir", values["plugin_dir"], str(located[1])), subset


def text_lines(diagnosis: Diagnosis) -> list[str]:
    lines = [f"{item.status:<4}  {item.label:<14} {item.detail}" for item in diagnosis.items]
    if diagnosis.problems:
        lines.append(f"freezefix cannot work in this environment: {len(diagnosis.problems)} "
                     f"problem{'s' * (len(diagnosis.problems) != 1)} (FAIL above)")
    else:
        lines.append("freezefix can check, fix and explain configs in this environment")
    return lines
