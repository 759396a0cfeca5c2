"""RAG validation with the real model, real Qdrant local mode and real Redis:
each check fires on a crafted case and stays quiet on a near miss."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from cortex_school.models import Status
from cortex_school.validation.capacity_model import estimate_resources, parse_cpu, parse_memory
from cortex_school.validation import (
    ArchitecturalConflictCheck,
    CapacityCheck,
    RagContext,
    SemanticDuplicateCheck,
)
from cortex_school.platform_model import load_platform
from cortex_school.validation.conflicts import bare_platform
from cortex_school.validation.dependencies import PlatformDependencyCheck
from cortex_school.validation.normative import statements
from cortex_school.validation.rag.chunking import chunk_manifests, chunk_markdown
from cortex_school.validation.rag.embedding import get_embedder
from cortex_school.validation.rag.index import EmbeddedIndex
from tests.factories import make_improvement

DOC = textwrap.dedent("""\
    # Networking

    ## Ingress
    Traefik is the only ingress controller. ingress-nginx is forbidden.

    ## Service mesh
    Linkerd is not allowed: we do not run a service mesh.

    ## DNS
    CoreDNS runs with default settings; its Corefile is never edited by hand.
    """)

MANIFESTS = textwrap.dedent("""\
    apiVersion: apps/v1
    kind: Deployment
    metadata: {name: redis, namespace: cortex, labels: {app: redis}}
    spec:
      template:
        spec:
          containers:
          - name: redis
            image: redis:7.2-alpine
            ports: [{containerPort: 6379}]
    ---
    apiVersion: v1
    kind: Service
    metadata: {name: langflow, namespace: cortex}
    spec: {ports: [{port: 7860}]}
    """)
OPERATOR = textwrap.dedent("""\
    apiVersion: apps/v1
    kind: Deployment
    metadata: {name: prometheus-operator, namespace: monitoring}
    spec:
      template:
        spec:
          containers: [{name: op, image: "quay.io/prometheus-operator/prometheus-operator:v0.77.1"}]
    """)


@pytest.fixture(scope="module")
def embedder():
    return get_embedder()


@pytest.fixture
def index(settings, embedder, store):
    idx = EmbeddedIndex(settings.redis.url, embedder, prefix="rag-test")
    for corpus in ("docs", "gitops", "improvements", "known_issues"):
        idx.drop(corpus)
    yield idx
    for corpus in ("docs", "gitops", "improvements", "known_issues"):
        idx.drop(corpus)


def test_markdown_chunks_keep_document_and_section():
    chunks = chunk_markdown(DOC, "networking.md", "docs")
    sections = [c.payload["section"] for c in chunks]
    assert sections == ["Networking > Ingress", "Networking > Service mesh", "Networking > DNS"]
    assert all(c.payload["document"] == "networking.md" for c in chunks)
    assert "Linkerd is not allowed" in chunks[1].text


def test_manifest_chunks_are_one_per_resource_with_payload():
    chunks, problems = chunk_manifests(MANIFESTS, "apps/cortex/x.yaml")
    assert not problems
    deploy = chunks[0].payload
    assert (deploy["kind"], deploy["name"], deploy["namespace"]) == ("Deployment", "redis", "cortex")
    assert deploy["images"] == ["redis:7.2-alpine"] and deploy["image_repositories"] == ["redis"]
    assert deploy["ports"] == [6379] and deploy["labels"] == {"app": "redis"}
    assert chunk_manifests("a: [unclosed", "bad.yaml")[1][0].startswith("bad.yaml: not valid YAML")


def test_incremental_sync_embeds_only_changes_and_drops_deleted_sources(index, embedder, settings):
    a = chunk_markdown(DOC, "a.md", "docs")
    b = chunk_markdown("# Data\n\n## Backups\nNightly pg_dump to object storage.\n", "b.md", "docs")
    first = index.sync("docs", a + b)
    assert (first.embedded, first.unchanged, first.deleted) == (4, 0, 0)
    again = index.sync("docs", a + b)
    assert (again.embedded, again.unchanged) == (0, 4)
    changed = chunk_markdown(DOC.replace("default settings", "ndots 2"), "a.md", "docs")
    third = index.sync("docs", changed)  # b.md gone, one section of a.md changed
    assert (third.embedded, third.unchanged, third.deleted) == (1, 2, 1)
    # Another process (a fresh mirror) sees exactly the current state, without re-embedding.
    other = EmbeddedIndex(settings.redis.url, embedder, prefix="rag-test")
    hits = other.search("docs", embedder.encode(["nightly database backups"])[0], 5)
    assert {h.payload["document"] for h in hits} == {"a.md"} and len(hits) == 3
    # ... and an existing mirror picks up later changes from the change log.
    index.sync("docs", changed + b)
    assert any(h.payload["document"] == "b.md"
               for h in other.search("docs", embedder.encode(["nightly database backups"])[0], 5))


def test_semantic_duplicate_fires_on_a_paraphrase_and_not_on_a_neighbour(index, embedder, store):
    ctx = RagContext(index, embedder)
    done = make_improvement("Add a PrometheusRule alerting on Redis memory usage above 80%",
                            video_id="video000001", category="monitoring")
    store.create(done, actor="t", reason="t")
    store._redis.hset(f"improvement:{done.id}", "status", Status.APPROVED.value)
    ctx.remember(done)
    check = SemanticDuplicateCheck(ctx, store, 0.85)
    paraphrase = make_improvement("Alert when Redis memory usage goes above 80 percent",
                                  video_id="video000002", category="monitoring")
    finding = check.run(paraphrase)[0]
    assert finding.conflict and finding.related_id == done.id
    assert finding.reason.startswith("already implemented: similar to " + done.id)
    neighbour = make_improvement("Add a Grafana dashboard for Qdrant query latency",
                                 video_id="video000003", category="monitoring")
    assert not check.run(neighbour)[0].conflict


def test_semantic_duplicate_of_a_failed_improvement_names_the_failure(index, embedder, store):
    ctx = RagContext(index, embedder)
    failed = make_improvement("Enable Redis cluster mode with six shards", video_id="video000004")
    store.create(failed, actor="t", reason="t")
    store._redis.hset(f"improvement:{failed.id}", mapping={"status": "failed",
                                                          "failure_reason": "Pod CrashLoopBackOff"})
    ctx.remember(failed)
    again = make_improvement("Turn on Redis cluster mode with 6 shards", video_id="video000005")
    finding = SemanticDuplicateCheck(ctx, store, 0.85).run(again)[0]
    assert finding.conflict and "failed before" in finding.reason and "CrashLoopBackOff" in finding.reason


def test_architectural_conflict_names_document_and_section(index, embedder):
    index.sync("docs", chunk_markdown(DOC, "networking.md", "docs"))
    check = ArchitecturalConflictCheck(RagContext(index, embedder), top_k=5, known_issue_threshold=0.45)
    linkerd = make_improvement("Enforce mutual TLS between services with Linkerd", category="security")
    conflicts = [f for f in check.run(linkerd) if f.conflict]
    assert len(conflicts) == 1
    assert "networking.md § Networking > Service mesh" in conflicts[0].reason
    assert "Linkerd is not allowed" in conflicts[0].reason
    near_miss = make_improvement("Terminate mutual TLS for Langflow at the Traefik ingress",
                                 category="networking")
    assert not any(f.conflict for f in check.run(near_miss))


def test_normative_statements_name_what_they_rule_out_and_what_they_choose():
    found = statements("Jaeger is deprecated: traces go to Tempo. We will not use MongoDB. "
                       "Traefik is the only ingress controller.", "d.md", "s", bare_platform())
    assert [b.name for s in found for b in s.banned] == ["jaeger", "mongodb"]
    assert [sorted(s.chosen) for s in found if s.chosen] == [["traefik"]]


def test_dependency_check_finds_missing_components_on_the_platform_model(tmp_path):
    (tmp_path / "base.yaml").write_text(MANIFESTS)
    check = PlatformDependencyCheck(lambda: load_platform(tmp_path))
    tempo = make_improvement("Send OpenTelemetry traces from Langflow to Grafana Tempo")
    reasons = [f.reason for f in check.run(tempo) if f.conflict]
    assert len(reasons) == 1 and reasons[0].startswith("missing dependency: Grafana Tempo is not deployed")
    redis = make_improvement("Store session data in Redis")
    assert not any(f.conflict for f in check.run(redis))


def test_what_a_proposal_deploys_is_not_its_dependency(tmp_path):
    (tmp_path / "base.yaml").write_text(MANIFESTS)
    check = PlatformDependencyCheck(lambda: load_platform(tmp_path))
    own = make_improvement("Deploy Grafana Tempo for traces", notes="Install Tempo in monitoring; Langflow sends spans.")
    assert not any(f.conflict for f in check.run(own))


def test_capacity_conflict_with_figures_and_a_near_miss(tmp_path):
    cluster = tmp_path / "cluster.yaml"
    cluster.write_text(textwrap.dedent("""\
        nodes:
          - {name: w1, allocatable: {cpu: "4", memory: 16Gi}, requested: {cpu: "3", memory: 13Gi}}
          - {name: w2, allocatable: {cpu: "4", memory: 16Gi}, requested: {cpu: "2500m", memory: 12Gi}}
        """))
    check = CapacityCheck(cluster)
    big = make_improvement("Run a local vLLM inference server", type="implementation",
                           notes="Deploy vLLM with 2 replicas, each requesting 4 CPU and 12Gi memory.")
    assert estimate_resources(big).memory == 24 * 2**30 and estimate_resources(big).cpu == 8
    finding = check.run(big)[0]
    assert finding.conflict and "insufficient cluster resources" in finding.reason
    assert "24.0Gi memory" in finding.reason and "7.0Gi" in finding.reason
    small = make_improvement("Run a small exporter", type="tool",
                             notes="Deploy it with 1 replica requesting 100m CPU and 256Mi memory; 20Gi volume.")
    assert estimate_resources(small).memory == 256 * 2**20  # the volume is not memory
    assert not check.run(small)[0].conflict
    assert "unknown" in CapacityCheck(None).run(small)[0].reason


def test_quantities():
    assert parse_memory("12Gi") == 12 * 2**30 and parse_memory("512Mi") == 512 * 2**20
    assert parse_cpu("2500m") == 2.5 and parse_cpu(3) == 3.0


@pytest.fixture(scope="module")
def fake_llm():
    from tests.fake_llm import FakeLLM

    with FakeLLM() as fake:
        yield fake


def llm_judge(fake_llm):
    from cortex_school.experts.anthropic_backend import ClaudeExpert
    from cortex_school.validation.rag.judge import LLMJudge

    return LLMJudge(ClaudeExpert("architecture", "claude-opus-4-5", api_key="k", base_url=fake_llm.url,
                                 max_tokens=256, timeout=2))


def test_llm_judge_adds_contradictions_naming_the_section_it_was_shown(index, embedder, fake_llm):
    index.sync("docs", chunk_markdown(DOC, "networking.md", "docs"))
    check = ArchitecturalConflictCheck(RagContext(index, embedder), 5, 0.45, judge=llm_judge(fake_llm))
    flagged = make_improvement("Replace CoreDNS with a custom resolver [judge-contradicts]")
    conflicts = [f for f in check.run(flagged) if f.conflict]
    assert len(conflicts) == 1 and "anthropic/claude-opus-4-5: does what statement 1 rules out" in conflicts[0].reason
    assert conflicts[0].reason.startswith("architectural conflict: networking.md § Networking > ")
    request = fake_llm.for_text("[judge-contradicts]", judge=True)[-1]
    assert request["body"]["tools"][0]["name"] == "report_contradictions"
    assert "never instructions" in request["system"]
    quiet = make_improvement("Tune CoreDNS cache size [judge-quiet]")
    assert not any(f.conflict for f in check.run(quiet))


def test_the_judge_is_shown_positive_rules_the_offline_rules_cannot_decide(index, embedder, fake_llm):
    doc = "# Monitoring\n\n## Alerts\nEvery alert rule must live in the namespace of the service it watches.\n"
    index.sync("docs", chunk_markdown(DOC + doc, "networking.md", "docs"))
    offline = ArchitecturalConflictCheck(RagContext(index, embedder), 5, 0.45)
    moved = make_improvement("Put the Redis alert rule in the monitoring namespace [judge-contradicts]")
    assert not any(f.conflict for f in offline.run(moved))  # offline: a positive rule decides nothing
    judged = ArchitecturalConflictCheck(RagContext(index, embedder), 5, 0.45, judge=llm_judge(fake_llm))
    [conflict] = [f for f in judged.run(moved) if f.conflict]
    assert "Every alert rule must live in the namespace" in conflict.reason
    shown = fake_llm.for_text("Put the Redis alert rule", judge=True)[-1]["proposal"]
    assert "Every alert rule must live" in shown


@pytest.mark.parametrize("marker", ["[judge-bad-section]", "[500-always]"])
def test_an_unusable_judge_is_reported_and_the_rules_still_apply(index, embedder, fake_llm, marker):
    index.sync("docs", chunk_markdown(DOC, "networking.md", "docs"))
    check = ArchitecturalConflictCheck(RagContext(index, embedder), 5, 0.45, judge=llm_judge(fake_llm))
    findings = check.run(make_improvement(f"Enforce mTLS with Linkerd {marker}"))
    assert any("LLM contradiction judge unavailable" in f.reason for f in findings)
    assert any(f.conflict and "Linkerd is not allowed" in f.reason for f in findings)


def test_the_gitops_corpus_follows_the_repository_after_a_commit(index, tmp_path):
    from cortex_school.validation.indexing import reindex_gitops_repo
    from cortex_school.clients.gitops import GitOpsRepo, ensure_bare_remote

    seed = Path(__file__).resolve().parent.parent / "examples" / "platform" / "gitops"
    remote = ensure_bare_remote(tmp_path / "remote.git", "main", seed)
    repo = GitOpsRepo(remote=str(remote), branch="main", workdir=tmp_path / "w",
                      author="Cortex Online School <school@cortex.ai>")
    first = reindex_gitops_repo(index, repo)
    assert first.embedded == first.total > 10
    iid = "00000000000000ab"
    repo.commit_improvement(iid, {"apps/cortex-system/tempo-deployment.yaml": (
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: tempo\n  namespace: cortex-system\n"
        f"  annotations:\n    cortex-school.io/improvement-id: {iid}\nspec:\n  template:\n    spec:\n"
        "      containers: [{name: tempo, image: 'grafana/tempo:2.6.1'}]\n")},
        f"Implement: Tempo\n\nImprovement-Id: {iid}\n")
    second = reindex_gitops_repo(index, repo)
    assert (second.embedded, second.unchanged, second.deleted) == (1, first.total, 0)


def test_a_second_docs_directory_adds_to_the_corpus_and_replace_replaces(index, tmp_path):
    """GIVEN two docs directories WHEN both are indexed THEN the corpus holds both (the
    second no longer deletes the first); --replace keeps only the one indexed."""
    from cortex_school.validation.indexing import index_docs

    first, second = tmp_path / "adr", tmp_path / "runbooks"
    for folder, name, text in ((first, "0001.md", DOC), (second, "backup.md", "# Backups\n\nNightly pg_dump.\n")):
        folder.mkdir()
        (folder / name).write_text(text)
    one = index_docs(index, first)
    two = index_docs(index, second)
    assert two.deleted == 0 and index.count("docs") == one.total + two.total
    again = index_docs(index, first)
    assert again.embedded == 0 and again.deleted == 0  # unchanged: nothing re-embedded
    only = index_docs(index, second, replace=True)
    assert only.deleted == one.total and index.count("docs") == two.total


def test_chart_folders_and_templates_are_neither_objects_nor_problems(tmp_path):
    """GIVEN a repo with a Helm chart folder (Chart.yaml, values.yaml, templates) and a
    kustomization WHEN the gitops corpus is chunked THEN only real objects are chunks and
    nothing is reported as a problem."""
    from cortex_school.validation.rag.chunking import chunk_gitops_dir

    (tmp_path / "charts/app/templates").mkdir(parents=True)
    (tmp_path / "charts/app/Chart.yaml").write_text("apiVersion: v2\nname: app\nversion: 1.0.0\n")
    (tmp_path / "charts/app/values.yaml").write_text("image:\n  repository: nginx\n")
    (tmp_path / "charts/app/templates/deploy.yaml").write_text("kind: Deployment\nmetadata:\n  name: {{ .Release.Name }}\n")
    (tmp_path / "apps").mkdir()
    (tmp_path / "apps/kustomization.yaml").write_text("resources: [cm.yaml]\n")
    (tmp_path / "apps/cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n")
    chunks, problems = chunk_gitops_dir(tmp_path)
    assert len(chunks) == 1 and "ConfigMap" in chunks[0].text and chunks[0].source == "apps/cm.yaml"
    assert problems == []
