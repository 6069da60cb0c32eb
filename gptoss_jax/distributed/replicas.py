"""Data-parallel model replicas made of whole processes (eval sweeps), and bringing their files to process 0."""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Sequence

from gptoss_jax.distributed._jax_compat import process_position
from gptoss_jax.distributed.host_data import allgather_bytes
from gptoss_jax.errors import DistributedError


@dataclasses.dataclass(frozen=True)
class ReplicaInfo:
    """A data-parallel model replica: a group of whole processes with its own copy of the model.

    Sweeps give replica `index` of `count` its share of the samples (evals: replica_index / replica_count); the
    leader (the group's first process) writes that replica's record stream. Process ids are stable across restarts
    on SLURM, TPU pods and indexed Jobs, so a preempted sweep resumes each replica from its own records.
    """
    index: int
    count: int
    process_ids: tuple[int, ...]

    @property
    def leader(self) -> int:
        return self.process_ids[0]

    @property
    def is_leader(self) -> bool:
        return process_position()[0] == self.leader

    def devices(self) -> list:
        """The devices of this replica's processes, in jax.devices() order (build its mesh over these)."""
        import jax
        return [d for d in jax.devices() if d.process_index in self.process_ids]


def replica_info(replicas: int = 1) -> ReplicaInfo:
    """This process's replica when the job's processes form `replicas` equal groups of consecutive process ids."""
    pid, n = process_position()
    if replicas < 1 or n % replicas:
        raise DistributedError(f"{replicas} replicas cannot split the job's {n} processes evenly; use a divisor "
                               f"of {n}")
    per = n // replicas
    index = pid // per
    return ReplicaInfo(index, replicas, tuple(range(index * per, (index + 1) * per)))


def collect_files(folder: str, names: Sequence[str], *, timeout_s: float | None = 3600) -> list[str]:
    """Bring the files each process wrote (`names`, relative to `folder`) into process 0's `folder`: what a report
    that merges per-replica records needs when hosts do not share a disk. Collective; on a shared filesystem the
    files are already there (same bytes) and nothing is rewritten. Returns the names written on process 0."""
    blobs = []
    for name in names:
        with open(os.path.join(folder, name), "rb") as f:
            blobs.append(f.read())
    header = json.dumps([[name, len(b)] for name, b in zip(names, blobs)]).encode()
    gathered = allgather_bytes(header + b"\n" + b"".join(blobs), "collect_files", timeout_s, to_main_only=True)
    written = []
    for pid, payload in enumerate(gathered):
        head, _, data = payload.partition(b"\n")
        offset = 0
        for name, size in json.loads(head):
            content, offset = data[offset:offset + size], offset + size
            path = os.path.join(folder, name)
            if os.path.exists(path):
                with open(path, "rb") as f:
                    if f.read() == content:
                        continue
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            tmp = f"{path}.from-process-{pid}"
            with open(tmp, "wb") as f:
                f.write(content)
            os.replace(tmp, path)
            written.append(name)
    return written
