"""Several processes under `torchrun`: PyTorch's own torch.distributed, no engine of our own.

A command launched by torchrun (RANK and WORLD_SIZE in its environment) joins the process group
through `join(device)`: NCCL between CUDA GPUs (one per local rank), gloo between CPU processes.
Launched plainly, `join` returns `SOLO` and every helper here is a no-op, so single-process code
paths stay exactly as they were.

Every failure to set up is a FerError with one line: a missing backend, more local ranks than
GPUs, a device torch.distributed cannot serve (MPS), a malformed torchrun environment.
"""

import gc
import os
from dataclasses import dataclass

import torch
from torch import nn

from .device import choose_device
from .errors import FerError

TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


@dataclass(frozen=True)
class World:
    """This process's place among the launched ones; `launched` is False for a plain run."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    launched: bool = False

    @property
    def main(self) -> bool:
        """Rank 0: the one process that writes files and prints."""
        return self.rank == 0

    def shard(self, n: int) -> range:
        """This rank's contiguous share of n items (the first n % size ranks take one more)."""
        per, extra = divmod(n, self.size)
        start = self.rank * per + min(self.rank, extra)
        return range(start, start + per + (1 if self.rank < extra else 0))


SOLO = World()
_JOINED = []  # [True] while this module holds a process group it started


def launched_world() -> World:
    """The World torchrun describes in the environment, or SOLO when it did not launch us."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return SOLO
    try:
        rank, size, local = (int(os.environ.get(name, "0")) for name in TORCHRUN_VARIABLES)
    except ValueError:
        raise FerError("torchrun's RANK, WORLD_SIZE and LOCAL_RANK must be whole numbers, got "
                       + ", ".join(f"{n}={os.environ.get(n)!r}" for n in TORCHRUN_VARIABLES)
                       ) from None
    if not (size >= 1 and 0 <= rank < size and local >= 0):
        raise FerError(f"torchrun gave rank {rank} of a world of {size}: not a valid place")
    return World(rank=rank, size=size, local_rank=local, launched=True)


def join(preference: str | None = None) -> tuple[World, torch.device]:
    """Join the process group torchrun set up (if it did) and return this rank's device."""
    world = launched_world()
    device = choose_device(preference)
    if not world.launched:
        return world, device
    if not torch.distributed.is_available():
        raise FerError("this PyTorch was built without torch.distributed: torchrun cannot be "
                       "used with it")
    if device.type == "cuda":
        device = _local_gpu(world)
        backend, ready = "nccl", torch.distributed.is_nccl_available()
    elif device.type == "cpu":
        backend, ready = "gloo", torch.distributed.is_gloo_available()
    else:
        raise FerError(f"torchrun runs on CUDA GPUs (NCCL) or CPUs (gloo), not on "
                       f"{device.type}: pass --device cpu or cuda")
    if not ready:
        raise FerError(f"the {backend} backend is missing from this PyTorch: torchrun on "
                       f"{device.type} needs it")
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend)
        _JOINED.append(True)
    return world, device


def _local_gpu(world: World) -> torch.device:
    count = torch.cuda.device_count()
    if world.local_rank >= count:
        raise FerError(f"local rank {world.local_rank} has no GPU: this machine has {count}; "
                       f"launch at most {count} processes per node")
    torch.cuda.set_device(world.local_rank)
    return torch.device("cuda", world.local_rank)


def leave(*, together: bool) -> None:
    """Leave the process group `join` started (one a caller set up is left to the caller).

    `together`: every rank got here without an error, so they meet at a barrier first. Then no
    rank tears its group down while a peer still has a collective in flight, and the garbage
    collected before (a DDP wrapper holds the group) does not keep the group alive into the
    interpreter's shutdown, where gloo's threads can abort a process that has finished its work
    (a 2-rank run failed so once, on a busy machine)."""
    if _JOINED and torch.distributed.is_initialized():
        if together:
            torch.distributed.barrier(device_ids=[torch.cuda.current_device()]
                                      if torch.distributed.get_backend() == "nccl" else None)
        gc.collect()
        torch.distributed.destroy_process_group()
    _JOINED.clear()


def active() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def sum_all(*tensors: torch.Tensor) -> None:
    """Sum each tensor over the ranks, in place (one collective for all of them)."""
    if not active() or not tensors:
        return
    flat = torch.stack([t.reshape(()).float() for t in tensors])
    torch.distributed.all_reduce(flat)
    for tensor, total in zip(tensors, flat):
        tensor.copy_(total.to(tensor.dtype))


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank when `flag` is True on any: the ranks stop at the same step."""
    if not active():
        return flag
    value = torch.tensor(1.0 if flag else 0.0, device=device)
    torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MAX)
    return bool(value.item())


def agree(value: str, what: str) -> None:
    """Raise the same one-line FerError on every rank when the ranks hold different `value`s."""
    if not active():
        return
    values = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(values, value)
    if len(set(values)) > 1:
        listed = ", ".join(f"rank {rank}: {v}" for rank, v in enumerate(values))
        raise FerError(f"the ranks disagree on {what} ({listed}): every rank must read the "
                       f"same files")


def from_main(value):
    """Rank 0's `value` (any picklable object) on every rank: what the main rank decided."""
    if not active():
        return value
    box = [value]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def gathered(value) -> list:
    """Every rank's `value` (any picklable object), in rank order, on every rank; a barrier too:
    it returns once every rank has reached it."""
    if not active():
        return [value]
    values = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(values, value)
    return values


def share_buffers(module: nn.Module) -> None:
    """Give every rank rank 0's buffers (batch-norm statistics), which each rank updates from its
    own slice of a batch: validation and saved checkpoints then agree across ranks."""
    if not active():
        return
    for buffer in module.buffers():
        torch.distributed.broadcast(buffer, src=0)
