#!/usr/bin/env python3
"""How fast is `freezefix check`, measured side by side with what a user would otherwise run.

    .venv/bin/python scripts/bench_check.py [--generated 5000] [--apply-configs 200] [--skip-cold]

On the same files, in one run, each measurement in a fresh process:
  (a) `freezefix check`, the whole process, in four states of its two caches:
      cold       no probe cache, no results cache (every class probed on meta, every file executed);
      probe-warm class probes cached, results cache empty (every file executed, findings computed);
      unchanged  both warm, nothing changed since (pre-commit / CI on an untouched tree);
      one-edit   both warm, then one shared base edited (its dependents are checked again);
  (b) the naive loop a user writes: `mmengine.Config.fromfile` on every file;
  (c) the floor: read + `ast.parse` of every file;
  (d) `libcst.parse_module` of every file (why freezefix reads with ast and edits with libcst);
for copies of the configs shipped in the installed mmdet + mmdet3d wheels and for a generated repo
(a fifth of its configs name plugins that do not import here, a tenth a local plugin package).
Prints seconds, files/second, peak memory (max RSS), files executed, and the ratios (b)/(a) and
(a)/(c) for each state against its targets (cold: >= 3x faster than (b); cached states: >= 30x
faster than (b) and within 5x of (c)); asserts that every state reports the same findings.
Then the README's main job (`apply --dry-run` on the seed example, write gate included) cold and
warm against <= 15 s / <= 5 s, and `apply --dry-run` with the write gate on a generated repo,
meta device vs CPU: model builds and seconds per unique (model, optimizer) pair.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_BASELINE = r"""
import glob, resource, sys, time, warnings
warnings.simplefilter("ignore")
kind, roots = sys.argv[1], sys.argv[2:]
files = sorted(f for r in roots for f in glob.glob(r + "/**/*.py", recursive=True) if "__pycache__" not in f)
start = time.perf_counter()
if kind == "mmengine":
    from mmengine.config import Config
    for f in files:
        try:
            Config.fromfile(f, import_custom_modules=False)
        except Exception:
            pass
elif kind == "ast":
    import ast
    for f in files:
        try:
            ast.parse(open(f, encoding="utf-8").read())
        except (SyntaxError, UnicodeDecodeError, ValueError):
            pass
elif kind == "libcst":
    import libcst
    for f in files:
        try:
            libcst.parse_module(open(f, encoding="utf-8").read())
        except Exception:
            pass
inner = time.perf_counter() - start
print(len(files), inner, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""

_FREEZEFIX = r"""
import atexit, resource, sys, tempfile, time
from freezefix.cli import entry_point
from freezefix.config import resolve
# Files are resolved in forked workers too: each resolution appends a line (small appends to an
# O_APPEND file do not interleave), counted when the command ends.
executed = tempfile.TemporaryFile("a+", buffering=1)
original = resolve.Resolver._file2dict
def counting(self, path, *args):
    executed.write(f"{path}\n")
    return original(self, path, *args)
resolve.Resolver._file2dict = counting
start = time.perf_counter()
def report():
    inner = time.perf_counter() - start
    executed.seek(0)
    print("BENCH", inner, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, len(executed.readlines()), file=sys.stderr)
atexit.register(report)
sys.argv = ["freezefix", *sys.argv[1:]]
entry_point()  # the installed command's own way out (exit handlers run, no teardown)
"""


def _timed(argv: list[str], env: dict | None = None, cwd: Path | None = None) -> tuple[float, str, str]:
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=cwd)
    return time.perf_counter() - start, done.stdout, done.stderr


def baseline(kind: str, roots: list[Path]) -> dict:
    wall, out, err = _timed([sys.executable, "-c", _BASELINE, kind, *map(str, roots)])
    files, inner, rss = out.split()
    return {"files": int(files), "wall": wall, "inner": float(inner), "rss_mb": int(rss) / 1024}


def freezefix_check(roots: list[Path], cache: Path) -> dict:
    env = dict(os.environ, FREEZEFIX_CACHE_DIR=str(cache))
    wall, out, err = _timed([sys.executable, "-c", _FREEZEFIX, "check", "--format", "json", "--no-progress",
                             *map(str, roots)], env)
    bench = next(line for line in err.splitlines() if line.startswith("BENCH")).split()
    data = json.loads(out)
    data["summary"].pop("seconds")
    return {"wall": wall, "inner": float(bench[1]), "rss_mb": max(int(bench[2]), int(bench[3])) / 1024,
            "executed": int(bench[4]), "configs": data["summary"]["configs_checked"],
            "findings": data["summary"]["findings"], "report": data}


def generate(out: Path, configs: int) -> dict:
    done = subprocess.run([sys.executable, str(ROOT / "scripts/gen_config_repo.py"), str(out), "--configs", str(configs)],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


# Per state: (at least this many times faster than the naive loop, at most this many times the floor,
# at most this many seconds).
TARGETS = {"cold": (3.0, None, None), "probe-warm": (30.0, 5.0, None), "unchanged": (30.0, 5.0, None),
           "one-edit": (30.0, 5.0, None)}
# A generated repo whose plugins partly do not import, as BEV repos on a machine without their
# compiled ops: a pre-commit run on an unchanged tree must stay warm all the same.
PLUGIN_REPO_TARGETS = {**TARGETS, "probe-warm": (15.0, None, None), "unchanged": (100.0, 5.0, 1.0)}
MAIN_JOB_TARGETS = {"cold": 15.0, "warm": 5.0}  # seconds, README command 1's main job


def table(title: str, roots: list[Path], edit: Path, tmp: Path, skip_cold: bool, targets: dict = TARGETS) -> dict:
    cache = tmp / ("cache-" + title.split()[0])
    runs = {}
    if not skip_cold:
        runs["cold"] = freezefix_check(roots, cache)
    else:
        freezefix_check(roots, cache)  # fills the probe cache, not reported
    for results in cache.glob("results-*"):
        results.unlink()  # probe cache kept, results cache emptied
    runs["probe-warm"] = freezefix_check(roots, cache)
    runs["unchanged"] = freezefix_check(roots, cache)
    original = edit.read_bytes()
    edit.write_bytes(original + b"\n# edited by bench_check.py\n")
    try:
        runs["one-edit"] = freezefix_check(roots, cache)
    finally:
        edit.write_bytes(original)
    reports = [r.pop("report") for r in runs.values()]
    assert all(r == reports[0] for r in reports), "every state must report the same findings"
    naive = baseline("mmengine", roots)
    floor = baseline("ast", roots)
    cst = baseline("libcst", roots)
    n = naive["files"]
    first = next(iter(runs.values()))
    print(f"\n== {title}: {n} files, {first['configs']} configs checked, {first['findings']} findings ==")
    print(f"{'':38s} {'wall s':>7s} {'files/s':>8s} {'max RSS MB':>10s} {'executed':>8s} "
          f"{'(b)/(a)':>8s} {'(a)/(c)':>8s}")
    for state, row in runs.items():
        faster, floor_x = naive["wall"] / row["wall"], row["wall"] / floor["wall"]
        naive_target, floor_target, seconds = targets[state]
        verdicts = [f">={naive_target:g}x naive: {'met' if faster >= naive_target else 'NOT met'}"]
        if floor_target is not None:
            verdicts.append(f"<={floor_target:g}x floor: {'met' if floor_x <= floor_target else 'NOT met'}")
        if seconds is not None:
            verdicts.append(f"<={seconds:g} s: {'met' if row['wall'] <= seconds else 'NOT met'}")
        print(f"{'(a) check, ' + state:38s} {row['wall']:7.2f} {n / row['wall']:8.0f} {row['rss_mb']:10.0f} "
              f"{row['executed']:8d} {faster:7.1f}x {floor_x:7.1f}x  {'; '.join(verdicts)}")
    for name, row in (("(b) naive Config.fromfile loop", naive), ("(c) ast.parse floor", floor),
                      ("(d) libcst.parse_module", cst)):
        print(f"{name:38s} {row['wall']:7.2f} {n / row['wall']:8.0f} {row['rss_mb']:10.0f}")
    print(f"one-edit: appended a comment to {edit.relative_to(tmp)}; 'executed' counts the files resolved "
          "(executed) in that run, its dependents and their bases")
    print(f"libcst vs ast: {cst['inner'] / max(floor['inner'], 1e-9):.1f}x slower to parse (in-process times)")
    return {"files": n, "rss": {state: row["rss_mb"] for state, row in runs.items()}}


def main_job(tmp: Path) -> None:
    """README command 1's main job, as a new user meets it: `apply --dry-run` on the seed example,
    write gate included, with no caches (cold) and once more (warm)."""
    example = tmp / "seed_cmt"
    shutil.copytree(ROOT / "tests/fixtures/seed_cmt", example, ignore=shutil.ignore_patterns("__pycache__"))
    env = dict(os.environ, FREEZEFIX_CACHE_DIR=str(tmp / "main-job-cache"))
    print("\n== README main job: freezefix apply tests/fixtures/seed_cmt/configs --dry-run (write gate included) ==")
    diffs = []
    for state in ("cold", "warm"):
        wall, out, _ = _timed([str(Path(sys.executable).parent / "freezefix"), "apply", "configs", "--dry-run"],
                              env=env, cwd=example)
        diffs.append(out)
        target = MAIN_JOB_TARGETS[state]
        print(f"{state:5s}: {wall:6.2f} s   target <= {target:g} s: {'met' if wall <= target else 'NOT met'}")
    assert diffs[0] == diffs[1] and diffs[0].startswith("--- a/"), "both runs must print the same fix"


def gate(tmp: Path, configs: int) -> None:
    repo = tmp / "gate-repo"
    summary = generate(repo, configs)
    print(f"\n== write gate: apply --dry-run on {configs} generated configs ({summary['planted_total']} fixes) ==")
    for device in ("meta", "cpu"):
        env = dict(os.environ, FREEZEFIX_CACHE_DIR=str(tmp / "gate-cache"))
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "freezefix", "apply", "configs", "--dry-run", "--format", "json",
                               "--no-progress", "--device", device], cwd=repo, capture_output=True, text=True, env=env)
        wall = time.perf_counter() - start
        stats = json.loads(done.stdout)["verification_stats"]
        per = stats["build_seconds"] / max(stats["builds"], 1)
        print(f"{device:5s}: {wall:6.1f} s wall; {stats['jobs']} config loads, {stats['builds']} model builds "
              f"(one per unique model+optimizer pair), {per:.2f} s per build")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--generated", type=int, default=5000, help="configs in the generated repo (0: skip)")
    parser.add_argument("--apply-configs", type=int, default=200, help="configs for the write-gate figures (0: skip)")
    parser.add_argument("--skip-cold", action="store_true", help="do not report the cold run (about 40 s)")
    args = parser.parse_args()
    # freezefix byte-compiled, as `pip install` leaves a package (the naive loop's mmengine is): an
    # editable install run with PYTHONDONTWRITEBYTECODE=1 compiles freezefix from source in every
    # process, about 0.1 s each, which no user of an installed freezefix pays.
    compileall.compile_dir(str(ROOT / "freezefix"), quiet=1)
    # Found by a child process: importing mmdet here would make this process big, and Linux starts
    # each child's max RSS at its parent's size at fork time, which would hide the real figures.
    where = subprocess.run([sys.executable, "-c", "import mmdet, mmdet3d; print(mmdet.__file__); print(mmdet3d.__file__)"],
                           capture_output=True, text=True, check=True).stdout.split()

    with tempfile.TemporaryDirectory(prefix="freezefix-bench-") as tmp:
        tmp = Path(tmp)
        print(f"machine: {os.cpu_count()} cores; python {sys.version.split()[0]}; freezefix byte-compiled")
        # Copies, so that the one-edit run never touches the installed packages.
        shipped = []
        for name, init in zip(("mmdet", "mmdet3d"), where):
            target = tmp / "shipped" / name
            shutil.copytree(Path(init).parent / ".mim" / "configs", target,
                            ignore=shutil.ignore_patterns("__pycache__"))
            shipped.append(target)
        memory = [table("shipped mmdet + mmdet3d configs", shipped,
                        tmp / "shipped/mmdet/_base_/models/retinanet_r50_fpn.py", tmp, args.skip_cold)]
        if args.generated:
            repo = tmp / "generated"
            generate(repo, args.generated)
            memory.append(table(f"generated repo ({args.generated} configs, a fifth of them naming plugins that "
                                "do not import)", [repo / "configs"],
                                repo / "configs/group_000/_group.py", tmp, args.skip_cold, PLUGIN_REPO_TARGETS))
        print("\nmemory (max RSS, MB) by repo size:")
        for row in memory:
            print(f"  {row['files']:6d} files: " + ", ".join(f"{k} {v:.0f}" for k, v in row["rss"].items()))
        main_job(tmp)
        if args.apply_configs:
            gate(tmp, args.apply_configs)


if __name__ == "__main__":
    main()
