"""The rules, one module each (``ffNNN_<name>.py``); importing this package registers all of them.

Modules are found by name, so a new rule needs no list to be added to: a test checks that every
module registers exactly the one rule its file name says.
"""

import importlib
import pkgutil
import re

from freezefix.rules.base import REMOVE, Change, Finding, Fix, Invalid, Options, Rule, Valid, registry

RULE_MODULE = re.compile(r"^ff(\d{3})_(\w+)$")

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda info: info.name):
    if RULE_MODULE.match(_info.name):
        importlib.import_module(f"{__name__}.{_info.name}")

__all__ = ["REMOVE", "RULE_MODULE", "Change", "Finding", "Fix", "Invalid", "Options", "Rule", "Valid", "registry"]
