"""The README's rule table and the rule pages are written from the rules; a new rule starts from a
template that the rule package loads."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from freezefix.rules import registry

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
NEEDS_STACK = False  # runs in the lane without torch or OpenMMLab too


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"_script_{name}", SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_table_and_rule_pages_are_what_the_rules_say():
    document_rules = _script("document_rules")
    assert document_rules.stale_files() == [], "run: python scripts/document_rules.py"
    assert document_rules.main(["--check"]) == 0


def test_the_table_has_a_row_and_a_page_for_every_rule_ff100_too():
    document_rules = _script("document_rules")
    rules = [rule for _, rule in sorted(registry.rules.items())]
    table = document_rules.rule_table(rules)
    for rule in rules:
        assert f"| [{rule.code}](docs/rules/{rule.code}.md) | {rule.name} |" in table
        page = document_rules.rule_page(rule)
        assert page.startswith(f"# {rule.code} {rule.name}\n")
        assert "## What" in page and "## Fix safety" in page, rule.code
        for example in rule.INVALID:
            assert example.source.rstrip() in page
    assert "FF100" in table


def test_check_mode_names_a_stale_page(tmp_path, monkeypatch, capsys):
    document_rules = _script("document_rules")
    pages = tmp_path / "docs" / "rules"
    pages.mkdir(parents=True)
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{document_rules.TABLE_START}\nold table\n{document_rules.TABLE_END}\n", encoding="utf-8")
    monkeypatch.setattr(document_rules, "ROOT", tmp_path)
    monkeypatch.setattr(document_rules, "README", readme)
    monkeypatch.setattr(document_rules, "PAGES", pages)
    (pages / "FF999.md").write_text("a rule that is gone\n", encoding="utf-8")
    assert document_rules.main(["--check"]) == 1
    err = capsys.readouterr().err
    assert "README.md: out of date" in err and "FF101.md: out of date" in err and "FF999.md: out of date" in err
    assert document_rules.main([]) == 0
    assert not (pages / "FF999.md").exists()
    assert "| [FF101](docs/rules/FF101.md) |" in readme.read_text(encoding="utf-8")
    assert document_rules.main(["--check"]) == 0


def test_a_new_rule_module_from_the_template_loads_and_registers_its_code(tmp_path):
    new_rule = _script("new_rule")
    path, text = new_rule.module_for("FF199", "frozen-head-with-dropout")
    assert path.name == "ff199_frozen_head_with_dropout.py"
    module_file = tmp_path / path.name
    module_file.write_text(text, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("freezefix.rules.ff199_frozen_head_with_dropout", module_file)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
        rule = registry.rules["FF199"]
        assert rule.name == "frozen-head-with-dropout"
        assert type(rule).__name__ == "FrozenHeadWithDropout"
        assert list(type(rule).sections()) == ["What", "Why", "Example", "Fix safety"]
    finally:
        registry.rules.pop("FF199", None)
        sys.modules.pop(spec.name, None)


@pytest.mark.parametrize("code, name", [("F115", "x"), ("FF115", "Has Space"), ("FF115", "under_score")])
def test_the_template_refuses_a_code_or_name_the_rule_package_would_not_load(code, name):
    with pytest.raises(ValueError):
        _script("new_rule").module_for(code, name)
