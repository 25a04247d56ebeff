"""Which files under the given paths are configs, and which of them are entry points.

Files under a directory named ``_base_`` are fragments (model, dataset, schedule pieces): they are
resolved as part of the configs that inherit them, and their edits are judged by those configs, but
they are not checked on their own.  Inside a git work tree, ``.gitignore`` is honoured.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

_SKIP_DIRS = {".git", ".hg", ".svn", "__pycache__", ".venv", "venv", ".tox", ".mypy_cache", "node_modules"}


@dataclass
class Discovery:
    files: list[Path] = field(default_factory=list)
    missing: list[Path] = field(default_factory=list)  # given paths that do not exist

    @property
    def entries(self) -> list[Path]:
        return [f for f in self.files if not is_fragment(f)]


def is_fragment(path: Path) -> bool:
    return "_base_" in path.parts[:-1]


def discover(paths: list[Path]) -> Discovery:
    found: dict[Path, None] = {}
    result = Discovery()
    for given in paths:
        path = Path(os.path.abspath(given))
        if not path.exists() and not path.is_symlink():
            result.missing.append(Path(given))
        elif path.is_dir():
            for file in _walk(path):
                found.setdefault(file)
        else:
            found.setdefault(path)  # named explicitly: checked even if ignored or oddly named
    result.files = list(found)
    return result


def _walk(root: Path) -> list[Path]:
    tracked = _git_files(root)
    if tracked is not None:
        return sorted(p for p in tracked if p.suffix == ".py" and p.is_file())
    files = []
    for dirpath, dirnames, filenames in os.walk(root):  # followlinks=False: no symlink loops
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and not d.startswith("."))
        files.extend(Path(dirpath, f) for f in sorted(filenames) if f.endswith(".py"))
    return [f for f in files if f.is_file()]


def _git_files(root: Path) -> list[Path] | None:
    """Tracked and untracked-but-not-ignored files under ``root``, or None outside a work tree.

    A directory the work tree itself ignores (a virtual environment holding installed configs)
    was named on purpose: it is walked as a plain directory.
    """
    try:
        ignored = subprocess.run(["git", "check-ignore", "-q", "."], cwd=root, capture_output=True, timeout=60)
        if ignored.returncode == 0:
            return None
        out = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", "."],
            cwd=root, capture_output=True, timeout=60, check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return [root / name for name in out.decode("utf-8", "surrogateescape").split("\0") if name]
