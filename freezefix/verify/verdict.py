"""The write gate's verdict on one rewritten config, from what the verification worker measured
on the real model before and after the rewrite."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from freezefix.config.plain import differing_keys
from freezefix.ftypes import REMOVE, Change
from freezefix.plan import apply_change
from freezefix.verify.measured import BuildAnswer, ModuleMeasure
from freezefix.verify.worker import jsonable

CRASHED = "crashed on the rewritten config"  # a rule that raised there: the rewrite is refused


@dataclass
class ConfigVerdict:
    config: Path
    ok: bool
    problems: list[str] = field(default_factory=list)
    summary: list[str] = field(default_factory=list)  # per module: what changed on the real model
    level: str = "model"
    device: str = "meta"
    notes: list[str] = field(default_factory=list)


def judge_rewrite(config: Path, changes: list[Change], before: BuildAnswer, after: BuildAnswer,
                  new_findings: list[tuple[str, str]], accepted: set[tuple[str, str]], device: str) -> ConfigVerdict:
    """The verdict on one config's rewrite: the worker's answers on the config ``before`` and
    ``after`` it, the changes the plan made, the rules' findings on the rewritten config (a
    finding not ``accepted`` — reported before the rewrite, or announced by its fix — fails it)."""
    verdict = ConfigVerdict(config, ok=True, level=after.level, device=after.device or device)
    verdict.notes = list(after.notes)
    problems = verdict.problems
    if before.values is None or after.values is None:
        # The worker's error already names the stack ("mmcv1 cannot load it: ...").
        problems.append(f"the {'patched' if before.values is not None else 'original'} config does not load: "
                        f"{after.error or before.error}")
        verdict.ok = False
        return verdict
    expected = before.values
    for change in changes:
        expected = apply_change(expected, change)
    extra = [".".join(map(str, key)) for key in differing_keys(jsonable(expected), after.values)]
    if extra:
        problems.append(f"the rewritten config resolves differently from the plan at {', '.join(extra[:5])}")
    if before.modules and not after.modules:
        problems.append(f"the original model builds but the rewritten one does not: {after.error}")
    if not before.modules and after.modules:
        verdict.summary.append(f"the original model fails to build ({before.error}); the rewritten one builds")
    for change in changes:
        problems.extend(_postcondition(change, after.modules))
    for code, where in new_findings:
        if where.startswith(CRASHED):
            problems.append(f"{code} {where}")
        elif (code, where) not in accepted:
            problems.append(f"the rewrite makes a new {code} finding appear ({where})")
    for name in sorted({c.key[1] for c in changes if c.key[:1] == ("model",)} | _lr_modules(changes)):
        if name in after.modules:
            verdict.summary.append(_module_summary(name, before.modules.get(name), after.modules[name]))
    verdict.ok = not problems
    return verdict


def _lr_modules(changes: list[Change]) -> set[str]:
    return {c.key[-1] for c in changes if len(c.key) >= 4 and c.key[-2] == "custom_keys" and c.value is not REMOVE}


def _postcondition(change: Change, modules: dict[str, ModuleMeasure]) -> list[str]:
    key = change.key
    if key[:1] == ("model",) and len(key) == 3 and key[1] in modules:
        stats = modules[key[1]]
        if key[2] == "frozen_stages" and change.value is not REMOVE and stats.trainable_zero_lr:
            return [f"{key[1]}: with frozen_stages={change.value}, {stats.trainable_zero_lr:,} params "
                    "still train with lr 0 on the real model"]
        if key[2] == "norm_eval" and change.value is True and stats.bn_training:
            return [f"{key[1]}: with norm_eval=True, {stats.bn_training} BatchNorm layers still train"]
    if len(key) >= 4 and key[-2] == "custom_keys" and isinstance(change.value, dict):
        name = key[-1]
        if change.value.get("lr_mult") == 0.0 and name in modules:
            live = modules[name].live_lrs
            if live:
                return [f"{name}: after adding custom key {name!r} with lr_mult=0.0 the real optimizer "
                        f"still gives {sum(live.values()):,} params a non-zero lr ({', '.join(live)})"]
    return []


def _module_summary(name: str, before: ModuleMeasure | None, after: ModuleMeasure) -> str:
    def stages(stats: ModuleMeasure) -> str:
        names = [c for c, s in stats.children.items() if s.trainable_train]
        return f" in {', '.join(names[:4])}{' …' if len(names) > 4 else ''}" if names else ""

    if before is None:
        return (f"{name} ({after.class_name}): could not be built before the rewrite; now "
                f"{after.trainable_train:,} trainable params{stages(after)}, "
                f"BN eval {after.bn_total - after.bn_training}/{after.bn_total}")
    lr0_before, lr0_after = before.at_zero_lr_or_left_out, after.at_zero_lr_or_left_out
    text = (f"{name} ({after.class_name}): {before.trainable_train:,} trainable params{stages(before)} → "
            f"{after.trainable_train:,}; BN eval {before.bn_total - before.bn_training}/{before.bn_total} → "
            f"{after.bn_total - after.bn_training}/{after.bn_total}")
    if lr0_before != lr0_after:
        text += f"; trainable params at lr 0 or left out of the optimizer {lr0_before:,} → {lr0_after:,}"
    return text
