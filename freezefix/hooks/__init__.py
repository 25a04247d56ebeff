"""``FreezeAuditHook``: what the training run you launched really freezes, measured inside it.

Add to a config (either era; mmengine's ``Runner`` and mmcv 1.x's runners both import
``custom_imports`` and build ``custom_hooks``)::

    custom_imports = dict(imports=['freezefix.hooks'], allow_failed_imports=False)
    custom_hooks = [dict(type='FreezeAuditHook', strict=False, iterations=3)]

Over the first ``iterations`` training iterations (and at least one optimizer step) it reports, per
top-level module: parameters, trainable ones after ``model.train()``, BatchNorm layers in training
mode, the lr and weight decay the live optimizer gives them, parameters the optimizer holds that do
not require grad, parameters trainable when DDP wrapped the model but frozen now (FF109), lr-0
parameters that received a gradient before the first step with their gradient and optimizer-state
bytes (FF101), BatchNorm running statistics that moved in a module whose every parameter is frozen
or at lr 0 (FF105), and lr-0 groups or parameters a scheduler revived (FF108).  One table goes to
the runner's log and ``work_dir/freeze_audit.json`` is written (rank 0).  ``strict=True`` raises
:class:`FreezeAuditError` before the optimizer step that would follow a contradiction.
"""

from __future__ import annotations

from freezefix.hooks.audit import FreezeAudit, FreezeAuditError
from freezefix.hooks.report import AuditReport
from freezefix.hooks.runners import mmcv1_hook_class, mmengine_hook_class

# Registered with every runner this environment has; the name exported here is the one of the stack
# freezefix itself uses (mmcv-full 1.x, when installed, is what such an environment trains with).
MmengineFreezeAuditHook = mmengine_hook_class()
Mmcv1FreezeAuditHook = mmcv1_hook_class()
FreezeAuditHook = Mmcv1FreezeAuditHook or MmengineFreezeAuditHook

__all__ = ["AuditReport", "FreezeAudit", "FreezeAuditError", "FreezeAuditHook"]
