"""Which class a config's ``type`` names, looked up in the installed stack's registries."""

from __future__ import annotations

import importlib
import inspect
from functools import lru_cache
from typing import Any

from freezefix.stacks import current


@lru_cache(maxsize=None)
def registries() -> dict[str, Any]:
    """The model registry of each installed OpenMMLab package, with its modules registered."""
    return current().registries()


def find_class(type_name: Any, scope_hint: str | None) -> tuple[Any, str]:
    available = registries()
    if not available:
        raise LookupError("no OpenMMLab model registry is importable (mmdet / mmdet3d not installed)")
    if isinstance(type_name, type):
        # A new-style config names the class itself: it is built in its own package's scope.
        return type_name, class_scope(type_name, scope_hint)
    if "." in type_name:
        scope, _, name = type_name.partition(".")
        if scope in available:
            cls = available[scope].get(name)
            if cls is not None:
                return cls, scope
        if "." in name:
            # A new-style config may name a class no registry holds (mmengine builds a class given as
            # `type` directly): its dotted import path is what the resolver kept.
            return imported_class(type_name, scope_hint)
        raise LookupError(f"{type_name!r} is not in any installed registry")
    order = [s for s in (scope_hint, *current().sibling_scopes) if s in available]
    for scope in dict.fromkeys(order):
        cls = available[scope].get(type_name)
        if cls is not None:
            return cls, scope
    raise LookupError(f"{type_name!r} is not in the registries of {', '.join(dict.fromkeys(order))}")


def imported_class(dotted: str, scope_hint: str | None) -> tuple[Any, str]:
    module_name, _, name = dotted.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), name)
    except Exception as exc:  # noqa: BLE001 - a plugin that does not import: say why
        raise LookupError(f"{dotted!r} does not import: {type(exc).__name__}: {exc}") from None
    if not isinstance(cls, type):
        raise LookupError(f"{dotted!r} is not a class")
    return cls, class_scope(cls, scope_hint)


def class_scope(cls: type, scope_hint: str | None) -> str:
    """The registry scope a class is built in: its package's, else that of the first base class
    from a package with registries (a plugin's subclass of mmdet's ResNet: 'mmdet')."""
    available = registries()
    for klass in cls.__mro__:
        package = klass.__module__.split(".")[0]
        if package in available:
            return package
    if scope_hint in available:
        return scope_hint
    return next(iter(available))


UNREADABLE = object()  # a signature that cannot be read: the argument may be taken, or not


def declared_parameter(cls: Any, name: str) -> inspect.Parameter | None | object:
    """The ``__init__`` parameter ``cls(name=...)`` reaches, None when no ``__init__`` takes it, or
    UNREADABLE.

    Subclasses often take ``**kwargs`` and hand them to their parent (mmdet's ResNeXt, Res2Net and
    DetectoRS_ResNet all do so for ``frozen_stages``), so the whole MRO is followed while each
    ``__init__`` passes keyword arguments on.
    """
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        try:
            params = inspect.signature(init).parameters
        except (TypeError, ValueError):
            return UNREADABLE
        if name in params:
            return params[name]
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            return None
    return None
