"""Two-process DDP (gloo, CPU, 127.0.0.1 only) on mmdet's real SwinTransformer with activation
checkpointing, for FF112's tests.

``python -m tests.ddp_checkpoint_worker OUT SETTING``: SETTING is ``find_unused`` (DDP's
``find_unused_parameters=True``), ``static_graph`` (``static_graph=True``) or ``plain`` (neither).  The
Swin freezes its first stage in ``train()``, after DDP wrapped it, and checkpoints the blocks of the
stages that train (``with_cp=True``, reentrant: mmdet passes no ``use_reentrant``).  Each rank runs three
forward / backward / step iterations and writes ``OUT/rank{N}.json``: the iterations completed and the
training error.  Bounded: the process group times out after 60 s, and the tests give it 240 s.
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import sys
import warnings
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

SWIN = dict(type="SwinTransformer", embed_dims=16, depths=(1, 2), num_heads=(1, 2), strides=(4, 2),
            window_size=2, out_indices=(1,), frozen_stages=1, with_cp=True)
SETTINGS = {"find_unused": dict(find_unused_parameters=True), "static_graph": dict(static_graph=True), "plain": {}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rank_main(rank: int, world_size: int, port: int, out: str, setting: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))
    dist.init_process_group("gloo", rank=rank, world_size=world_size, timeout=datetime.timedelta(seconds=60))
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.model import MMDistributedDataParallel

    register_all_modules()
    torch.manual_seed(0)
    backbone = MODELS.build(dict(SWIN))
    model = MMDistributedDataParallel(backbone, broadcast_buffers=False, **SETTINGS[setting])
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01)
    model.train()  # the Swin's own train() freezes patch_embed and stage 0 only now
    done, error = 0, None
    try:
        for _ in range(3):
            image = torch.randn(2, 3, 32, 32)
            loss = sum(o.float().mean() for o in model(image))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            done += 1
    except RuntimeError as exc:
        error = str(exc).splitlines()[0]
    Path(out, f"rank{rank}.json").write_text(json.dumps({"iterations": done, "training_error": error}))
    try:
        dist.destroy_process_group()
    except Exception:  # noqa: BLE001 - a failed collective can leave the group unusable
        pass


def main() -> None:
    out, setting = sys.argv[1], sys.argv[2]
    Path(out).mkdir(parents=True, exist_ok=True)
    mp.spawn(rank_main, args=(2, free_port(), out, setting), nprocs=2, join=True)


if __name__ == "__main__":
    main()
