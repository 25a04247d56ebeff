"""The results cache of `check`: a hit gives what a fresh run gives, and exactly the right files are recomputed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest



@pytest.fixture
def executed(monkeypatch):
    """The files `check` runs read and execute (RunResult.files_resolved; a cache hit executes none)."""
    import freezefix.cli

    seen: list[str] = []
    check_paths = freezefix.cli.check_paths

    def counting(*args, **kwargs):
        result = check_paths(*args, **kwargs)
        seen.extend(path.name for path in result.files_resolved)
        return result

    monkeypatch.setattr(freezefix.cli, "check_paths", counting)
    return seen


def _json(cli, *args):
    result = cli("check", "--format", "json", *args)
    data = json.loads(result.stdout)
    data["summary"].pop("seconds")
    return result.exit_code, data


def _repo(root: Path) -> Path:
    """Two bases, three configs (one inheriting another), a script, a config with a missing base and one with an env placeholder."""
    (root / "configs/_base_").mkdir(parents=True)
    (root / "configs/_base_/model_a.py").write_text("model = dict(type='Nothing', depth=18)\n")
    (root / "configs/_base_/model_b.py").write_text("model = dict(type='Nothing', depth=50)\n")
    (root / "configs/a1.py").write_text("_base_ = ['./_base_/model_a.py']\nlr = 0.1\n")
    (root / "configs/a2.py").write_text("_base_ = ['./a1.py']\nlr = 0.2\n")  # model_a through a1
    (root / "configs/b1.py").write_text("_base_ = ['./_base_/model_b.py']\nlr = 0.3\n")
    (root / "configs/tool.py").write_text("lr = 0.1\nif __name__ == '__main__':\n    print(lr)\n")
    (root / "configs/orphan.py").write_text("_base_ = ['./_base_/later.py']\n")
    (root / "configs/env.py").write_text("work_dir = '{{$FF_TEST_WORK_DIR:/tmp/default}}'\n")
    return root


def test_a_hit_is_what_a_fresh_run_gives_and_executes_nothing(tmp_path, monkeypatch, cli, executed):
    monkeypatch.chdir(_repo(tmp_path))
    fresh = _json(cli, "configs", "--no-cache")
    first = _json(cli, "configs")
    assert fresh == first
    assert fresh[1]["summary"]["errors"] == 1 and fresh[1]["summary"]["skipped"] == 1
    executed.clear()
    assert _json(cli, "configs") == fresh
    assert executed == []
    text_fresh = cli("check", "configs", "--no-cache")
    text_hit = cli("check", "configs")
    assert (text_hit.stdout, text_hit.exit_code) == (text_fresh.stdout, text_fresh.exit_code)
    assert text_hit.stderr.split(" (")[0] == text_fresh.stderr.split(" (")[0]  # summary less its seconds


def test_no_cache_recomputes_everything(tmp_path, monkeypatch, cli, executed):
    monkeypatch.chdir(_repo(tmp_path))
    cli("check", "configs")
    executed.clear()
    cli("check", "configs", "--no-cache")
    assert "a1.py" in executed and "model_a.py" in executed


def test_editing_a_base_recomputes_exactly_its_dependents(tmp_path, monkeypatch, cli, executed):
    root = _repo(tmp_path)
    monkeypatch.chdir(root)
    before = _json(cli, "configs")
    base = root / "configs/_base_/model_a.py"
    base.write_text(base.read_text() + "# a comment changes the bytes, not the values\n")
    executed.clear()
    after = _json(cli, "configs")
    assert sorted(executed) == ["a1.py", "a2.py", "model_a.py"]
    assert after == before
    executed.clear()
    _json(cli, "configs")
    assert executed == []


def test_creating_a_missing_base_and_changing_an_env_variable_invalidate(tmp_path, monkeypatch, cli, executed):
    root = _repo(tmp_path)
    monkeypatch.chdir(root)
    monkeypatch.delenv("FF_TEST_WORK_DIR", raising=False)
    _, data = _json(cli, "configs")
    assert [e["path"] for e in data["errors"]] == [os.path.join("configs", "orphan.py")]
    (root / "configs/_base_/later.py").write_text("lr = 1.0\n")
    monkeypatch.setenv("FF_TEST_WORK_DIR", "/tmp/elsewhere")
    executed.clear()
    code, data = _json(cli, "configs")
    assert sorted(executed) == ["env.py", "later.py", "orphan.py"]
    assert data["errors"] == [] and code == 0


def test_changing_the_settings_invalidates(tmp_path, monkeypatch, cli, executed):
    monkeypatch.chdir(_repo(tmp_path))
    cli("check", "configs", "--select", "FF101")
    executed.clear()
    cli("check", "configs", "--select", "FF101")
    assert executed == []
    cli("check", "configs", "--select", "FF102")
    assert "a1.py" in executed
    executed.clear()
    cli("check", "configs", "--select", "FF102", "--freeze", "backbone")
    assert "a1.py" in executed


def test_a_walked_file_named_later_is_not_taken_from_the_cache(tmp_path, monkeypatch, cli):
    # Walking skips scripts; naming a file on the command line means "treat it as a config".
    monkeypatch.chdir(_repo(tmp_path))
    assert _json(cli, "configs")[1]["summary"]["skipped"] == 1
    _, named = _json(cli, "configs/tool.py")
    assert named["summary"]["skipped"] == 0 and named["summary"]["configs_checked"] == 1


def test_editing_plugin_code_invalidates_the_configs_that_import_it(tmp_path, monkeypatch, cli, executed):
    root = _repo(tmp_path)
    monkeypatch.chdir(root)
    (root / "projects/my_plugin").mkdir(parents=True)
    (root / "projects/my_plugin/__init__.py").write_text("")
    (root / "projects/my_plugin/layers.py").write_text("X = 1\n")
    (root / "configs/p1.py").write_text("_base_ = ['./a1.py']\nplugin = True\nplugin_dir = 'projects/my_plugin/'\n")
    cli("check", "configs")
    (root / "projects/my_plugin/layers.py").write_text("X = 2\n")
    executed.clear()
    cli("check", "configs")
    # p1 is checked again, which resolves its bases again; the other configs come from the cache.
    assert sorted(executed) == ["a1.py", "model_a.py", "p1.py"]
    executed.clear()
    cli("check", "configs")
    assert executed == []


@pytest.mark.parametrize("garbage", [b"", b"not a pickle", b"\x80\x05K\x01."], ids=["empty", "text", "foreign-int"])
def test_a_corrupted_cache_file_is_ignored_and_replaced(tmp_path, monkeypatch, cli, executed, garbage):
    monkeypatch.chdir(_repo(tmp_path))
    expected = _json(cli, "configs")
    cache_dir = Path(os.environ["FREEZEFIX_CACHE_DIR"])
    files = sorted(cache_dir.glob("results-*.pickle"), key=lambda p: p.stat().st_mtime)
    assert files
    files[-1].write_bytes(garbage)
    executed.clear()
    assert _json(cli, "configs") == expected
    assert "a1.py" in executed
    executed.clear()
    assert _json(cli, "configs") == expected
    assert executed == [], "the corrupted file was replaced by a good one"


def test_the_hit_path_imports_nothing_heavy(tmp_path, monkeypatch):
    root = _repo(tmp_path)
    # An import in a config makes resolution ask mmengine whether it is a lazy-import config.
    (root / "configs/uses_os.py").write_text("import os\nwork_dir = os.path.join('work', 'dirs')\n")
    env = dict(os.environ, FREEZEFIX_CACHE_DIR=str(tmp_path / "cache"))
    probe = ("import sys; from freezefix.cli import main\n"
             "try:\n    main(['check', '--no-progress', 'configs'])\nexcept SystemExit:\n    pass\n"
             "print(sorted(m for m in ('torch', 'mmengine', 'libcst', 'rich', 'numpy') if m in sys.modules))")
    first = subprocess.run([sys.executable, "-c", probe], cwd=root, env=env, capture_output=True, text=True)
    assert "mmengine" in first.stdout.splitlines()[-1], "the first run resolves configs with mmengine's helpers"
    second = subprocess.run([sys.executable, "-c", probe], cwd=root, env=env, capture_output=True, text=True)
    assert second.stdout.splitlines()[-1] == "[]", second.stderr


@pytest.mark.slow
@pytest.mark.parametrize("suppress", [False, True], ids=["findings", "suppressed-and-unused-suppression"])
def test_seed_findings_are_identical_from_the_cache_in_every_format(copy_fixture, cli, executed, suppress):
    root = copy_fixture("seed_cmt")
    if suppress:
        base = root / "configs/_base_/models/cmt_voxel0075_r50.py"
        lines = base.read_text(encoding="utf-8").split("\n")
        lines[13] += "  # freezefix: ignore[FF101]"
        lines[0] += "  # freezefix: ignore[FF102]"  # silences nothing: FF100
        base.write_text("\n".join(lines), encoding="utf-8")
    outputs = {}
    for run in ("fresh", "first", "hit"):
        extra = ("--no-cache",) if run == "fresh" else ()
        executed.clear()
        code, data = _json(cli, "configs", *extra)
        sarif = cli("check", "--format", "sarif", "configs", *extra).stdout
        outputs[run] = (code, data, sarif)
    assert executed == [], "the second cached run executed nothing"
    assert outputs["fresh"] == outputs["first"] == outputs["hit"]
    code, data, _ = outputs["hit"]
    codes = sorted(f["code"] for f in data["findings"])
    assert (codes, data["summary"]["suppressed"], code) == ((["FF100"], 1, 1) if suppress else (["FF101"], 0, 1))


def test_the_versions_caches_are_keyed_by_are_importlib_metadatas():
    import importlib.metadata

    from freezefix.cache import KEYED_PACKAGES, package_versions

    expected = {}
    for name in KEYED_PACKAGES:
        try:
            expected[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    assert package_versions() == expected and "freezefix" in expected


def test_an_outcome_the_environment_decides_is_kept_until_the_environment_changes(tmp_path, monkeypatch, cli,
                                                                                   executed):
    """A class whose plugin does not import is not judged, and said so; that outcome is kept (an
    unchanged repository re-checks nothing) until the plugin becomes importable, or anything is
    installed or removed."""
    root = _repo(tmp_path)
    monkeypatch.chdir(root)
    (root / "configs/plugged.py").write_text(
        "custom_imports = dict(imports=['ff_cache_test_plugin'], allow_failed_imports=False)\n"
        "model = dict(type='RetinaNet', backbone=dict(type='FfCacheTestResNet', depth=18, frozen_stages=1))\n"
        "load_from = 'https://example.org/retinanet_r18.pth'\n"
        "optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.01), "
        "paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=0.0)}))\n")
    _, first = _json(cli, "configs")
    assert [u["what"] for u in first["unjudged"]] == ["FfCacheTestResNet"]
    executed.clear()
    assert _json(cli, "configs")[1] == first
    assert executed == []  # kept: nothing was resolved again
    site = tmp_path / "site"
    (site / "ff_cache_test_plugin").mkdir(parents=True)
    (site / "ff_cache_test_plugin/__init__.py").write_text(
        "from mmdet.models.backbones import ResNet\nfrom mmdet.registry import MODELS\n\n\n"
        "@MODELS.register_module(force=True)\nclass FfCacheTestResNet(ResNet):\n    pass\n")
    monkeypatch.syspath_prepend(str(site))
    _, third = _json(cli, "configs")
    assert executed == ["plugged.py"]  # the plugin can be imported now: that config, and only it, again
    assert "FfCacheTestResNet" not in [u["what"] for u in third["unjudged"]]
    assert [f["code"] for f in third["findings"]] == ["FF101"]


def test_a_plugin_dir_found_for_one_repository_re_checks_only_its_configs(tmp_path, monkeypatch, cli, executed):
    # The same plugin_dir setting is looked for from each config's own directory up: two
    # repositories, and the plugin appears in the second only.
    monkeypatch.chdir(tmp_path)
    for repo in ("a_repo", "b_repo"):
        (tmp_path / repo / "configs").mkdir(parents=True)
        (tmp_path / repo / "configs" / f"{repo[0]}.py").write_text(
            "plugin = True\nplugin_dir = 'ffdirtest/'\n"
            "model = dict(type='RetinaNet', backbone=dict(type='FfDirTestResNet', depth=18, frozen_stages=1))\n")
    _, first = _json(cli, "a_repo/configs", "b_repo/configs")
    assert first["unjudged"][0]["what"] == "FfDirTestResNet"
    executed.clear()
    assert _json(cli, "a_repo/configs", "b_repo/configs")[1] == first and executed == []
    (tmp_path / "b_repo/ffdirtest").mkdir()
    (tmp_path / "b_repo/ffdirtest/__init__.py").write_text("")
    _json(cli, "a_repo/configs", "b_repo/configs")
    assert executed == ["b.py"]
