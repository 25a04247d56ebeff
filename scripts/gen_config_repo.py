#!/usr/bin/env python3
"""Generate a synthetic OpenMMLab config repository with a known number of planted findings.

    python scripts/gen_config_repo.py OUT_DIR --configs 2000 [--seed 0]

Layout: shared model and schedule bases under ``configs/_base_/``, one group base per directory
(``configs/group_NN/_group.py``, inheriting a model and a schedule), and leaf experiments that
inherit their group base, some through an intermediate config (chains four files deep).  Both config
eras appear (mmengine ``optim_wrapper=`` and mmcv 1.x ``optimizer=``), values are written through
``dict(...)`` calls, ``{...}`` literals and module-level variables, with comments in Chinese, some
files with CRLF line endings (no BOM: mmengine cannot load a config that starts with one).

Plugins, as BEV repos name them, one group in ten each: a ``custom_imports`` module that does not
import here (a compiled op missing), a ``plugin_dir`` that is not there, and a local plugin package
(``projects/local_plugin/``, found from the repository root) that registers ``LocalResNet``, a ResNet.
The first two groups' backbones cannot be built: nothing is planted there (freezefix says it could not
judge them); the local plugin's group is planted like the others.

Planted, in leaves only (their bases are shared with clean leaves, so fixes must go into the leaf):
- FF101: ``custom_keys={'backbone': dict(lr_mult=0.0)}`` over a ResNet with frozen_stages below 4;
- FF103: ``frozen_stages=5`` on a ResNet (past its range).
Everything else is clean.  The last line printed is JSON with the counts.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

MODEL = """\
# 模型: RetinaNet-{depth}（合成的配置，用于规模测试）
backbone = dict(
    type='ResNet',
    depth={depth},
    num_stages=4,
    out_indices=(1, 2, 3),
    frozen_stages=1,  # 冻结 stem 和 layer1
    norm_cfg=dict(type='BN', requires_grad=True),
    norm_eval=True,
    style='pytorch',
    init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet{depth}'))
model = dict(
    type='RetinaNet',
    backbone=backbone,
    neck=dict(type='FPN', in_channels={channels}, out_channels=64, start_level=0, add_extra_convs='on_input', num_outs=4),
    bbox_head=dict(
        type='RetinaHead', num_classes=3, in_channels=64, stacked_convs=1, feat_channels=64,
        anchor_generator=dict(type='AnchorGenerator', octave_base_scale=4, scales_per_octave=1,
                              ratios=[1.0], strides=[8, 16, 32, 64]),
        bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[.0, .0, .0, .0], target_stds=[1.0, 1.0, 1.0, 1.0]),
        loss_cls=dict(type='FocalLoss', use_sigmoid=True), loss_bbox=dict(type='L1Loss')))
default_scope = 'mmdet'
"""

SCHEDULE_MMENGINE = """\
optim_wrapper = {
    'type': 'OptimWrapper',
    'optimizer': {'type': 'SGD', 'lr': 0.01, 'momentum': 0.9, 'weight_decay': 0.0001},
}
param_scheduler = [dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500)]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=12)
"""

SCHEDULE_MMCV1 = """\
optimizer = dict(type='AdamW', lr=0.0002, weight_decay=0.01)
optimizer_config = dict(grad_clip=dict(max_norm=35, norm_type=2))
lr_config = dict(policy='step', warmup='linear', warmup_iters=500, step=[8, 11])
total_epochs = 12
"""

GROUP = """\
_base_ = ['../_base_/models/retinanet_r{depth}.py', '../_base_/schedules/{era}.py']

# 组 {group}: 共享的实验设置
work_dir = './work_dirs/group_{group}'
{plugin}"""

# What a group's base adds to name its plugin: (text, whether the backbone can be built here).
PLUGINS = {
    "missing-import": ("custom_imports = dict(imports=['bev_ops.sparse_backbone'], allow_failed_imports=False)\n"
                       "model = dict(backbone=dict(type='SparseBEVResNet'))  # 需要编译的算子\n", False),
    "missing-dir": ("plugin = True\nplugin_dir = 'projects/mmdet3d_plugin/'\n"
                    "model = dict(backbone=dict(type='VoVNetCP'))\n", False),
    "local": ("plugin = True\nplugin_dir = 'projects/local_plugin/'\n"
              "model = dict(backbone=dict(type='LocalResNet'))\n", True),
}

LOCAL_PLUGIN = """\
# 本地插件: 注册一个 ResNet 变体
from mmdet.models.backbones import ResNet

try:  # mmdet 3.x
    from mmdet.registry import MODELS
except ImportError:  # mmdet 2.x
    from mmdet.models.builder import BACKBONES as MODELS


@MODELS.register_module()
class LocalResNet(ResNet):
    pass
"""


def plugin_of(group: int) -> str | None:
    return {3: "missing-import", 6: "missing-dir", 9: "local"}.get(group % 10)


def leaf(group: int, index: int, era: str, kind: str, via_variable: bool, base: str) -> str:
    lines = [f"_base_ = '{base}'", "", f"# 实验 {index}: {kind}"]
    root = "optim_wrapper" if era == "mmengine" else "optimizer"
    if kind == "ff101":
        fs = random.choice([-1, 0, 1, 2, 3])
        lines.append(f"model = dict(backbone=dict(frozen_stages={fs}))  # 以为全部冻结了")
        keys = "{'backbone': dict(lr_mult=0.0)}"
    elif kind == "ff103":
        lines.append("model = dict(backbone=dict(frozen_stages=5))")
        keys = None
    elif kind == "frozen-ok":
        lines.append("model = dict(backbone=dict(frozen_stages=4))")
        keys = "{'backbone': dict(lr_mult=0.0)}"
    else:  # fine-tuning: trainable backbone at a lower lr
        keys = "{'backbone': dict(lr_mult=0.1)}" if random.random() < 0.5 else None
    if keys is not None:
        if via_variable:
            lines += [f"custom_keys = {keys}", f"{root} = dict(paramwise_cfg=dict(custom_keys=custom_keys))"]
        else:
            lines.append(f"{root} = dict(paramwise_cfg=dict(custom_keys={keys}))")
    lines.append(f"work_dir = './work_dirs/g{group}_e{index}'")
    return "\n".join(lines) + "\n"


def write(path: Path, text: str, crlf: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if crlf:
        text = text.replace("\n", "\r\n")
    path.write_bytes(text.encode("utf-8"))


def generate(out: Path, configs: int, seed: int) -> dict:
    random.seed(seed)
    base = out / "configs" / "_base_"
    for depth, channels in ((18, "[128, 256, 512]"), (50, "[512, 1024, 2048]")):
        write(base / "models" / f"retinanet_r{depth}.py", MODEL.format(depth=depth, channels=channels))
    write(base / "schedules" / "mmengine.py", SCHEDULE_MMENGINE)
    write(base / "schedules" / "mmcv1.py", SCHEDULE_MMCV1, crlf=True)
    planted = {"FF101": 0, "FF103": 0}
    per_group = 50
    groups = max(1, (configs + per_group - 1) // per_group)
    made = 0
    for group in range(groups):
        era = "mmengine" if group % 2 == 0 else "mmcv1"
        depth = 18 if group % 3 else 50
        group_dir = out / "configs" / f"group_{group:03d}"
        plugin = plugin_of(group)
        text, judged = PLUGINS[plugin] if plugin else ("", True)
        write(group_dir / "_group.py", GROUP.format(depth=depth, era=era, group=group, plugin=text))
        write(group_dir / "_intermediate.py", "_base_ = './_group.py'\n\n# 中间层: 更长的 _base_ 链\nseed = 0\n")
        for index in range(per_group):
            if made >= configs:
                break
            roll = random.random()
            kind = "ff101" if roll < 0.15 else "ff103" if roll < 0.22 else "frozen-ok" if roll < 0.40 else "finetune"
            planted["FF101"] += kind == "ff101" and judged
            planted["FF103"] += kind == "ff103" and judged
            parent = "./_intermediate.py" if index % 3 == 0 else "./_group.py"
            text = leaf(group, index, era, kind, via_variable=index % 4 == 1, base=parent)
            write(group_dir / f"exp_{index:03d}.py", text, crlf=index % 10 == 7)
            made += 1
    write(out / "projects" / "local_plugin" / "__init__.py", LOCAL_PLUGIN)
    return {"configs": made, "files": made + 2 * groups + 4, "planted": planted,
            "planted_total": sum(planted.values())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--configs", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    summary = generate(args.out, args.configs, args.seed)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
