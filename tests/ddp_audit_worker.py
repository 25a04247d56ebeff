"""Two-process DDP training (gloo, CPU, 127.0.0.1 only) with FreezeAuditHook, for the hook's tests.

``python -m tests.ddp_audit_worker OUT``: each rank trains mmdet's real SwinTransformer (which
freezes its first stage in ``train()``, after DDP has wrapped it) with an mmengine Runner for two
iterations, and writes ``OUT/rank{N}.json``: the problem codes its audit found, how many parameters
it counted itself as trainable at wrap time but frozen after ``train()``, and the training error.
Bounded: the process group times out after 60 s, and the test that runs this gives it 240 s.
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import sys
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

SWIN = dict(type="mmdet.SwinTransformer", embed_dims=32, depths=(1, 1), num_heads=(1, 2), strides=(4, 2),
            out_indices=(1,), frozen_stages=1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rank_main(rank: int, world_size: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))
    dist.init_process_group("gloo", rank=rank, world_size=world_size, timeout=datetime.timedelta(seconds=60))
    torch.set_num_threads(1)
    from mmengine.config import Config
    from mmengine.runner import Runner

    import freezefix.hooks  # noqa: F401 - registers FreezeAuditHook
    import tests.audit_models  # noqa: F401 - registers the model and the dataset

    runner = Runner.from_cfg(Config(dict(
        model=dict(type="FreezeAuditPooledRegressor", backbone=SWIN, head_in=64),
        work_dir=str(Path(out) / "work"),
        train_dataloader=dict(dataset=dict(type="FreezeAuditRandomImages", length=8, size=64),
                              sampler=dict(type="DefaultSampler", shuffle=False),
                              collate_fn=dict(type="default_collate"), batch_size=2, num_workers=0),
        train_cfg=dict(by_epoch=False, max_iters=2),
        optim_wrapper=dict(optimizer=dict(type="SGD", lr=0.01)),
        launcher="pytorch",
        # device_ids=None: the module lives on the CPU (the Runner's default names a GPU).
        model_wrapper_cfg=dict(type="MMDistributedDataParallel", find_unused_parameters=False, device_ids=None),
        default_hooks=dict(checkpoint=None),
        custom_hooks=[dict(type="FreezeAuditHook", iterations=1)],
        randomness=dict(seed=0),
    )))
    inner = runner.model.module
    # The run fine-tunes from a checkpoint (this model's own weights), as real runs do.
    torch.save({"state_dict": inner.state_dict()}, Path(out) / f"init_rank{rank}.pth")
    runner._load_from = str(Path(out) / f"init_rank{rank}.pth")
    at_wrap = {name for name, p in inner.named_parameters() if p.requires_grad}
    error = ""
    try:
        runner.train()
    except RuntimeError as exc:
        error = str(exc)
    frozen_after = sum(p.numel() for name, p in inner.named_parameters() if name in at_wrap and not p.requires_grad)
    hook = next(h for h in runner.hooks if type(h).__name__ == "FreezeAuditHook")
    report = hook.audit.report
    Path(out, f"rank{rank}.json").write_text(json.dumps({
        "codes": [p.code for p in report.problems], "frozen_after_wrap": frozen_after, "training_error": error}))


def main() -> None:
    out = sys.argv[1]
    Path(out).mkdir(parents=True, exist_ok=True)
    mp.start_processes(rank_main, args=(2, free_port(), out), nprocs=2, join=True, start_method="spawn")


if __name__ == "__main__":
    main()
