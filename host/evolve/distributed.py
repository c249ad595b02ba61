"""Data-parallel training under torchrun (torch.distributed): NCCL on GPUs, gloo on CPUs.

    torchrun --nproc_per_node N $(command -v host-evolve) --data DIR --out RUN ...
    torchrun --nnodes M --nproc_per_node N --rdzv_backend c10d --rdzv_endpoint HOST:29500 \
             $(command -v host-evolve) ...

Every rank samples the same offspring (the sampling is seeded) and trains on its share of every global
batch; gradients are averaged by DistributedDataParallel. Only rank 0 writes: lineage, checkpoints,
weights, exports, reports. Without torchrun's environment everything here is a no-op.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def init_world(device: torch.device) -> World:
    """Join the process group torchrun describes (WORLD_SIZE, RANK, LOCAL_RANK), once."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    world = World(int(os.environ["RANK"]), size, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(world.local_rank)
        dist.init_process_group(backend=backend)
    return world


def local_device(device: torch.device, world: World) -> torch.device:
    """One GPU per process: rank r on a machine takes cuda:LOCAL_RANK."""
    if device.type == "cuda" and world.distributed:
        return torch.device("cuda", world.local_rank)
    return device


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()


def sum_across(world: World, *values: float) -> list[float]:
    """Sum numbers over all ranks (loss, correct, seen) so every rank reports the global figures."""
    if not world.distributed:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64)
    if dist.get_backend() == "nccl":
        tensor = tensor.cuda()
    dist.all_reduce(tensor)
    return tensor.cpu().tolist()


def broadcast(world: World, value):
    """Rank 0's ``value`` on every rank (a measured fps, a decision)."""
    if not world.distributed:
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def shutdown(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()
