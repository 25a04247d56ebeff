#!/usr/bin/env python3
"""How fast is `freezefix check`, measured side by side with what a user would otherwise run.

    .venv/bin/python scripts/bench_check.py [--generated 5000] [--apply-configs 200]

On the same files, in one run, each measurement in a fresh process:
  (a) `freezefix check` — the whole process: cold (empty probe cache) and warm;
  (b) the naive loop a user writes: `mmengine.Config.fromfile` on every file;
  (c) the floor: read + `ast.parse` of every file;
  (d) `libcst.parse_module` of every file (why freezefix reads with ast and edits with libcst);
for the configs shipped in the installed mmdet + mmdet3d wheels and for a generated repo.
Prints seconds, files/second, peak memory (max RSS) and the ratios (a)/(b) and (a)/(c).
Then `apply --dry-run` with the write gate on a generated repo, meta device vs CPU: model builds
and seconds per unique (model, optimizer) pair.
"""

from __future__ import annotations

import argparse
import json
import os
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
import resource, sys, time
from freezefix.cli import main
start = time.perf_counter()
try:
    main(sys.argv[1:], standalone_mode=False)
except SystemExit:
    pass
inner = time.perf_counter() - start
print("BENCH", inner, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)
"""


def _timed(argv: list[str], env: dict | None = None) -> tuple[float, str, str]:
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, env=env)
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
    return {"wall": wall, "inner": float(bench[1]), "rss_mb": max(int(bench[2]), int(bench[3])) / 1024,
            "configs": data["summary"]["configs_checked"], "findings": data["summary"]["findings"]}


def generate(out: Path, configs: int) -> dict:
    done = subprocess.run([sys.executable, str(ROOT / "scripts/gen_config_repo.py"), str(out), "--configs", str(configs)],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def table(title: str, roots: list[Path], tmp: Path) -> None:
    cold_cache = tmp / f"cache-{title}"
    cold = freezefix_check(roots, cold_cache)
    warm = freezefix_check(roots, cold_cache)
    naive = baseline("mmengine", roots)
    floor = baseline("ast", roots)
    cst = baseline("libcst", roots)
    n = naive["files"]
    print(f"\n== {title}: {n} files, {warm['configs']} configs checked, {warm['findings']} findings ==")
    print(f"{'':34s} {'wall s':>8s} {'files/s':>9s} {'max RSS MB':>11s}")
    rows = [("(a) freezefix check, cold cache", cold), ("(a) freezefix check, warm cache", warm),
            ("(b) naive Config.fromfile loop", naive), ("(c) ast.parse floor", floor),
            ("(d) libcst.parse_module", cst)]
    for name, row in rows:
        print(f"{name:34s} {row['wall']:8.2f} {n / row['wall']:9.0f} {row['rss_mb']:11.0f}")
    print(f"ratio (b)/(a): freezefix is {naive['wall'] / cold['wall']:.1f}x faster than the naive loop cold, "
          f"{naive['wall'] / warm['wall']:.1f}x warm (targets: 30x)")
    print(f"ratio (a)/(c): freezefix takes {warm['wall'] / floor['wall']:.1f}x the ast floor warm, "
          f"{cold['wall'] / floor['wall']:.1f}x cold (target: within 5x)")
    print(f"libcst vs ast: {cst['inner'] / max(floor['inner'], 1e-9):.1f}x slower to parse (in-process times)")


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
    args = parser.parse_args()
    import mmdet
    import mmdet3d

    shipped = [Path(m.__file__).parent / ".mim" / "configs" for m in (mmdet, mmdet3d)]
    with tempfile.TemporaryDirectory(prefix="freezefix-bench-") as tmp:
        tmp = Path(tmp)
        print(f"machine: {os.cpu_count()} cores; python {sys.version.split()[0]}")
        table("shipped mmdet + mmdet3d configs", shipped, tmp)
        if args.generated:
            repo = tmp / "generated"
            generate(repo, args.generated)
            table(f"generated repo ({args.generated} configs)", [repo / "configs"], tmp)
        if args.apply_configs:
            gate(tmp, args.apply_configs)


if __name__ == "__main__":
    main()
