"""The mmengine stack: mmengine + mmcv 2.x + mmdet 3.x + mmdet3d ≥ 1.1 (and mmpretrain / mmseg 1.x)."""

from __future__ import annotations

import json
import logging
import warnings
from contextlib import contextmanager
from typing import Any, Iterator

from freezefix.stacks.common import describe_versions, import_registries, optimizer_with_a_zero_lr_group

SCHEDULER_STEPS = 200  # enough to see a group leave 0; revival happens on the first annealing step


def optim_wrapper_cfg(values: dict) -> dict | None:
    """The optimizer config as mmengine's ``build_optim_wrapper`` takes it, for either config era."""
    wrapper = values.get("optim_wrapper")
    if isinstance(wrapper, dict):
        cfg = dict(wrapper)
    elif isinstance(values.get("optimizer"), dict):
        # mmcv 1.x era config: optimizer=dict(type=..., lr=..., paramwise_cfg=...) → an OptimWrapper.
        optimizer = dict(values["optimizer"])
        paramwise = optimizer.pop("paramwise_cfg", None)
        cfg = dict(type="OptimWrapper", optimizer=optimizer)
        if paramwise:
            cfg["paramwise_cfg"] = paramwise
    else:
        return None
    if cfg.get("type") == "AmpOptimWrapper":
        cfg["type"] = "OptimWrapper"  # mixed precision needs CUDA; param groups are the same
    cfg.pop("loss_scale", None)
    return cfg


class MmengineStack:
    name = "mmengine"
    sibling_scopes = ("mmdet3d", "mmdet", "mmpretrain", "mmseg")
    rewrites_unscoped_types = True
    registry_module = "{scope}.registry"
    init_weights_before_wrap = False
    lr_schedule = "param_scheduler"
    no_optimizer_log = None  # DefaultOptimWrapperConstructor logs `paramwise_options -- name:key=value`

    def describe(self) -> str:
        return describe_versions(("mmengine", "mmcv", "mmdet", "mmdet3d"))

    def registries(self) -> dict[str, Any]:
        return import_registries(self.sibling_scopes, self.registry_module)

    def task_util_registries(self) -> dict[str, Any]:
        return import_registries(self.sibling_scopes, self.registry_module, name="TASK_UTILS")

    def build_module(self, registry: Any, cfg: dict, scope: str) -> Any:
        from mmengine.registry import DefaultScope

        # Nested configs (norm_cfg, block types) are looked up in the class's own scope.
        instance = f"freezefix-{scope}"
        if not DefaultScope.check_instance_created(instance):
            DefaultScope.get_instance(instance, scope_name=scope)
        with DefaultScope.overwrite_default_scope(scope):
            return registry.build(cfg)

    def config_dict(self, cfg: dict) -> Any:
        from mmengine.config import ConfigDict

        return ConfigDict(cfg)

    def build_model(self, model_cfg: dict, values: dict, scope: str) -> Any:
        registry = self.registries().get(scope) or next(iter(self.registries().values()))
        # Detectors read nested settings as attributes (train_cfg.pts): ConfigDict, as mmengine gives.
        return self.build_module(registry, self.config_dict(model_cfg), scope)

    def load_config(self, path: str) -> dict:
        from mmengine.config import Config

        from freezefix.config.plain import to_plain

        return to_plain(Config.fromfile(path, import_custom_modules=False)._cfg_dict)

    def build_optimizer(self, model: Any, values: dict) -> tuple[Any, float | None]:
        from mmengine.optim import build_optim_wrapper

        cfg = optim_wrapper_cfg(values)
        if cfg is None:
            raise LookupError("no optimizer in the config")
        return build_optim_wrapper(model, cfg).optimizer, cfg.get("optimizer", {}).get("lr")

    def zero_lr_peak(self, setting: str, cfg: Any, base_lr: float, epochs: int) -> float | None:
        if setting != "param_scheduler" or not isinstance(cfg, dict) or "type" not in cfg:
            return None
        from mmengine.optim import OptimWrapper
        from mmengine.registry import PARAM_SCHEDULERS

        optimizer = optimizer_with_a_zero_lr_group(base_lr)
        spec = {k: v for k, v in cfg.items() if k != "convert_to_iter_based"}
        try:
            scheduler = PARAM_SCHEDULERS.build(dict(spec, optimizer=OptimWrapper(optimizer)))
        except Exception:  # noqa: BLE001 - a scheduler that cannot be built here is not judged
            return None
        peak = 0.0
        for _ in range(SCHEDULER_STEPS):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "scheduler.step() before optimizer.step()": on purpose
                scheduler.step()
            peak = max(peak, optimizer.param_groups[0]["lr"])
            if peak > 0:
                break
        return peak

    def runner_does_the_same(self, setting: str, before: Any, after: Any, values: dict) -> bool:
        if setting == "auto_scale_lr":
            return _scaled_lr(before, values) == _scaled_lr(after, values)
        if setting == "default_hooks":
            return _registered_default_hooks(before) == _registered_default_hooks(after)
        return False

    def quiet(self) -> None:
        from mmengine.logging import MMLogger

        logging.getLogger("mmengine").setLevel(logging.ERROR)
        # mmengine logs one line per frozen parameter it leaves out of the optimizer.
        MMLogger.get_current_instance().setLevel(logging.ERROR)

    @contextmanager
    def capture_optimizer_log(self) -> Iterator[list[str]]:
        from mmengine.logging import MMLogger
        from mmengine.logging.logger import FilterDuplicateWarning, MMFormatter

        lines: list[str] = []
        # The constructor logs through the current MMLogger, as in a training run; its records are
        # formatted by the formatter and filter of the log file a Runner writes, minus the timestamp,
        # so that the lines compare with a real log.
        formatter = MMFormatter(color=False, datefmt="%Y/%m/%d %H:%M:%S")

        class Collect(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                text = formatter.format(record)  # sets record.asctime
                stamp = f"{record.asctime} - "
                lines.append(text[len(stamp):] if text.startswith(stamp) else text)

        logger = MMLogger.get_current_instance()
        handler = Collect(logging.INFO)
        handler.addFilter(FilterDuplicateWarning(logger.name))
        saved = logger.handlers[:], logger.level
        logger.handlers[:] = [handler]  # only here: the console handler would print every line too
        logger.setLevel(logging.INFO)
        try:
            yield lines
        finally:
            logger.handlers[:] = saved[0]
            logger.setLevel(saved[1])


class _RunnerStandIn:
    """What ``Runner.scale_lr`` and ``Runner.register_default_hooks`` read of their runner, so that
    the Runner's own code runs on a config's settings without building a Runner (datasets, a work
    directory, a distributed environment)."""

    world_size = 1
    param_schedulers = None

    def __init__(self, batch_size: int = 1):
        self._train_dataloader = {"batch_size": batch_size}
        self.logger = logging.getLogger("freezefix.runner-stand-in")
        self.logger.disabled = True
        self.hooks: list[Any] = []

    def register_hook(self, hook: Any) -> None:
        self.hooks.append(hook)


def _scaled_lr(auto_scale_lr: Any, values: dict) -> str:
    """What ``Runner.scale_lr`` does to an lr of 1.0 with these settings (or the error it raises)."""
    import torch
    from mmengine.optim import OptimWrapper
    from mmengine.runner import Runner

    loader = values.get("train_dataloader")
    batch_size = loader.get("batch_size") if isinstance(loader, dict) else None
    wrapper = OptimWrapper(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0))
    try:
        Runner.scale_lr(_RunnerStandIn(batch_size if isinstance(batch_size, int) else 1), wrapper, auto_scale_lr)
    except Exception as exc:  # noqa: BLE001 - a run that stops here is behaviour too
        return f"raises {type(exc).__name__}"
    return repr(wrapper.optimizer.param_groups[0]["lr"])


def _registered_default_hooks(hooks: Any) -> str:
    """The hook configs ``Runner.register_default_hooks`` registers for this ``default_hooks``."""
    from mmengine.runner import Runner

    runner = _RunnerStandIn()
    try:
        Runner.register_default_hooks(runner, hooks)
    except Exception as exc:  # noqa: BLE001
        return f"raises {type(exc).__name__}"
    return json.dumps(runner.hooks, sort_keys=True, default=repr)  # the same hooks, whatever the key order
