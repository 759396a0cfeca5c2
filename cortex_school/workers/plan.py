"""The implementation plan: which Kubernetes resources an improvement needs.

A plan is made by the improvement's expert (an LLM answers with this schema as
structured output) or, offline, by :mod:`cortex_school.workers.planning`. It is data
about resources, never manifests: the workers render manifests from it with secure
defaults, so nothing a model or a video says can add a field such as ``privileged``.
Fields a kind does not use are ignored by that kind's renderer.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from cortex_school.settings import WORKERS as SETTINGS_WORKERS

# What the workers know how to render, and which worker owns each kind.
KIND_OWNERS: dict[str, str] = {
    "Deployment": "architecture",
    "StatefulSet": "architecture",
    "DaemonSet": "architecture",
    "ConfigMap": "architecture",
    "PersistentVolumeClaim": "architecture",
    "StorageClass": "architecture",
    "PodDisruptionBudget": "architecture",
    "HorizontalPodAutoscaler": "architecture",
    "ScheduledJob": "architecture",
    "ScaledObject": "architecture",
    "Service": "integration",
    "Ingress": "integration",
    "Middleware": "integration",
    "ExternalSecret": "integration",
    "Role": "security",
    "RoleBinding": "security",
    "ServiceAccount": "security",
    "NetworkPolicy": "security",
    "Certificate": "security",
    "SecretRotationCronJob": "security",
    "MigrationJob": "database",
    "BackupCronJob": "database",
    "PrometheusRule": "monitoring",
    "VMRule": "monitoring",
    "ServiceMonitor": "monitoring",
    "GrafanaDashboard": "monitoring",
}
ResourceKind = Literal[
    "Deployment", "StatefulSet", "DaemonSet", "ConfigMap", "PersistentVolumeClaim",
    "StorageClass", "PodDisruptionBudget", "HorizontalPodAutoscaler", "ScheduledJob", "ScaledObject", "Service", "Ingress", "Middleware", "ExternalSecret", "Role",
    "RoleBinding", "ServiceAccount", "NetworkPolicy", "Certificate", "SecretRotationCronJob",
    "MigrationJob", "BackupCronJob", "PrometheusRule", "ServiceMonitor", "GrafanaDashboard", "VMRule",
]
WORKERS = SETTINGS_WORKERS

_QUANTITY = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|m|k|M|G|T)?$"
_CRON = re.compile(r"^(@(hourly|daily|weekly|monthly|yearly)|(\S+\s+){4}\S+)$")
_LABEL_KEY = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


def _labels(value: dict[str, str]) -> dict[str, str]:
    for key, val in value.items():
        if not _LABEL_KEY.match(key) or len(key) > 253:
            raise ValueError(f"not a label key: {key!r:.80}")
        if not _LABEL_VALUE.match(val):
            raise ValueError(f"not a label value: {val!r:.80}")
    return value


class Port(_Strict):
    number: int = Field(ge=1, le=65535)
    name: str | None = Field(None, pattern=r"^[a-z0-9]([-a-z0-9]{0,13}[a-z0-9])?$")
    protocol: Literal["TCP", "UDP"] = "TCP"

    @field_validator("name")
    @classmethod
    def _has_letter(cls, value: str | None) -> str | None:
        if value is not None and not re.search(r"[a-z]", value):
            raise ValueError("a port name needs a letter (IANA_SVC_NAME)")
        return value


class Storage(_Strict):
    size: str = Field("1Gi", pattern=_QUANTITY)
    storage_class: str | None = Field(None, pattern=r"^[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?$")
    access_mode: Literal["ReadWriteOnce", "ReadWriteMany", "ReadOnlyMany", "ReadWriteOncePod"] = (
        "ReadWriteOnce"
    )
    # Where a Deployment mounts its claim (``/data`` unless the plan names a path).
    mount_path: str | None = Field(None, max_length=200, pattern=r"^(/[A-Za-z0-9_.-]*[A-Za-z0-9_-][A-Za-z0-9_.-]*)+/?$")
    provisioner: str | None = Field(None, max_length=253)  # StorageClass only

    @field_validator("mount_path")
    @classmethod
    def _own_mount(cls, value: str | None) -> str | None:
        if value is not None and (value.rstrip("/") in ("", "/tmp") or value.startswith("/tmp/")
                                  or ".." in value.split("/")):
            raise ValueError(f"mount path {value!r:.80}: /tmp is the pod's scratch mount, / is the image")
        return value
    parameters: dict[str, str] = Field(default_factory=dict, max_length=20)


class EnvVar(_Strict):
    """A plain value, or a reference to a key of a secret (never the secret's value)."""

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
    value: str | None = Field(None, max_length=1000)
    secret_name: str | None = Field(None, pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
    secret_key: str | None = Field(None, pattern=r"^[-._A-Za-z0-9]{1,253}$")


class TraefikMiddleware(_Strict):
    """A Traefik Middleware of one allowlisted type: request limits, response security
    headers, compression, a redirect to HTTPS. Never forwardAuth, basicAuth, chain,
    plugins, request headers (they could forge the identity a backend trusts) or routing."""
    type: Literal["rateLimit", "inFlightReq", "headers", "compress", "redirectScheme"]
    average: int | None = Field(None, ge=1, le=100_000)  # rateLimit: requests per period
    burst: int | None = Field(None, ge=1, le=100_000)
    period: str | None = Field(None, pattern=r"^[1-9][0-9]{0,3}(s|m)$")
    depth: int | None = Field(None, ge=0, le=10)  # sourceCriterion.ipStrategy.depth
    amount: int | None = Field(None, ge=1, le=100_000)  # inFlightReq
    sts_seconds: int | None = Field(None, ge=0, le=63_072_000)  # headers
    frame_deny: bool = False
    content_type_nosniff: bool = False
    referrer_policy: Literal["no-referrer", "same-origin", "strict-origin",
                             "strict-origin-when-cross-origin"] | None = None


class Peer(_Strict):
    """A NetworkPolicy ingress source: a namespace, pods by labels, or both."""

    namespace: str | None = Field(None, pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
    pod_labels: dict[str, str] = Field(default_factory=dict, max_length=10)

    _check = field_validator("pod_labels")(lambda cls, v: _labels(v))


class IngressRule(_Strict):
    """One NetworkPolicy ingress rule: who may connect, on which ports (empty: any)."""

    peers: list[Peer] = Field(min_length=1, max_length=20)
    ports: list[Port] = Field(default_factory=list, max_length=10)


class AlertRule(_Strict):
    name: str = Field(pattern=r"^[A-Za-z_:][A-Za-z0-9_:]{0,127}$")
    expr: str = Field(min_length=1, max_length=2000)
    duration: str = Field("5m", pattern=r"^[0-9]+(ms|s|m|h|d)$")
    severity: Literal["info", "warning", "critical"] = "warning"
    summary: str = Field("", max_length=500)


class RecordingRule(_Strict):
    record: str = Field(pattern=r"^[A-Za-z_:][A-Za-z0-9_:]{0,127}$")
    expr: str = Field(min_length=1, max_length=2000)


class RbacRule(_Strict):
    api_groups: list[str] = Field(default_factory=lambda: [""], max_length=10)
    resources: list[str] = Field(min_length=1, max_length=20)
    verbs: list[str] = Field(min_length=1, max_length=10)


class Panel(_Strict):
    title: str = Field(min_length=1, max_length=200)
    expr: str = Field(min_length=1, max_length=2000)


class ScaleTrigger(_Strict):
    """A KEDA trigger: a Prometheus query against an in-cluster Prometheus (the gate checks
    the address), or CPU/memory utilisation."""

    type: Literal["prometheus", "cpu", "memory"]
    server_address: str | None = Field(None, max_length=300,
                                       pattern=r"^https?://[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?(:[0-9]{1,5})?/?$")
    query: str | None = Field(None, min_length=1, max_length=2000)
    threshold: str = Field(pattern=r"^[0-9]+(\.[0-9]+)?$")


class PlannedResource(_Strict):
    kind: ResourceKind
    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
    namespace: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
    purpose: str = Field("", max_length=500)
    image: str | None = Field(None, max_length=300, pattern=r"^[a-z0-9][-a-z0-9._/:@]*$")
    replicas: int | None = Field(None, ge=0, le=50)
    ports: list[Port] = Field(default_factory=list, max_length=10)
    command: list[str] = Field(default_factory=list, max_length=40)
    env: list[EnvVar] = Field(default_factory=list, max_length=40)
    storage: Storage | None = None
    schedule: str | None = Field(None, max_length=100)
    selector: dict[str, str] = Field(default_factory=dict, max_length=10)
    config: dict[str, str] = Field(default_factory=dict, max_length=50)
    allow_from: list[Peer] = Field(default_factory=list, max_length=20)
    ingress_rules: list[IngressRule] = Field(default_factory=list, max_length=10)  # a port set per source
    deny_all: bool = False
    alerts: list[AlertRule] = Field(default_factory=list, max_length=50)
    recording_rules: list[RecordingRule] = Field(default_factory=list, max_length=50)
    rbac_rules: list[RbacRule] = Field(default_factory=list, max_length=20)
    subject: str | None = Field(None, pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
    dns_names: list[str] = Field(default_factory=list, max_length=20)
    issuer: str | None = Field(None, pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
    host: str | None = Field(None, pattern=r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
    path: str = Field("/", pattern=r"^/[-A-Za-z0-9_./]*$")
    ingress_class: str | None = Field(None, pattern=r"^[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?$")  # Ingress
    # An Ingress's TLS: the name of a Certificate of the same plan (its Secret is served).
    certificate: str | None = Field(None, pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
    # An Ingress's Traefik Middlewares: names of Middlewares of the same plan and namespace.
    middlewares: list[str] = Field(default_factory=list, max_length=5)
    middleware: TraefikMiddleware | None = None  # a Middleware's one type and its values
    target: str | None = Field(None, pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
    target_namespace: str | None = Field(None, pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
    min_available: int | None = Field(None, ge=0, le=50)
    max_unavailable: int | None = Field(None, ge=1, le=50)
    # A companion serves an object this system does not own (a PDB, an HPA, a ServiceMonitor
    # for an existing workload): "Kind/namespace/name" of that object, from the platform
    # model. The gate checks it exists and that the companion selects only its pods.
    companion_of: str | None = Field(None, max_length=300,
                                     pattern=r"^[A-Z][A-Za-z]{1,62}/[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?/"
                                             r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
    min_replicas: int | None = Field(None, ge=1, le=50)
    max_replicas: int | None = Field(None, ge=1, le=50)
    cpu_utilization: int | None = Field(None, ge=1, le=100)  # percent of requests
    memory_utilization: int | None = Field(None, ge=1, le=100)
    scale_down_seconds: int | None = Field(None, ge=0, le=3600)  # stabilisation window
    # A workload's container requests as the proposal gives them ("1 CPU, 2Gi memory"); the
    # limits are set to the same (the defaults when none is given).
    triggers: list[ScaleTrigger] = Field(default_factory=list, max_length=5)  # ScaledObject
    cpu: str | None = Field(None, pattern=r"^[0-9]+(\.[0-9]+)?m?$")
    memory: str | None = Field(None, pattern=r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti)?$")
    interval: str | None = Field(None, pattern=r"^[0-9]+(s|m|h)$")
    secret_keys: list[str] = Field(default_factory=list, max_length=20)
    panels: list[Panel] = Field(default_factory=list, max_length=30)
    dependencies: list[str] = Field(default_factory=list, max_length=20)

    _check_selector = field_validator("selector")(lambda cls, v: _labels(v))

    @field_validator("middlewares")
    @classmethod
    def _middleware_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", name):
                raise ValueError(f"not a Middleware name: {name!r:.80}")
        return value

    @field_validator("name")
    @classmethod
    def _starts_with_letter(cls, value: str) -> str:
        # Services (and so every name we may give one) must be DNS-1035 labels.
        if not value[0].isalpha():
            raise ValueError(f"{value!r} must start with a letter")
        return value

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is not None and not _CRON.match(value):
            raise ValueError(f"not a cron schedule: {value!r}")
        return value

    @field_validator("secret_keys")
    @classmethod
    def _keys(cls, value: list[str]) -> list[str]:
        for key in value:
            if not re.match(r"^[-._A-Za-z0-9]{1,253}$", key):
                raise ValueError(f"not a secret key name: {key!r:.80}")
        return value


class ImplementationPlan(_Strict):
    """What to create for one improvement; empty ``resources`` means nothing to commit."""

    summary: str = Field(min_length=1, max_length=500)
    resources: list[PlannedResource] = Field(default_factory=list, max_length=30)
    manual_steps: list[str] = Field(
        default_factory=list, max_length=20,
        description="What the plan cannot express as manifests (a person does these).",
    )
    planner: str = Field("", max_length=100, description="Who made the plan (filled in by us).")

    @property
    def namespaces(self) -> list[str]:
        return sorted({r.namespace for r in self.resources})
