"""Write the rule documentation from the rules themselves: the README's rule table and one page per
rule under docs/rules/ (its What / Why / Example / Fix safety sections and its VALID / INVALID
example configs, with the file ``apply`` makes of each INVALID one that has a fix).

    python scripts/document_rules.py           # rewrite what is out of date
    python scripts/document_rules.py --check   # exit 1, naming the files, when any is out of date (CI)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = ROOT / "docs" / "rules"
TABLE_START = "<!-- rule table: written by scripts/document_rules.py -->"
TABLE_END = "<!-- end of rule table -->"

sys.path.insert(0, str(ROOT))
from freezefix.rules import registry  # noqa: E402 - the checkout's rules, not an installed copy
from freezefix.rules.docs import rule_page, rule_table  # noqa: E402


def readme_with_table(readme: str, table: str) -> str:
    start, end = readme.index(TABLE_START), readme.index(TABLE_END)
    return readme[: start + len(TABLE_START)] + "\n" + table + "\n" + readme[end:]


def expected_files() -> dict[Path, str]:
    rules = [rule for _code, rule in sorted(registry.rules.items())]
    files = {README: readme_with_table(README.read_text(encoding="utf-8"), rule_table(rules))}
    for rule in rules:
        files[PAGES / f"{rule.code}.md"] = rule_page(rule)
    return files


def stale_files() -> list[Path]:
    """Files whose text is not what the rules say now, and pages of rules that no longer exist."""
    expected = expected_files()
    stale = [path for path, text in expected.items()
             if not path.exists() or path.read_text(encoding="utf-8") != text]
    stale += [page for page in sorted(PAGES.glob("*.md")) if page not in expected]
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 when a file is out of date")
    args = parser.parse_args(argv)
    stale = stale_files()
    if args.check:
        for path in stale:
            print(f"{path.relative_to(ROOT)}: out of date; run python scripts/document_rules.py", file=sys.stderr)
        return 1 if stale else 0
    expected = expected_files()
    PAGES.mkdir(parents=True, exist_ok=True)
    for path in stale:
        if path in expected:
            path.write_text(expected[path], encoding="utf-8")
        else:
            path.unlink()
        print(f"wrote {path.relative_to(ROOT)}" if path in expected else f"removed {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
