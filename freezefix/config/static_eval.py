"""Run a plain config module without compiling it: most config files are assignments of literals,
``dict(...)`` calls, names and arithmetic, and walking their ``ast`` is several times cheaper than
``compile`` + ``exec``.

:func:`run` executes a module's statements against a globals dict as ``exec`` would (same objects,
same aliasing, same order, the same operations), and raises :class:`Unsupported` at the first thing
it does not execute itself: imports, loops, functions, comprehensions, method calls, calls of
anything but a few pure builtins.  Nothing it executes has an effect outside the globals and the
containers they hold, so the caller can exec the module on fresh globals instead.
"""

from __future__ import annotations

import ast
import builtins
import operator
import sys
from typing import Any, Callable

# Builtins a config may call or name: pure constructors and arithmetic helpers.  Any other builtin
# (print, open, __import__ …) sends the module to exec, where it behaves as Python says.
_CALLABLE_BUILTINS = {
    name: getattr(builtins, name)
    for name in ("dict", "list", "tuple", "set", "frozenset", "len", "int", "float", "str", "bool", "min", "max",
                 "sum", "abs", "round", "range")
}
_BUILTIN_NAMES = frozenset(dir(builtins))

_BINARY = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
    ast.LShift: operator.lshift, ast.RShift: operator.rshift, ast.BitOr: operator.or_,
    ast.BitXor: operator.xor, ast.BitAnd: operator.and_, ast.MatMult: operator.matmul,
}
_IN_PLACE = {
    ast.Add: operator.iadd, ast.Sub: operator.isub, ast.Mult: operator.imul, ast.Div: operator.itruediv,
    ast.FloorDiv: operator.ifloordiv, ast.Mod: operator.imod, ast.Pow: operator.ipow,
    ast.LShift: operator.ilshift, ast.RShift: operator.irshift, ast.BitOr: operator.ior,
    ast.BitXor: operator.ixor, ast.BitAnd: operator.iand, ast.MatMult: operator.imatmul,
}
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos, ast.Not: operator.not_, ast.Invert: operator.invert}
_COMPARE = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt,
    ast.GtE: operator.ge, ast.Is: operator.is_, ast.IsNot: operator.is_not,
    ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b,
}
_INDEX = ast.Index if sys.version_info < (3, 9) else None  # type: ignore[attr-defined]
_CONVERSIONS = {-1: lambda v: v, ord("s"): str, ord("r"): repr, ord("a"): ascii}


class Unsupported(Exception):
    """The module does more than :func:`run` executes; exec it instead (on fresh globals: the
    statements before this one have run)."""


def mutates_containers(tree: ast.Module) -> bool:
    """Whether a module :func:`run` can execute may change a container it did not create: item or
    attribute assignment, ``del``, augmented assignment (``x += [...]`` extends a base's list in
    place).  Without any, it only reads what ``_base_`` holds, and a copy of it is not needed."""
    for stmt in tree.body:
        if isinstance(stmt, (ast.AugAssign, ast.Delete)):
            return True
        if isinstance(stmt, ast.Assign) and not all(isinstance(t, ast.Name) for t in stmt.targets):
            return True
    return False


def run(tree: ast.Module, scope: dict) -> None:
    """Execute ``tree`` with ``scope`` as its globals, as exec would; Unsupported at the first
    statement or expression it does not execute itself."""
    evaluator = _Evaluator(scope)
    for stmt in tree.body:
        evaluator.statement(stmt)


class _Evaluator:
    def __init__(self, scope: dict):
        self.scope = scope

    # -- statements ---------------------------------------------------------------------------
    def statement(self, stmt: ast.stmt) -> None:
        if isinstance(stmt, ast.Assign):
            value = self.eval(stmt.value)
            for target in stmt.targets:  # `a = b = dict()`: the same object, left to right
                self.assign(target, value)
        elif isinstance(stmt, ast.AugAssign):
            self.augment(stmt)
        elif isinstance(stmt, ast.Expr):
            self.eval(stmt.value)
        elif isinstance(stmt, ast.Delete):
            for target in stmt.targets:
                self.delete(target)
        elif not isinstance(stmt, ast.Pass):
            raise Unsupported(type(stmt).__name__)  # imports, if / for / with / def / class, annotations …

    def assign(self, target: ast.expr, value: Any) -> None:
        if isinstance(target, ast.Name):
            self.scope[target.id] = value
        elif isinstance(target, ast.Subscript):
            container = self.eval(target.value)
            container[self.eval(target.slice)] = value
        elif isinstance(target, ast.Attribute):
            setattr(self.eval(target.value), target.attr, value)
        else:
            raise Unsupported("unpacking")

    def augment(self, stmt: ast.AugAssign) -> None:
        target, op = stmt.target, _IN_PLACE[type(stmt.op)]
        if isinstance(target, ast.Name):
            current = self.name(target.id)
            self.scope[target.id] = op(current, self.eval(stmt.value))
        elif isinstance(target, ast.Subscript):
            container, index = self.eval(target.value), self.eval(target.slice)
            container[index] = op(container[index], self.eval(stmt.value))
        elif isinstance(target, ast.Attribute):
            owner = self.eval(target.value)
            setattr(owner, target.attr, op(getattr(owner, target.attr), self.eval(stmt.value)))
        else:
            raise Unsupported("augmented assignment to this target")

    def delete(self, target: ast.expr) -> None:
        if isinstance(target, ast.Name):
            if target.id not in self.scope:
                raise NameError(f"name '{target.id}' is not defined")
            del self.scope[target.id]
        elif isinstance(target, ast.Subscript):
            del self.eval(target.value)[self.eval(target.slice)]
        elif isinstance(target, ast.Attribute):
            delattr(self.eval(target.value), target.attr)
        else:
            raise Unsupported("del of this target")

    # -- expressions --------------------------------------------------------------------------
    def name(self, name: str) -> Any:
        if name in self.scope:
            return self.scope[name]
        if name in _CALLABLE_BUILTINS:
            return _CALLABLE_BUILTINS[name]
        if name in _BUILTIN_NAMES:
            raise Unsupported(name)  # print, open, __import__ …: exec's business
        raise NameError(f"name '{name}' is not defined")

    def eval(self, node: ast.expr) -> Any:  # noqa: C901 - one branch per node kind, as ast.literal_eval
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            return self.name(node.id)
        if isinstance(node, ast.Dict):
            out: dict = {}
            for key, value in zip(node.keys, node.values):
                if key is None:
                    out.update(self.eval(value))  # {**other}
                else:
                    k = self.eval(key)
                    out[k] = self.eval(value)
            return out
        if isinstance(node, ast.List):
            return self.sequence(node.elts)
        if isinstance(node, ast.Tuple):
            return tuple(self.sequence(node.elts))
        if isinstance(node, ast.Set):
            return set(self.sequence(node.elts))
        if isinstance(node, ast.Call):
            return self.call(node)
        if isinstance(node, ast.BinOp):
            left = self.eval(node.left)
            return _BINARY[type(node.op)](left, self.eval(node.right))
        if isinstance(node, ast.UnaryOp):
            return _UNARY[type(node.op)](self.eval(node.operand))
        if isinstance(node, ast.BoolOp):
            return _bool_op(node, self.eval)
        if isinstance(node, ast.Compare):
            return _compare(node, self.eval)
        if isinstance(node, ast.IfExp):
            return self.eval(node.body) if self.eval(node.test) else self.eval(node.orelse)
        if isinstance(node, ast.Subscript):
            container = self.eval(node.value)
            return container[self.eval(node.slice)]
        if _INDEX is not None and isinstance(node, _INDEX):  # Python 3.8 wraps a subscript's index
            return self.eval(node.value)  # type: ignore[attr-defined]
        if isinstance(node, ast.Attribute):
            return getattr(self.eval(node.value), node.attr)
        if isinstance(node, ast.Slice):
            return slice(*(None if part is None else self.eval(part) for part in (node.lower, node.upper, node.step)))
        if isinstance(node, ast.JoinedStr):
            return "".join(self.eval(part) for part in node.values)
        if isinstance(node, ast.FormattedValue):
            spec = "" if node.format_spec is None else self.eval(node.format_spec)
            return format(_CONVERSIONS[node.conversion](self.eval(node.value)), spec)
        raise Unsupported(type(node).__name__)  # comprehensions, lambdas, walrus …

    def sequence(self, elements: list[ast.expr]) -> list:
        out: list = []
        for element in elements:
            if isinstance(element, ast.Starred):
                out.extend(self.eval(element.value))
            else:
                out.append(self.eval(element))
        return out

    def call(self, node: ast.Call) -> Any:
        if not isinstance(node.func, ast.Name):
            raise Unsupported("a method call")  # x.copy(), '…'.format(), model.update(…) may do anything
        func = self.eval(node.func)
        args = self.sequence(node.args)
        kwargs: dict[str, Any] = {}
        for keyword in node.keywords:
            if keyword.arg is None:
                spread = self.eval(keyword.value)
                for name in spread:
                    if name in kwargs:
                        raise TypeError(f"{_called(func)} got multiple values for keyword argument '{name}'")
                    kwargs[name] = spread[name]
            else:
                if keyword.arg in kwargs:
                    raise TypeError(f"{_called(func)} got multiple values for keyword argument '{keyword.arg}'")
                kwargs[keyword.arg] = self.eval(keyword.value)
        return func(*args, **kwargs)


def _bool_op(node: ast.BoolOp, evaluate: Callable[[ast.expr], Any]) -> Any:
    value = None
    for operand in node.values:
        value = evaluate(operand)
        if bool(value) is isinstance(node.op, ast.Or):
            return value  # short-circuit, as `and` / `or` do
    return value


def _compare(node: ast.Compare, evaluate: Callable[[ast.expr], Any]) -> Any:
    left, result = evaluate(node.left), True
    for op, comparator in zip(node.ops, node.comparators):
        right = evaluate(comparator)
        result = _COMPARE[type(op)](left, right)
        if not result:
            return result  # a chain stops at its first false link and gives that result
        left = right
    return result


def _called(func: Any) -> str:
    return f"{getattr(func, '__qualname__', type(func).__name__)}()"
