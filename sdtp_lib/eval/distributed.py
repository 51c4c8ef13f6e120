"""Data parallel evaluation under `accelerate launch`: which share of the samples is this process's.

    accelerate launch --multi_gpu --num_processes 8 -m sdtp_lib synthetic --model qwen2.5-coder-0.5b ...

Every process runs the samples i with i % world_size == rank into its own rank file; after a barrier, rank 0
merges the rank files in the canonical order (nothing lost or counted twice: the merge checks) and writes the
results. On a machine without a GPU the processes run on the CPU (gloo); `--multi_gpu` is still the flag that
makes `accelerate launch` start several processes (through torchrun).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass
class Shard:
    rank: int = 0
    world_size: int = 1
    device: str | None = None  # this process's device when launched, else None (the caller decides)
    state: object = None  # accelerate's PartialState when launched

    @property
    def main(self) -> bool:
        return self.rank == 0

    def wait(self) -> None:
        """Barrier across the launched processes (no-op in a single process)."""
        if self.state is not None:
            self.state.wait_for_everyone()


def launched() -> Shard:
    """This process's shard: from accelerate's process state when started by `accelerate launch` (or torchrun)
    with more than one process, else rank 0 of 1."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return Shard()
    from accelerate import PartialState
    state = PartialState(cpu=not torch.cuda.is_available())
    if state.num_processes <= 1:  # pragma: no cover - WORLD_SIZE set by hand without a launcher
        return Shard()
    return Shard(state.process_index, state.num_processes, str(state.device), state)
