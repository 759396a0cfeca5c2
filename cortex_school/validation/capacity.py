"""Cluster capacity: whether the nodes have room for what an improvement adds."""

from __future__ import annotations

from pathlib import Path

from cortex_school.models import Finding, Improvement
from cortex_school.validation.base import (
    Check,
)
from cortex_school.validation.capacity_model import (
    estimate_resources,
    gib,
    load_capacity,
)

# -- 4. resource capacity --------------------------------------------------------------------


class CapacityCheck(Check):
    name = "capacity"

    def __init__(self, capacity_file: Path | None) -> None:
        self.capacity_file = capacity_file

    def run(self, improvement: Improvement) -> list[Finding]:
        need = estimate_resources(improvement)
        if need.memory == 0 and need.cpu == 0:
            return [Finding(check=self.name, conflict=False, reason=f"needs no resources ({need.basis})")]
        if self.capacity_file is None or not self.capacity_file.exists():
            return [Finding(check=self.name, conflict=False,
                            reason="cluster capacity unknown (set CLUSTER_CAPACITY_FILE); not checked")]
        cap = load_capacity(self.capacity_file)
        biggest = max(cap.nodes, key=lambda n: n.free_memory)
        problems = []
        if need.memory > cap.free_memory or need.cpu > cap.free_cpu:
            problems.append(f"needs {gib(need.memory)} memory and {need.cpu:g} CPU, "
                            f"the cluster has {gib(cap.free_memory)} and {cap.free_cpu:.1f} CPU free "
                            f"across {len(cap.nodes)} nodes")
        if need.per_replica_memory > biggest.free_memory:
            problems.append(f"one replica needs {gib(need.per_replica_memory)}, the most free on any "
                            f"node is {gib(biggest.free_memory)} ({biggest.name})")
        if problems:
            return [Finding(check=self.name, conflict=True,
                            reason="insufficient cluster resources: " + "; ".join(problems)
                                   + f" (estimate from {need.basis})")]
        return [Finding(check=self.name, conflict=False,
                        reason=f"fits: needs {gib(need.memory)} / {need.cpu:g} CPU of "
                               f"{gib(cap.free_memory)} / {cap.free_cpu:.1f} CPU free")]
