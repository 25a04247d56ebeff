"""freezefix's modules import each other without cycles, counting the imports written inside
functions and under ``if TYPE_CHECKING:`` too (a cycle that only a deferred import or a type
annotation hides is still two modules that cannot be understood, tested or moved apart)."""

from __future__ import annotations

import ast
from pathlib import Path

import freezefix

NEEDS_STACK = False  # runs in the lane without torch or OpenMMLab too

ROOT = Path(freezefix.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """module → the freezefix modules it imports anywhere in its code."""
    modules = {_module_name(p): p for p in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
            else:
                continue
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start)
            if found:
                return found
    return None


def test_no_module_of_freezefix_imports_itself_through_others():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_graph_sees_imports_inside_functions():
    graph = import_graph()
    # models.build imports nothing of probe; the prober imports models.build inside a method.
    assert "freezefix.models" in graph["freezefix.probe"]
    assert "freezefix.classes" in graph["freezefix.models"]


# Layers, lowest first: a module imports modules of its own layer or of the layers below, never
# above (the longest matching name decides a module's layer).
LAYERS = [
    # shared types and plain helpers that know nothing of configs, models or rules
    ["freezefix.ftypes", "freezefix.facts", "freezefix.textio", "freezefix.settings", "freezefix.suppress",
     "freezefix.discover", "freezefix.paramwise", "freezefix.weights", "freezefix.checkpoints",
     "freezefix.config.plain", "freezefix.config.errors", "freezefix.config.static_eval", "freezefix.stacks.common",
     "freezefix.building", "freezefix.hooks.model_state", "freezefix.hooks.report",
     "freezefix.hooks.training_state"],
    # reading configs as mmengine / mmcv would, and the installed stack's registries
    ["freezefix.config", "freezefix.stacks", "freezefix.classes", "freezefix.plugins"],
    # facts about classes and models; the results cache; planning and rewriting files
    ["freezefix.models", "freezefix.probe", "freezefix.class_probe", "freezefix.cache", "freezefix.analysis",
     "freezefix.consumers", "freezefix.rewrite", "freezefix.frozen_weights",
     "freezefix.plan"],
    ["freezefix.rules"],
    # the write gate and the worker it talks to: they judge configs with the step they are handed
    ["freezefix.verify"],
    # the stages of a run
    ["freezefix.engine"],
    ["freezefix.api"],
    # what users run: the CLI, its reports and commands, the training hooks
    ["freezefix", "freezefix.__main__", "freezefix.cli", "freezefix.report", "freezefix.explain", "freezefix.bench",
     "freezefix.testing",
     "freezefix.doctor", "freezefix.hooks"],
]


def layer_of(module: str) -> int:
    matches = [(len(prefix), level) for level, prefixes in enumerate(LAYERS) for prefix in prefixes
               if module == prefix or module.startswith(prefix + ".")]
    assert matches, f"{module} is in no layer: add it to LAYERS"
    return max(matches)[1]


def test_layers_import_downward_only():
    graph = import_graph()
    upward = [f"{module} (layer {layer_of(module)}) imports {target} (layer {layer_of(target)})"
              for module, targets in sorted(graph.items()) for target in sorted(targets)
              if layer_of(target) > layer_of(module)]
    assert upward == []


def test_the_shared_types_import_nothing_of_freezefix():
    assert import_graph()["freezefix.ftypes"] == set()


def test_the_layer_check_sees_an_upward_import():
    assert layer_of("freezefix.engine.fix") > layer_of("freezefix.verify.gate") > layer_of("freezefix.rules.base")
    assert layer_of("freezefix.plan") < layer_of("freezefix.rules.ff101_partial_freeze_zero_lr")


def test_rules_know_the_stack_only_through_their_facts_source():
    """A rule asks which stack runs, and what its scheduler, optimizer and DDP do, of the view's
    facts source (``freezefix.facts.FactsSource``): that is how recorded facts stand in for a stack."""
    graph = import_graph()
    reaching = {module: sorted(t for t in targets if t == "freezefix.stacks" or t.startswith("freezefix.stacks."))
                for module, targets in graph.items() if module.startswith("freezefix.rules")}
    assert {m: t for m, t in reaching.items() if t} == {}
    assert any(m.startswith("freezefix.rules.ff") for m in reaching)  # the rules were looked at


def test_no_two_packages_import_each_other():
    """Packages too: engine imports the write gate, which is handed the step that judges again (it
    imports no engine); config loading is handed the registry names (it imports no stack)."""
    def package(module: str) -> str:
        parts = module.split(".")
        return ".".join(parts[:2]) if len(parts) > 2 else module

    packages: dict[str, set[str]] = {}
    for module, targets in import_graph().items():
        packages.setdefault(package(module), set()).update(package(t) for t in targets if package(t) != package(module))
    cycle = find_cycle(packages)
    assert cycle is None, "package cycle: " + " -> ".join(cycle or [])
