"""Machine-readable outputs, settings, suppressions, diff paths, pre-commit (slow: real classes)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import FIXTURES, snapshot

pytestmark = pytest.mark.slow

BASE = "configs/_base_/models/cmt_voxel0075_r50.py"


def test_json_output_fields(copy_fixture, cli):
    copy_fixture("seed_cmt")
    result = cli("check", "configs", "--format", "json")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["version"] == 1 and data["tool"] == "freezefix" and data["command"] == "check"
    assert data["summary"]["findings"] == 1 and data["summary"]["fixable_safe"] == 1
    assert data["summary"]["exit_code"] == 1 and data["errors"] == []
    (finding,) = data["findings"]
    assert finding["code"] == "FF101" and finding["name"] == "partial-freeze-zero-lr"
    assert (finding["path"], finding["line"], finding["column"]) == (BASE, 14, 23)
    assert finding["fix"] == {
        "applicability": "safe", "why_unsafe": None,
        "changes": [{"key": ["model", "img_backbone", "frozen_stages"], "remove": False, "value": 4}],
    }
    assert finding["configs"] == ["configs/cmt/cmt_voxel0075_r50_finetune.py"]


def test_sarif_output_is_2_1_0_with_rule_metadata(copy_fixture, cli, tmp_path):
    copy_fixture("seed_cmt")
    out = tmp_path / "report.sarif"
    result = cli("check", "configs", "--format", "sarif", "--output-file", str(out))
    assert result.exit_code == 1 and result.stdout == ""
    sarif = json.loads(out.read_text())
    assert sarif["version"] == "2.1.0" and sarif["$schema"].endswith("sarif-2.1.0.json")
    run = sarif["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    assert run["tool"]["driver"]["name"] == "freezefix"
    assert {r["id"] for r in rules} >= {"FF101", "FF104", "FF110"}
    (res,) = run["results"]
    assert rules[res["ruleIndex"]]["id"] == res["ruleId"] == "FF101"
    assert rules[res["ruleIndex"]]["name"] == "partial-freeze-zero-lr"
    # Each rule's help is its page in docs/rules/, as document_rules.py writes it.
    page = (Path(__file__).parent.parent / "docs" / "rules" / "FF101.md").read_text(encoding="utf-8")
    assert rules[res["ruleIndex"]]["help"]["markdown"] == page and "## Configs it reports" in page
    region = res["locations"][0]["physicalLocation"]["region"]
    assert res["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == BASE
    assert (region["startLine"], region["startColumn"]) == (14, 23)
    assert run["invocations"][0]["executionSuccessful"] is True


# https://docs.github.com/actions/using-workflows/workflow-commands-for-github-actions
_WORKFLOW_COMMAND = re.compile(r"^::error file=[^,:%\n]+,line=\d+,col=\d+,title=[^,:\n]+::[^\r\n]*$")


def test_github_annotations_follow_the_workflow_command_syntax(copy_fixture, cli, tmp_path):
    root = copy_fixture("seed_cmt")
    (root / "configs/broken.py").write_text("model = dict(\n")
    result = cli("check", "configs", "--format", "github")
    assert result.exit_code == 2
    lines = result.stdout.splitlines()
    assert _WORKFLOW_COMMAND.match(lines[0]), lines[0]
    assert lines[0].startswith(f"::error file={BASE},line=14,col=23,title=FF101 partial-freeze-zero-lr::")
    assert lines[1].startswith("::error file=configs/broken.py,title=freezefix error::syntax error")


def test_dry_run_patch_applies_with_git_from_the_repository_root(copy_fixture, cli):
    root = copy_fixture("seed_cmt")
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    os.chdir(root / "configs")  # run from a subdirectory: paths are still relative to the root
    result = cli("apply", "cmt", "../configs/_base_", "--dry-run")
    assert result.exit_code == 1
    assert f"--- a/{BASE}" in result.stdout
    (root / "fix.patch").write_text(result.stdout)
    subprocess.run(["git", "apply", "--check", "fix.patch"], cwd=root, check=True)
    subprocess.run(["git", "apply", "fix.patch"], cwd=root, check=True)
    assert "frozen_stages=4," in (root / BASE).read_text()


def test_settings_in_pyproject_and_command_line_overrides(copy_fixture, cli):
    root = copy_fixture("seed_cmt")
    (root / "pyproject.toml").write_text(
        '[tool.freezefix]\nignore = ["FF101"]\nexclude = ["configs/legacy/**"]\n'
        'freeze = ["img_backbone", "pts_backbone"]\n'
    )
    (root / "configs/legacy").mkdir()
    (root / "configs/legacy/old.py").write_text("model = dict(\n")  # excluded: its syntax error is not seen
    result = cli("check", "configs", "--format", "json")
    data = json.loads(result.stdout)
    assert data["errors"] == []
    codes = {(f["code"], f["module"]) for f in data["findings"]}
    assert ("FF101", "img_backbone") not in codes  # ignored by the settings
    assert ("FF110", "pts_backbone") in codes  # the freeze policy from the settings
    # --ignore on the command line replaces the file's ignore list: FF101 is back, FF110 gone.
    override = json.loads(cli("check", "configs", "--format", "json", "--ignore", "FF110").stdout)
    override_codes = {f["code"] for f in override["findings"]}
    assert "FF101" in override_codes and "FF110" not in override_codes
    (root / "pyproject.toml").write_text("[tool.freezefix]\nselekt = ['FF101']\n")
    bad = cli("check", "configs")
    assert bad.exit_code == 2 and "unknown [tool.freezefix] keys: selekt" in bad.output


def test_inline_suppression_and_unused_suppression(copy_fixture, cli):
    root = copy_fixture("seed_cmt")
    base = root / BASE
    base.write_text(base.read_text().replace("# 冻结 stage 0,1,2,3（全部）", "# 冻结 stage 0,1,2,3（全部）  # freezefix: ignore[FF101]"))
    before = snapshot(root)
    result = cli("check", "configs")
    assert result.exit_code == 0, result.output
    assert "1 suppressed" in result.stderr
    assert cli("apply", "configs").exit_code == 0
    assert snapshot(root) == before, "a suppressed finding is not fixed either"
    # After fixing by hand the comment silences nothing: FF100.
    base.write_text(base.read_text().replace("frozen_stages=3", "frozen_stages=4"))
    result = cli("check", "configs")
    assert result.exit_code == 1
    assert f"{BASE}:14:" in result.stdout and "FF100 this `freezefix: ignore` (FF101) silences no finding" in result.stdout


def test_scripts_found_by_walking_are_never_executed(tmp_path, monkeypatch, cli):
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "PWNED"
    (tmp_path / "evil.py").write_text(f"import os\nos.system('touch {marker}')\n")
    (tmp_path / "tool.py").write_text("def main():\n    pass\n\nif __name__ == '__main__':\n    main()\n")
    (tmp_path / "cfg.py").write_text("x = dict(a=1)\nx.update(b=2)\n")  # a method call on a config variable is fine
    result = cli("check", ".", "--format", "json")
    data = json.loads(result.stdout)
    assert not marker.exists()
    assert {s["path"] for s in data["skipped"]} == {"evil.py", "tool.py"}
    assert data["summary"]["configs_checked"] == 1


def test_pre_commit_hooks_run(tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(FIXTURES / "seed_cmt", repo)
    env = dict(os.environ, PRE_COMMIT_HOME=str(tmp_path / "pc-home"),
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    for args in (["init", "-q"], ["add", "."], ["-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "x"]):
        subprocess.run(["git", *args], cwd=repo, check=True, env=env)
    this_checkout = Path(__file__).resolve().parents[1]
    check = subprocess.run(
        [sys.executable, "-m", "pre_commit", "try-repo", str(this_checkout), "freezefix-check", "--all-files"],
        cwd=repo, capture_output=True, text=True, env=env, timeout=600,
    )
    assert check.returncode == 1, check.stdout + check.stderr
    assert "FF101" in check.stdout and "freezefix check" in check.stdout
    fix = subprocess.run(
        [sys.executable, "-m", "pre_commit", "try-repo", str(this_checkout), "freezefix-apply", "--all-files"],
        cwd=repo, capture_output=True, text=True, env=env, timeout=600,
    )
    # pre-commit fails a hook that modified files; the fix is in the work tree.
    assert fix.returncode == 1 and "files were modified by this hook" in fix.stdout, fix.stdout + fix.stderr
    assert "frozen_stages=4," in (repo / BASE).read_text()
