#!/usr/bin/env python3
"""How many configs of a directory build as a whole model with the installed stack, the way the
whole-model rules (FF106, FF107, FF117) and the write gate build them.

    .venv/bin/python scripts/count_whole_builds.py DIR [DIR ...] [--json OUT]

Each config is loaded with the stack's own ``Config.fromfile`` and its model built on meta by
``freezefix.models.build`` (one build per distinct model and scope).  Prints, per directory, how
many configs built the detector itself ("model"), only its top-level modules ("module"), nothing,
or had no model or did not load; then the most common reasons a detector did not build.  Run it
with the mmengine stack over the configs shipped with the mmcv 1.x stack's wheels to see how many
configs of that era the whole-model rules can judge.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections import Counter
from pathlib import Path


def count(directory: Path) -> dict[str, tuple[str, str]]:
    """config path → (outcome, why the detector did not build: '' when it did)."""
    from freezefix.models import build
    from freezefix.stacks import current

    stack = current()
    built: dict[str, tuple[str, str]] = {}
    outcome: dict[str, tuple[str, str]] = {}
    for path in sorted(p for p in directory.rglob("*.py") if "_base_" not in p.parts):
        try:
            values = stack.load_config(str(path))
        except Exception as exc:  # noqa: BLE001 - counted, with why
            outcome[str(path)] = ("did not load", f"{type(exc).__name__}: {exc}"[:200])
            continue
        model = values.get("model")
        if not isinstance(model, dict):
            outcome[str(path)] = ("no model", "")
            continue
        key = repr(model) + repr(values.get("default_scope"))
        if key not in built:
            result = build(values, path, device="meta")
            level = result.level if result.model is not None else "nothing"
            why = "" if level == "model" else (result.notes[:1] or [result.error or ""])[0]
            built[key] = (level, why[:200])
        outcome[str(path)] = built[key]
    return outcome


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dirs", nargs="+", type=Path)
    parser.add_argument("--json", type=Path, help="write config → (outcome, why) there")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    from freezefix.stacks import current

    current().quiet()
    print(current().describe())
    everything = {}
    for directory in args.dirs:
        outcome = count(directory)
        everything.update(outcome)
        tally = Counter(level for level, _ in outcome.values())
        print(f"{directory}: {len(outcome)} configs: " + ", ".join(f"{n} {k}" for k, n in tally.most_common()))
        reasons = Counter(why for level, why in outcome.values() if level in ("module", "nothing"))
        for why, n in reasons.most_common(8):
            print(f"  {n:4d}  {why}")
    if args.json:
        args.json.write_text(json.dumps(everything, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
