"""``freezefix explain``: what is really frozen in one config, read off the real model."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from freezefix.analysis import ConfigView
from freezefix.api import RunOptions, check_paths
from freezefix.config.resolve import Resolver
from freezefix.frozen_weights import weights_summary
from freezefix.ftypes import Checked
from freezefix.probe import Prober
from freezefix.stacks import current, registered_name
from freezefix.verify.gate import run_worker
from freezefix.verify.measured import NOT_IN_OPTIMIZER, ModuleMeasure

# Said once, where a run can show more than a build: the hook measures the user's own training run.
AUDIT_HOOK_HINT = ("to measure this inside your own training run (your GPU, DDP, AMP, loaded checkpoint), add "
                   "custom_imports = dict(imports=['freezefix.hooks'], allow_failed_imports=False) and "
                   "custom_hooks = [dict(type='FreezeAuditHook')] to the config (strict=True stops the run "
                   "before the first step when the freeze is not what the config says)")


@dataclass
class Explanation:
    config: Path
    level: str = "model"
    device: str = "meta"
    base_lr: float | None = None
    era: str | None = None
    stack: str | None = None  # 'mmengine' | 'mmcv1': whose optimizer constructor gave the lrs
    stack_versions: str | None = None
    trainable_params: int | None = None  # requires_grad after train(), over the whole built model
    total_params: int | None = None
    trainable_zero_lr: int | None = None  # of the trainable ones: those the optimizer gives lr 0
    optimizer_log: list[str] | None = None  # the constructor's own log lines, when asked for
    modules: list[dict] = field(default_factory=list)
    findings: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    audit_hook_hint: str | None = None
    error: str | None = None

    def to_json(self) -> dict:
        return {
            "config": str(self.config), "level": self.level, "device": self.device, "base_lr": self.base_lr,
            "optimizer_era": self.era, "stack": self.stack, "trainable_params": self.trainable_params,
            "total_params": self.total_params, "trainable_zero_lr": self.trainable_zero_lr,
            "stack_versions": self.stack_versions, "modules": self.modules, "findings": self.findings, "notes": self.notes,
            "audit_hook_hint": self.audit_hook_hint, "error": self.error,
        }


def explain(config: Path, options: RunOptions, optimizer_log: bool = False) -> Explanation:
    """``optimizer_log``: also collect the lines the stack's optimizer constructor logs while building
    the optimizer for this config (an error where the stack's constructor logs none)."""
    path = Path(config).resolve()
    out = Explanation(path, device=options.device)
    if optimizer_log and current().no_optimizer_log:
        out.error = current().no_optimizer_log
        return out
    result = check_paths([config], options)
    if result.errors:
        out.error = "; ".join(message for _, message in result.errors)
        return out
    if not isinstance(result.outcomes.get(path), Checked):
        out.error = "not a config freezefix checks (a _base_ fragment, or skipped: " + \
            "; ".join(why for _, why in result.skipped) + ")"
        return out
    job = {"id": 0, "config": str(path), "origin": str(path), "device": options.device, "optimizer_log": optimizer_log}
    answer = run_worker([job])[0]
    # The check's class facts are in the probe cache (with FREEZEFIX_NO_CACHE=1, probed again).
    view = ConfigView.of(path, Resolver(registered_name=registered_name).values(path), Prober(cache_dir=options.cache_dir, device=options.prober_device))
    out.level, out.device = answer.level, answer.device or options.device
    out.base_lr = answer.base_lr
    out.stack = answer.stack
    out.stack_versions = current().describe()
    out.era = view.optimizer.era if view.optimizer else None
    # The worker notes what it met at each build (the model, then each module): once is enough.
    out.notes = list(dict.fromkeys(answer.notes))
    out.notes += [f"type {k!r} was built as {v!r} (mmcv-1.x era name)" for k, v in answer.substitutions.items()]
    if not answer.ok:
        out.error = answer.error
        return out
    out.trainable_params, out.total_params = answer.trainable_params, answer.total_params
    out.trainable_zero_lr = answer.trainable_zero_lr
    if optimizer_log:
        out.optimizer_log = answer.optimizer_log
        if out.optimizer_log is None:  # the optimizer could not be built: its note says why
            out.error = "; ".join(out.notes) or "the optimizer could not be built"
    findings_by_module: dict[str, list[str]] = {}
    for finding in (r.finding for r in result.findings if path in r.configs):
        findings_by_module.setdefault(finding.module or "", []).append(finding.code)
        out.findings.append({"code": finding.code, "module": finding.module, "message": finding.message})
    for name, stats in answer.modules.items():
        if not stats.params:
            continue  # a data preprocessor, a voxelizer: nothing to freeze
        row = _row(name, stats, out.base_lr)
        module = view.modules.get(name)
        if module is not None and "frozen_stages" in module.cfg:
            facts = view.facts(module, scan=True)
            row["frozen_stages"] = module.cfg.get("frozen_stages")
            row["full_freeze"] = facts.full_freeze
        if module is not None:
            row["weights_from"] = weights_summary(view, module)
        row["findings"] = findings_by_module.get(name, [])
        row["stages"] = [_row(f"{name}.{sub}", s, out.base_lr) for sub, s in stats.children.items()]
        out.modules.append(row)
    trusted = [s["setting"] for row in out.modules for s in row.get("weights_from", {}).get("sources", [])
               if not s["read"]]
    if trusted:
        out.notes.append("weights from sources trusted without being fetched (no network): "
                         + "; ".join(dict.fromkeys(trusted)))
    out.notes += [f"{what}: {why}" for what, why in view.not_judged.items()]
    if _audit_would_help(out, view.values):
        out.audit_hook_hint = AUDIT_HOOK_HINT
    return out


def _audit_would_help(out: Explanation, values: dict) -> bool:
    """Something is meant frozen (lr 0 or frozen params), or the build could not show all of it, and the
    config does not run the hook already."""
    hooks = values.get("custom_hooks") or []
    if any(isinstance(h, dict) and str(h.get("type", "")).endswith("FreezeAuditHook") for h in hooks):
        return False
    frozen = any(row["trainable_after_train"] < row["params"] or any(g["lr"] == 0 for g in row["lr"])
                 for row in out.modules)
    return frozen or bool(out.findings) or out.level != "model"


def _row(name: str, stats: ModuleMeasure, base_lr: float | None) -> dict:
    def groups(histogram: dict[str, int], keys: dict[str, dict[str, int]] | None = None) -> list[dict]:
        out = []
        for lr, numel in sorted(histogram.items()):
            if lr == NOT_IN_OPTIMIZER:
                out.append({"lr": None, "params": numel})
                continue
            value = float(lr)
            out.append({"lr": value, "lr_mult": value / base_lr if base_lr else None, "params": numel})
            if keys is not None:  # the custom keys that set this lr, and for how many of its params
                out[-1]["custom_keys"] = dict(sorted(keys.get(lr, {}).items(), key=lambda kv: -kv[1]))
        return out

    return {
        "module": name, "class": stats.class_name, "params": stats.params,
        "trainable_constructed": stats.trainable_constructed, "trainable_after_train": stats.trainable_train,
        "bn_training": stats.bn_training, "bn_total": stats.bn_total,
        # lr: the params that trained when the optimizer was built; frozen_in_optimizer: params that
        # were frozen then but which the constructor put in the optimizer anyway (mmcv 1.x does).
        "lr": groups(stats.lr, stats.lr_keys), "frozen_in_optimizer": groups(stats.frozen_in_optimizer),
    }


def render(explanation: Explanation, console: Any) -> None:
    from rich.table import Table

    e = explanation
    if e.error:
        console.print(f"[red]{e.config}: {e.error}[/red]")
        return
    if e.total_params is not None:
        console.print(trainable_line(e.trainable_params or 0, e.total_params)
                      + ("" if e.level == "model" else " (of its top-level modules)"))
        if e.trainable_zero_lr:
            console.print(f"  of which {e.trainable_zero_lr:,} at lr 0: they compute gradients that lr 0 discards")
    level = "the whole model" if e.level == "model" else "its top-level modules (the model class could not be built)"
    table = Table(title=f"{e.config.name}: built {level} on {e.device}; base lr {e.base_lr}", show_lines=False)
    for column in ("module", "class", "params", "trainable\nbuilt", "trainable\nafter train()", "BN training",
                   "lr (× base) ← key", "frozen_stages\n(full)", "weights from", "findings"):
        table.add_column(column, justify="right" if column.startswith(("params", "trainable")) else "left")
    for row in e.modules:
        table.add_row(*_cells(row, bold=True))
        for stage in row["stages"]:
            table.add_row(*_cells(stage, bold=False))
    console.print(table)
    for finding in e.findings:
        console.print(f"{finding['code']} {finding['message']}")
    for note in e.notes:
        console.print(f"note: {note}")
    constructor = ("mmcv.runner.build_optimizer" if e.stack == "mmcv1" else "mmengine's build_optim_wrapper")
    console.print(f"note: lrs are those {constructor} gives ({e.stack_versions})")
    if e.audit_hook_hint:
        console.print(f"note: {e.audit_hook_hint}", markup=False)  # the snippet's brackets are not markup
    held = sum(item["params"] for row in e.modules for item in row.get("frozen_in_optimizer", []))
    if held:
        console.print(f"note: {held:,} frozen params are in the optimizer anyway (its own groups at the lr shown "
                      "after 'frozen:'); harmless: they get no gradient, and torch optimizers skip a param "
                      "whose grad is None (no update, no state)")


def trainable_line(trainable: int, total: int) -> str:
    """The line PEFT users know: 'trainable 12,345,678 / 45,678,901 (27.0%)'."""
    share = 100.0 * trainable / total if total else 0.0
    text = f"{share:.1f}"
    if (text == "0.0" and trainable) or (text == "100.0" and trainable < total):
        text = f"{share:.3f}"  # a LoRA-sized share must not read as 0.0%, nor one frozen bias as 100.0%
    return f"trainable {trainable:,} / {total:,} ({text}%)"


def _cells(row: dict, bold: bool) -> list[str]:
    def lr_text() -> str:
        parts = []
        for item in row["lr"]:
            if item["lr"] is None:
                parts.append(f"not in optimizer: {item['params']:,}")
            else:
                mult = f" (×{item['lr_mult']:g})" if item.get("lr_mult") is not None else ""
                keys = f" ← {', '.join(repr(k) for k in item['custom_keys'])}" if item.get("custom_keys") and bold else ""
                parts.append(f"{item['lr']:g}{mult}: {item['params']:,}{keys}")
        for item in row.get("frozen_in_optimizer", []):
            parts.append(f"frozen: {item['lr']:g}: {item['params']:,}")
        return "; ".join(parts)

    name = row["module"] if bold else "  " + row["module"].split(".", 1)[1]
    frozen = ""
    if "frozen_stages" in row:
        frozen = f"{row['frozen_stages']} ({row['full_freeze']})"
    bn = f"{row['bn_training']}/{row['bn_total']}" if row["bn_total"] else "-"
    weights = row["weights_from"]["text"] if "weights_from" in row else ""
    cells = [name, row["class"], f"{row['params']:,}", f"{row['trainable_constructed']:,}",
             f"{row['trainable_after_train']:,}", bn, lr_text(), frozen, weights, " ".join(row.get("findings", []))]
    return [f"[bold]{c}[/bold]" if bold and c else c for c in cells]
