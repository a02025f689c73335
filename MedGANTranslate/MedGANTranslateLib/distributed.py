"""Where a process stands among those ``torchrun`` started, and its share of the machine: PyTorch's own
distributed engine (``torch.distributed``, env:// rendezvous) for ``batch`` and ``train``. Without torchrun a
process is rank 0 of 1 and nothing here touches ``torch.distributed``."""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, List, Optional, Sequence

#: How long a rank waits in a collective for the slowest one (a batch's last cases, rank 0's evaluations).
COLLECTIVE_TIMEOUT = timedelta(days=7)


@dataclass(frozen=True)
class Ranks:
    """Where this process stands among the processes torchrun started (one, without torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @classmethod
    def from_environment(cls) -> "Ranks":
        env = os.environ
        return cls(int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0)),
                   int(env.get("LOCAL_WORLD_SIZE", env.get("WORLD_SIZE", 1))))

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def device(self, asked: str) -> str:
        """Under torchrun, 'auto' is this rank's own GPU (its local rank) on a machine with GPUs, else the CPU;
        otherwise the device asked for."""
        import torch

        if asked != "auto" or not self.distributed:
            return asked
        return f"cuda:{self.local_rank % torch.cuda.device_count()}" if torch.cuda.is_available() else "cpu"

    def threads(self, asked: Optional[int]) -> Optional[int]:
        """CPU threads of this rank: the machine's cores shared among its ranks, unless asked."""
        if asked is not None or not self.distributed:
            return asked
        return max(1, (os.cpu_count() or 1) // self.local_world_size)

    def shard(self, items: Sequence[Any]) -> List[Any]:
        """This rank's share of ``items`` (every N-th, as ``DistributedSampler`` deals them), or all of them
        when there are fewer than ranks."""
        return list(items[self.rank::self.world_size]) if len(items) >= self.world_size else list(items)

    def join(self, device: str) -> None:
        """Joins the process group (env:// rendezvous from torchrun): NCCL when this rank runs on a GPU."""
        if not self.distributed:
            return
        import torch
        import torch.distributed as dist

        backend = "nccl" if device.startswith("cuda") else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(torch.device(device))
        dist.init_process_group(backend=backend, timeout=COLLECTIVE_TIMEOUT)

    def gather(self, mine: List[Any]) -> List[Any]:
        """Every rank's list on rank 0 (the others get theirs back); waits for the slowest rank."""
        if not self.distributed:
            return mine
        import torch.distributed as dist

        gathered: Optional[List[Any]] = [None] * self.world_size if self.rank == 0 else None
        dist.gather_object(mine, gathered, dst=0)
        return [item for part in gathered for item in part] if gathered is not None else mine

    def leave(self) -> None:
        if self.distributed:
            import torch.distributed as dist

            dist.destroy_process_group()
