"""``freezefix bench``: what a freeze fix saves, measured on the real model, before and after.

Both variants are built with the installed stack's config loader, registries and optimizer
constructor: as it is, and with freezefix's fixes applied (the planned texts in a temporary
overlay, nothing written).  For each: the parameters that require grad, and the bytes of gradients
and optimizer state held for the modules the fix is about (after one real optimizer step, so AdamW
has allocated its state); then N timed training steps of the modules that take dense inputs (image
backbones and necks) on synthetic inputs, with peak memory, and a check that frozen parameters stay
bit-identical and BatchNorm running statistics unchanged where norm_eval is set.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

DENSE = ("img_backbone", "img_neck", "backbone", "neck")


@dataclass
class Variant:
    name: str
    trainable_params: int = 0  # in the modules the fix is about
    grad_bytes: int = 0
    optimizer_state_bytes: int = 0
    step_seconds: float = 0.0  # median
    peak_bytes: int = 0
    frozen_bit_identical: bool | None = None
    bn_stats_unchanged: bool | None = None


@dataclass
class BenchResult:
    config: Path
    device: str
    modules: list[str]
    dense: list[str]
    input_shape: tuple[int, ...]
    steps: int
    variants: list[Variant] = field(default_factory=list)
    error: str | None = None

    def to_json(self) -> dict:
        data = asdict(self)
        data["config"] = str(self.config)
        return data


def _fixed_overlay(config: Path, tmp: Path, options) -> tuple[Path, list[str]]:
    """The fixed config in an overlay directory, and the modules its fixes touch."""
    from freezefix.api import fix_paths
    from freezefix.config.resolve import Resolver
    from freezefix.stacks import registered_name
    from freezefix.ftypes import FixState
    from freezefix.verify.gate import write_overlay

    result = fix_paths([config], options, dry_run=True)
    fixes = [r.finding.fix for r in result.findings if r.finding.fix and r.state is FixState.WOULD_FIX]
    changes = [c for fix in fixes for c in fix.changes]
    touched = sorted({c.key[1] for c in changes if c.key[:1] == ("model",) and len(c.key) > 1}
                     | {c.key[-1] for c in changes if len(c.key) > 2 and c.key[-2] == "custom_keys"})
    # A fresh resolver reads the files as they are on disk; the overlay takes the plan's texts.
    overlay = write_overlay(Resolver(registered_name=registered_name), tmp, [config.resolve()], result.plan)
    return overlay[config.resolve()], touched


def _state_bytes(optimizer: Any, params: set[int]) -> int:
    total = 0
    for param, state in optimizer.state.items():
        if id(param) in params:
            total += sum(v.numel() * v.element_size() for v in state.values() if hasattr(v, "numel"))
    return total


def _measure(config_file: Path, origin: Path, name: str, modules: list[str], device: str,
             steps: int, shape: tuple[int, ...]) -> tuple[Variant, list[str]]:
    import torch

    from freezefix.building import is_batchnorm
    from freezefix.models import build
    from freezefix.stacks import current

    stack = current()
    stack.quiet()
    values = stack.load_config(str(config_file))
    built = build(values, origin, device="cpu", initialise=True)  # it runs forward
    if built.model is None:
        raise RuntimeError(built.error or "the model could not be built")
    model = built.model.to(device)
    variant = Variant(name)
    subject = [getattr(model, m) for m in modules if hasattr(model, m)]
    subject_params = [p for m in subject for p in m.parameters()]
    ids = {id(p) for p in subject_params}
    optimizer, _ = stack.build_optimizer(model, values)
    model.train()
    variant.trainable_params = sum(p.numel() for p in subject_params if p.requires_grad)
    dense = [m for m in DENSE if hasattr(model, m) and isinstance(values["model"].get(m), dict)]
    dense = [m for m in dense if not m.endswith("neck") or m.replace("neck", "backbone") in dense]
    try:  # a neck that does not take this backbone's outputs as configured is left out of the timing
        with torch.no_grad():
            out = torch.randn(*shape, device=device)
            for m in dense:
                out = getattr(model, m)(out)
    except Exception:  # noqa: BLE001
        dense = [m for m in dense if m.endswith("backbone")]
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if id(p) in ids and not p.requires_grad}
    bn_stats = {n: b.running_mean.detach().clone() for n, b in model.named_modules()
                if is_batchnorm(b) and not b.training and b.running_mean is not None}

    def step() -> int:
        saved = 0

        def pack(tensor):
            nonlocal saved
            saved += tensor.numel() * tensor.element_size()
            return tensor

        optimizer.zero_grad(set_to_none=True)
        x = torch.randn(*shape, device=device)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = x
            for m in dense:  # the backbone's feature tuple feeds the neck
                out = getattr(model, m)(out)
            tensors = out if isinstance(out, (list, tuple)) else [out]
            loss = sum(t.float().mean() for t in tensors)
        loss.backward()
        optimizer.step()
        return saved

    saved = step()  # warm-up; AdamW allocates its state here
    variant.grad_bytes = sum(p.grad.numel() * p.grad.element_size() for p in subject_params if p.grad is not None)
    variant.optimizer_state_bytes = _state_bytes(optimizer, ids)
    times = []
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for _ in range(steps):
        start = time.perf_counter()
        saved = step()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    variant.step_seconds = statistics.median(times)
    all_grads = sum(p.grad.numel() * p.grad.element_size() for p in model.parameters() if p.grad is not None)
    all_state = _state_bytes(optimizer, {id(p) for p in model.parameters()})
    variant.peak_bytes = (torch.cuda.max_memory_allocated() if device == "cuda" else saved + all_grads + all_state)
    params = dict(model.named_parameters())
    variant.frozen_bit_identical = all(torch.equal(params[n], v) for n, v in frozen.items()) if frozen else None
    modules_now = dict(model.named_modules())
    variant.bn_stats_unchanged = all(torch.equal(modules_now[n].running_mean, v) for n, v in bn_stats.items()) if bn_stats else None
    return variant, dense


def run_bench(config: Path, options, steps: int = 3, input_shape: tuple[int, ...] | None = None,
              device: str = "cpu") -> BenchResult:
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    config = Path(config)
    # Six camera views of 256x704 on a GPU (BEV models); one view on CPU, where steps are slow.
    shape = input_shape or ((6, 3, 256, 704) if device == "cuda" else (1, 3, 256, 704))
    result = BenchResult(config, device, [], [], tuple(shape), steps)
    with tempfile.TemporaryDirectory(prefix="freezefix-bench-") as tmp:
        fixed, touched = _fixed_overlay(config, Path(tmp), options)
        result.modules = touched
        if not touched:
            result.error = "freezefix has no fix for this config: nothing to compare"
            return result
        torch.manual_seed(0)
        before, dense = _measure(config.resolve(), config.resolve(), "as configured", touched, device, steps, shape)
        torch.manual_seed(0)
        after, _ = _measure(fixed, config.resolve(), "with freezefix's fixes", touched, device, steps, shape)
    result.dense = dense
    result.variants = [before, after]
    return result


def render(result: BenchResult, console: Any) -> None:
    from rich.table import Table

    if result.error:
        console.print(f"[red]{result.config}: {result.error}[/red]")
        return
    before, after = result.variants
    table = Table(title=f"{result.config.name} on {result.device}: modules {', '.join(result.modules)}; "
                        f"timed: {', '.join(result.dense)} on input {tuple(result.input_shape)}")
    for column in ("", before.name, after.name, "after / before"):
        table.add_column(column, justify="right" if column else "left")

    def ratio(a: float, b: float) -> str:
        return f"{b / a:.2f}" if a else ("1.00" if not b else "-")

    rows = [
        ("params requiring grad", before.trainable_params, after.trainable_params, "{:,}"),
        ("gradient bytes", before.grad_bytes, after.grad_bytes, "{:,}"),
        ("optimizer state bytes", before.optimizer_state_bytes, after.optimizer_state_bytes, "{:,}"),
        ("median step seconds", before.step_seconds, after.step_seconds, "{:.3f}"),
        ("peak bytes" + (" (cuda max allocated)" if result.device == "cuda" else " (activations+grads+state)"),
         before.peak_bytes, after.peak_bytes, "{:,}"),
    ]
    for label, a, b, fmt in rows:
        table.add_row(label, fmt.format(a), fmt.format(b), ratio(a, b))
    table.add_row("frozen params bit-identical", str(before.frozen_bit_identical), str(after.frozen_bit_identical), "")
    table.add_row("BN running stats unchanged (eval)", str(before.bn_stats_unchanged), str(after.bn_stats_unchanged), "")
    console.print(table)


def plot(result: BenchResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    before, after = result.variants
    labels = ["grad MB", "optim state MB", "peak MB", "step ms"]
    a = [before.grad_bytes / 2**20, before.optimizer_state_bytes / 2**20, before.peak_bytes / 2**20, before.step_seconds * 1e3]
    b = [after.grad_bytes / 2**20, after.optimizer_state_bytes / 2**20, after.peak_bytes / 2**20, after.step_seconds * 1e3]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    xs = range(len(labels))
    ax.bar([x - 0.2 for x in xs], a, width=0.4, label=before.name)
    ax.bar([x + 0.2 for x in xs], b, width=0.4, label=after.name)
    ax.set_xticks(list(xs), labels)
    ax.set_title(f"{result.config.name} ({result.device})")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
