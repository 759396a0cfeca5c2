"""What the platform runs, read from its GitOps repository (and, when a cluster is
configured, merged with what the live cluster reports).

The inventory holds every object with the facts the checks and planners need (kind,
apiVersion, namespace, name, labels, selectors, images, ports, ingress and storage
classes, the file it lives in), plus the repository's structure: Helm chart folders
(``Chart.yaml``, images in ``values.yaml``; templates are recognised, never parsed as
YAML), Kustomize (``kustomization.yaml``: resources, images, the ``namespace:`` it
applies to objects that set none, ``helmCharts:``), and ArgoCD Applications and
ApplicationSets wherever they live.

Nothing here trusts the repository: files are read with the bounded reader of
:mod:`cortex_school.platform_model.files` (size, depth and alias-bomb limits), and a file
that cannot be read is listed with its reason, never raised.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cortex_school.platform_model.argocd import AppSource

from cortex_school.platform_model.files import MAX_FILE_BYTES, ManifestSet, load_text, manifest_files, read_file, walk

WORKLOAD_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "ReplicaSet", "Pod"})
ARGO_KINDS = frozenset({"Application", "ApplicationSet"})
_SKIP_DIRS = frozenset({".git", "node_modules", "vendor"})


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _str_map(value: Any) -> dict[str, str]:
    """Labels and selectors: scalar keys and values only (a null value is no label), each at
    most 253 characters (Kubernetes allows 63 for a value, 253 for a prefixed key)."""
    return {str(k)[:253]: str(v)[:253] for k, v in _dict(value).items()
            if isinstance(k, (str, int, float, bool)) and isinstance(v, (str, int, float, bool))}


def image_repository(image: str) -> str:
    """``docker.io/library/redis:7.2@sha256:…`` → ``redis``; ``ghcr.io/org/app:1`` →
    ``ghcr.io/org/app`` (Docker Hub hosts and ``library/`` dropped, tag and digest too)."""
    ref = image.strip().split("@", 1)[0]
    last = ref.rsplit("/", 1)[-1]
    if ":" in last:
        ref = ref[: len(ref) - len(last)] + last.split(":", 1)[0]
    for host in ("docker.io/", "index.docker.io/", "registry-1.docker.io/", "registry.hub.docker.com/"):
        if ref.startswith(host):
            ref = ref[len(host):]
    if ref.startswith("library/"):
        ref = ref[len("library/"):]
    return ref.lower()


@dataclass(frozen=True)
class PlatformObject:
    """One object the platform defines."""

    kind: str
    api_version: str
    namespace: str  # "" for cluster-scoped objects or when nothing sets one
    name: str
    file: str  # relative to the repository root; "live:" for objects only the cluster has
    labels: dict[str, str] = field(default_factory=dict)
    pod_labels: dict[str, str] = field(default_factory=dict)  # a workload's pod template labels
    selector: dict[str, str] = field(default_factory=dict)  # a Service's selector, a workload's matchLabels
    images: tuple[str, ...] = ()
    ports: tuple[int, ...] = ()
    ingress_class: str | None = None
    storage_classes: tuple[str, ...] = ()
    origin: str = "manifest"  # manifest | kustomize | helm-values | live
    # Whether an ArgoCD Application or ApplicationSet applies its file (None: the repository
    # has no Applications, so nothing can be told).
    deployed: bool | None = None
    target: str | None = None  # what an HPA/ScaledObject scales (scaleTargetRef.name)
    # The ServiceAccount a workload's pods run as (None: the namespace's "default").
    service_account: str | None = None

    @property
    def group(self) -> str:
        return self.api_version.rsplit("/", 1)[0] if "/" in self.api_version else ""

    @property
    def ref(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind} {where}{self.name}"

    def describe(self) -> str:
        return f"{self.ref} ({self.file})"


@dataclass(frozen=True)
class HelmChart:
    """A chart folder in the repository, or a chart an Application or Kustomization installs."""

    name: str
    path: str  # folder in the repo, or "<repoURL>" for a remote chart
    version: str = ""
    repository: str = ""
    dependencies: tuple[str, ...] = ()  # chart names
    images: tuple[str, ...] = ()  # from values (repository[:tag])
    namespace: str = ""  # where an Application or Kustomization installs it
    enabled: tuple[str, ...] = ()  # subcharts the values switch on (``<name>: {enabled: true}``)


@dataclass(frozen=True)
class ArgoApp:
    """An ArgoCD Application, or an ApplicationSet with the directories its git
    generators cover."""

    kind: str  # Application | ApplicationSet
    name: str
    namespace: str
    file: str
    repo_url: str = ""
    path: str = ""
    chart: str = ""
    target_revision: str = ""
    recurse: bool = False
    include: str = ""
    exclude: str = ""
    destination_namespace: str = ""
    generator_directories: tuple[str, ...] = ()  # git directory generator path patterns
    generator_excludes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Kustomization:
    path: str  # the folder
    resources: tuple[str, ...] = ()
    namespace: str = ""
    images: tuple[str, ...] = ()  # newName[:newTag] (or name) of each images: entry
    helm_charts: tuple[HelmChart, ...] = ()


@dataclass
class Comment:
    """A comment in a manifest or values file: often where a decision is written down
    (``minReplicaCount: 1  # Never scale to zero``)."""

    file: str  # relative to the repository root
    line: int
    setting: str  # the YAML on that line (or the line after a comment block)
    text: str

    def describe(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass
class Inventory:
    """Everything read from a repository at one revision."""

    root: str
    revision: str | None = None
    objects: list[PlatformObject] = field(default_factory=list)
    charts: list[HelmChart] = field(default_factory=list)
    applications: list[ArgoApp] = field(default_factory=list)
    kustomizations: list[Kustomization] = field(default_factory=list)
    templates: list[str] = field(default_factory=list)  # Helm template files (not parsed)
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    not_objects: list[tuple[str, str]] = field(default_factory=list)
    comments: list[Comment] = field(default_factory=list)
    # ArgoCD Applications and ApplicationSets as written (file, object), and every folder of
    # the repository: what ``app_sources`` expands (git directory generators match folders).
    argo_objects: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    folders: list[str] = field(default_factory=list)
    _app_sources: list["AppSource"] | None = field(default=None, repr=False, compare=False)

    def comments_in(self, files: set[str]) -> list[Comment]:
        return [c for c in self.comments if c.file in files]

    def not_deployed(self) -> list[PlatformObject]:
        """Objects in the repository that no ArgoCD Application applies."""
        return [o for o in self.objects if o.deployed is False]

    def namespaces(self) -> list[str]:
        return sorted({o.namespace for o in self.objects if o.namespace})

    def app_sources(self) -> list["AppSource"]:
        """The repository's own Applications, ApplicationSets expanded into the
        Applications they generate (see :mod:`cortex_school.platform_model.argocd`)."""
        from cortex_school.platform_model.argocd import discover

        if self._app_sources is None:
            problems: list[tuple[str, str]] = []
            self._app_sources = discover(self.argo_objects, self.folders, problems)
            self.unreadable.extend(problems)
        return self._app_sources

    def by_kind(self, *kinds: str) -> list[PlatformObject]:
        wanted = set(kinds)
        return [o for o in self.objects if o.kind in wanted]

    def find(self, kind: str, namespace: str, name: str) -> PlatformObject | None:
        for o in self.objects:
            if (o.kind, o.namespace, o.name) == (kind, namespace, name):
                return o
        return None

    def images(self) -> dict[str, list[str]]:
        """Image repository → where it is used (object refs and chart values)."""
        out: dict[str, list[str]] = {}
        for o in self.objects:
            for image in o.images:
                out.setdefault(image_repository(image), []).append(o.describe())
        for c in self.charts:
            for image in c.images:
                out.setdefault(image_repository(image), []).append(f"chart {c.name} values ({c.path})")
        return out


# -- reading ------------------------------------------------------------------------


def _pod_spec(obj: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """(pod spec, pod labels) of a workload (CronJob: its job template's pod)."""
    spec = _dict(obj.get("spec"))
    kind = obj.get("kind")
    if kind == "Pod":
        return spec, _str_map(_dict(obj.get("metadata")).get("labels"))
    if kind == "CronJob":
        spec = _dict(_dict(spec.get("jobTemplate")).get("spec"))
    template = _dict(spec.get("template"))
    return _dict(template.get("spec")), _str_map(_dict(template.get("metadata")).get("labels"))


def _containers(pod: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for c in _list(pod.get(key)):
            if isinstance(c, dict):
                yield c


def platform_object(obj: dict[str, Any], file: str, *, default_namespace: str = "",
                    origin: str = "manifest") -> PlatformObject | None:
    """The facts of one manifest object; None when it has no kind or name."""
    meta = _dict(obj.get("metadata"))
    kind, name = obj.get("kind"), meta.get("name")
    if not isinstance(kind, str) or not isinstance(name, str) or not kind or not name:
        return None
    namespace = meta.get("namespace")
    spec = _dict(obj.get("spec"))
    images: list[str] = []
    ports: list[int] = []
    pod_labels: dict[str, str] = {}
    selector: dict[str, str] = {}
    storage: list[str] = []
    account = None
    if kind in WORKLOAD_KINDS:
        pod, pod_labels = _pod_spec(obj)
        named = pod.get("serviceAccountName") or pod.get("serviceAccount")
        account = named if isinstance(named, str) and named else None
        for c in _containers(pod):
            if isinstance(c.get("image"), str):
                images.append(c["image"])
            for p in _list(c.get("ports")):
                if isinstance(p, dict) and isinstance(p.get("containerPort"), int):
                    ports.append(p["containerPort"])
        selector = _str_map(_dict(spec.get("selector")).get("matchLabels"))
        for t in _list(spec.get("volumeClaimTemplates")):
            sc = _dict(_dict(t).get("spec")).get("storageClassName")
            if isinstance(sc, str):
                storage.append(sc)
    elif kind == "Service":
        selector = _str_map(spec.get("selector"))
        for p in _list(spec.get("ports")):
            if isinstance(p, dict) and isinstance(p.get("port"), int):
                ports.append(p["port"])
    elif kind in ("PodDisruptionBudget", "ServiceMonitor", "PodMonitor"):
        selector = _str_map(_dict(spec.get("selector")).get("matchLabels"))
    elif kind == "NetworkPolicy":
        selector = _str_map(_dict(spec.get("podSelector")).get("matchLabels"))
    elif kind == "PersistentVolumeClaim" and isinstance(spec.get("storageClassName"), str):
        storage.append(spec["storageClassName"])
    ingress_class = None
    if kind == "Ingress":
        ic = spec.get("ingressClassName") or _str_map(meta.get("annotations")).get("kubernetes.io/ingress.class")
        ingress_class = ic if isinstance(ic, str) else None
    target = _dict(spec.get("scaleTargetRef")).get("name")
    return PlatformObject(
        target=target if isinstance(target, str) else None, service_account=account,
        kind=kind, api_version=str(obj.get("apiVersion", "")),
        namespace=namespace if isinstance(namespace, str) else default_namespace,
        name=name, file=file, labels=_str_map(meta.get("labels")), pod_labels=pod_labels,
        selector=selector, images=tuple(images), ports=tuple(sorted(set(ports))),
        ingress_class=ingress_class, storage_classes=tuple(storage), origin=origin)


def _values_images(values: Any, limit: int = 200) -> list[str]:
    """Images named in Helm values: ``image: repo:tag`` strings and ``image: {repository,
    tag, registry}`` mappings, anywhere in the tree (bounded)."""
    found: list[str] = []
    stack = [values]
    seen = 0
    while stack and seen < 20_000 and len(found) < limit:
        node = stack.pop()
        seen += 1
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "image" and isinstance(value, str) and value.strip():
                    found.append(value.strip())
                elif key == "image" and isinstance(value, dict) and isinstance(value.get("repository"), str):
                    repo = value["repository"]
                    registry = value.get("registry")
                    if isinstance(registry, str) and registry:
                        repo = f"{registry}/{repo}"
                    tag = value.get("tag")
                    found.append(f"{repo}:{tag}" if isinstance(tag, (str, int, float)) and str(tag) else repo)
                else:
                    stack.append(value)
        elif isinstance(node, list):
            stack.extend(node)
    return found


def _enabled_subcharts(values: Any) -> list[str]:
    """Top-level keys of Helm values that switch a subchart on: ``falcosidekick: {enabled: true}``."""
    out: list[str] = []
    for doc in values if isinstance(values, list) else [values]:
        for key, value in _dict(doc).items():
            if isinstance(value, dict) and value.get("enabled") is True and isinstance(key, str):
                out.append(key)
    return out


def _resolve(path: Path) -> Path | None:
    """``path`` with symlinks resolved; None for a symlink loop or a name no path can have."""
    try:
        return path.resolve()
    except (OSError, RuntimeError, ValueError):
        return None


def _outside(path: Path, root: Path) -> bool:
    """Whether ``path`` is (a symlink to) something outside the repository: never read,
    as ArgoCD refuses out-of-bounds symlinks."""
    target, base = _resolve(path), _resolve(root)
    return target is None or base is None or not target.is_relative_to(base)


def _load_yaml(path: Path, inv: Inventory, rel: str, root: Path) -> list[Any]:
    if _outside(path, root):
        inv.unreadable.append((rel, "a symlink out of the repository (or a symlink loop)"))
        return []
    found = ManifestSet()
    read_file(path, found)
    if found.unreadable:
        inv.unreadable.extend((rel, why) for _, why in found.unreadable)
        return []
    inv.comments.extend(Comment(rel, line, setting, text) for _, line, setting, text in found.comments)
    return found.objects


def _app(obj: dict[str, Any], rel: str) -> ArgoApp:
    meta = _dict(obj.get("metadata"))
    spec = _dict(obj.get("spec"))
    dirs: list[str] = []
    excludes: list[str] = []
    if obj.get("kind") == "ApplicationSet":
        template = _dict(spec.get("template"))
        for gen in _list(spec.get("generators")):
            for git in _generators(_dict(gen)):
                for d in _list(git.get("directories")):
                    d = _dict(d)
                    if isinstance(d.get("path"), str):
                        (excludes if d.get("exclude") is True else dirs).append(d["path"])
        spec = _dict(template.get("spec"))
    source = _dict(spec.get("source")) or _dict((_list(spec.get("sources")) or [{}])[0])
    directory = _dict(source.get("directory"))
    return ArgoApp(
        kind=str(obj.get("kind")), name=str(meta.get("name", "")), namespace=str(meta.get("namespace") or ""),
        file=rel, repo_url=str(source.get("repoURL", "")), path=str(source.get("path", "")),
        chart=str(source.get("chart", "")), target_revision=str(source.get("targetRevision", "")),
        recurse=directory.get("recurse") is True, include=str(directory.get("include", "")),
        exclude=str(directory.get("exclude", "")),
        destination_namespace=str(_dict(spec.get("destination")).get("namespace", "")),
        generator_directories=tuple(dirs), generator_excludes=tuple(excludes))


def _generators(gen: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Git generators, also nested in matrix/merge generators."""
    if isinstance(gen.get("git"), dict):
        yield gen["git"]
    for combo in ("matrix", "merge"):
        for inner in _list(_dict(gen.get(combo)).get("generators")):
            yield from _generators(_dict(inner))


def _chart_folder(folder: Path, root: Path, inv: Inventory) -> None:
    rel = folder.relative_to(root).as_posix()
    meta = _load_yaml(folder / "Chart.yaml", inv, f"{rel}/Chart.yaml", root)
    chart = _dict(meta[0]) if meta else {}
    deps = tuple(str(_dict(d).get("name")) for d in _list(chart.get("dependencies")) if _dict(d).get("name"))
    images: list[str] = []
    enabled: list[str] = []
    for values_file in sorted(folder.glob("values*.y*ml")):
        for doc in _load_yaml(values_file, inv, values_file.relative_to(root).as_posix(), root):
            images += _values_images(doc)
            enabled += _enabled_subcharts(doc)
    inv.charts.append(HelmChart(name=str(chart.get("name") or folder.name), path=rel,
                                version=str(chart.get("version", "")), dependencies=deps,
                                images=tuple(dict.fromkeys(images)), enabled=tuple(dict.fromkeys(enabled))))


def _kustomization(path: Path, root: Path, inv: Inventory) -> Kustomization | None:
    rel = path.relative_to(root).as_posix()
    docs = _load_yaml(path, inv, rel, root)
    k = _dict(docs[0]) if docs else {}
    if not k:
        return None
    images = []
    for entry in _list(k.get("images")):
        e = _dict(entry)
        name = e.get("newName") or e.get("name")
        if isinstance(name, str):
            images.append(f"{name}:{e['newTag']}" if e.get("newTag") else name)
    charts = []
    for hc in _list(k.get("helmCharts")):
        h = _dict(hc)
        if isinstance(h.get("name"), str):
            charts.append(HelmChart(name=h["name"], path=str(h.get("repo", "")), version=str(h.get("version", "")),
                                    repository=str(h.get("repo", "")), namespace=str(h.get("namespace") or k.get("namespace") or ""),
                                    images=tuple(_values_images(h.get("valuesInline"))),
                                    enabled=tuple(_enabled_subcharts(h.get("valuesInline")))))
    resources = tuple(str(r) for r in _list(k.get("resources")) + _list(k.get("bases")) if isinstance(r, str))
    return Kustomization(path=path.parent.relative_to(root).as_posix(), resources=resources,
                         namespace=str(k.get("namespace") or ""), images=tuple(images),
                         helm_charts=tuple(charts))


def _walk(root: Path) -> Iterable[Path]:
    for path in sorted(walk(root)):
        if any(part in _SKIP_DIRS or part.startswith(".") for part in path.relative_to(root).parts):
            continue
        yield path


def read_inventory(root: Path, *, revision: str | None = None) -> Inventory:
    """The inventory of a repository checkout (or any folder of manifests)."""
    inv = Inventory(root=str(root), revision=revision)
    if not root.is_dir():
        inv.unreadable.append((str(root), "not a directory"))
        return inv
    chart_dirs = sorted({p.parent for p in _walk(root) if p.name == "Chart.yaml"})
    for folder in chart_dirs:
        _chart_folder(folder, root, inv)
    kustomize_ns: dict[Path, str] = {}
    for path in _walk(root):
        if path.name in ("kustomization.yaml", "kustomization.yml", "Kustomization"):
            k = _kustomization(path, root, inv)
            if k is not None:
                inv.kustomizations.append(k)
                inv.charts.extend(k.helm_charts)
                if k.namespace:
                    kustomize_ns[path.parent] = k.namespace
                    for res in k.resources:  # the namespace applies to the files it lists
                        target = _resolve(path.parent / res)
                        if target is not None:
                            kustomize_ns.setdefault(target, k.namespace)
    chart_set = set(chart_dirs)
    folders: set[str] = set()
    for path in manifest_files([root]):
        rel = path.relative_to(root).as_posix()
        if any(part in _SKIP_DIRS for part in path.relative_to(root).parts):
            continue
        folders.add(rel.rsplit("/", 1)[0] if "/" in rel else "")
        chart = next((c for c in reversed(path.parents) if c in chart_set), None)  # the outermost
        if chart is not None:
            if "templates" in path.relative_to(chart).parts:
                inv.templates.append(rel)
            continue  # Chart.yaml, values*.yaml: read above, not objects
        if path.name in ("kustomization.yaml", "kustomization.yml"):
            continue
        if _outside(path, root):
            inv.unreadable.append((rel, "a symlink out of the repository (or a symlink loop)"))
            continue
        if path.stat().st_size > MAX_FILE_BYTES:
            inv.unreadable.append((rel, f"larger than {MAX_FILE_BYTES} bytes"))
            continue
        found = ManifestSet()
        read_file(path, found)
        inv.unreadable.extend((rel, why) for _, why in found.unreadable if "Helm template" not in why)
        inv.templates.extend(rel for _, why in found.unreadable if "Helm template" in why)
        inv.not_objects.extend((rel, what) for _, what in found.not_objects)
        inv.comments.extend(Comment(rel, line, setting, text) for _, line, setting, text in found.comments)
        default_ns = _namespace_for(path.resolve(), kustomize_ns)
        for obj in found.objects:
            po = platform_object(obj, rel, default_namespace=default_ns,
                                 origin="kustomize" if default_ns else "manifest")
            if po is None:
                inv.not_objects.append((rel, "a mapping without kind and metadata.name"))
                continue
            inv.objects.append(po)
            if po.kind in ARGO_KINDS and po.group == "argoproj.io":
                if len(inv.argo_objects) < MAX_ARGO_OBJECTS:
                    inv.argo_objects.append((rel, obj))
                app = _app(obj, rel)
                inv.applications.append(app)
                if app.chart:
                    values = _helm_values(obj)
                    inv.charts.append(HelmChart(name=app.chart, path=app.repo_url, version=app.target_revision,
                                                repository=app.repo_url, namespace=app.destination_namespace,
                                                images=tuple(_values_images(values)),
                                                enabled=tuple(_enabled_subcharts(values))))
    inv.folders = sorted({d for f in folders for d in _ancestors(f)})
    _mark_deployed(inv, root)
    return inv


MAX_ARGO_OBJECTS = 5000


MAX_LIVE_OBJECTS = 20_000


_DNS_SUBDOMAIN = re.compile(r"[a-z0-9](?:[-a-z0-9.]{0,251}[a-z0-9])?")
_DNS_LABEL = re.compile(r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?")
_KIND = re.compile(r"[A-Z][A-Za-z0-9]{0,62}")


def merge_live(inventory: Inventory, live: list[dict[str, Any]]) -> Inventory:
    """The repository's inventory plus what only the cluster runs (a copy). ``live``:
    objects as the API returns them.

    An object the repository applies keeps its file; one the repository applies without a
    namespace (the Application's destination sets it) is the same object as its live copy
    in any namespace. An object the repository only archives (``deployed=False``) but the
    cluster runs counts as running, from the cluster. Names that are not Kubernetes names
    (control characters, spaces: an API that answers anything) are dropped, so a live
    object cannot forge a citation."""
    if not isinstance(live, list):
        return inventory
    applied = [o for o in inventory.objects if o.deployed is not False]
    known = {(o.kind, o.namespace, o.name) for o in applied}
    unscoped = {(o.kind, o.name) for o in applied if not o.namespace}
    added: list[PlatformObject] = []
    for obj in live[:MAX_LIVE_OBJECTS]:
        if not isinstance(obj, dict):
            continue
        meta = _dict(obj.get("metadata"))
        kind, name, ns = obj.get("kind"), meta.get("name"), meta.get("namespace") or ""
        if not (isinstance(kind, str) and isinstance(name, str) and isinstance(ns, str)
                and _KIND.fullmatch(kind) and _DNS_SUBDOMAIN.fullmatch(name) and (not ns or _DNS_LABEL.fullmatch(ns))):
            continue
        if (kind, ns, name) in known or (kind, name) in unscoped:
            continue
        po = platform_object(obj, f"live:{ns}/{kind}/{name}", origin="live")
        if po is not None:
            added.append(replace(po, deployed=True))  # it runs: the cluster says so
            known.add((kind, ns, name))
    return replace(inventory, objects=[*inventory.objects, *added])


def live_key(live: Any) -> int:
    """A fingerprint of the facts the model takes from live objects (not their status or
    resourceVersion, which change all the time)."""
    if not isinstance(live, list):
        return 0
    facts = []
    for obj in live[:MAX_LIVE_OBJECTS]:
        po = platform_object(obj, "live:", origin="live") if isinstance(obj, dict) else None
        if po is not None:
            facts.append((po.kind, po.namespace, po.name, tuple(sorted(po.labels.items())),
                          tuple(sorted(po.pod_labels.items())), po.images, tuple(sorted(po.selector.items()))))
    return hash(tuple(sorted(facts)))


def _ancestors(rel: str) -> list[str]:
    parts = rel.split("/") if rel not in ("", ".") else []
    return ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]


def _mark_deployed(inv: Inventory, root: Path) -> None:
    """An object is deployed when an Application of the repository applies its file (the
    rules of :class:`~cortex_school.platform_model.argocd.Coverage`: directory, Kustomize,
    Helm sources; ApplicationSets expanded). Without any Application nothing is known."""
    if not inv.applications:
        return
    from cortex_school.platform_model.argocd import Coverage

    coverage = Coverage(inv.app_sources(), root)
    applied = {f: coverage.covering(f) for f in {o.file for o in inv.objects}}
    destination = {f: next((s.destination_namespace for s in srcs if s.destination_namespace), "")
                   for f, srcs in applied.items()}

    def marked(o: PlatformObject) -> PlatformObject:
        ns = o.namespace or ("" if o.kind in CLUSTER_SCOPED else destination.get(o.file, ""))
        return replace(o, deployed=o.kind in ARGO_KINDS or bool(applied.get(o.file)), namespace=ns)

    inv.objects = [marked(o) for o in inv.objects]


# Kinds ArgoCD does not put in the destination namespace (cluster-scoped).
CLUSTER_SCOPED = frozenset({
    "Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "StorageClass",
    "PersistentVolume", "PriorityClass", "IngressClass", "RuntimeClass", "CSIDriver", "VolumeSnapshotClass",
    "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration", "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding", "APIService", "Node", "ClusterIssuer", "ClusterSecretStore",
    "ClusterPolicy", "ClusterPolicyReport", "ClusterExternalSecret", "GatewayClass", "ClusterServingRuntime",
    "AppProject"})


def _helm_values(app: dict[str, Any]) -> Any:
    spec = _dict(app.get("spec"))
    source = _dict(spec.get("source")) or _dict((_list(spec.get("sources")) or [{}])[0])
    helm = _dict(source.get("helm"))
    values: list[Any] = [helm.get("valuesObject")]
    if isinstance(helm.get("values"), str):  # parsed as boundedly as a file; ignored when it cannot be
        values.extend(load_text(helm["values"][:200_000])[0][:1])
    return values


def _namespace_for(path: Path, kustomize_ns: dict[Path, str]) -> str:
    """The namespace a Kustomization applies to this file (its own folder or an ancestor
    lists it), else ""."""
    if path in kustomize_ns:
        return kustomize_ns[path]
    for parent in path.parents:
        if parent in kustomize_ns:
            return kustomize_ns[parent]
    return ""
