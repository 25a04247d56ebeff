"""Rules are found by file name: each ``ffNNN_<name>.py`` module registers exactly its own rule."""

from __future__ import annotations

import pkgutil

import freezefix.rules as rules_package
from freezefix.rules import RULE_MODULE, registry

NEEDS_STACK = False  # runs in the lane without torch or OpenMMLab too


def test_every_rule_module_registers_exactly_the_rule_its_name_says():
    modules = [info.name for info in pkgutil.iter_modules(rules_package.__path__) if RULE_MODULE.match(info.name)]
    assert len(modules) >= 13
    for module in modules:
        number, name = RULE_MODULE.match(module).groups()
        owned = [rule for rule in registry.rules.values() if type(rule).__module__ == f"freezefix.rules.{module}"]
        assert len(owned) == 1, (module, owned)
        assert owned[0].code == f"FF{number}", module
        assert owned[0].name == name.replace("_", "-"), module


def test_no_rule_is_registered_outside_a_rule_module():
    for code, rule in registry.rules.items():
        assert RULE_MODULE.match(type(rule).__module__.rpartition(".")[2]), code
