"""Resource estimates for a proposal and the cluster's free capacity.

The estimate reads explicit figures from the proposal's notes ("2 replicas, each
requesting 4 CPU and 12Gi memory"); a proposal that deploys a new workload without
figures gets a small default per replica; anything else needs nothing. Capacity
comes from a YAML file (``CLUSTER_CAPACITY_FILE``) listing each node's allocatable
and requested resources, as ``kubectl describe nodes`` reports them.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from pydantic import BaseModel

from cortex_school.models import Improvement, ImprovementType

_MEM_UNITS = {"ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40,
              "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "kb": 10**3, "mb": 10**6,
              "gb": 10**9, "tb": 10**12}
# Case-sensitive on purpose: "100m" is 0.1 CPU, "100M" is memory.
_MEMORY = re.compile(r"(?P<n>\d+(?:\.\d+)?)\s*(?P<u>Ki|Mi|Gi|Ti|KB|MB|GB|TB|G|M)\b(?P<after>[^.;,]{0,25})")
_CPU = re.compile(r"(?P<n>\d+(?:\.\d+)?)\s*(?P<u>m\b|millicores?|cpus?\b|vcpus?\b|cores?\b)", re.IGNORECASE)
_REPLICAS = re.compile(r"(?:(?P<a>\d+)\s+replicas|replicas:?\s*(?P<b>\d+))", re.IGNORECASE)
_DEPLOYS = re.compile(r"\b(deploy|run|install|add|introduce|host|serve|launch)\b", re.IGNORECASE)
_STORAGE_WORDS = re.compile(r"storage|volume|disk|pvc|snapshot|backup|bucket", re.IGNORECASE)

DEFAULT_CPU_PER_REPLICA = 0.1
DEFAULT_MEMORY_PER_REPLICA = 128 * 2**20


def parse_memory(value: str | int | float) -> float:
    """Kubernetes memory quantity → bytes."""
    text = str(value).strip()
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([A-Za-z]*)", text)
    if not match:
        raise ValueError(f"not a memory quantity: {value!r}")
    number, unit = float(match.group(1)), match.group(2).lower()
    if unit and unit not in _MEM_UNITS:
        raise ValueError(f"unknown memory unit in {value!r}")
    return number * _MEM_UNITS.get(unit, 1)


def parse_cpu(value: str | int | float) -> float:
    """Kubernetes CPU quantity → cores."""
    text = str(value).strip()
    if text.endswith("m"):
        return float(text[:-1]) / 1000
    return float(text)


def gib(n: float) -> str:
    return f"{n / 2**30:.1f}Gi"


class ResourceEstimate(BaseModel):
    cpu: float
    memory: float
    replicas: int
    basis: str

    @property
    def per_replica_memory(self) -> float:
        return self.memory / max(self.replicas, 1)

    @property
    def per_replica_cpu(self) -> float:
        return self.cpu / max(self.replicas, 1)


def estimate_resources(improvement: Improvement) -> ResourceEstimate:
    if improvement.type == ImprovementType.CONCEPT:  # reference knowledge: it deploys nothing
        return ResourceEstimate(cpu=0, memory=0, replicas=0, basis="a concept: nothing is deployed")
    notes = improvement.implementation_notes
    text = f"{improvement.description}. {notes}"
    replicas_match = _REPLICAS.search(text)
    replicas = int(replicas_match.group("a") or replicas_match.group("b")) if replicas_match else 1
    memory = sum(
        float(m.group("n")) * _MEM_UNITS[m.group("u").lower()]
        for m in _MEMORY.finditer(text)
        if not _STORAGE_WORDS.search(m.group("after") + text[max(0, m.start() - 25):m.start()])
    )
    cpu = 0.0
    for m in _CPU.finditer(text):
        unit = m.group("u").lower()
        if unit == "m" or unit.startswith("milli"):
            cpu += float(m.group("n")) / 1000
        else:
            cpu += float(m.group("n"))
    per_replica = bool(re.search(r"\beach\b|\bper replica\b|\bper pod\b", text, re.IGNORECASE))
    if memory or cpu:
        factor = replicas if per_replica else 1
        return ResourceEstimate(cpu=cpu * factor, memory=memory * factor, replicas=replicas,
                                basis="figures in the proposal" + (" × replicas" if per_replica else ""))
    new_workload = (improvement.type in (ImprovementType.TOOL, ImprovementType.IMPLEMENTATION,
                                         ImprovementType.INTEGRATION)
                    and _DEPLOYS.search(text) is not None)
    if new_workload:
        return ResourceEstimate(cpu=DEFAULT_CPU_PER_REPLICA * replicas,
                                memory=DEFAULT_MEMORY_PER_REPLICA * replicas, replicas=replicas,
                                basis="default per replica for a new workload")
    return ResourceEstimate(cpu=0, memory=0, replicas=0, basis="no new workload")


class NodeCapacity(BaseModel):
    name: str
    free_cpu: float
    free_memory: float


class ClusterCapacity(BaseModel):
    nodes: list[NodeCapacity]
    source: str

    @property
    def free_cpu(self) -> float:
        return sum(n.free_cpu for n in self.nodes)

    @property
    def free_memory(self) -> float:
        return sum(n.free_memory for n in self.nodes)


def load_capacity(path: Path) -> ClusterCapacity:
    data = yaml.safe_load(path.read_text())
    nodes = []
    for node in (data or {}).get("nodes", []):
        alloc, used = node["allocatable"], node.get("requested", {})
        nodes.append(NodeCapacity(
            name=str(node["name"]),
            free_cpu=parse_cpu(alloc["cpu"]) - parse_cpu(used.get("cpu", 0)),
            free_memory=parse_memory(alloc["memory"]) - parse_memory(used.get("memory", 0)),
        ))
    if not nodes:
        raise ValueError(f"{path}: no nodes")
    return ClusterCapacity(nodes=nodes, source=str(path))
