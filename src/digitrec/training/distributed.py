"""Data-parallel training under torchrun: process-group setup, rank helpers and the launcher.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; without them everything here is a no-op, so the
same training code runs as one process or as many. CPU ranks talk over gloo, CUDA ranks over NCCL.
"""
from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from digitrec.errors import DigitrecError


@dataclass(frozen=True)
class World:
    """Where this process stands: its rank among `size` processes, and its rank on this machine."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes checkpoints, logs and reports."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def world_from_env() -> World:
    """The World torchrun describes in the environment, or a single process when it does not."""
    try:
        size = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError as e:
        raise DigitrecError(f"RANK / WORLD_SIZE / LOCAL_RANK must be integers (set by torchrun): {e}") from None
    return World(rank=rank, size=size, local_rank=local)


def setup(world: World, device: torch.device) -> torch.device:
    """Join the process group (once) and return this rank's device: cuda:LOCAL_RANK on CUDA."""
    if not world.distributed:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        kwargs = {"device_id": device} if device.type == "cuda" else {}
        dist.init_process_group(backend, timeout=timedelta(minutes=10), **kwargs)
    return device


def teardown(world: World) -> None:
    """Leave the process group so that torchrun sees a clean exit."""
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(values: torch.Tensor, world: World) -> torch.Tensor:
    """The sum of `values` over all ranks (unchanged in a single process)."""
    if world.distributed:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def launch(nproc: int, argv: Sequence[str]) -> int:
    """Re-run `digitrec ARGV` under `torchrun --nproc-per-node NPROC` on this machine; returns its exit status."""
    if nproc < 1:
        raise DigitrecError(f"--nproc {nproc}: expected an integer >= 1")
    if "RANK" in os.environ:
        raise DigitrecError("--nproc was given inside a torchrun process; run `digitrec train` without it there")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "-m", "digitrec", *argv]
    return subprocess.call(cmd)
