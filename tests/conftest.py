from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import pytest
from click.testing import CliRunner

from freezefix.cli import main

FIXTURES = Path(__file__).parent / "fixtures"

warnings.filterwarnings("ignore", message="pkg_resources is deprecated")


def pytest_collection_modifyitems(config, items):
    """Every test needs torch and an OpenMMLab stack unless its module says ``NEEDS_STACK = False``:
    such tests carry the ``stack`` marker (``-m "not stack"`` selects the others) and, in a Python
    without a stack, are skipped with the reason instead of failing on an import."""
    from freezefix.stacks import missing

    absent = missing()
    for item in items:
        if getattr(item.module, "NEEDS_STACK", True):
            item.add_marker(pytest.mark.stack)
            if absent:
                item.add_marker(pytest.mark.skip(reason=f"needs a stack: {absent}"))


@pytest.fixture(autouse=True)
def _isolated_probe_cache(tmp_path_factory, monkeypatch):
    # One probe cache per test session: tests must not depend on a user's cache, nor write to it.
    monkeypatch.setenv("FREEZEFIX_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "probe-cache"))


@pytest.fixture
def copy_fixture(tmp_path, monkeypatch):
    """Copy a fixture repo into tmp_path and chdir there; returns its path."""

    def copy(name: str) -> Path:
        target = tmp_path / name
        shutil.copytree(FIXTURES / name, target)
        monkeypatch.chdir(target)
        return target

    return copy


@pytest.fixture
def cli():
    def run(*args: str):
        return CliRunner().invoke(main, list(args), catch_exceptions=False)

    return run


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def params_by_child(model) -> dict[str, tuple[int, int]]:
    """Top-level child → (parameters, trainable), for children that have parameters: what `explain`
    must report, counted here independently of freezefix."""
    counts = {}
    for name, child in model.named_children():
        params = list(child.parameters())
        if params:
            counts[name] = (sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad))
    return counts


def stack_values(path: Path, lenient: bool = False) -> dict | None:
    """What the installed stack's own ``Config.fromfile`` makes of a config (mmengine's, or mmcv
    1.x's; plugins not imported), as plain values: the oracle the resolver and every rewrite are
    judged by.  ``lenient``: None for a config the stack cannot load, or for a script among the
    configs (argparse: it holds functions)."""
    from freezefix.stacks import current

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            values = current().load_config(str(path))
        except Exception:  # noqa: BLE001 - lenient callers leave such configs out
            if lenient:
                return None
            raise
    return None if lenient and any(callable(v) for v in values.values()) else values


def assert_changed_exactly_by_plan(configs, before: dict, session) -> None:
    """Each config loads in mmengine as it did before plus the changes its findings' fixes planned."""
    from freezefix.plan import apply_change

    planned = {c: [ch for f in found if f.fix for ch in f.fix.changes] for c, found in session.per_config.items()}
    for config in configs:
        expected = before[config]
        for change in planned.get(config, []):
            expected = apply_change(expected, change)
        assert stack_values(config) == expected, config


def assert_repo_changed_exactly_by_plan(files, before_values: dict, before_bytes: dict, written, planned: dict) -> None:
    """After ``apply`` on a copied config repo: a file changed only if it was written, and every config
    mmengine could load before loads as before plus the changes planned for it (nothing else anywhere)."""
    import pytest

    from freezefix.plan import apply_change

    written = set(written)
    for path in files:
        if path not in written and path.read_bytes() != before_bytes[path]:
            pytest.fail(f"{path} changed without being in the plan")
        if before_values[path] is None:
            continue
        expected = before_values[path]
        for change in planned.get(path, []):
            expected = apply_change(expected, change)
        assert stack_values(path, lenient=True) == expected, path


def what_builds(values: dict, config: Path) -> tuple[str | None, frozenset[str]]:
    """(the level the model builds at — 'model', 'module' or None —, the top-level modules built
    when only some are), as the verification worker builds it (meta device, plugins imported)."""
    from freezefix.models import build

    built = build(values, config, device="meta")
    if built.model is None:
        return None, frozenset()
    return built.level, frozenset(n for n, _ in built.model.named_children()) if built.level == "module" else frozenset()


def fixes_that_change_what_builds(session) -> list[str]:
    """Every offered fix of a checked session, applied in memory to each config it is for and built:
    a fix must leave the model building at the level it built at, with the same modules, and every
    module it edits must build after it.  Only a fix that declares it repairs a module
    (``Fix.repairs``: FF103's frozen_stages past the range, FF104's rejected argument) may make more
    build, and then exactly that module.  Returns what broke the rule."""
    from freezefix.plan import apply_change
    from freezefix.verify.verdict import edited_modules

    problems = []
    for config, findings in session.per_config.items():
        fixes = [f.fix for f in findings if f.fix is not None]
        if not fixes:
            continue
        values = stack_values(config)
        before = what_builds(values, config)
        for fix in fixes:
            fixed = values
            for change in fix.changes:
                fixed = apply_change(fixed, change)
            after = what_builds(fixed, config)
            repaired = bool(fix.repairs) and before[0] == "module" and after[0] is not None and (
                after[0] == "model" or (before[1] <= after[1] and after[1] - before[1] <= set(fix.repairs)))
            if after != before and not repaired:
                problems.append(f"{config}: {fix.changes} builds {after} where the config builds {before}")
            unbuilt = sorted(edited_modules(list(fix.changes), fixed.get("model") or {}) - after[1]) \
                if after[0] == "module" else [] if after[0] == "model" else ["the model"]
            if unbuilt:
                problems.append(f"{config}: {fix.changes} edits {', '.join(unbuilt)}, which does not build after it")
    return problems


def found_and_unjudged(result, root: Path) -> tuple[list[tuple], dict[str, tuple[str, list[str]]]]:
    """A run's findings as (file under ``root``, code, names of the configs it is reported for), sorted,
    and what it could not judge as what → (why, names of the configs)."""
    found = sorted((r.path.relative_to(root).as_posix(), r.finding.code, tuple(c.name for c in r.configs))
                   for r in result.findings)
    unjudged = {what: (why, sorted(c.name for c in configs)) for (what, why), configs in result.unjudged.items()}
    return found, unjudged
