"""Per-process singletons: settings, the store, expert backends, cache and limiters.

Created on first use in each worker process (after the prefork fork), never per task.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache, lru_cache
from typing import TYPE_CHECKING, Any

from cortex_school.experts import Expert, make_expert
from cortex_school.experts.cache import EvaluationCache
from cortex_school.experts.limits import ExpertLimiter
from cortex_school.settings import get_settings
from cortex_school.store import RedisStore, connect

if TYPE_CHECKING:
    import redis

    from cortex_school.clients.cluster import ClusterTarget
    from cortex_school.clients.cluster.metrics import MetricsSource
    from cortex_school.clients.gitops import GitOpsRepo
    from cortex_school.delivery import Deployer
    from cortex_school.platform_model.source import PlatformSource
    from cortex_school.validation import Check, RagContext
    from cortex_school.validation.rag.embedding import Embedder
    from cortex_school.validation.rag.index import VectorIndex
    from cortex_school.validation.rag.judge import LLMJudge
    from cortex_school.workers.implement import Implementer
    from cortex_school.workers.planning import Planner
    from cortex_school.workers.schema_check import SchemaChecker


@lru_cache(maxsize=1)
def get_redis() -> "redis.Redis":
    """This process's connection for the adapters that keep their own structures in the
    same Redis (expert cache and limits, the simulated cluster)."""
    return connect(get_settings().redis.url)


@lru_cache(maxsize=1)
def get_store() -> RedisStore:
    return RedisStore(get_redis())


@cache
def get_expert(name: str) -> Expert:
    return make_expert(name, get_settings())


@lru_cache(maxsize=1)
def get_cache() -> EvaluationCache:
    return EvaluationCache(get_redis(), get_settings().experts.cache_ttl_seconds)


@cache
def get_limiter(name: str) -> ExpertLimiter:
    settings = get_settings()
    cfg = settings.experts
    # A limiter slot held longer than the evaluate task's hard time limit is stale.
    return ExpertLimiter(
        get_redis(), name, per_minute=cfg.rate_limit_per_minute,
        concurrency=cfg.concurrency, slot_ttl_seconds=float(settings.tasks.hard_limit("evaluate")),
    )


@lru_cache(maxsize=1)
def get_rag() -> "RagContext":
    """The embedder (loaded once per process) and the vector index (server or embedded)."""
    from cortex_school.validation import RagContext

    return RagContext(make_index(), get_embedder_from_settings())


def get_embedder_from_settings() -> "Embedder":
    from cortex_school.validation.rag.embedding import get_embedder

    rag = get_settings().rag
    return get_embedder(rag.model_path, rag.torch_threads)


def make_index() -> "VectorIndex":
    from cortex_school.validation.rag.index import EmbeddedIndex, ServerIndex

    settings = get_settings()
    embedder = get_embedder_from_settings()
    if settings.services.qdrant_url:
        return ServerIndex(settings.services.qdrant_url, embedder)
    return EmbeddedIndex(settings.redis.url, embedder)


@lru_cache(maxsize=1)
def get_reranker() -> object | None:
    path = get_settings().rag.rerank_model_path
    if not path:
        return None
    from sentence_transformers import CrossEncoder

    return CrossEncoder(path, device="cpu", local_files_only=True)


def get_judge() -> "LLMJudge | None":
    """The architecture expert as contradiction judge, when an LLM backend is configured."""
    from cortex_school.experts.llm import LLMExpert
    from cortex_school.validation.rag.judge import LLMJudge

    expert = get_expert("architecture")
    return LLMJudge(expert) if isinstance(expert, LLMExpert) else None


def get_checks() -> list["Check"]:
    """Every validation check this process runs: the exact duplicate and the two checks on the
    platform model, then (with RAG) the semantic duplicate, architectural and capacity checks."""
    from cortex_school.validation import default_checks
    from cortex_school.validation.already_deployed import AlreadyDeployedCheck
    from cortex_school.validation.dependencies import PlatformDependencyCheck

    settings = get_settings()
    platform = get_platform_source()
    checks = default_checks(get_store()) + [AlreadyDeployedCheck(platform), PlatformDependencyCheck(platform)]
    if settings.rag.enabled:
        from cortex_school.validation import (
            ArchitecturalConflictCheck,
            CapacityCheck,
            SemanticDuplicateCheck,
        )

        rag = get_rag()
        checks += [
            SemanticDuplicateCheck(rag, get_store(), settings.rag.duplicate_threshold),
            ArchitecturalConflictCheck(rag, settings.rag.top_k, settings.rag.known_issue_threshold,
                                       get_reranker(), get_judge(), platform=platform),
            CapacityCheck(settings.rag.cluster_capacity_file),
        ]
    return checks


@lru_cache(maxsize=1)
def get_platform_source() -> "PlatformSource":
    """The platform model of the GitOps repository, rebuilt when its head moves."""
    from cortex_school.platform_model.source import PlatformSource

    settings = get_settings()
    return PlatformSource(get_gitops_repo, refresh_seconds=settings.rag.platform_refresh_seconds,
                          distribution=settings.deploy.distribution, live=live_reader())


def live_reader() -> "Callable[[], list[dict[str, Any]]] | None":
    """What the live cluster runs, when the deploy target is a real cluster (not the
    simulation) and PLATFORM_LIVE is on."""
    from cortex_school.clients.cluster.kubernetes_api import KubernetesCluster, has_kube_config

    settings = get_settings()
    cfg = settings.deploy
    real = cfg.cluster_target == "kubernetes" or (cfg.cluster_target == "auto" and has_kube_config(cfg.kubeconfig))
    if not settings.rag.platform_live or not real:
        return None

    def read() -> list[dict[str, Any]]:
        cluster = get_cluster()
        return cluster.live_objects() if isinstance(cluster, KubernetesCluster) else []

    return read


@lru_cache(maxsize=1)
def get_gitops_repo() -> "GitOpsRepo":
    """This process's clone of the GitOps repository (its own locked slot directory)."""
    from cortex_school.clients.gitops import GitOpsRepo

    settings = get_settings()
    cfg = settings.gitops
    return GitOpsRepo(
        remote=cfg.remote, branch=cfg.github_branch,
        workdir=cfg.workdir or settings.data_dir / "gitops",
        author=cfg.commit_author, mode=cfg.mode, push_attempts=cfg.push_attempts,
        username=cfg.username, secret=cfg.secret,
    )


@lru_cache(maxsize=1)
def get_schema_checker() -> "SchemaChecker":
    from cortex_school.workers.schema_check import SchemaChecker

    return SchemaChecker(get_settings().policy.kubernetes_version)


@cache
def get_planner(expert: str) -> "Planner":
    """The improvement's expert plans when an LLM backend is configured; else the offline
    planner."""
    from cortex_school.experts.llm import LLMExpert
    from cortex_school.workers.planning import LLMPlanner, OfflinePlanner

    default_namespace = get_settings().policy.allowed_namespaces[0]
    backend = get_expert(expert)
    if isinstance(backend, LLMExpert):
        return LLMPlanner(backend, default_namespace)
    return OfflinePlanner(default_namespace)


def get_implementer(expert: str) -> "Implementer":
    from cortex_school.clients.cluster import ClusterError
    from cortex_school.delivery import argocd_apps_for
    from cortex_school.workers.implement import Implementer

    settings = get_settings()
    try:
        cluster = get_cluster()
        sync_check = lambda root, files, overrides: argocd_apps_for(  # noqa: E731
            cluster, root, files, settings.deploy, repo_urls=settings.gitops.repo_urls, overrides=overrides)
    except ClusterError:
        sync_check = None  # no cluster configured: the deploy stage reports it
    from cortex_school.store.leases import acquire

    store = get_store()
    lease = (lambda iid, nss: acquire(store, iid, nss)) if settings.one_change_per_namespace else None
    try:
        live = get_cluster()
    except ClusterError:
        live = None
    return Implementer(planner=get_planner(expert), repo=get_gitops_repo(),
                       schemas=get_schema_checker(), policy=settings.policy,
                       co_author=settings.gitops.commit_author, sync_check=sync_check,
                       lease=lease, cluster=live,
                       health_queries=(settings.deploy.error_rate_query,
                                       settings.deploy.latency_query))


@lru_cache(maxsize=1)
def get_cluster() -> "ClusterTarget":
    """CLUSTER_TARGET: the real cluster (kubeconfig or in-cluster), or the simulation."""
    from cortex_school.clients.cluster import ClusterRefused
    from cortex_school.clients.cluster.kubernetes_api import KubernetesCluster, has_kube_config

    cfg = get_settings().deploy
    target = cfg.cluster_target
    if target == "auto":
        if not has_kube_config(cfg.kubeconfig):
            raise ClusterRefused("no cluster: no kubeconfig and not in a cluster; set KUBECONFIG, "
                                 "or CLUSTER_TARGET=simulated for the demo")
        target = "kubernetes"
    if target == "simulated":
        from cortex_school.clients.cluster.simulated import SimulatedCluster, parse_faults
        from cortex_school.platform_model.argocd import simulated_applications

        return SimulatedCluster(get_redis(), get_gitops_repo(), parse_faults(cfg.simulated_faults),
                                simulated_applications)
    return KubernetesCluster(argocd_namespace=cfg.argocd_namespace, kubeconfig=cfg.kubeconfig,
                             context=cfg.kube_context, app_namespaces=tuple(cfg.argocd_app_namespaces))


@lru_cache(maxsize=1)
def get_metrics() -> "MetricsSource":
    from cortex_school.clients.cluster.metrics import PrometheusMetrics, SimulatedMetrics

    settings = get_settings()
    cluster = get_cluster()
    if cluster.name == "simulated":
        return SimulatedMetrics(cluster)
    return PrometheusMetrics(settings.services.prometheus_url,
                             error_rate_query=settings.deploy.error_rate_query,
                             latency_query=settings.deploy.latency_query)


def get_deployer() -> "Deployer":
    from cortex_school.delivery import Deployer

    settings = get_settings()
    return Deployer(cluster=get_cluster(), metrics=get_metrics(), repo=get_gitops_repo(),
                    cfg=settings.deploy, services=settings.services,
                    co_author=settings.gitops.commit_author, repo_urls=settings.gitops.repo_urls)
