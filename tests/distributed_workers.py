"""Functions run in spawned processes of a 2-process gloo group (torch.multiprocessing needs
them importable by name): each writes what it saw to `out/rank-R.json` for the test to check."""

import json
import os
from pathlib import Path

import torch
from torch import nn

from fer_core import distributed
from fer_core.errors import FerError


def check_helpers(rank: int, size: int, port: int, out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(size), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    world, device = distributed.join("cpu")
    seen = {"rank": world.rank, "size": world.size, "device": str(device),
            "shard": list(world.shard(7))}
    a, b = torch.tensor(float(rank + 1)), torch.tensor(10 * (rank + 1), dtype=torch.int64)
    distributed.sum_all(a, b)
    seen["sums"] = [a.item(), b.item()]
    seen["any"] = distributed.any_rank(rank == 1, device)
    seen["none"] = distributed.any_rank(False, device)
    bn = nn.BatchNorm1d(3)
    bn.running_mean.fill_(rank + 5)
    distributed.share_buffers(bn)
    seen["buffers"] = bn.running_mean.tolist()
    distributed.agree("same", "a value")
    try:
        distributed.agree(f"value-{rank}", "the data's fingerprint")
        seen["disagreement"] = None
    except FerError as e:
        seen["disagreement"] = str(e)
    distributed.leave(together=True)
    Path(out, f"rank-{rank}.json").write_text(json.dumps(seen))
