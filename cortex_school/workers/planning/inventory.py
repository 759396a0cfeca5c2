"""What a planner knows of the platform (the inventory of existing objects) and the
contract every planner fulfils."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Protocol

from cortex_school.models import Improvement
from cortex_school.workers.plan import (
    ImplementationPlan,
)

OFFLINE_PLANNER = "offline-planner"


@dataclass(frozen=True)
class InventoryItem:
    kind: str
    name: str
    namespace: str
    images: tuple[str, ...]
    ports: tuple[int, ...]
    labels: dict[str, str]
    file: str


@dataclass
class Inventory:
    """What the GitOps repository already runs (from its manifests)."""

    items: list[InventoryItem] = field(default_factory=list)

    @classmethod
    def from_payloads(cls, payloads: list[dict[str, Any]]) -> "Inventory":
        return cls([InventoryItem(
            kind=p["kind"], name=p["name"], namespace=p.get("namespace", ""),
            images=tuple(p.get("images", ())), ports=tuple(p.get("ports", ())),
            labels=dict(p.get("labels", {})), file=p.get("file", ""),
        ) for p in payloads])

    @property
    def namespaces(self) -> set[str]:
        return {i.namespace for i in self.items if i.namespace}

    def workload(self, name: str) -> InventoryItem | None:
        """The workload (something with an image) called ``name`` or labelled so."""
        for item in self.items:
            if item.images and (item.name == name or item.labels.get("app.kubernetes.io/name") == name):
                return item
        return None

    def mentioned(self, text: str) -> list[InventoryItem]:
        """Workloads whose name appears in ``text`` as a word, in order of appearance."""
        lowered = text.lower()
        found: list[tuple[int, InventoryItem]] = []
        seen: set[str] = set()
        for item in self.items:
            if not item.images or item.name in seen:
                continue
            m = re.search(rf"(?<![\w-]){re.escape(item.name)}(?![\w-])", lowered)
            if m:
                seen.add(item.name)
                found.append((m.start(), item))
        return [i for _, i in sorted(found, key=lambda pair: pair[0])]


class Planner(Protocol):
    @property
    def name(self) -> str: ...

    def plan(self, improvement: Improvement, inventory: Inventory,
             platform: Any = None) -> ImplementationPlan: ...
