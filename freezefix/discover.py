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
    named: set[Path] = field(default_factory=set)  # files named on the command line (always checked)

    @property
    def config_candidates(self) -> list[Path]:
        """The files that are not ``_base_`` fragments: the configs a run checks (those that load)."""
        return [f for f in self.files if not is_fragment(f)]


def is_fragment(path: Path) -> bool:
    return "_base_" in path.parts[:-1]


def discover(paths: list[Path], excluded=None) -> Discovery:
    """Config files under ``paths``; ``excluded(path)`` drops walked files (named files are kept)."""
    found: dict[Path, None] = {}
    result = Discovery()
    for given in paths:
        path = Path(os.path.abspath(given))
        if not path.exists() and not path.is_symlink():
            result.missing.append(Path(given))
        elif path.is_dir():
            for file in _walk(path):
                if excluded is None or not excluded(file):
                    found.setdefault(file)
        else:
            found.setdefault(path)  # named explicitly: checked even if ignored or oddly named
            result.named.add(path)
    result.files = list(found)
    return result


def _walk(root: Path) -> list[Path]:
    tracked = _git_files(root)
    if tracked is not None:
        return sorted(p for p in tracked if p.suffix == ".py" and p.is_file())
    files = []
    for dirpath, dirnames, filenames in os.walk(root):  # followlinks=False: no symlink loops
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and not d.startswith("."))
        folder = Path(dirpath)  # joined below, not parsed again for each file
        files.extend(folder / f for f in sorted(filenames) if f.endswith(".py"))
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


def looks_like_config(tree) -> str | None:
    """None when the module (its ``ast``) reads like an mmengine config, else why it is not one.

    Configs are executed to be resolved (as mmengine does), so a file found by walking a directory
    is first read with ``ast``: a script — a ``__main__`` guard, a class, a bare top-level call such
    as ``main()`` or ``os.system(...)``, a loop or a ``try`` — is skipped unexecuted.
    """
    import ast

    assigned: set[str] = set()
    # A new-style config gets its variables (`model`, `optim_wrapper` …) from its bases through
    # `with read_base(): from .x import *`: a method call on a name no import statement binds is
    # on one of those (`model.update(...)`), not on a module (`os.system(...)`).
    reads_bases = any(isinstance(node, ast.With) for node in tree.body)
    modules = {(a.asname or a.name).split(".")[0] for node in tree.body
               if isinstance(node, (ast.Import, ast.ImportFrom)) for a in node.names}
    for node in tree.body:
        if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            assigned.update(n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
        if isinstance(node, ast.If) and _mentions_dunder_name(node.test):
            return "a script (it has an `if __name__ == '__main__'` block), not a config"
        if isinstance(node, (ast.ClassDef, ast.While, ast.Try, ast.AsyncFunctionDef)):
            return f"a module with a top-level {type(node).__name__.lower()}, not a config"
        if isinstance(node, ast.Expr) and not _config_expression(node.value, assigned, reads_bases, modules):
            return f"a script (line {node.lineno} runs an expression at top level), not a config"
    return None


def _config_expression(value, assigned: set[str], reads_bases: bool = False, modules: set[str] = frozenset()) -> bool:
    """A docstring, or a method call on one of the config's own variables (`custom_keys.update(...)`,
    `detector.pop('data_preprocessor')`, a base's `model.update(...)` in a new-style config); not
    `main()` or `os.system(...)`."""
    import ast

    if isinstance(value, ast.Constant) and isinstance(value.value, str):
        return True
    if isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute):
        root = value.func.value
        while isinstance(root, (ast.Attribute, ast.Subscript)):
            root = root.value
        if not isinstance(root, ast.Name):
            return False
        return root.id in assigned or (reads_bases and root.id not in modules)
    return False


def _mentions_dunder_name(test) -> bool:
    """Whether an ``if`` test names ``__name__`` anywhere (as a name, an attribute or in a string);
    written as a walk because ``ast.unparse`` needs Python 3.9."""
    import ast

    for node in ast.walk(test):
        if isinstance(node, ast.Name) and node.id == "__name__":
            return True
        if isinstance(node, ast.Attribute) and node.attr == "__name__":
            return True
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and "__name__" in node.value:
            return True
    return False
