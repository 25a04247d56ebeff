"""A generated config repo: planted findings are all found, all fixed, and a second run is a no-op."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import snapshot, stack_values

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def _generate(out: Path, configs: int) -> dict:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts/gen_config_repo.py"), str(out), "--configs", str(configs)],
        capture_output=True, text=True, check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_generated_repo_planted_findings_found_fixed_and_idempotent(tmp_path, monkeypatch, cli):
    repo = tmp_path / "repo"
    summary = _generate(repo, 300)
    monkeypatch.chdir(repo)
    check = json.loads(cli("check", "configs", "--format", "json").stdout)
    found = {code: sum(1 for f in check["findings"] if f["code"] == code) for code in summary["planted"]}
    assert found == summary["planted"] and check["summary"]["findings"] == summary["planted_total"]
    assert check["errors"] == []

    applied = cli("apply", "configs", "--format", "json")
    data = json.loads(applied.stdout)
    assert applied.exit_code == 0, applied.stderr
    assert data["summary"]["fixed"] == summary["planted_total"]
    assert all(v["ok"] for v in data["verification"])
    assert cli("check", "configs").exit_code == 0
    before = snapshot(repo)
    assert cli("apply", "configs").exit_code == 0
    assert snapshot(repo) == before


def test_generated_configs_resolve_like_mmengine(tmp_path):
    from freezefix.config.resolve import Resolver

    repo = tmp_path / "repo"
    _generate(repo, 120)
    resolver = Resolver()
    files = sorted((repo / "configs").rglob("*.py"))
    for path in files:
        assert resolver.values(path) == stack_values(path), path


def test_sigint_during_apply_leaves_every_file_original_or_fully_rewritten(tmp_path):
    import os
    import shutil
    import signal
    import time

    first = tmp_path / "interrupted"
    _generate(first, 2000)
    second = tmp_path / "completed"
    shutil.copytree(first, second)
    original = snapshot(first)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    command = [sys.executable, "-m", "freezefix", "apply", "configs", "--no-verify", "--no-progress"]
    subprocess.run(command, cwd=second, capture_output=True, env=env, timeout=600)
    completed = snapshot(second)
    assert completed != original

    proc = subprocess.Popen(command, cwd=first, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env, text=True)
    written = 0
    for line in proc.stderr:  # interrupt once it is writing, in the middle of the rewrites
        if line.startswith("rewrote "):
            written += 1
            if written == 20:
                proc.send_signal(signal.SIGINT)
                break
    proc.stderr.read()
    assert proc.wait(timeout=120) != 0
    time.sleep(0.1)
    after = snapshot(first)
    assert set(after) == set(original), "no stray temporary files"
    changed = [name for name in after if after[name] != original[name]]
    assert 20 <= len(changed) < len([n for n in completed if completed[n] != original[n]])
    for name in changed:
        assert after[name] == completed[name], f"{name} is neither original nor fully rewritten"


def test_forked_rule_workers_match_in_process_after_torch_cpu_work(tmp_path):
    import torch

    from freezefix.api import RunOptions, Session

    torch.randn(512, 512) @ torch.randn(512, 512)  # the parent now has a live OpenMP pool
    repo = tmp_path / "repo"
    _generate(repo, 300)
    alone = Session([repo / "configs"], RunOptions(jobs=1, cache_dir=None)).check()
    forked = Session([repo / "configs"], RunOptions(jobs=2, cache_dir=None)).check()
    key = [(r.finding.code, str(r.path), r.line) for r in alone.findings]
    assert key == [(r.finding.code, str(r.path), r.line) for r in forked.findings]
    assert len(key) > 50 and not forked.errors


def test_a_check_shared_out_to_workers_says_what_a_check_in_one_process_says(tmp_path):
    """Workers resolve, judge and remember their own runs of files: the same findings, errors,
    skips, suppressions (used and unused, read from files only workers resolved) and results-cache
    entries as a check that resolves everything in one process."""
    from freezefix.api import RunOptions, Session

    repo = tmp_path / "repo"
    _generate(repo, 300)
    configs = repo / "configs"
    first = Session([configs], RunOptions(jobs=1, cache_dir=None)).check()
    silenced = first.findings[:5]
    for reported in silenced:
        lines = reported.path.read_text().splitlines(keepends=True)
        lines[reported.line - 1] = lines[reported.line - 1].rstrip("\n") + f"  # freezefix: ignore[{reported.finding.code}]\n"
        reported.path.write_text("".join(lines))
    unused = next(p for p in sorted(configs.rglob("exp_*.py")) if p not in {r.path for r in silenced})
    unused.write_text("# freezefix: ignore[FF105]\n" + unused.read_text())
    (configs / "group_000" / "broken.py").write_text("model = dict(\n")
    (configs / "group_000" / "tool.py").write_text("import sys\nprint(sys.argv)\n")

    def outcome(result):
        return ([(r.finding.code, str(r.path), r.line, r.col, r.finding.message) for r in result.findings],
                result.errors, result.skipped, result.suppressed, result.unjudged, result.configs_checked)

    alone = Session([configs], RunOptions(jobs=1, cache_dir=None))
    shared = Session([configs], RunOptions(jobs=2, cache_dir=tmp_path / "cache", results_cache=True))
    expected = outcome(alone.check())
    assert outcome(shared.check()) == expected
    assert shared.resolver.units == {}, "the workers resolved the files, not this process"
    # what the workers resolved is counted all the same: every file of the run (a shared base once
    # per worker that needed it)
    assert set(shared.result.files_resolved) == set(alone.result.files_resolved)
    assert expected[3] == 5 and any(f[0] == "FF100" and f[1] == str(unused) for f in expected[0])
    assert [p.name for p, _ in expected[1]] == ["broken.py"] and [p.name for p, _ in expected[2]] == ["tool.py"]

    # What the workers remembered serves the next run: nothing is resolved again.
    again = Session([configs], RunOptions(jobs=2, cache_dir=tmp_path / "cache", results_cache=True)).check()
    assert outcome(again) == expected
    assert again.files_resolved == []
