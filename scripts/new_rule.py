"""Start a rule: write ``freezefix/rules/ffNNN_<name>.py`` from a template.

    python scripts/new_rule.py FF115 frozen-head-with-dropout

The module is found by its file name (no list to add it to); the tests run its VALID and INVALID
examples at once, so fill those in first, then ``check``.  Afterwards run
``python scripts/document_rules.py`` for the README table and the rule's page.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "freezefix" / "rules"

TEMPLATE = '''"""{code} {name}.

What
    TODO: the settings this rule finds, in one or two sentences.

Why
    TODO: what goes wrong in training when they are left as they are.

Example
    TODO: the smallest config that shows it, and what ``apply`` makes of it.

Fix safety
    Reported only.
"""

from __future__ import annotations

from typing import Iterator

from freezefix.analysis import ConfigView
from freezefix.rules.base import Finding, Invalid, Options, Rule, Valid, registry

_CFG = "model = dict(type='RetinaNet', backbone=dict(type='mmdet.ResNet', depth=18, frozen_stages={{fs}}))\\n"


@registry.add
class {class_name}(Rule):
    __doc__ = __doc__
    code = "{code}"
    name = "{name}"
    summary = "TODO: fires when …"
    VALID = [Valid(_CFG.format(fs=-1))]
    INVALID: list[Invalid] = []  # TODO: at least one config the rule reports, at its line and column

    def check(self, view: ConfigView, options: Options) -> Iterator[Finding]:
        return iter(())
'''


def module_for(code: str, name: str) -> tuple[Path, str]:
    """The rule module's path and text; ValueError for a code or name the rule package would not load."""
    if not re.fullmatch(r"FF\d{3}", code):
        raise ValueError(f"{code!r}: a rule code is FF and three digits (FF115)")
    if not re.fullmatch(r"[a-z][a-z0-9]*(-[a-z0-9]+)*", name):
        raise ValueError(f"{name!r}: a rule name is lower-case words joined by '-' (frozen-head-with-dropout)")
    path = RULES / f"{code.lower()}_{name.replace('-', '_')}.py"
    class_name = "".join(word.capitalize() for word in name.split("-"))
    return path, TEMPLATE.format(code=code, name=name, class_name=class_name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("code", help="FF and three digits, not yet taken")
    parser.add_argument("name", help="lower-case words joined by '-'")
    args = parser.parse_args(argv)
    code = args.code.upper()
    try:
        path, text = module_for(code, args.name)
    except ValueError as exc:
        print(f"new_rule: {exc}", file=sys.stderr)
        return 2
    taken = sorted(RULES.glob(f"{code.lower()}_*.py"))
    if taken:
        print(f"new_rule: {code} is taken by {taken[0].relative_to(ROOT)}", file=sys.stderr)
        return 2
    path.write_text(text, encoding="utf-8")
    print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
