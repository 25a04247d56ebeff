"""New-style (pure-Python, ``with read_base()``) configs, read the way mmengine's lazy loader reads them.

mmengine parses such a config by importing its bases (``with read_base(): from .x import *``, each
base parsed afresh), turning every other import into a ``LazyObject`` (``type=ResNet`` names a class
without importing it) and executing the rest, where ``model.update(...)``, ``model['k'] = v`` and
``model.k = v`` mutate the ``ConfigDict`` objects the bases left.  This module runs those same steps
with mmengine's own helpers, but reads files through the resolver (so planned edits can be simulated
on overlay texts) and parses each base once, handing every child a deep copy of it (mmengine's
re-parse gives each child fresh objects too).

It also gives what provenance needs: a file's *own* dict is what the file changed of the globals its
bases gave it (compared before and after executing its code), and the module-level writes of the file
(assignments, ``.update(...)`` calls, item and attribute assignments) are located by
:func:`freezefix.config.locate.build_mutation_map`.
"""

from __future__ import annotations

import ast
import copy
import os
import re
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from freezefix.config.plain import map_tree

IMPORTED_OBJECT_NAMES = ("LazyObject",)


@dataclass
class LazyParse:
    cfg: Any  # mmengine ConfigDict, LazyObjects kept
    imported: set  # names bound by imports: accessible, never part of the config
    bases: list[Path]
    base_scopes: list[str | None]  # the package of an absolute (installed) base, else None
    before: dict  # the globals the bases gave the file, before its own code ran
    # Per base, the names its import binds here: None for `import *`, else {name: name in the base,
    # or None when it is renamed with `as` (its provenance is then not followed)}.
    base_names: list = None  # type: ignore[assignment]


def has_read_base(tree: ast.Module) -> bool:
    return any(isinstance(node, ast.With) for node in tree.body)


def imported_names(tree: ast.Module) -> list[dict[str, str | None] | None]:
    """What each `from … import …` inside `with read_base()` binds, in mmengine's order of bases."""
    found: list[dict[str, str | None] | None] = []
    for node in tree.body:
        if isinstance(node, ast.With):
            for statement in node.body:
                if isinstance(statement, ast.ImportFrom):
                    names = [(a.asname or a.name, a.name if not a.asname or a.asname == a.name else None)
                             for a in statement.names]
                    found.append(None if any(a.name == "*" for a in statement.names) else dict(names))
    return found


def base_module_path(spec: str, filename: Path) -> tuple[Path, str | None]:
    """Where ``from <spec> import ...`` inside ``read_base()`` reads from (mmengine's own rule)."""
    level = len(re.match(r"\.*", spec).group())
    if level > 0:
        parts = [".."] * (level - 1) + [f"{spec[level:].replace('.', '/')}.py"]
        return Path(os.path.abspath(os.path.join(os.path.dirname(filename), *parts))), None
    from mmengine.utils import get_installed_path

    package, *rest = spec.split(".")
    if not rest:
        raise ValueError(f"a read_base import must name a module inside a package, not the package {spec!r}")
    return Path(os.path.join(get_installed_path(package), *rest) + ".py"), package


def parse(path: Path, tree: ast.Module, base_parse: Callable[[Path], LazyParse],
          execute: Callable[[Any, dict], None]) -> LazyParse:
    """One new-style file, as ``mmengine.Config._parse_lazy_import`` parses it.

    ``base_parse(path)`` gives a base's parse (fresh objects); ``execute(code, globals)`` runs the
    compiled code under the resolver's time limit.
    """
    from mmengine.config import Config, ConfigDict
    from mmengine.config.lazy import LazyObject
    from mmengine.config.utils import ImportTransformer, _gather_abs_import_lazyobj

    # Lazy for the whole parse, as Config.fromfile has it: otherwise copying or reading a ConfigDict
    # imports every class it names.
    previous, ConfigDict.lazy = ConfigDict.lazy, True
    try:
        names = imported_names(tree)
        tree = copy.deepcopy(tree)  # mmengine's helpers edit the tree they are given
        specs = Config._get_base_modules(tree.body)
        base_dict: dict[str, Any] = {}
        imported: set = set()
        bases: list[Path] = []
        scopes: list[str | None] = []
        for spec in specs:
            base_path, scope = base_module_path(spec, path)
            base = base_parse(base_path)
            imported |= base.imported
            base_dict[spec] = base.cfg
            bases.append(base_path)
            scopes.append(scope)
        global_dict: dict[str, Any] = {"LazyObject": LazyObject, "__file__": str(path)}
        transform = ImportTransformer(global_dict=global_dict, base_dict=base_dict, filename=str(path))
        code = transform.visit(tree)
        code, abs_imported = _gather_abs_import_lazyobj(code, filename=str(path))
        imported |= transform.imported_obj | abs_imported
        before = plain_values(_config_names(global_dict), imported)
        execute(compile(ast.fix_missing_locations(code), str(path), "exec"), global_dict)
        cfg = Config._dict_to_config_dict_lazy(_config_names(global_dict))
    finally:
        ConfigDict.lazy = previous
    return LazyParse(cfg, imported, bases, scopes, before, names if len(names) == len(bases) else None)


def fresh_copy(parsed: LazyParse) -> LazyParse:
    """A base's parse with objects of its own (copied lazily: no class imported)."""
    from mmengine.config import ConfigDict

    # Modules a base imports as real imports (`import sys`: mmengine executes those) stay in its
    # globals; they are shared, not copied (a module cannot be).
    memo = {id(v): v for v in dict.values(parsed.cfg) if isinstance(v, types.ModuleType)}
    previous, ConfigDict.lazy = ConfigDict.lazy, True
    try:
        return LazyParse(copy.deepcopy(parsed.cfg, memo), set(parsed.imported), parsed.bases, parsed.base_scopes,
                         parsed.before, parsed.base_names)
    finally:
        ConfigDict.lazy = previous


def _config_names(global_dict: dict) -> dict:
    return {k: v for k, v in global_dict.items() if not k.startswith("__") and k not in IMPORTED_OBJECT_NAMES}


def plain_values(cfg: Any, imported: set, sources: set | None = None,
                 registered_name: Callable[[Any], str | None] | None = None) -> dict:
    """The config as the rules see it: plain containers, imported names left out (mmengine does not
    dump them), and each imported class as the type name the registries know it by
    (``registered_name``).  The source files of classes defined outside installed packages (a
    repo's plugin) are added to ``sources``: a result computed from them is stale once they change."""
    from mmengine.config.lazy import LazyAttr, LazyObject

    def named(value: Any) -> Any:
        return type_name(value, sources, registered_name) if isinstance(value, (LazyObject, LazyAttr)) else value

    def unbuilt(node: dict, recurse: Callable[[Any], Any]) -> dict:
        return {k: recurse(v) for k, v in dict.items(node)}  # ConfigDict.items() would import every LazyObject

    return {k: map_tree(v, named, unbuilt) for k, v in dict.items(cfg) if k not in imported}


def type_name(lazy: Any, sources: set | None = None,
              registered_name: Callable[[Any], str | None] | None = None) -> str:
    """``ResNet`` imported from mmdet → 'mmdet.ResNet', the name the registries build it under
    (``registered_name``); a class no registry holds keeps its dotted import path (it is then
    reported as not probed)."""
    module, imported = getattr(lazy, "_module", None), getattr(lazy, "_imported", None)
    dotted = f"{module}.{imported}" if isinstance(module, str) and imported else str(lazy)
    try:
        obj = lazy.build()
    except Exception:  # noqa: BLE001 - a plugin that does not import: reported when probed, never guessed
        return dotted
    if sources is not None:
        local = _local_source(obj)
        if local is not None:
            sources.add(local)
    named = registered_name(obj) if registered_name is not None else None
    if named:
        return named
    # No registry holds it (mmengine builds a class given as `type` directly): where it is defined.
    return f"{obj.__module__}.{obj.__qualname__}" if isinstance(obj, type) else dotted


def _local_source(obj: Any) -> Path | None:
    """The file defining ``obj`` when it is not part of an installed package (plugin code)."""
    import inspect
    import sys
    import sysconfig

    try:
        source = inspect.getsourcefile(obj)
    except TypeError:
        return None
    if source is None:
        return None
    installed = {sysconfig.get_paths()[k] for k in ("purelib", "platlib", "stdlib")} | {sys.base_prefix}
    path = Path(source).resolve()
    inside = any(str(path).startswith(os.path.join(str(Path(root).resolve()), "")) for root in installed)
    return None if inside else path


def own_values(after: dict, before: dict) -> dict:
    """What a file's own code changed of the globals its bases gave it (recursively, per key)."""
    own: dict = {}
    for key, value in after.items():
        if key not in before:
            own[key] = value
        elif isinstance(value, dict) and isinstance(before[key], dict):
            changed = own_values(value, before[key])
            if changed:
                own[key] = changed
        elif not (type(value) is type(before[key]) and value == before[key]):
            own[key] = value
    return own
