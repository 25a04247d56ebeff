"""The mmcv 1.x stack: mmcv-full 1.x + mmdet 2.x + mmdet3d 1.0 (and mmcls / mmseg 0.x).

Where most BEV research repos (CMT, PETR, BEVFormer, UniAD …) train.  Its registries form a tree
under mmcv's ``MODELS``; an unscoped ``type='ResNet'`` in an mmdet3d config is found because
mmdet3d's ``build_backbone`` & co. fall back to mmdet's registry themselves, so nothing is rewritten.
Its optimizer constructor (``mmcv.runner.build_optimizer``) keeps parameters with
``requires_grad=False`` in the optimizer, each in its own group at the base lr: harmless, since they
never get a gradient and torch optimizers skip parameters whose ``grad`` is None.
"""

from __future__ import annotations

import copy
import logging
from typing import Any, ContextManager

from freezefix.stacks.common import describe_versions, import_registries, optimizer_with_a_zero_lr_group

ITERS_PER_EPOCH = 20  # the schedule's shape, not the data set's size, decides whether 0 leaves 0


def optimizer_cfg(values: dict) -> dict | None:
    """The optimizer config as ``mmcv.runner.build_optimizer`` takes it, for either config era."""
    if isinstance(values.get("optimizer"), dict):
        return copy.deepcopy(values["optimizer"])
    wrapper = values.get("optim_wrapper")
    if isinstance(wrapper, dict) and isinstance(wrapper.get("optimizer"), dict):
        # An mmengine era config in an mmcv 1.x environment: the same settings, mmcv 1.x's shape.
        cfg = copy.deepcopy(wrapper["optimizer"])
        for key in ("paramwise_cfg", "constructor"):
            if key in wrapper:
                cfg[key] = copy.deepcopy(wrapper[key])
        return cfg
    return None


class Mmcv1Stack:
    name = "mmcv1"
    sibling_scopes = ("mmdet3d", "mmdet", "mmcls", "mmseg")
    rewrites_unscoped_types = False
    registry_module = "{scope}.models.builder"
    init_weights_before_wrap = True
    lr_schedule = "lr_config"
    no_optimizer_log = ("mmcv 1.x's optimizer constructor (mmcv.runner.DefaultOptimizerConstructor) logs no "
                        "per-parameter lines, so a training log of this stack has none to compare with; "
                        "`freezefix explain CONFIG` shows the lr each parameter gets")

    def describe(self) -> str:
        return describe_versions(("mmcv-full", "mmcv", "mmdet", "mmdet3d"))

    def registries(self) -> dict[str, Any]:
        return import_registries(self.sibling_scopes, self.registry_module)

    def task_util_registries(self) -> dict[str, Any]:
        return {}  # mmcv 1.x's build helpers find an unscoped type wherever it is registered

    def build_module(self, registry: Any, cfg: dict, scope: str) -> Any:
        # Nested types are built by the class's own module through its package's build helpers.
        return registry.build(cfg)

    def config_dict(self, cfg: dict) -> Any:
        from mmcv import ConfigDict

        return ConfigDict(cfg)

    def build_model(self, model_cfg: dict, values: dict, scope: str) -> Any:
        # As the repos' tools/train.py do; train_cfg / test_cfg may sit beside the model (mmdet 2.0
        # style).  An mmengine era train_cfg=dict(type='EpochBasedTrainLoop') is a loop, not the model's.
        cfg = self.config_dict(model_cfg)
        train_cfg, test_cfg = (
            self.config_dict(side) if isinstance(side, dict) and "type" not in side else None
            for side in (values.get("train_cfg"), values.get("test_cfg"))
        )
        if scope == "mmdet3d" and "mmdet3d" in self.registries():
            from mmdet3d.models import build_model

            return build_model(cfg, train_cfg=train_cfg, test_cfg=test_cfg)
        from mmdet.models import build_detector

        return build_detector(cfg, train_cfg=train_cfg, test_cfg=test_cfg)

    def load_config(self, path: str) -> dict:
        from mmcv import Config

        from freezefix.config.plain import to_plain

        return to_plain(Config.fromfile(path, import_custom_modules=False)._cfg_dict)

    def build_optimizer(self, model: Any, values: dict) -> tuple[Any, float | None]:
        from mmcv.runner import build_optimizer

        cfg = optimizer_cfg(values)
        if cfg is None:
            raise LookupError("no optimizer in the config")
        return build_optimizer(model, cfg), cfg.get("lr")

    def zero_lr_peak(self, setting: str, cfg: Any, base_lr: float, epochs: int) -> float | None:
        """``lr_config``: mmcv 1.x's own LrUpdaterHook over a whole schedule, as its Runner drives it
        (``register_lr_hook`` names the hook, ``before_train_epoch`` / ``before_train_iter`` set
        the lrs)."""
        if setting != "lr_config" or not isinstance(cfg, dict) or not isinstance(cfg.get("policy"), str):
            return None
        from types import SimpleNamespace

        from mmcv.runner import HOOKS
        from mmcv.utils import build_from_cfg

        spec = dict(cfg)
        policy = spec.pop("policy")
        policy = policy.title() if policy == policy.lower() else policy  # as Runner.register_lr_hook
        optimizer = optimizer_with_a_zero_lr_group(base_lr)
        runner = SimpleNamespace(optimizer=optimizer, epoch=0, iter=0, max_epochs=epochs,
                                 max_iters=epochs * ITERS_PER_EPOCH, data_loader=range(ITERS_PER_EPOCH))
        try:
            hook = build_from_cfg(dict(spec, type=f"{policy}LrUpdaterHook"), HOOKS)
            hook.before_run(runner)
            peak = 0.0
            for epoch in range(epochs):
                runner.epoch = epoch
                hook.before_train_epoch(runner)
                for _ in range(ITERS_PER_EPOCH):
                    hook.before_train_iter(runner)
                    peak = max(peak, optimizer.param_groups[0]["lr"])
                    runner.iter += 1
        except Exception:  # noqa: BLE001 - a schedule that cannot be run here is not judged
            return None
        return peak

    def runner_does_the_same(self, setting: str, before: Any, after: Any, values: dict) -> bool:
        """``auto_scale_lr``: mmdet 2.x's ``train_detector`` (which mmdet3d 1.0 trains detectors with)
        scales the lr through ``mmdet.apis.train.auto_scale_lr``, run here on a single-GPU config."""
        if setting == "auto_scale_lr":
            return _scaled_lr(before, values) == _scaled_lr(after, values)
        return False

    def quiet(self) -> None:
        for name in ("mmcv", "mmdet", "mmdet3d"):
            logging.getLogger(name).setLevel(logging.ERROR)

    def capture_optimizer_log(self) -> ContextManager[list[str]]:
        raise LookupError(self.no_optimizer_log)


def _scaled_lr(auto_scale_lr: Any, values: dict) -> str:
    """What mmdet's ``auto_scale_lr`` makes of an optimizer lr of 1.0 (or the error it raises)."""
    from mmcv import ConfigDict
    from mmdet.apis.train import auto_scale_lr as scale

    cfg = {"optimizer": {"lr": 1.0}, "gpu_ids": [0], "data": copy.deepcopy(values.get("data") or {})}
    if auto_scale_lr is not None:
        cfg["auto_scale_lr"] = copy.deepcopy(auto_scale_lr)
    cfg = ConfigDict(cfg)
    logger = logging.getLogger("freezefix.runner-stand-in")
    logger.disabled = True
    try:
        scale(cfg, False, logger)
    except Exception as exc:  # noqa: BLE001 - a run that stops here is behaviour too
        return f"raises {type(exc).__name__}"
    return repr(cfg.optimizer.lr)
