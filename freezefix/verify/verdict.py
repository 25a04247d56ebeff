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
                  new_findings: list[tuple[str, str]], accepted: set[tuple[str, str]], device: str,
                  repairs: set[str] | frozenset[str] = frozenset(),
                  stops: set[str] | frozenset[str] = frozenset(),
                  loads: set[str] | frozenset[str] = frozenset()) -> ConfigVerdict:
    """The verdict on one config's rewrite: the worker's answers on the config ``before`` and
    ``after`` it, the changes the plan made, the rules' findings on the rewritten config (a
    finding not ``accepted`` — reported before the rewrite, or announced by its fix — fails it).
    ``repairs``: modules the fixes make buildable (they may fail before the rewrite); ``stops``:
    modules the fixes mean to stop training; ``loads``: modules the fixes give weights to load."""
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
    problems.extend(unbuilt(changes, before, after, repairs))
    if repairs and before.level != after.level:
        why = "; ".join(f"{name}: {why_not_built(name, before)}"
                        for name in sorted(repairs) if name not in before.modules)
        verdict.summary.append(f"the original model builds only at {before.level} level ({why}); "
                               f"the rewritten one at {after.level} level")
    for change in changes:
        problems.extend(_postcondition(change, after.modules))
    if stops:
        problems.extend(stopped_training(stops, before, after))
    for name in sorted(loads):
        measured = after.weights_loaded.get(name, f"{name}: what its init_cfg loads was not measured")
        if isinstance(measured, str):
            problems.append(measured)
        elif measured[1] == 0 or measured[0] < measured[1]:
            problems.append(f"{name}: after init_weights() {measured[0]} of the {measured[1]} tensors its "
                            "checkpoint holds for it have the checkpoint's values")
        else:
            verdict.summary.append(f"{name}: init_weights() loads all {measured[1]} tensors its checkpoint "
                                   "holds for it (checked value by value on the CPU)")
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


def unbuilt(changes: list[Change], before: BuildAnswer, after: BuildAnswer,
            repairs: set[str] | frozenset[str]) -> list[str]:
    """Why the rewrite is not proved on the real model, if it is not: "could not build" is never "verified".

    Something must be built both before and after the rewrite, at the same level (the detector, or
    its top-level modules in a container), and every module the changes edit must be built both
    times; a module a fix repairs (``repairs``) only after.  A build whose level rises is a repair
    too, and is accepted only from a fix that says so.
    """
    if not after.modules:
        when = "before or after the rewrite" if not before.modules else "after the rewrite (it built before)"
        return [f"the model could not be built {when}: {after.error or before.error}; "
                "nothing is verified on the real model"]
    if not before.modules and not repairs:
        return [f"the original model could not be built ({before.error}): the rewrite would change "
                "what builds, which no fix here claims"]
    if before.modules and before.level != after.level and (before.level == "model" or not repairs):
        return [f"the original model builds at {before.level} level and the rewritten one at {after.level} level "
                f"({after.error or before.error or 'see notes'})"]
    problems = []
    if after.optimizer_error and not before.optimizer_error and after.level == "model":
        # On the detector itself this is the Runner's own failure (a full freeze of the only module
        # that trained leaves `optimizer got an empty parameter list`); on some of its modules in a
        # container it may only be the container's.
        problems.append(f"the rewritten config's optimizer cannot be built ({after.optimizer_error}); it built before")
    elif after.optimizer_error and any("custom_keys" in c.key or "paramwise_cfg" in c.key for c in changes):
        problems.append(f"the optimizer cannot be built ({after.optimizer_error}): no lr the changes set is verified")
    model = (before.values or {}).get("model")
    for name in sorted(edited_modules(changes, model if isinstance(model, dict) else {})):
        for answer, when in ((before, "before"), (after, "after")):
            if name in answer.modules or (when == "before" and name in repairs):
                continue
            problems.append(f"{name} could not be built {when} the rewrite ({why_not_built(name, answer)}): "
                            "nothing about it is verified")
    return problems


def stopped_training(stops: set[str] | frozenset[str], before: BuildAnswer, after: BuildAnswer) -> list[str]:
    """What is wrong with a rewrite meant to stop the modules ``stops`` from training, on the real model
    and the stack's own optimizer: a parameter under them that still trains at a non-zero lr, or a
    parameter of another module whose lr or weight decay the rewrite changed."""
    if after.optimizer_error or before.optimizer_error:
        return [f"the optimizer could not be built ({after.optimizer_error or before.optimizer_error}): "
                "nothing the fix stops is verified"]
    problems = []
    for name in sorted(stops):
        stats = after.modules.get(name)
        if stats is None:
            problems.append(f"{name} could not be built after the rewrite: nothing the fix stops is verified")
            continue
        live = stats.trainable_train - stats.trainable_zero_lr
        if live:
            problems.append(f"{name}: {live:,} params still train at a non-zero lr after the rewrite")
    for name in sorted(set(before.modules) - set(stops)):
        was, now = before.modules[name], after.modules.get(name)
        if now is not None and (was.lr, was.decay) != (now.lr, now.decay):
            problems.append(f"{name}: the rewrite changes its lrs or weight decays ({was.lr} / {was.decay} → "
                            f"{now.lr} / {now.decay}), though the fix is only for {', '.join(sorted(stops))}")
    return problems


def edited_modules(changes: list[Change], model: dict) -> set[str]:
    """The top-level modules of ``model`` whose build the changes may affect: those a ``model.<name>``
    change writes into, and those a custom key's parameters may belong to (a key that names no
    module, such as ``'norm'``, may reach any)."""
    modules = {name for name, value in model.items() if isinstance(value, dict) and "type" in value}
    edited: set[str] = set()
    for change in changes:
        key = change.key
        if key[:1] == ("model",) and len(key) >= 2 and key[1] in modules:
            edited.add(key[1])
        elif "custom_keys" in key[:-1]:
            custom = key[key.index("custom_keys") + 1]
            named = {m for m in modules if custom in f"{m}." or custom.startswith(f"{m}.")}
            edited |= named or modules
    return edited


def why_not_built(name: str, answer: BuildAnswer) -> str:
    prefix = f"{name} could not be built: "
    for note in answer.notes:
        if note.startswith(prefix):
            return note[len(prefix):]
    if answer.level == "model" and answer.modules:
        return f"the built model has no module {name!r}"
    return answer.error or "not built"


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
