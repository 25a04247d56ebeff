"""The results cache of ``check``: what each file came to, reused while nothing it was computed from changed.

As in ruff and black, a re-check of an unchanged repository (pre-commit, CI, a pull request that
touches a few files) should cost reading and hashing the files, not executing them and probing
classes again.  Each entry records a file's outcome (skipped with a reason, an error, a fragment, or
a config with its findings already placed at ``path:line:col``) with the content hash of every file
that outcome was computed from: the file, its whole ``_base_`` closure (bases looked for and not
found too: creating one changes the outcome), local plugin code the config imports, and the
environment variables its ``{{$VAR:default}}`` placeholders read.  An entry is used only when all of
those still hash the same.

One cache file per *key*: freezefix's own source, the Python and installed package versions
(torch, mmengine, mmcv, mmdet, mmdet3d, mmpretrain), the prober's device and the rule settings that
change findings (select, ignore, freeze).  Changing any of them starts a new file; an unreadable,
corrupted or foreign file is ignored, never an error.  Writes go through a temporary file and
``os.replace``, so a concurrent reader sees a whole file or none.

What is not tracked: files a config opens by itself at execution time (arbitrary code), and the
class facts, which the probe cache keys by package versions only (``FREEZEFIX_NO_CACHE=1`` turns
off both caches, for a plugin class edited in place).

This module is on the path of a fully cached run, so it imports nothing heavy: no torch, mmengine
or libcst (``python -X importtime -m freezefix check ...`` shows it).
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import sys
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from freezefix.ftypes import Checked, Failed, FileOutcome, Skipped

if TYPE_CHECKING:  # the cache is read before anything resolves: no import of the resolver here
    from freezefix.config.resolve import Resolver
from freezefix.textio import write_cache_file

_SCHEMA = 4  # bump when Entry changes shape: older files are then simply not found
_ABSENT = None  # digest of a file that does not exist


@dataclass
class Entry:
    """One file's outcome and what it was computed from."""

    named: bool  # named on the command line (walked files may be skipped as scripts; named never are)
    deps: tuple[tuple[str, str | None], ...]  # (path, sha256 of its bytes, or None when absent)
    plugins: tuple[tuple[str, str | None], ...]  # plugin code it imports, likewise
    env: tuple[tuple[str, str | None], ...]  # environment variables read by substitution
    outcome: FileOutcome  # a Checked config holds its findings placed, in the order the rules returned them
    # An outcome that depends on what the environment lacks (not ``Checked.lasting``): the
    # environment_digest() it was computed in, the plugins asked for (custom_imports names, the
    # plugin_dir) and plugin_specs() for them then.  Such an entry is used while all three hold.
    environment: tuple[str, tuple[tuple[str, ...], str | None], tuple] | None = None


def cache_location() -> Path:
    """Where both caches live: ``$FREEZEFIX_CACHE_DIR``, else ``$XDG_CACHE_HOME/freezefix``, else
    ``~/.cache/freezefix``."""
    base = os.environ.get("FREEZEFIX_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "freezefix"
    )
    return Path(base)


def cache_dir() -> Path | None:
    """The cache directory runs use; None when ``FREEZEFIX_NO_CACHE`` turns caching off."""
    return None if os.environ.get("FREEZEFIX_NO_CACHE") else cache_location()


def digest_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()  # the same digest as textio.SourceFile.digest


@lru_cache(maxsize=None)
def freezefix_source_digest() -> str:
    """freezefix's own code: an editable install keeps its version number while the code changes."""
    root = Path(__file__).parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


KEYED_PACKAGES = ("freezefix", "torch", "mmengine", "mmcv", "mmcv-full", "mmdet", "mmdet3d", "mmpretrain",
                   "mmcls", "mmseg")


@lru_cache(maxsize=None)
def package_versions() -> dict[str, str]:
    """The installed versions of the packages that change what freezefix finds (both caches are
    keyed by them).  Read from the ``name-version.dist-info`` folder names on ``sys.path``, first
    found first as ``importlib.metadata`` searches: importing that module costs 20 ms, a seventh
    of a fully cached run.  A package found only in a form that does not name its version there (an
    ``.egg-info`` without one) is asked of ``importlib.metadata``."""
    wanted = {_normalized(name): name for name in KEYED_PACKAGES}
    found: dict[str, str] = {}
    unsure: list[str] = []
    for _entry, folders in _distributions():
        for folder in folders:
            stem, _, kind = folder.rpartition(".")
            project, _, version = stem.partition("-")
            name = wanted.get(_normalized(project))
            if name is None or name in found or name in unsure:
                continue
            if version and kind == "dist-info":
                found[name] = version
            else:
                unsure.append(name)
    if unsure:
        from importlib.metadata import PackageNotFoundError, version as metadata_version

        for name in unsure:
            try:
                found[name] = metadata_version(name)
            except PackageNotFoundError:
                pass
    return {name: found[name] for name in KEYED_PACKAGES if name in found}


@lru_cache(maxsize=None)
def _distributions() -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Each ``sys.path`` entry with the ``*.dist-info`` / ``*.egg-info`` folders it holds, as read once."""
    listed = []
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:  # a zip file, a folder that does not exist
            names = []
        listed.append((entry, tuple(sorted(n for n in names if n.endswith((".dist-info", ".egg-info"))))))
    return tuple(listed)


@lru_cache(maxsize=None)
def environment_digest() -> str:
    """What changes when anything is installed, removed or upgraded, or ``sys.path`` changes: an
    outcome that depends on what this environment lacks (a plugin that does not import, a head that
    needs ``transformers``) is kept under it, so installing the missing piece is seen next run."""
    return hashlib.sha256(repr(_distributions()).encode()).hexdigest()[:20]


def environment_key(values: dict, config_path: Path) -> str:
    """What an answer about a config's classes depends on when the environment decides it: the
    installed distributions and ``sys.path``, the plugins the config names, where they would import
    from now, and the code of the local ones."""
    from freezefix.plugins import plugin_files, plugin_specs, plugins_named

    asked = plugins_named(values)
    files = plugin_files(values, config_path) or []
    parts = [environment_digest(), asked, plugin_specs(*asked, config_path), [(str(f), _file_digest(f)) for f in files]]
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:20]


def _file_digest(path: Path) -> str | None:
    try:
        return digest_bytes(path.read_bytes())
    except OSError:
        return None


def _normalized(project: str) -> str:
    return re.sub(r"[-_.]+", "_", project).lower()


def cache_id(settings: dict[str, Any]) -> str:
    """What names a results-cache file: freezefix's source, Python and package versions, the stack,
    the settings that change findings."""
    parts = {
        "schema": _SCHEMA,
        "python": sys.version,
        "packages": package_versions(),
        # Which OpenMMLab stack answers (mmengine or mmcv 1.x) can be forced from the environment.
        "stack": os.environ.get("FREEZEFIX_STACK"),
        "freezefix-source": freezefix_source_digest(),
        "settings": settings,
    }
    return hashlib.sha256(repr(sorted(parts.items())).encode()).hexdigest()[:20]


class ResultsCache:
    """Entries by absolute path, loaded from and saved to one file of ``cache_dir``."""

    def __init__(self, cache_dir: Path, key: str):
        self.path = cache_dir / f"results-{key}.pickle"
        self.key = key
        self.entries: dict[str, Entry] = self._load()
        self.changed = False
        self.hits = 0
        self._digests: dict[str, str | None] = {}
        self._texts: dict[str, str] = {}  # files mentioning "freezefix" (suppression comments)
        self._resolved: set[str] = set()  # config files that cached outcomes say resolve

    def _load(self) -> dict[str, Entry]:
        try:
            with open(self.path, "rb") as handle:
                data = pickle.load(handle)
        except FileNotFoundError:
            return {}
        except Exception:  # noqa: BLE001 - corrupted, truncated or foreign: start afresh
            return {}
        if not isinstance(data, dict) or data.get("key") != self.key or not isinstance(data.get("entries"), dict):
            return {}
        return data["entries"]

    # -- reading ----------------------------------------------------------------------------------
    def digest(self, path: str) -> str | None:
        """sha256 of the file's bytes (None: absent), once per run: configs share their bases."""
        if path not in self._digests:
            try:
                with open(path, "rb") as handle:
                    data = handle.read()
            except FileNotFoundError:
                value: str | None = _ABSENT
            except IsADirectoryError:
                value = "<directory>"
            except OSError as exc:  # unreadable, a looping symlink: its error was the outcome
                value = f"<error {exc.errno}>"
            else:
                value = digest_bytes(data)
                if b"freezefix" in data:
                    text = data.decode("utf-8", "replace")
                    self._texts[path] = text[1:] if text.startswith("\ufeff") else text  # no removeprefix on 3.8
            self._digests[path] = value
        return self._digests[path]

    def lookup(self, path: Path, named: bool) -> Entry | None:
        entry = self.entries.get(str(path))
        if entry is None or entry.named != named:
            return None
        if any(os.environ.get(name) != value for name, value in entry.env):
            return None
        if any(self.digest(dep) != want for dep, want in (*entry.deps, *entry.plugins)):
            return None
        if entry.environment is not None:
            digest, (imports, plugin_dir), specs = entry.environment
            from freezefix.plugins import plugin_specs

            if digest != environment_digest() or plugin_specs(imports, plugin_dir, path) != specs:
                return None
        self.hits += 1
        if not isinstance(entry.outcome, (Skipped, Failed)):
            self._resolved.update(dep for dep, _ in entry.deps)
        return entry

    def text(self, path: Path) -> str | None:
        """The text of a config file that a cached outcome says resolves, when it mentions freezefix
        (else None): suppressions are read from the files a fresh run would have resolved."""
        return self._texts.get(str(path)) if str(path) in self._resolved else None

    # -- writing ----------------------------------------------------------------------------------
    def store(self, path: Path, entry: Entry) -> None:
        self.entries[str(path)] = entry
        self.changed = True

    def save(self) -> None:
        if not self.changed:
            return
        # Entries of files that are gone would only grow the file; the others stay (a run over
        # configs/a must not throw away what a run over configs/b found).
        entries = _one_object_per_path({p: e for p, e in self.entries.items() if os.path.lexists(p)})
        data = pickle.dumps({"key": self.key, "entries": entries}, protocol=pickle.HIGHEST_PROTOCOL)
        write_cache_file(self.path, data)


def _one_object_per_path(entries: dict[str, Entry]) -> dict[str, Entry]:
    """The entries with every equal Path one object, so pickle writes it once: a shared base is in
    the chain of hundreds of configs, and rebuilding a Path per mention was most of the time an
    unchanged repository's check spent loading the cache."""
    shared: dict[Path, Path] = {}
    out = {}
    for path, entry in entries.items():
        outcome = entry.outcome
        if isinstance(outcome, Checked):
            files = tuple(shared.setdefault(file, file) for file in outcome.files)
            findings = tuple(replace(p, path=shared.setdefault(p.path, p.path)) for p in outcome.findings)
            entry = replace(entry, outcome=replace(outcome, files=files, findings=findings))
        out[path] = entry
    return out


class JsonCacheFile:
    """A dict kept in one JSON file of the cache directory, for caches whose entries are only added:
    read on first use (a missing, unreadable, corrupted or foreign file reads as empty), written
    atomically by ``save`` when it has grown.  ``location`` is where (None: kept in memory only)."""

    def __init__(self, location: Path | None = None):
        self._location = location
        self._entries: dict[str, Any] | None = None
        self._saved = 0  # entries the file on disk holds

    def location(self) -> Path | None:
        return self._location

    @property
    def entries(self) -> dict[str, Any]:
        if self._entries is None:
            self._entries = {}
            path = self.location()
            if path is not None and path.exists():
                try:
                    loaded = json.loads(path.read_text())
                except (OSError, ValueError):
                    loaded = {}
                self._entries = loaded if isinstance(loaded, dict) else {}
            self._saved = len(self._entries)
        return self._entries

    def save(self) -> None:
        path = self.location()
        if path is None or self._entries is None or len(self._entries) == self._saved:
            return
        write_cache_file(path, json.dumps(self._entries).encode())
        self._saved = len(self._entries)


@dataclass(frozen=True)
class Inputs:
    """What a config's result is computed from, for the results cache and the write gate's kept answers."""

    files: tuple[Path, ...]  # the config and every base it reached or looked for (absent ones too)
    plugins: tuple[Path, ...] | None  # the local plugin code it imports; None: it cannot be pinned down
    env: tuple[tuple[str, str | None], ...]  # environment variables its `{{$VAR:default}}` placeholders read
    transient: bool  # one of its files failed for a reason that may not recur (a timeout)


def inputs_of(resolver: Resolver, config: Path) -> Inputs:
    """What ``config`` (resolved by ``resolver``) came from; its plugin code only when it resolved."""
    files = tuple(resolver.deps.get(config) or {config: None})
    env = tuple(sorted({(name, value) for f in files for name, value in resolver.env_used.get(f, {}).items()}))
    plugins: tuple[Path, ...] | None = ()
    if config in resolver.units:
        from freezefix.plugins import plugin_files

        found = plugin_files(resolver.values(config), config)
        plugins = None if found is None else tuple(found)
    return Inputs(files, plugins, env, any(f in resolver.transient for f in files))


