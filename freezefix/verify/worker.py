"""The verification worker: loads configs and builds the real models with the installed stack, in its own process.

Config code and plugin packages are arbitrary Python, and a model build can hang or take the
process down; so this runs as ``python -m freezefix.verify.worker``, reads a JSON list of jobs on
stdin and writes one JSON line per job on stdout as soon as it is done (the parent enforces a
deadline per job and restarts the worker past one that hangs).

A job: ``{"id", "config", "origin", "device"}`` and optionally ``"optimizer_log": true`` —
``config`` is the file to load (maybe a patched copy in an overlay directory), ``origin`` the file it
stands for in the user's repository (plugin directories are looked up from there); with
``optimizer_log`` the answer also holds the lines the optimizer constructor logs.  The answer holds the stack's resolved values (mmengine's or
mmcv 1.x's ``Config``) and, per top-level module and per child of it (the stages of a backbone),
what trains: parameters, trainable after construction and after ``train()``, BatchNorm layers in
training mode, the lr each parameter gets from the optimizer the stack's own constructor builds,
and which frozen parameters that optimizer holds anyway (mmcv 1.x keeps them at the base lr).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
import traceback
import warnings
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from freezefix.building import is_batchnorm
from freezefix.paramwise import Optimizer, key_lr_mult, optimizer_of
from freezefix.verify.measured import NOT_IN_OPTIMIZER, OPTIMIZER_NOT_BUILT, BuildAnswer, ModuleMeasure


def jsonable(value: Any) -> Any:
    """``value`` as it reads back from the JSON the worker answers in (tuples as lists, objects as repr)."""
    return json.loads(json.dumps(value, default=repr))


def _lr_of_params(model: Any, values: dict, log: list[str] | None = None
                  ) -> tuple[dict[str, tuple[float, float | None, str | None]], float | None, str | None]:
    """name → (lr, weight decay, the custom key that set the lr) from the stack's own optimizer
    constructor; ``log`` (when given) receives what the constructor logs, as the training log writes it."""
    from freezefix.stacks import current

    stack = current()
    try:
        if log is None:
            optimizer, base_lr = stack.build_optimizer(model, values)
        else:
            with stack.capture_optimizer_log() as lines:
                optimizer, base_lr = stack.build_optimizer(model, values)
            log.extend(lines)
    except LookupError as exc:
        return {}, None, str(exc)
    except Exception as exc:  # noqa: BLE001 - reported, the rest of the facts still count
        return {}, None, f"{OPTIMIZER_NOT_BUILT}: {type(exc).__name__}: {exc}"
    by_id = {}
    for group in optimizer.param_groups:
        for param in group["params"]:
            decay = group.get("weight_decay")
            by_id[id(param)] = (float(group["lr"]), None if decay is None else float(decay))
    credit = _key_credit(optimizer_of(values, stack.name), base_lr)
    return {n: (*by_id[id(p)], credit(n, by_id[id(p)][0]))
            for n, p in model.named_parameters() if id(p) in by_id}, base_lr, None


def _key_credit(optimizer: Optimizer | None, base_lr: float | None) -> Callable[[str, float], str | None]:
    """(param name, the lr the constructor gave it) → the custom key that set that lr, or None.  The
    constructor does not say which key it used: the key is the one its own rule picks (longest
    first, first substring match), credited only when the lr is the one that key gives."""
    def credit(name: str, lr: float) -> str | None:
        key = optimizer.match(name) if optimizer is not None and optimizer.custom_keys else None
        if key is None or base_lr is None:
            return None
        return key if math.isclose(lr, base_lr * key_lr_mult(optimizer.custom_keys[key]), rel_tol=1e-9) else None

    return credit


def _module_stats(module: Any, prefix: str, constructed: dict[str, bool],
                  settings: dict[str, tuple[float, float | None, str | None]],
                  children: dict[str, ModuleMeasure] | None = None) -> ModuleMeasure:
    params = [(f"{prefix}.{n}", p) for n, p in module.named_parameters()]
    bns = [m for m in module.modules() if is_batchnorm(m)]
    lr_numel: Counter = Counter()  # over the params that trained when the optimizer was built
    decay_numel: Counter = Counter()
    keyed_numel: dict[str, Counter] = {}  # lr → the custom key that set it → elements
    frozen_in_optimizer: Counter = Counter()  # frozen then, in the optimizer anyway (mmcv 1.x)
    for name, param in params:
        setting = settings.get(name)
        if constructed.get(name) and setting is None:
            lr_numel[NOT_IN_OPTIMIZER] += param.numel()
        elif constructed.get(name):
            lr, decay, key = setting
            lr_numel[repr(lr)] += param.numel()
            decay_numel[repr(decay)] += param.numel()
            if key is not None:
                keyed_numel.setdefault(repr(lr), Counter())[key] += param.numel()
        elif setting is not None:
            frozen_in_optimizer[repr(setting[0])] += param.numel()
    return ModuleMeasure(
        class_name=type(module).__name__,
        params=sum(p.numel() for _, p in params),
        trainable_constructed=sum(p.numel() for n, p in params if constructed.get(n)),
        trainable_train=sum(p.numel() for _, p in params if p.requires_grad),
        trainable_zero_lr=sum(p.numel() for n, p in params
                              if p.requires_grad and n in settings and settings[n][0] == 0.0),
        bn_total=len(bns),
        bn_training=sum(1 for m in bns if m.training),
        lr=dict(lr_numel),
        decay=dict(decay_numel),
        lr_keys={lr: dict(keys) for lr, keys in keyed_numel.items()},
        frozen_in_optimizer=dict(frozen_in_optimizer),
        children=children or {},
    )


def _device(choice: str) -> str:
    if choice != "auto":
        return choice
    import torch

    return "cuda" if torch.cuda.is_available() else "meta"


def run_job(job: dict, cache: dict[str, BuildAnswer]) -> BuildAnswer:
    from freezefix.plugins import import_plugins
    from freezefix.stacks import current

    stack = current().name
    origin = Path(job.get("origin") or job["config"])
    try:
        values = current().load_config(job["config"])
    except Exception as exc:  # noqa: BLE001
        return BuildAnswer(job["id"], stack=stack, error=f"{stack} cannot load it: {type(exc).__name__}: {exc}")
    notes = import_plugins(values, origin)
    device = _device(job.get("device", "meta"))
    optim = {k: values.get(k) for k in ("optimizer", "optim_wrapper")}
    optimizer_log = bool(job.get("optimizer_log"))
    key = json.dumps([repr(values.get("model")), repr(optim), values.get("default_scope"), device, optimizer_log])
    built = key not in cache  # False: an identical (model, optimizer) pair was built already
    if built:
        started = time.perf_counter()
        measured = _build_and_measure(values, origin, device, optimizer_log)
        cache[key] = replace(measured, build_seconds=round(time.perf_counter() - started, 3))
    measured = cache[key]
    loaded = {name: weights_loaded(values, name) for name in job.get("loads_weights", [])}
    return replace(measured, id=job["id"], ok=measured.error is None, stack=stack, values=jsonable(values),
                   built=built, notes=notes + measured.notes, weights_loaded=loaded)


def weights_loaded(values: dict, name: str) -> list[int] | str:
    """Build module ``name`` on the CPU with its init_cfg, run ``init_weights()`` as the runner does,
    and count its tensors that now hold the values its Pretrained init_cfg's checkpoint holds for
    them: [equal, held]; a string says why it could not be measured."""
    import torch

    from freezefix.checkpoints import resolve_checkpoint, state_under
    from freezefix.class_probe import build_module
    from freezefix.classes import find_class

    cfg = (values.get("model") or {}).get(name)
    init = cfg.get("init_cfg") if isinstance(cfg, dict) else None
    if not isinstance(init, dict) or init.get("type") != "Pretrained":
        return f"{name} has no Pretrained init_cfg after the rewrite"
    try:
        scope = cfg.get("_scope_") or values.get("default_scope")
        cls, scope = find_class(cfg["type"], scope if isinstance(scope, str) else None)
        module = build_module(cls, scope, {k: v for k, v in cfg.items() if k not in ("type", "_scope_")})
        module.init_weights()
    except Exception as exc:  # noqa: BLE001 - said in the verdict
        return f"{name} could not be built and initialised on the CPU: {type(exc).__name__}: {exc}"
    expected = state_under(resolve_checkpoint(init["checkpoint"]), init.get("prefix"))
    held = [(tensor, expected[key]) for key, tensor in module.state_dict().items()
            if key in expected and tuple(expected[key].shape) == tuple(tensor.shape)]
    return [sum(1 for tensor, value in held if torch.equal(tensor, value.to(tensor.dtype))), len(held)]


def _build_and_measure(values: dict, origin: Path, device: str, optimizer_log: bool = False) -> BuildAnswer:
    from freezefix.class_probe import as_the_runner, has_plugin_init_weights
    from freezefix.models import build

    built = build(values, origin, device=device)
    result = BuildAnswer(None, level=built.level, device=built.device, substitutions=dict(built.substitutions),
                         notes=list(built.notes))
    if built.model is None:
        return replace(result, error=built.error or "the model could not be built")
    model = built.model
    if has_plugin_init_weights(model) and built.device == "meta":
        return _build_and_measure(values, origin, "cpu", optimizer_log)

    log: list[str] | None = [] if optimizer_log else None

    def at_wrap() -> tuple[dict[str, bool], tuple]:
        # The Runner builds DDP and the optimizer after construction and before train(): so here.
        return {n: p.requires_grad for n, p in model.named_parameters()}, _lr_of_params(model, values, log)

    wrapped, failed = as_the_runner(model, at_wrap)
    if failed:
        return replace(result, error=failed)
    constructed, (settings, base_lr, optim_note) = wrapped
    lrs = {n: setting[0] for n, setting in settings.items()}
    if optim_note:
        result.notes.append(optim_note)
        if optim_note.startswith(OPTIMIZER_NOT_BUILT):
            result = replace(result, optimizer_error=optim_note[len(OPTIMIZER_NOT_BUILT) + 2:])
    model.train()
    modules = {}
    for name, child in model.named_children():
        stages = {sub: _module_stats(grandchild, f"{name}.{sub}", constructed, settings)
                  for sub, grandchild in child.named_children() if any(True for _ in grandchild.parameters())}
        modules[name] = _module_stats(child, name, constructed, settings, stages)
    return replace(
        result, modules=modules, base_lr=base_lr, optimizer_log=log if not optim_note else None,
        # Over model.parameters(): a parameter shared by two modules counts once, as PEFT counts.
        total_params=sum(p.numel() for p in model.parameters()),
        trainable_params=sum(p.numel() for p in model.parameters() if p.requires_grad),
        trainable_zero_lr=sum(p.numel() for n, p in model.named_parameters() if p.requires_grad and lrs.get(n) == 0.0),
    )


def main() -> None:
    # The answers travel on the original stdout; anything else that prints (mmengine's logger,
    # a plugin's print) is sent to stderr so it cannot break the one-JSON-line-per-job protocol.
    answers = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    warnings.simplefilter("ignore")
    from freezefix.stacks import current

    current().quiet()
    current().registries()  # torch and the model registries, imported while the parent still works
    jobs = json.load(sys.stdin)
    cache: dict[str, BuildAnswer] = {}
    for job in jobs:
        try:
            result = run_job(job, cache)
        except BaseException as exc:  # noqa: BLE001 - one job's crash must not lose the others
            result = BuildAnswer(job.get("id"), error=f"{type(exc).__name__}: {exc}",
                                 traceback=traceback.format_exc(limit=5))
        answers.write(json.dumps(result.to_json(), default=repr) + "\n")
        answers.flush()


if __name__ == "__main__":
    main()
