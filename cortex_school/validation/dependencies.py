"""Missing dependencies: components an improvement needs that the GitOps repository
does not provide."""

from __future__ import annotations

import re
from dataclasses import dataclass

from cortex_school.models import Finding, Improvement
from cortex_school.platform_model import Platform
from cortex_school.platform_model.mentions import mentions as component_mentions
from cortex_school.validation.base import Check, PlatformCheck
from cortex_school.validation.rag.context import RagContext

# -- 3. dependency availability ------------------------------------------------------------


@dataclass(frozen=True)
class Component:
    label: str
    pattern: str  # how the text names it
    names: frozenset[str]  # resource names that provide it
    images: frozenset[str]  # image repositories that provide it
    kinds: frozenset[str] = frozenset()  # resource kinds that prove it is installed


def _c(label: str, pattern: str, names: set[str], images: set[str] | None = None,
       kinds: set[str] | None = None) -> Component:
    return Component(label, pattern, frozenset(names), frozenset(images or names), frozenset(kinds or ()))


COMPONENTS: tuple[Component, ...] = (
    _c("Redis", r"redis", {"redis", "redis-master"}),
    _c("PostgreSQL", r"postgres(?:ql)?", {"postgres", "postgresql", "postgres-primary"}, {"postgres", "postgresql"}),
    _c("Qdrant", r"qdrant", {"qdrant"}),
    _c("Prometheus", r"prometheus", {"prometheus", "prometheus-server", "prometheus-operator"},
       {"prometheus", "prometheus-operator"}, {"Prometheus"}),
    _c("Grafana", r"grafana(?! tempo| loki)", {"grafana"}),
    _c("Grafana Tempo", r"(?:grafana )?tempo", {"tempo"}),
    _c("Loki", r"(?:grafana )?loki", {"loki"}),
    _c("Traefik", r"traefik", {"traefik"}),
    _c("ArgoCD", r"argo ?cd", {"argocd-server", "argocd-application-controller"}, {"argocd"}, {"Application"}),
    _c("Langflow", r"langflow", {"langflow"}),
    _c("cert-manager", r"cert-manager", {"cert-manager"}, {"cert-manager-controller", "cert-manager"},
       {"ClusterIssuer", "Issuer"}),
    _c("Sealed Secrets", r"sealed ?secrets?", {"sealed-secrets-controller", "sealed-secrets"}),
    _c("KEDA", r"keda", {"keda-operator", "keda"}),
    _c("Linkerd", r"linkerd", {"linkerd-destination", "linkerd-identity"}, {"controller", "proxy"}),
    _c("Jaeger", r"jaeger", {"jaeger"}, {"jaeger", "all-in-one"}),
    _c("Elasticsearch", r"elasticsearch", {"elasticsearch"}),
    _c("Kafka", r"kafka", {"kafka"}),
    _c("MinIO", r"minio", {"minio"}),
    _c("vLLM", r"vllm", {"vllm"}, {"vllm-openai", "vllm"}),
    _c("Ollama", r"ollama", {"ollama"}),
    _c("MongoDB", r"mongo(?:db)?", {"mongodb", "mongo"}),
)
_PROVIDERS = {c.label: c for c in COMPONENTS}
# Custom resources a proposal may create, and the component that must run them.
CRD_PROVIDERS: dict[str, str] = {
    "ServiceMonitor": "Prometheus", "PodMonitor": "Prometheus", "PrometheusRule": "Prometheus",
    "Certificate": "cert-manager", "ClusterIssuer": "cert-manager",
    "SealedSecret": "Sealed Secrets", "ScaledObject": "KEDA",
}
# "deploy X", "install the X", "run a local X": X is what the proposal adds, not a dependency.
# ("add" is left out: "add Tempo as a data source" uses Tempo, it does not deploy it.)
_CREATED_BEFORE = re.compile(
    r"\b(?:deploy|install|introduce|adopt|run|set up|roll out)\s+"
    r"(?:an?\s+|the\s+)?(?:[\w-]+\s+){0,2}$", re.IGNORECASE)


@dataclass(frozen=True)
class Dependency:
    component: Component
    why: str


def extract_dependencies(improvement: Improvement) -> list[Dependency]:
    """Components the proposal relies on but does not itself deploy, and the operators
    behind the custom resources it would create."""
    text = f"{improvement.description}. {improvement.implementation_notes}"
    deps: dict[str, Dependency] = {}
    for component in COMPONENTS:
        pattern = re.compile(r"(?<![\w-])" + component.pattern + r"(?![\w-])", re.IGNORECASE)
        matches = list(pattern.finditer(text))
        if not matches:
            continue
        created = any(_CREATED_BEFORE.search(text[max(0, m.start() - 40):m.start()]) for m in matches)
        if not created:
            deps[component.label] = Dependency(component, f"mentioned as {matches[0].group(0)!r}")
    for kind, provider in CRD_PROVIDERS.items():
        if re.search(r"\b" + kind + r"s?\b", text) and provider not in deps:
            deps[provider] = Dependency(_PROVIDERS[provider], f"{kind} needs it")
    return list(deps.values())


class DependencyCheck(Check):
    name = "dependency"

    def __init__(self, ctx: RagContext) -> None:
        self.ctx = ctx

    def run(self, improvement: Improvement) -> list[Finding]:
        inventory = self.ctx.index.inventory("gitops")
        if not inventory:
            return [Finding(check=self.name, conflict=False,
                            reason="no GitOps manifests indexed; dependencies not checked")]
        names = {p.get("name") for p in inventory}
        images = {r for p in inventory for r in p.get("image_repositories", [])}
        kinds = {p.get("kind") for p in inventory}
        findings = []
        for dep in extract_dependencies(improvement):
            c = dep.component
            if names & c.names or images & c.images or kinds & c.kinds:
                continue
            findings.append(Finding(check=self.name, conflict=True, related_id=c.label,
                                    reason=f"missing dependency: {c.label}, deploy it first ({dep.why})"))
        return findings or [Finding(check=self.name, conflict=False,
                                    reason="every named dependency exists in the GitOps repo")]


class PlatformDependencyCheck(PlatformCheck):
    """Missing dependency, open vocabulary: every component the proposal relies on (named
    with a preposition of use, or as the target of a change) is looked up in the platform
    model; it is present when the repository runs it, when a custom resource in use implies
    it, or when a running component of the same kind already provides its main capability
    (Prometheus through kube-prometheus-stack). A component found nowhere is a conflict;
    what the proposal deploys itself is not a dependency."""

    name = "dependency"

    def run(self, improvement: Improvement) -> list[Finding]:
        platform = self.platform()
        if platform is None:
            return self.not_checked()
        text = self.text(improvement)
        found = component_mentions(text, platform)
        brought = {m.component for m in found if m.intent in ("deploys", "bundles")}
        findings: list[Finding] = []
        checked: set[str] = set()
        for m in found:
            if m.intent not in ("relies-on", "changes") or m.component in brought or m.component in checked:
                continue
            checked.add(m.component)
            if m.component in platform.components:
                continue
            substitute = _provided_by(platform, m.component)
            if substitute:
                continue
            entry = platform.catalogue.entries.get(m.component)
            title = entry.title if entry else m.component
            findings.append(Finding(
                check=self.name, conflict=True, related_id=m.component,
                reason=(f"missing dependency: {title} is not deployed (not in the GitOps repository, "
                        f"no custom resource implies it) and the proposal relies on it (\"{m.clause[:120]}\")")[:1000],
                evidence=[f"components present: {', '.join(sorted(platform.components)[:40])}"]))
        return findings or [Finding(check=self.name, conflict=False,
                                    reason=f"every component it relies on is present ({', '.join(sorted(checked)) or 'none named'})")]


def _provided_by(platform: Platform, name: str) -> str | None:
    """A running component that covers ``name``: its base ("nats" for "nats-jetstream"), or
    one of the same kind that already provides its main capability."""
    for present in platform.components:
        if name.startswith(present + "-"):
            return present
    entry = platform.catalogue.entries.get(name)
    if entry is None or not entry.provides:
        return None
    for component in platform.components.values():
        other = platform.catalogue.entries.get(component.name)
        if other is not None and other.category == entry.category and entry.provides[0] in other.provides:
            return component.name
    return None
