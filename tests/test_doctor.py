"""`freezefix doctor`: what freezefix finds in the Python it runs in, and whether it can work there.

The environment checked is the real one: the versions it must name are read here from the installed
packages' metadata, plugins are real packages written into tmp_path, and the Python without torch is
a real interpreter (the venv's base Python) given only freezefix's own requirements.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, distribution, version
from pathlib import Path

import pytest

import freezefix

REPO = Path(__file__).resolve().parents[1]


def test_doctor_names_what_is_installed_here_and_exits_0(cli):
    import torch

    result = cli("doctor", "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["ok"] is True and data["problems"] == []
    assert data["freezefix"] == {"version": version("freezefix"),
                                 "location": str(Path(freezefix.__file__).resolve().parent)}
    assert data["python"]["executable"] == sys.executable
    assert data["torch"]["version"] == version("torch")
    assert data["torch"]["cuda_available"] == torch.cuda.is_available()
    assert data["stack"]["name"] == "mmengine"
    for package in ("mmengine", "mmcv", "mmdet", "mmdet3d"):
        assert f"{package} {version(package)}" in data["stack"]["versions"]
    assert data["registries"]["mmdet"] == data["registries"]["mmdet3d"] == "ok"
    for scope in ("mmpretrain", "mmseg"):  # absent here: named as such, not a failure
        expected = "not installed" if _absent(scope) else "ok"
        assert data["registries"][scope] == expected
    # The conftest points the caches at a per-session directory: doctor must say so.
    assert data["caches"]["dir"] == os.environ["FREEZEFIX_CACHE_DIR"]
    assert data["caches"]["source"] == "FREEZEFIX_CACHE_DIR" and data["caches"]["enabled"] is True

    text = cli("doctor")
    assert text.exit_code == 0
    assert f"torch          {version('torch')}" in text.stdout
    assert text.stdout.rstrip().endswith("freezefix can check, fix and explain configs in this environment")


def test_doctor_says_when_caching_is_off(cli, monkeypatch):
    monkeypatch.setenv("FREEZEFIX_NO_CACHE", "1")
    data = json.loads(cli("doctor", "--format", "json").stdout)
    assert data["caches"]["enabled"] is False
    item = next(i for i in data["items"] if i["label"] == "caches")
    assert "FREEZEFIX_NO_CACHE" in item["detail"] and item["status"] == "info"


def _repo(root: Path, plugin: str, init: str) -> Path:
    """A research repo whose config loads its plugin package the mmcv-1.x way (plugin_dir)."""
    (root / "configs").mkdir(parents=True)
    (root / "configs" / "train.py").write_text(
        f"plugin = True\nplugin_dir = '{plugin}/'\nmodel = dict(type='ResNet', depth=50)\n")
    (root / plugin).mkdir()
    (root / plugin / "__init__.py").write_text(init)
    return root


def test_doctor_imports_the_plugins_configs_name_and_fails_on_a_broken_one(tmp_path, cli):
    good = _repo(tmp_path / "good", "doctor_ok_plugin", "from mmdet.registry import MODELS\nREADY = True\n")
    broken = _repo(tmp_path / "broken", "doctor_broken_plugin",
                   "import doctor_missing_compiled_ops  # a CUDA extension that was never built\n")
    (broken / "configs" / "hooks.py").write_text(
        "custom_imports = dict(imports=['freezefix.hooks', 'doctor_absent_package'], allow_failed_imports=False)\n")

    result = cli("doctor", str(good / "configs"), "--format", "json")
    assert result.exit_code == 0, result.output
    [plugin] = json.loads(result.stdout)["plugins"]
    assert plugin["module"] == "doctor_ok_plugin" and plugin["error"] is None
    assert plugin["location"] == str(good / "doctor_ok_plugin" / "__init__.py")
    assert sys.modules["doctor_ok_plugin"].READY is True  # really imported, from that file

    result = cli("doctor", str(good / "configs"), str(broken / "configs"), "--format", "json")
    assert result.exit_code == 2
    plugins = {p["name"]: p for p in json.loads(result.stdout)["plugins"]}
    assert set(plugins) == {"doctor_ok_plugin/", "doctor_broken_plugin/", "freezefix.hooks", "doctor_absent_package"}
    assert plugins["doctor_ok_plugin/"]["error"] is None and plugins["freezefix.hooks"]["error"] is None
    assert plugins["doctor_broken_plugin/"]["error"] == (
        "not importable: ModuleNotFoundError: No module named 'doctor_missing_compiled_ops'")
    assert plugins["doctor_absent_package"]["error"].startswith("not importable: ModuleNotFoundError")
    assert plugins["doctor_broken_plugin/"]["configs"] == [os.path.relpath(broken / "configs" / "train.py")]

    text = cli("doctor", str(broken / "configs"))
    assert text.exit_code == 2
    failed = [line for line in text.stdout.splitlines() if line.startswith("FAIL")]
    assert len(failed) == 2
    assert any("plugin_dir" in line and "'doctor_broken_plugin/' not importable" in line for line in failed)
    assert any("custom_imports" in line and "'doctor_absent_package' not importable" in line for line in failed)
    assert "cannot work in this environment: 2 problems" in text.stdout


def _absent(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is None


def _requirement_closure() -> dict[str, object]:
    """The installed distributions freezefix's own requirements pull in (extras left out)."""
    found: dict[str, object] = {}
    todo = [r for r in distribution("freezefix").requires or [] if "extra ==" not in r]
    while todo:
        name = re.match(r"[A-Za-z0-9._-]+", todo.pop()).group(0)
        try:
            dist = distribution(name)
        except PackageNotFoundError:
            continue  # a marker excludes it here (tomli on 3.11)
        key = dist.metadata["Name"].lower()
        if key not in found:
            found[key] = dist
            todo += [r for r in dist.requires or [] if "extra ==" not in r]
    return found


def _requirements_only(target: Path) -> Path:
    """A directory holding (as links) exactly freezefix's requirements: click, rich, libcst and theirs."""
    target.mkdir()
    for dist in _requirement_closure().values():
        for file in dist.files or []:
            top = file.parts[0]
            source = Path(dist.locate_file(top))
            if top != ".." and top != "__pycache__" and not (target / top).exists():
                (target / top).symlink_to(source)
    return target


def test_doctor_in_a_python_without_torch_exits_2_and_says_where_to_run(tmp_path):
    base = Path(getattr(sys, "_base_executable", sys.executable))
    probe = subprocess.run([str(base), "-s", "-c", "import torch"], capture_output=True)
    if probe.returncode == 0:
        pytest.skip(f"the base Python {base} has torch: no torch-less Python here")
    shim = _requirements_only(tmp_path / "requirements")
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONHOME")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(shim)])
    for fmt in ("text", "json"):
        run = subprocess.run([str(base), "-s", "-m", "freezefix", "doctor", "--format", fmt], cwd=tmp_path,
                             env=env, capture_output=True, text=True, timeout=120)
        assert run.returncode == 2, run.stderr
        if fmt == "json":
            data = json.loads(run.stdout)
            assert data["torch"] == {"error": "not installed"} and data["stack"]["name"] is None
            assert data["python"]["executable"] == str(base) and not data["ok"]
        else:
            text = " ".join(run.stdout.split())
            assert "FAIL torch torch and mmdet not installed in this Python" in text
            assert "environment your configs train in" in text and str(base) in text
            assert "freezefix cannot work in this environment: 1 problem" in text
