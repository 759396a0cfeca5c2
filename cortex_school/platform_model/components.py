"""What runs on the platform, by component, and the capabilities it evidently has.

A component is named by what identifies it in real repositories: app labels
(``app.kubernetes.io/name``, ``app``, ``k8s-app``), workload names, image repositories and
chart names; the shipped catalogue (``catalogue.yaml``: a few hundred well-known
infrastructure components with aliases, images, charts and the custom resource kinds that
imply them) maps those onto one canonical name, so ``aquasec/trivy``, a Deployment
``trivy-server`` and the chart ``trivy`` are all ``trivy``. Names the catalogue does not
know still become components, under their own name.

Capabilities are what the cluster evidently has: a custom resource kind in use implies its
operator (``IngressRoute`` → Traefik, ``ScaledObject`` → KEDA, ``ServiceMonitor`` → the
Prometheus Operator, ``Certificate`` → cert-manager), an ``ingressClassName`` its
controller, a storage class its provisioner, and K3s ships a few built-ins.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from cortex_school.platform_model.files import read_text, settings_in
from cortex_school.platform_model.model import WORKLOAD_KINDS, Inventory, PlatformObject, image_repository

CATALOGUE_FILE = Path(__file__).with_name("catalogue.yaml")
NAME_LABELS = ("app.kubernetes.io/name", "app", "k8s-app", "app.kubernetes.io/component")
STORAGE_PROVISIONERS = {"local-path": "local-path-provisioner", "longhorn": "longhorn",
                        "nfs-client": "nfs-subdir-external-provisioner", "openebs-hostpath": "openebs"}
_TOKEN = re.compile(r"[^a-z0-9]+")


def normalise(name: str) -> str:
    """Lowercase, words joined by single dashes: "Cert Manager" → "cert-manager"."""
    return _TOKEN.sub("-", name.lower()).strip("-")


@dataclass(frozen=True)
class CatalogueEntry:
    name: str
    title: str = ""
    category: str = ""
    aliases: tuple[str, ...] = ()
    images: tuple[str, ...] = ()
    charts: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()  # "<group>/<Kind>"
    ingress_classes: tuple[str, ...] = ()
    provides: tuple[str, ...] = ()
    k3s_builtin: bool = False
    common_word: bool = False  # also an English word ("vector", "vault"): prose must capitalise it
    cluster_rbac: bool = False  # needs a ClusterRole to work (watches or changes every namespace)
    includes: tuple[str, ...] = ()  # what an umbrella chart installs with it
    # Custom resources whose objects *are* another component ("<group>/<Kind>" → name): a
    # CloudNativePG Cluster is a PostgreSQL database, a Strimzi Kafka is Kafka.
    instances: tuple[tuple[str, str], ...] = ()
    # What its configuration evidently does: capability → markers (a component name in its
    # config language, a chart value) whose presence in its files means it does that job
    # (Alloy's ``loki.source.kubernetes_events`` exports Kubernetes events).
    configures: tuple[tuple[str, tuple[str, ...]], ...] = ()


class Catalogue:
    """Lookups by name or alias, image repository, chart name and custom resource kind."""

    def __init__(self, entries: list[CatalogueEntry]) -> None:
        self.entries = {e.name: e for e in entries}
        self.by_name: dict[str, str] = {}
        self.by_image: dict[str, str] = {}
        self.by_chart: dict[str, str] = {}
        self.by_kind: dict[str, str] = {}
        self.by_ingress_class: dict[str, str] = {}
        self.instance_of: dict[str, str] = {}  # "<group>/<kind>" (lower case) → the component it is
        self.common: set[str] = set()  # one-word names and aliases that are also English words
        for e in entries:
            if e.common_word:
                self.common.update(normalise(n) for n in (e.name, *e.aliases) if "-" not in normalise(n))
            for n in (e.name, *e.aliases):
                self.by_name.setdefault(normalise(n), e.name)
            for image in e.images:
                self.by_image.setdefault(image_repository(image), e.name)
            for chart in e.charts:
                self.by_chart.setdefault(normalise(chart), e.name)
            for kind in e.kinds:
                self.by_kind.setdefault(kind.lower(), e.name)
            for ic in e.ingress_classes:
                self.by_ingress_class.setdefault(ic.lower(), e.name)
            for kind, component in e.instances:
                self.instance_of.setdefault(kind.lower(), normalise(component))
        by_owner: dict[str, set[str]] = {}
        self.by_kind_name: dict[str, list[str]] = {}  # "clusterpolicy" → every "<group>/clusterpolicy"
        for group_kind, owner in self.by_kind.items():
            by_owner.setdefault(owner, set()).add(group_kind.rsplit("/", 1)[-1])
            self.by_kind_name.setdefault(group_kind.rsplit("/", 1)[-1], []).append(group_kind)
        self._kinds_of = {k: frozenset(v) for k, v in by_owner.items()}

    @classmethod
    def load(cls, path: Path = CATALOGUE_FILE) -> "Catalogue":
        raw = yaml.safe_load(path.read_text()) if path.exists() else []
        entries = []
        for item in raw if isinstance(raw, list) else []:
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                continue
            def strs(key: str, item: dict[str, Any] = item) -> tuple[str, ...]:
                value = item.get(key)
                return tuple(str(v) for v in value) if isinstance(value, list) else ()
            entries.append(CatalogueEntry(
                name=normalise(item["name"]), title=str(item.get("title") or item["name"]),
                category=str(item.get("category") or ""), aliases=strs("aliases"), images=strs("images"),
                charts=strs("charts"), kinds=strs("kinds"), ingress_classes=strs("ingress_classes"),
                provides=strs("provides"), k3s_builtin=item.get("k3s_builtin") is True,
                common_word=item.get("common_word") is True, includes=strs("includes"),
                cluster_rbac=item.get("cluster_rbac") is True,
                instances=tuple((str(k), str(v)) for k, v in item["instances"].items())
                if isinstance(item.get("instances"), dict) else (),
                configures=tuple((normalise(str(k)), tuple(str(m) for m in v)) for k, v in item["configures"].items()
                                 if isinstance(v, list)) if isinstance(item.get("configures"), dict) else ()))
        return cls(entries)

    def name_for(self, token: str) -> str | None:
        return self.by_name.get(normalise(token))

    def image_for(self, image: str) -> str | None:
        repo = image_repository(image)
        if repo in self.by_image:
            return self.by_image[repo]
        # A mirror or another registry host of a known image: match on the path below the host.
        tail = repo.split("/", 1)[1] if "." in repo.split("/", 1)[0] and "/" in repo else None
        return self.by_image.get(tail) if tail else None

    def kinds_of(self, name: str) -> frozenset[str]:
        """The custom resource kinds (lower case, without group) the component serves."""
        return self._kinds_of.get(name, frozenset())

    def kind_for(self, api_version: str, kind: str) -> str | None:
        group = api_version.rsplit("/", 1)[0] if "/" in api_version else ""
        return self.by_kind.get(f"{group}/{kind}".lower())


@lru_cache(maxsize=1)
def default_catalogue() -> Catalogue:
    return Catalogue.load()


@dataclass
class Component:
    """One thing that runs (or is installed) on the platform."""

    name: str
    title: str
    known: bool  # in the catalogue
    evidence: list[str] = field(default_factory=list)  # "<how>: <object> (<file>)"
    namespaces: set[str] = field(default_factory=set)
    objects: list[PlatformObject] = field(default_factory=list)  # the workloads that are it
    _added: set[int] = field(default_factory=set, repr=False, compare=False)  # id() of each in objects

    def add(self, how: str, where: str, namespace: str = "", obj: PlatformObject | None = None) -> None:
        line = f"{how}: {where}"
        if line not in self.evidence and len(self.evidence) < 50:
            self.evidence.append(line)
        if namespace:
            self.namespaces.add(namespace)
        if obj is not None and id(obj) not in self._added:  # not `in self.objects`: quadratic
            self._added.add(id(obj))
            self.objects.append(obj)


@dataclass
class Platform:
    """The inventory, its components and its capabilities."""

    inventory: Inventory
    catalogue: Catalogue
    components: dict[str, Component] = field(default_factory=dict)
    capabilities: dict[str, list[str]] = field(default_factory=dict)  # capability → evidence
    _settings: dict[str, frozenset[str]] = field(default_factory=dict, repr=False, compare=False)
    _images: dict[str, list[str]] | None = field(default=None, repr=False, compare=False)
    _configured: dict[str, list[str]] | None = field(default=None, repr=False, compare=False)

    def image_index(self) -> dict[str, list[str]]:
        """Image repository, and the same without its registry host, → where it runs (a
        workload's container, an image in a chart's values); built once per model."""
        if self._images is None:
            index: dict[str, list[str]] = {}
            where = [(image, o.describe()) for o in self.inventory.objects if o.deployed is not False
                     for image in o.images]
            where += [(image, f"image in the values of chart {c.name} ({c.path})")
                      for c in self.inventory.charts for image in c.images]
            for image, place in where:
                repo = image_repository(image)
                for key in {repo, without_registry(repo)}:
                    index.setdefault(key, []).append(place)
            self._images = index
        return self._images

    def configured(self, capability: str) -> list[str]:
        """Where a running component's own configuration does ``capability`` ("grafana-alloy
        (apps/observability/alloy/alloy.yaml: loki.source.kubernetes_events)"): the markers
        its catalogue entry lists, found outside comments in the files of its workloads, of
        the ConfigMaps beside them, of its charts' values and of the Applications that
        install it (a marker whose block says ``enabled: false`` does not count). Built once
        per model."""
        if self._configured is None:
            self._configured = {}
            for name, component in self.components.items():
                entry = self.catalogue.entries.get(name)
                if entry is None or not entry.configures:
                    continue
                for rel in self._config_files(component)[:MAX_CONFIG_FILES]:
                    text = self.file_text(rel)
                    if not text:
                        continue
                    for cap, markers in entry.configures:
                        marker = next((m for m in markers if _configures(text, m)), None)
                        if marker is not None:
                            self._configured.setdefault(cap, []).append(f"{name} ({rel}: {marker})")
        return self._configured.get(normalise(capability), [])

    def _config_files(self, component: Component) -> list[str]:
        """The repository files that configure ``component``: its workloads' files, the files
        of ConfigMaps in its namespaces named after it or one of its workloads, its charts'
        values files, and the Applications that install one of its charts."""
        files = {o.file for o in component.objects}
        names = {component.name} | {o.name for o in component.objects}
        files |= {o.file for o in self.inventory.by_kind("ConfigMap")
                  if o.namespace in component.namespaces and any(n in o.name for n in names)}
        for chart in self.inventory.charts:
            if self.catalogue.by_chart.get(normalise(chart.name)) == component.name and \
                    not chart.path.startswith(("http", "oci:")):
                files |= {f"{chart.path}/{v}" for v in ("values.yaml", "values.yml")}
        files |= {a.file for a in self.inventory.applications
                  if a.chart and self.catalogue.by_chart.get(normalise(a.chart)) == component.name}
        return sorted(f for f in files if f and not f.startswith("live:"))

    def file_text(self, rel: str) -> str | None:
        """A repository file's text (bounded, regular files inside the repository only)."""
        return read_text(Path(self.inventory.root), rel) if self.inventory.root else None

    def file_settings(self, rel: str) -> frozenset[str]:
        """The flags (``--name``) and YAML keys with a scalar value a repository file sets to
        something other than false/off/no/0, outside comments; read once per file."""
        if rel not in self._settings:
            text = self.file_text(rel)
            self._settings[rel] = settings_in(text) if text is not None else frozenset()
        return self._settings[rel]

    def _component(self, name: str) -> Component:
        entry = self.catalogue.entries.get(name)
        if name not in self.components:
            self.components[name] = Component(name=name, title=entry.title if entry else name,
                                              known=entry is not None)
        return self.components[name]

    def note(self, token: str, how: str, where: str, namespace: str = "", *, image: str | None = None,
             chart: str | None = None, obj: PlatformObject | None = None) -> str | None:
        """Record that ``token`` (a label value, a workload or chart name, an image) runs."""
        name = None
        if image is not None:
            name = self.catalogue.image_for(image)
        if name is None and chart is not None:
            name = self.catalogue.by_chart.get(normalise(chart))
        if name is None:
            name = self.catalogue.name_for(token)
        if name is None:
            name = normalise(token)
            if not name or len(name) < 2:
                return None
        self._component(name).add(how, where, namespace, obj)
        self._provide(name, f"{how}: {where}")
        entry = self.catalogue.entries.get(name)
        for included in entry.includes if entry else ():
            if included in self.catalogue.entries and included != name:
                self._component(included).add(f"included in {name}", where, namespace)
                self._provide(included, f"included in {name}: {where}")
        return name

    def _provide(self, name: str, evidence: str) -> None:
        entry = self.catalogue.entries.get(name)
        for cap in (entry.provides if entry else ()):
            lines = self.capabilities.setdefault(cap, [])
            if len(lines) < 20:
                lines.append(f"{name} ({evidence})")

    def find(self, term: str) -> Component | None:
        """The component ``term`` names (canonical name, alias, chart or image), if it runs."""
        key = normalise(term)
        name = self.catalogue.name_for(key) or self.catalogue.by_chart.get(key) or \
            self.catalogue.image_for(term) or key
        return self.components.get(name)

    def has_capability(self, capability: str) -> list[str]:
        return self.capabilities.get(normalise(capability), [])


MAX_CONFIG_FILES = 20  # files read per component for what its configuration does


def _configures(text: str, marker: str) -> bool:
    """``marker`` as a whole name (``loki.source.kubernetes`` is not
    ``loki.source.kubernetes_events``) on a line that is not a comment, and its block not
    switched off (``enabled: false`` on that line or the two after it)."""
    if marker not in text:
        return False
    pattern = re.compile(r"(?<![\w.])" + re.escape(marker) + r"(?![\w.])")
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if not pattern.search(line) or line.lstrip().startswith(("#", "//")):
            continue
        if not re.search(r"enabled:\s*false", " ".join(lines[i:i + 3])):
            return True
    return False


def without_registry(repo: str) -> str:
    """``ghcr.io/org/app`` → ``org/app``; a repository without a registry host as it is."""
    first = repo.split("/", 1)[0]
    return repo.split("/", 1)[1] if "/" in repo and ("." in first or ":" in first) else repo


def build_platform(inventory: Inventory, catalogue: Catalogue | None = None, *,
                   distribution: str | None = "k3s") -> Platform:
    """Components and capabilities of ``inventory`` (``distribution`` "k3s" adds what K3s
    ships: Traefik, CoreDNS, metrics-server, local-path, ServiceLB, the Helm controller)."""
    cat = catalogue or default_catalogue()
    platform = Platform(inventory=inventory, catalogue=cat)
    for obj in inventory.objects:
        if obj.deployed is False:
            continue  # in the repository, but no Application applies it (an archive, a draft)
        where = obj.describe()
        if obj.kind in WORKLOAD_KINDS:
            labels = {**obj.labels, **obj.pod_labels}
            named = False
            for key in NAME_LABELS[:3]:
                if labels.get(key):
                    named |= platform.note(labels[key], f"label {key}={labels[key]}", where, obj.namespace,
                                           obj=obj) is not None
            for image in obj.images:
                if cat.image_for(image):
                    platform.note(image, f"image {image_repository(image)}", where, obj.namespace, image=image,
                                  obj=obj)
            if not named:
                platform.note(obj.name, f"{obj.kind} name", where, obj.namespace, obj=obj)
        implied = cat.kind_for(obj.api_version, obj.kind)
        if implied:
            platform.note(implied, f"uses {obj.kind} ({obj.group})", where, obj.namespace)
        instance = cat.instance_of.get(f"{obj.group}/{obj.kind}".lower())
        if instance:
            platform.note(instance, f"{obj.kind} ({obj.group}) {obj.name}", where, obj.namespace, obj=obj)
        if obj.ingress_class:
            controller = cat.by_ingress_class.get(obj.ingress_class.lower())
            if controller:
                platform.note(controller, f"ingressClassName {obj.ingress_class}", where, obj.namespace)
        for sc in obj.storage_classes:
            provisioner = STORAGE_PROVISIONERS.get(sc)
            if provisioner:
                platform.note(provisioner, f"storageClassName {sc}", where, obj.namespace)
    for chart in inventory.charts:
        where = f"chart {chart.name} ({chart.path})"
        platform.note(chart.name, "Helm chart", where, chart.namespace, chart=chart.name)
        for sub in chart.enabled:
            if cat.name_for(sub) or cat.by_chart.get(normalise(sub)):
                platform.note(sub, f"enabled in the values of chart {chart.name}", where, chart.namespace, chart=sub)
        for dep in chart.dependencies:
            platform.note(dep, f"dependency of chart {chart.name}", where, chart.namespace, chart=dep)
        for image in chart.images:
            if cat.image_for(image):
                platform.note(image, f"image {image_repository(image)} in values", where, chart.namespace, image=image)
    for k in inventory.kustomizations:
        for image in k.images:
            if cat.image_for(image):
                platform.note(image, f"image {image_repository(image)} in kustomization", k.path, k.namespace,
                              image=image)
    if inventory.applications:
        files = sorted({a.file for a in inventory.applications})
        platform.note("argocd", f"{len(inventory.applications)} ArgoCD Application(s)",
                      ", ".join(files[:3]) + (f" (+{len(files) - 3} files)" if len(files) > 3 else ""))
    if distribution == "k3s":
        for entry in cat.entries.values():
            if entry.k3s_builtin:
                platform.note(entry.name, "K3s built-in", "the distribution (PLATFORM_DISTRIBUTION=k3s)")
    return platform
