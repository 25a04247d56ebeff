"""Tests use freezefix through what it makes public: no test imports, reads or patches a private
name (``_name``) of freezefix, so that a refactoring of the internals never needs a test changed
for a reason that is not a change of behaviour.  What a test needs to observe is a public counter
(``RunResult.files_resolved``, ``Prober.classes_built``, ``KeptModules.hits``)."""

from __future__ import annotations

import ast
from pathlib import Path

NEEDS_STACK = False  # reads test files only

TESTS = Path(__file__).parent


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_uses(source: str) -> list[str]:
    """``line: what`` for every private name of freezefix the module imports, reads or patches."""
    tree = ast.parse(source)
    freezefix_names: set[str] = set()  # names bound to freezefix modules or objects
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            freezefix_names |= {(a.asname or a.name).split(".")[0] for a in node.names if a.name.startswith("freezefix")}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("freezefix"):
            for alias in node.names:
                freezefix_names.add(alias.asname or alias.name)
                if _private(alias.name):
                    found.append(f"{node.lineno}: imports {node.module}.{alias.name}")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            root = node.value
            while isinstance(root, ast.Attribute):
                root = root.value
            if isinstance(root, ast.Name) and root.id in freezefix_names:
                found.append(f"{node.lineno}: reads {root.id}….{node.attr}")
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "setattr"
              and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant)
              and isinstance(node.args[1].value, str) and _private(node.args[1].value)):
            target = node.args[0]
            while isinstance(target, ast.Attribute):
                target = target.value
            if isinstance(target, ast.Name) and target.id in freezefix_names:
                found.append(f"{node.lineno}: patches {target.id}.{node.args[1].value}")
    return found


def test_no_test_reaches_into_private_names_of_freezefix():
    files = [path for path in sorted(TESTS.rglob("*.py")) if "fixtures" not in path.parts]
    offenders = {path.relative_to(TESTS).as_posix(): uses for path in files
                 for uses in [private_uses(path.read_text(encoding="utf-8"))] if uses}
    assert len(files) > 30
    assert offenders == {}


def test_the_check_sees_each_way_of_reaching_in():
    source = (
        "import freezefix.cache\n"
        "from freezefix.config import resolve\n"
        "from freezefix.plan import _file_edits\n"
        "def test(monkeypatch):\n"
        "    monkeypatch.setattr(resolve.Resolver, '_file2dict', None)\n"
        "    freezefix.cache._KEYED\n"
        "    monkeypatch.setattr(resolve, 'Resolver', None)\n"  # public: fine
        "    other._private\n"  # not freezefix: fine
    )
    assert sorted(private_uses(source)) == [
        "3: imports freezefix.plan._file_edits",
        "5: patches resolve._file2dict",
        "6: reads freezefix…._KEYED",
    ]
