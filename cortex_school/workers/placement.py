"""Where a change's files go: where the repository's own conventions say.

``apps/<namespace>/<name>-<kind>.yaml`` is one convention among many; on a repository that
keeps one folder per component (``apps/knowledge/qdrant/``), or installs components with
Kustomize or Helm, a file there is in the wrong place or applied by nothing. So:

- a **companion** (a PDB, an HPA, a ServiceMonitor for an existing workload) goes next to
  the object it serves, in that object's folder; never inside a Helm chart folder (its
  files are the chart's, rendered by Helm): then the namespace's folder is used;
- a **new component** goes where the namespace's components live: a folder of its own
  when they each have one (``apps/tools/uptime-kuma/``), else the folder most of the
  namespace's files are in; ``apps/<namespace>/`` when the namespace holds nothing yet;
- a file in a folder a ``kustomization.yaml`` governs (its own folder or the nearest
  ancestor with one) is applied only when listed there: the change lists it (a line added
  to ``resources``, part of the same commit, so the gate, the diff and a revert see it).

Whether an ArgoCD Application then applies each file is checked separately (discovery).
"""

from __future__ import annotations

import posixpath
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import yaml

from cortex_school.platform_model import Platform
from cortex_school.platform_model.argocd import KUSTOMIZATION_FILES
from cortex_school.workers.plan import PlannedResource

Manifest = dict[str, Any]
_ARGO = frozenset({"Application", "ApplicationSet", "AppProject"})


class _PlainDumper(yaml.SafeDumper):
    """No &anchors/*aliases: reviewers read these files, and some tools reject aliases."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


@dataclass
class Placement:
    files: dict[str, str] = field(default_factory=dict)  # new files: path → YAML
    listed: dict[str, list[str]] = field(default_factory=dict)  # kustomization → entries to add
    why: list[str] = field(default_factory=list)  # one line per file: why there


def file_name(manifest: Manifest) -> str:
    return f"{manifest['metadata']['name']}-{str(manifest['kind']).lower()}.yaml"


def place(rendered: list[tuple[PlannedResource, list[Manifest]]], platform: Platform | None,
          fallback_namespace: str) -> Placement:
    """The files of a change, where the repository's conventions put them."""
    out = Placement()
    grouped: dict[str, list[Manifest]] = {}
    # A change is one component per namespace: its files share the folder of its first
    # workload (an Ingress, a Certificate, a claim go with what they serve).
    component: dict[str, str] = {}
    for resource, _ in rendered:
        if resource.kind in _WORKLOAD_KINDS and not resource.companion_of:
            component.setdefault(resource.namespace, resource.name)
    for resource, _ in rendered:  # no workload: the change's first resource names its folder
        if not resource.companion_of:
            component.setdefault(resource.namespace, resource.name)
    for resource, manifests in rendered:
        for m in manifests:
            ns = str(m["metadata"].get("namespace") or resource.namespace or fallback_namespace)
            folder, why = _folder(resource, ns, platform, component.get(ns, resource.name))
            folder = folder.strip("/")
            rel = f"{folder}/{file_name(m)}" if folder else file_name(m)
            grouped.setdefault(rel, []).append(m)
            line = f"{rel}: {why}"
            if line not in out.why:
                out.why.append(line)
    out.files = {rel: yaml.dump_all(docs, Dumper=_PlainDumper, sort_keys=False, allow_unicode=True, width=100)
                 for rel, docs in sorted(grouped.items())}
    if platform is not None:
        for rel in out.files:
            kustomization = governing_kustomization(platform, rel)
            if kustomization is not None:
                entry = posixpath.relpath(rel, posixpath.dirname(kustomization))
                out.listed.setdefault(kustomization, []).append(entry)
                out.why.append(f"{kustomization}: lists {entry} (a Kustomize build applies only what it lists)")
    return out


_WORKLOAD_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "ScheduledJob", "BackupCronJob"})


def _folder(resource: PlannedResource, ns: str, platform: Platform | None, component: str) -> tuple[str, str]:
    if platform is None:
        return f"apps/{ns}", "the apps/<namespace>/ convention (no platform model)"
    if resource.companion_of:
        kind, tns, name = resource.companion_of.split("/", 2)
        target = platform.inventory.find(kind, tns, name)
        if target is not None and not target.file.startswith("live:"):
            folder = posixpath.dirname(target.file)
            if not _in_chart(platform, folder):
                return folder, f"next to {kind} {tns}/{name} ({target.file})"
    convention = namespace_folder(platform, ns, component)
    if convention is not None:
        return convention, f"where namespace {ns}'s components live"
    return f"apps/{ns}", f"namespace {ns} has no files yet: the apps/<namespace>/ convention"


def _in_chart(platform: Platform, folder: str) -> bool:
    return any(folder == c.path or folder.startswith(c.path + "/") for c in platform.inventory.charts
               if c.path and "://" not in c.path)


def namespace_folder(platform: Platform, namespace: str, name: str) -> str | None:
    """Where a new component of ``namespace`` goes: ``<parent>/<name>`` when the namespace's
    components each have a folder under one parent, else the namespace's most used folder."""
    dirs = [posixpath.dirname(o.file) for o in platform.inventory.objects
            if o.namespace == namespace and o.deployed is not False and not o.file.startswith("live:")
            and o.kind not in _ARGO and not _in_chart(platform, posixpath.dirname(o.file))]
    dirs = [d for d in dirs if d]
    if not dirs:
        return None
    parents = Counter(posixpath.dirname(d) for d in dirs if "/" in d)
    if parents:
        parent, count = parents.most_common(1)[0]
        components = {d for d in dirs if posixpath.dirname(d) == parent}
        if len(components) >= 2 and count * 2 >= len(dirs):
            return f"{parent}/{name}"
    return Counter(dirs).most_common(1)[0][0]


def governing_kustomization(platform: Platform, rel: str) -> str | None:
    """The ``kustomization.yaml`` in ``rel``'s folder or its nearest ancestor, if any."""
    folder = posixpath.dirname(rel)
    while True:
        for name in KUSTOMIZATION_FILES:
            candidate = f"{folder}/{name}" if folder else name
            if platform.file_text(candidate) is not None:
                return candidate
        parent = posixpath.dirname(folder).strip("/")
        if not folder or parent == folder:
            return None
        folder = parent
