"""The design's four RAG checks, each a :class:`~cortex_school.validation.Check`.

They share one :class:`RagContext`, which embeds an improvement once and reuses the
vector for every search. A check that cannot look (empty corpus, no capacity
configured) says so in a non-conflict finding; it never passes silently.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cortex_school.experts.base import ExpertFailure
from cortex_school.experts.llm import ExpertUnavailable
from cortex_school.models import Finding, Improvement, Status
from cortex_school.rag.capacity import estimate_resources, gib, load_capacity
from cortex_school.rag.chunking import improvement_chunk, improvement_text
from cortex_school.rag.embedding import Embedder
from cortex_school.rag.index import Hit, VectorIndex
from cortex_school.rag.judge import LLMJudge
from cortex_school.store import RedisStore
from cortex_school.validation import OUT_OF_THE_RUNNING, SETTLED_FOR_IMPLEMENTATION, Check


class RagContext:
    """The index, the embedder, and each improvement's vector, computed once."""

    def __init__(self, index: VectorIndex, embedder: Embedder) -> None:
        self.index = index
        self.embedder = embedder
        self._vectors: dict[str, np.ndarray] = {}

    def vector(self, improvement: Improvement) -> np.ndarray:
        if improvement.id not in self._vectors:
            if len(self._vectors) > 256:
                self._vectors.clear()
            self._vectors[improvement.id] = self.embedder.encode([improvement_text(improvement)])[0]
        return self._vectors[improvement.id]

    def remember(self, improvement: Improvement) -> None:
        """Add the improvement to the history corpus so later proposals find it."""
        self.index.add("improvements", improvement_chunk(improvement), self.vector(improvement))


# -- 1. duplicates ----------------------------------------------------------------------


class SemanticDuplicateCheck(Check):
    """A similar improvement (cosine ≥ threshold) that is approved or further, still in
    flight and ingested earlier, or that failed before."""

    name = "duplicate"

    def __init__(self, ctx: RagContext, store: RedisStore, threshold: float) -> None:
        self.ctx, self.store, self.threshold = ctx, store, threshold

    def run(self, improvement: Improvement) -> list[Finding]:
        hits = [h for h in self.ctx.index.search("improvements", self.ctx.vector(improvement), 10)
                if h.score >= self.threshold and h.payload.get("improvement_id") != improvement.id]
        others = {o.id: o for o in self.store.many(h.payload["improvement_id"] for h in hits)}
        for hit in hits:
            other = others.get(hit.payload["improvement_id"])
            if other is None or other.fingerprint == improvement.fingerprint:
                continue  # gone, or an exact duplicate (the exact check reports those)
            similar = f"{other.id} ({other.description[:80]!r}, cosine {hit.score:.2f})"
            if other.status is Status.FAILED:
                reason = self.store.raw_fields(other.id).get("failure_reason", "no reason recorded")
                return [Finding(check=self.name, conflict=True, related_id=other.id,
                                reason=f"a similar improvement failed before: {similar}: {reason}")]
            if other.status in OUT_OF_THE_RUNNING:
                continue
            if other.status in SETTLED_FOR_IMPLEMENTATION:
                return [Finding(check=self.name, conflict=True, related_id=other.id,
                                reason=f"already implemented: similar to {similar}, status {other.status.value}")]
            if (other.created_at, other.id) < (improvement.created_at, improvement.id):
                return [Finding(check=self.name, conflict=True, related_id=other.id,
                                reason=f"already in the pipeline: similar to {similar}, status {other.status.value}")]
        return [Finding(check=self.name, conflict=False,
                        reason=f"no similar improvement at cosine ≥ {self.threshold:.2f}")]


# -- 2. architectural conflicts -----------------------------------------------------------

_SUBJECT = r"(?P<term>[A-Za-z][\w.-]*(?:[ -][A-Z][\w.-]*)?)"
PROHIBITIONS: tuple[re.Pattern[str], ...] = (
    re.compile(_SUBJECT + r"\s+(?:is|are)\s+(?:now\s+)?(?:deprecated|forbidden|banned|prohibited|"
               r"not allowed|not permitted|replaced|superseded)\b"),
    re.compile(r"\b(?:do not|don't|never|must not|will not|shall not|may not)\s+(?:use|deploy|install|"
               r"run|add|introduce|adopt)\s+" + _SUBJECT),
)
_NOT_A_COMPONENT = {"it", "this", "that", "which", "there", "what", "these", "those", "anything",
                    "something", "everything", "nothing", "access", "traffic", "root", "the", "a", "an"}


@dataclass(frozen=True)
class Prohibition:
    term: str
    sentence: str


def prohibitions(text: str) -> list[Prohibition]:
    found = []
    for sentence in re.split(r"(?<=[.!?])\s+|\n+", text):
        for pattern in PROHIBITIONS:
            for match in pattern.finditer(sentence):
                term = match.group("term").strip(" .-")
                if term.lower() not in _NOT_A_COMPONENT and len(term) >= 3:
                    found.append(Prohibition(term=term, sentence=sentence.strip()))
    return found


def mentions(text: str, term: str) -> bool:
    return re.search(r"(?<![\w-])" + re.escape(term) + r"(?![\w-])", text, re.IGNORECASE) is not None


class ArchitecturalConflictCheck(Check):
    """Top-k architecture chunks; the offline judge flags a proposal that uses a component
    a document declares deprecated, replaced, forbidden or not allowed. Related known
    issues are reported alongside (not as conflicts)."""

    name = "architectural"

    def __init__(self, ctx: RagContext, top_k: int, known_issue_threshold: float,
                 reranker: Any | None = None, judge: LLMJudge | None = None) -> None:
        self.ctx, self.top_k = ctx, top_k
        self.known_issue_threshold = known_issue_threshold
        self.reranker = reranker
        self.judge = judge

    def run(self, improvement: Improvement) -> list[Finding]:
        findings: list[Finding] = []
        vector = self.ctx.vector(improvement)
        text = f"{improvement.description}\n{improvement.implementation_notes}"
        hits = self.ctx.index.search("docs", vector, self.top_k * (2 if self.reranker else 1))
        if self.reranker is not None and hits:
            scores = self.reranker.predict([(improvement_text(improvement), h.text) for h in hits])
            hits = [h for _, h in sorted(zip(scores, hits), key=lambda p: -p[0])]
        hits = hits[: self.top_k]
        if not hits:
            findings.append(Finding(check=self.name, conflict=False,
                                    reason="no architecture docs indexed; nothing to compare against"))
        for hit in hits:
            for rule in prohibitions(hit.text):
                if mentions(text, rule.term):
                    doc, section = hit.payload.get("document", "?"), hit.payload.get("section", "?")
                    findings.append(Finding(
                        check=self.name, conflict=True, related_id=f"{doc}#{section}",
                        reason=f"architectural conflict: {doc} § {section} says: \"{rule.sentence}\"",
                    ))
        if self.judge is not None and hits:
            findings += self._ask_judge(improvement, hits, findings)
        if not any(f.conflict for f in findings) and hits:
            findings.append(Finding(check=self.name, conflict=False,
                                    reason=f"no contradiction in the top {len(hits)} architecture sections"))
        for issue in self.ctx.index.search("known_issues", vector, 1):
            if issue.score >= self.known_issue_threshold:
                findings.append(Finding(check="known_issue", conflict=False,
                                        reason=f"related known issue: {issue.payload.get('section')} "
                                               f"(similarity {issue.score:.2f})"))
        return findings


    def _ask_judge(self, improvement: Improvement, hits: list[Hit], so_far: list[Finding]) -> list[Finding]:
        assert self.judge is not None
        try:
            verdicts = self.judge.contradictions(improvement, hits)
        except (ExpertUnavailable, ExpertFailure) as exc:
            # The rules above still decided; say that the model could not be asked.
            return [Finding(check=self.name, conflict=False,
                            reason=f"LLM contradiction judge unavailable ({exc}); offline rules applied")]
        seen = {f.related_id for f in so_far if f.conflict}
        out = []
        for hit, reason in verdicts:
            doc, section = hit.payload.get("document", "?"), hit.payload.get("section", "?")
            if f"{doc}#{section}" in seen:
                continue
            seen.add(f"{doc}#{section}")
            out.append(Finding(check=self.name, conflict=True, related_id=f"{doc}#{section}",
                               reason=f"architectural conflict: {doc} § {section} ({self.judge.name}): {reason}"))
        return out


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
