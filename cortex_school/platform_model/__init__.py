"""The platform model: what the platform runs, read from its GitOps repository at a
revision (objects, Helm charts, Kustomizations, ArgoCD Applications), the components that
identifies (catalogue-backed names and aliases) and the capabilities the cluster
evidently has. Validation and planning look things up here instead of in a fixed list.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cortex_school.platform_model.components import (
    Catalogue,
    Component,
    Platform,
    build_platform,
    default_catalogue,
    normalise,
)
from cortex_school.platform_model.model import (
    ArgoApp,
    HelmChart,
    Inventory,
    Kustomization,
    PlatformObject,
    image_repository,
    read_inventory,
)

__all__ = ["ArgoApp", "Catalogue", "Component", "HelmChart", "Inventory", "Kustomization", "Platform",
           "PlatformObject", "build_platform", "default_catalogue", "image_repository", "load_platform",
           "normalise", "read_inventory", "summary"]


def load_platform(root: Path, *, revision: str | None = None, distribution: str | None = "k3s") -> Platform:
    """Read a repository checkout and identify what runs on it."""
    return build_platform(read_inventory(root, revision=revision), distribution=distribution)


def summary(platform: Platform) -> dict[str, Any]:
    """The model as JSON-ready data (``cortex-school platform show --json``)."""
    inv = platform.inventory
    kinds: dict[str, int] = {}
    for o in inv.objects:
        kinds[o.kind] = kinds.get(o.kind, 0) + 1
    return {
        "root": inv.root, "revision": inv.revision,
        "objects": len(inv.objects), "kinds": dict(sorted(kinds.items())),
        "namespaces": inv.namespaces(),
        "components": [
            {"name": c.name, "title": c.title, "known": c.known, "namespaces": sorted(c.namespaces),
             "evidence": c.evidence}
            for c in sorted(platform.components.values(), key=lambda c: c.name)],
        "capabilities": dict(sorted(platform.capabilities.items())),
        "applications": [a.__dict__ | {"generator_directories": list(a.generator_directories),
                                       "generator_excludes": list(a.generator_excludes)}
                         for a in inv.applications],
        "charts": [{"name": c.name, "path": c.path, "version": c.version, "dependencies": list(c.dependencies),
                    "images": list(c.images), "namespace": c.namespace} for c in inv.charts],
        "kustomizations": [{"path": k.path, "namespace": k.namespace, "resources": list(k.resources),
                            "images": list(k.images), "helm_charts": [h.name for h in k.helm_charts]}
                           for k in inv.kustomizations],
        "templates": len(inv.templates),
        "unreadable": [{"file": f, "reason": r} for f, r in inv.unreadable],
        "not_objects": [{"file": f, "what": w} for f, w in inv.not_objects],
    }
