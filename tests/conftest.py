from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import pytest
from click.testing import CliRunner

from freezefix.cli import main

FIXTURES = Path(__file__).parent / "fixtures"

warnings.filterwarnings("ignore", message="pkg_resources is deprecated")


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
