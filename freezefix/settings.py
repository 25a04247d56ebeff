"""``[tool.freezefix]`` in pyproject.toml, found by walking up from the paths given.

    [tool.freezefix]
    select = ["FF1"]             # codes or prefixes
    ignore = ["FF105"]
    freeze = ["img_backbone", "pts_backbone"]   # the freeze policy (FF110)
    exclude = ["configs/legacy/**", "**/*_debug.py"]
    unsafe-fixes = false

Options given on the command line win over the file.
"""

from __future__ import annotations

import fnmatch
import os
import sys
from dataclasses import dataclass
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # the same parser, as a package, for the Python 3.8-3.10 of many training environments
    import tomli as tomllib


class SettingsError(Exception):
    pass


@dataclass(frozen=True)
class Settings:
    root: Path | None = None  # the directory of the pyproject.toml the settings come from
    select: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    freeze: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    unsafe_fixes: bool = False

    def excluded(self, path: Path) -> bool:
        if not self.exclude or self.root is None:
            return False
        try:
            rel = Path(os.path.relpath(path, self.root)).as_posix()
        except ValueError:
            return False
        return any(fnmatch.fnmatch(rel, pattern) or fnmatch.fnmatch(rel, pattern.rstrip("/") + "/*")
                   for pattern in self.exclude)


_KEYS = {"select", "ignore", "freeze", "exclude", "unsafe-fixes"}


def find_pyproject(paths: list[Path]) -> Path | None:
    starts = [Path(os.path.abspath(p)) for p in paths] or [Path.cwd()]
    for start in starts:
        directory = start if start.is_dir() else start.parent
        for candidate in (directory, *directory.parents):
            pyproject = candidate / "pyproject.toml"
            if pyproject.is_file():
                try:
                    data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
                except (OSError, tomllib.TOMLDecodeError):
                    continue
                if "freezefix" in data.get("tool", {}):
                    return pyproject
    return None


def load_settings(paths: list[Path]) -> Settings:
    pyproject = find_pyproject(paths)
    if pyproject is None:
        return Settings()
    table = tomllib.loads(pyproject.read_text(encoding="utf-8"))["tool"]["freezefix"]
    unknown = set(table) - _KEYS
    if unknown:
        raise SettingsError(f"{pyproject}: unknown [tool.freezefix] keys: {', '.join(sorted(unknown))}")

    def strings(name: str) -> tuple[str, ...]:
        value = table.get(name, [])
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise SettingsError(f"{pyproject}: [tool.freezefix] {name} must be a list of strings")
        return tuple(value)

    unsafe = table.get("unsafe-fixes", False)
    if not isinstance(unsafe, bool):
        raise SettingsError(f"{pyproject}: [tool.freezefix] unsafe-fixes must be true or false")
    return Settings(
        root=pyproject.parent,
        select=tuple(s.upper() for s in strings("select")),
        ignore=tuple(s.upper() for s in strings("ignore")),
        freeze=strings("freeze"),
        exclude=strings("exclude"),
        unsafe_fixes=unsafe,
    )
