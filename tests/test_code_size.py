"""No module of freezefix over 400 lines and no class over 150: past that a module holds more than
one idea, and a class more than one job (the next change to it then breaks the other)."""

from __future__ import annotations

import ast
from pathlib import Path

import freezefix

NEEDS_STACK = False  # runs in the lane without torch or OpenMMLab too

ROOT = Path(freezefix.__file__).parent
MODULE_LINES = 400
CLASS_LINES = 150


def test_no_module_over_400_lines_and_no_class_over_150():
    too_long = []
    for path in sorted(ROOT.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        name = path.relative_to(ROOT.parent).as_posix()
        lines = text.count("\n")
        if lines > MODULE_LINES:
            too_long.append(f"{name}: {lines} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno + 1 > CLASS_LINES:
                too_long.append(f"{name}: class {node.name}, {node.end_lineno - node.lineno + 1} lines")
    assert too_long == []
