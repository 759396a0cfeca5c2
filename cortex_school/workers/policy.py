"""The gate: what a generated change may contain before it is committed.

This system commits to the production GitOps repository what it read in a video, and
with an LLM backend a model writes the plan. So this module is the security
boundary, and it is an allowlist: every object must be of a kind the workers
generate (:data:`KINDS`, one row per kind with its rules) and every field that can
widen what runs or who may do what is checked against what is allowed, never
against a list of known-bad values. The proposal and the model are assumed hostile.

Order of the checks, per object: structure and names first (a ``../../etc`` name or a
unicode namespace never reaches a file path or a later rule), then the kind row,
then the kind's own rules, then the rules that read the whole change (what it
creates itself: ServiceAccounts, Roles, Services, Secrets it declares, the pods its
workloads run), then the system's own objects, the objects that already exist (in
the repository and, when one is configured, the live cluster), secret material in
every string (``detect-secrets``) and provenance.

Every finding names the object, the field path and the rule. ``action`` is
``refuse`` (the change is wrong) or ``review`` (a person must look: storage classes,
destructive jobs, downloaded code, disruption budgets over others' pods); either way
nothing is committed and the improvement goes to a person with all findings.

``audit=True`` is the lenient report for an existing repository (``policy check
--audit``): the Pod Security Standards restricted profile, RBAC, Service exposure,
NetworkPolicy widening and secret material, without the provenance, kind and
change-relative rules that only apply to what this system generates.

Every rule runs in time linear in the size of its input: regular expressions have
bounded repetition and start at literal anchors, strings above ``max_field_bytes``
are refused without being scanned.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel

from cortex_school.settings import PolicySettings
from cortex_school.workers.naming import DNS1123_LABEL

if TYPE_CHECKING:
    from detect_secrets.plugins.base import BasePlugin

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
ANNOTATION_PREFIX = "cortex-school.io"
# Labels generated objects may carry under reserved prefixes (the renderers' own).
ALLOWED_LABELS = frozenset({"app.kubernetes.io/name", MANAGED_BY_LABEL, "app.kubernetes.io/component"})
RESERVED_LABELS = frozenset({"app.kubernetes.io/instance", "app.kubernetes.io/part-of",
                             "argocd.argoproj.io/instance", "pod-security.kubernetes.io/enforce"})
IMPROVEMENT_ANNOTATION = "cortex-school.io/improvement-id"
# A companion names the existing object it serves (Kind/namespace/name); checked below.
COMPANION_ANNOTATION = "cortex-school.io/companion-of"
_COMPANION_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "Service", "CronJob"})
# The kinds that may be a companion: they reference what they serve, they never run pods.
_COMPANION_OF = frozenset({"PodDisruptionBudget", "HorizontalPodAutoscaler", "ScaledObject", "NetworkPolicy",
                           "ServiceMonitor", "Role", "RoleBinding"})
_IN_CLUSTER_URL = re.compile(r"https?://[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
                             r"\.svc(\.cluster\.local)?(:[0-9]{1,5})?/?")

Manifest = dict[str, Any]


class Violation(BaseModel):
    """One finding: which object, where in it, which rule, and why."""

    rule: str
    object: str  # Kind/namespace/name
    detail: str
    path: str = ""
    action: str = "refuse"  # refuse | review

    def __str__(self) -> str:
        where = f" at {self.path}" if self.path else ""
        return f"{self.object}{where}: {self.rule}: {self.detail}"


# -- the allowlist of kinds ------------------------------------------------------------

@dataclass(frozen=True)
class KindRule:
    """One generated kind: its API versions, scope, where its pod template is, and why
    the workers may generate it."""

    api_versions: tuple[str, ...]
    namespaced: bool
    generated_by: str
    pod_path: tuple[str, ...] | None = None
    top_keys: frozenset[str] = frozenset({"apiVersion", "kind", "metadata", "spec"})


_POD = ("spec", "template", "spec")
KINDS: dict[str, KindRule] = {
    "Deployment": KindRule(("apps/v1",), True, "architecture", _POD),
    "StatefulSet": KindRule(("apps/v1",), True, "architecture", _POD),
    "DaemonSet": KindRule(("apps/v1",), True, "architecture", _POD),
    "Job": KindRule(("batch/v1",), True, "database (migrations)", _POD),
    "CronJob": KindRule(("batch/v1",), True, "database (backups), security (rotation)",
                        ("spec", "jobTemplate", "spec", "template", "spec")),
    "ConfigMap": KindRule(("v1",), True, "architecture, monitoring (dashboards)",
                          top_keys=frozenset({"apiVersion", "kind", "metadata", "data"})),
    "PersistentVolumeClaim": KindRule(("v1",), True, "architecture, database"),
    "StorageClass": KindRule(("storage.k8s.io/v1",), False, "architecture (review only)",
                             top_keys=frozenset({"apiVersion", "kind", "metadata", "provisioner",
                                                 "parameters", "reclaimPolicy",
                                                 "volumeBindingMode", "allowVolumeExpansion"})),
    "PodDisruptionBudget": KindRule(("policy/v1",), True, "architecture"),
    "HorizontalPodAutoscaler": KindRule(("autoscaling/v2",), True, "architecture"),
    "ScaledObject": KindRule(("keda.sh/v1alpha1",), True, "architecture"),
    "Service": KindRule(("v1",), True, "integration, architecture (headless)"),
    "Ingress": KindRule(("networking.k8s.io/v1",), True, "integration"),
    "ExternalSecret": KindRule(("external-secrets.io/v1beta1", "external-secrets.io/v1"), True,
                               "integration"),
    "Role": KindRule(("rbac.authorization.k8s.io/v1",), True, "security",
                     top_keys=frozenset({"apiVersion", "kind", "metadata", "rules"})),
    "RoleBinding": KindRule(("rbac.authorization.k8s.io/v1",), True, "security",
                            top_keys=frozenset({"apiVersion", "kind", "metadata", "roleRef",
                                                "subjects"})),
    "ServiceAccount": KindRule(("v1",), True, "security",
                               top_keys=frozenset({"apiVersion", "kind", "metadata",
                                                   "automountServiceAccountToken"})),
    "NetworkPolicy": KindRule(("networking.k8s.io/v1",), True, "security"),
    "Certificate": KindRule(("cert-manager.io/v1",), True, "security"),
    "PrometheusRule": KindRule(("monitoring.coreos.com/v1",), True, "monitoring"),
    "VMRule": KindRule(("operator.victoriametrics.com/v1beta1",), True, "monitoring"),
    "ServiceMonitor": KindRule(("monitoring.coreos.com/v1",), True, "monitoring"),
    "Middleware": KindRule(("traefik.io/v1alpha1",), True, "integration"),
}
# Traefik router annotation attaching Middlewares to an Ingress (checked in ingress()).
MIDDLEWARES_ANNOTATION = "traefik.ingress.kubernetes.io/router.middlewares"
_REFERRER_POLICIES = frozenset({"no-referrer", "same-origin", "strict-origin", "strict-origin-when-cross-origin"})
# A Middleware's allowlisted types and, per type, the fields that may be generated.
_MIDDLEWARE_FIELDS: dict[str, frozenset[str]] = {
    "rateLimit": frozenset({"average", "burst", "period", "sourceCriterion"}),
    "inFlightReq": frozenset({"amount", "sourceCriterion"}),
    "headers": frozenset({"stsSeconds", "stsIncludeSubdomains", "frameDeny", "contentTypeNosniff",
                          "referrerPolicy"}),
    "compress": frozenset(),
    "redirectScheme": frozenset({"scheme", "permanent"}),
}
# Kinds that run pods, in any API (also those never generated: audit mode reads them).
POD_PATHS: dict[str, tuple[str, ...]] = {
    "Pod": ("spec",), "PodTemplate": ("template", "spec"),
    "ReplicaSet": _POD, "ReplicationController": _POD,
    **{k: r.pod_path for k, r in KINDS.items() if r.pod_path},
}
WORKLOAD_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"})

# -- Pod Security Standards, restricted (Kubernetes 1.31) -------------------------------
PSS_VOLUME_TYPES = frozenset({"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
                              "persistentVolumeClaim", "projected", "secret"})
# What the renderers mount; stricter than PSS (no CSI drivers, no inline ephemeral claims).
GENERATED_VOLUME_TYPES = frozenset({"configMap", "downwardAPI", "emptyDir",
                                    "persistentVolumeClaim", "projected", "secret"})
SAFE_SYSCTLS = frozenset({
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
})
SELINUX_TYPES = frozenset({"container_t", "container_init_t", "container_kvm_t",
                           "container_engine_t"})
ALLOWED_ADDED_CAPABILITIES = frozenset({"NET_BIND_SERVICE"})
# Pod and container fields the renderers produce (anything else — nodeName, tolerations,
# priorityClassName, hostAliases, runtimeClassName, … — is refused in a generated change).
POD_FIELDS = frozenset({"containers", "initContainers", "securityContext", "volumes",
                        "restartPolicy", "automountServiceAccountToken", "serviceAccountName",
                        "terminationGracePeriodSeconds", "enableServiceLinks"})
CONTAINER_FIELDS = frozenset({"name", "image", "imagePullPolicy", "command", "args", "env",
                              "envFrom", "ports", "resources", "securityContext", "volumeMounts",
                              "readinessProbe", "livenessProbe", "startupProbe", "workingDir"})
FLOATING_TAGS = frozenset({"latest", "stable", "main", "master", "edge", "nightly", "dev",
                           "develop", "head", "current", "release", "canary", "beta", "alpha",
                           "rolling", "lts", "unstable", "snapshot", "next", "trunk", "testing"})

# -- RBAC ------------------------------------------------------------------------------
RBAC_GROUPS = frozenset({"", "apps", "batch", "networking.k8s.io", "policy", "autoscaling",
                         "monitoring.coreos.com", "external-secrets.io", "cert-manager.io",
                         "coordination.k8s.io", "discovery.k8s.io", "events.k8s.io",
                         "metrics.k8s.io"})
RBAC_VERBS = frozenset({"get", "list", "watch", "create", "update", "patch", "delete"})
READ_VERBS = frozenset({"get", "list", "watch"})
SYSTEM_NAMESPACE_SENSITIVE = frozenset({"pods/log", "configmaps", "serviceaccounts", "roles",
                                        "rolebindings", "leases", "events", "*"})
DANGEROUS_SUBRESOURCES = frozenset({"exec", "attach", "portforward", "proxy", "token",
                                    "ephemeralcontainers"})
WORKLOAD_RESOURCES = frozenset({("", "pods"), ("", "replicationcontrollers"),
                                ("apps", "deployments"), ("apps", "statefulsets"),
                                ("apps", "daemonsets"), ("apps", "replicasets"),
                                ("batch", "jobs"), ("batch", "cronjobs")})

WORKLOAD_SPEC_FIELDS: dict[str, frozenset[str]] = {
    "Deployment": frozenset({"replicas", "revisionHistoryLimit", "selector", "template", "strategy"}),
    "StatefulSet": frozenset({"replicas", "serviceName", "selector", "template", "volumeClaimTemplates"}),
    "DaemonSet": frozenset({"selector", "template"}),
    "Job": frozenset({"backoffLimit", "ttlSecondsAfterFinished", "template"}),
    "CronJob": frozenset({"schedule", "concurrencyPolicy", "successfulJobsHistoryLimit",
                          "failedJobsHistoryLimit", "jobTemplate"}),
}
MAX_REPLICAS = 20
MAX_CPU = 8.0  # cores, per container limit
MAX_MEMORY = 32 * 2**30  # bytes, per container limit
# The only image a pod with a ServiceAccount token runs (the rotation job's kubectl).
TOKEN_IMAGES = frozenset({"bitnami/kubectl:1.31.4"})
_QUANTITY_UNITS = {"": 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
                   "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def _quantity(value: Any) -> float:
    """A Kubernetes quantity as a number (inf when it cannot be read: refused as too big)."""
    if value is None:
        return 0.0
    m = re.fullmatch(r"([0-9]{1,12}(?:\.[0-9]{1,6})?)(m|k|M|G|T|Ki|Mi|Gi|Ti)?", str(value))
    if not m:
        return float("inf")
    return float(m.group(1)) * _QUANTITY_UNITS[m.group(2) or ""]


# -- names -----------------------------------------------------------------------------
DNS1035_LABEL = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")
_LABEL_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")
_LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
_SERIES = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]{0,199}")
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_IMPROVEMENT_ID = re.compile(r"[0-9a-f]{16}")
MAX_KEYS = 256  # in any one mapping (ConfigMap data, labels, ...)
MAX_ITEMS = 500  # in any one list
MAX_NODES = 100_000  # fields of one object (aliases expanded): walks stop there


# -- context ---------------------------------------------------------------------------

@dataclass(frozen=True)
class SystemIdentity:
    """The system's own objects: off limits to every generated change.

    From the chart (its ``cortex.name``/``cortex.selector`` labels, the names it
    derives from the release) and, when a cluster is configured, the labels of the
    pods that really run there.
    """

    namespace: str = "cortex-system"
    name: str = "cortex-school"
    secrets: frozenset[str] = frozenset()
    # Label sets of the system's pods (from the live cluster); the chart's selector
    # labels always count.
    pod_labels: tuple[dict[str, str], ...] = ()

    @classmethod
    def from_policy(cls, policy: PolicySettings,
                    pod_labels: Iterable[dict[str, str]] = ()) -> "SystemIdentity":
        return cls(namespace=policy.system_namespace, name=policy.system_name,
                   secrets=frozenset(policy.system_secrets), pod_labels=tuple(pod_labels))

    def owns_name(self, name: str) -> bool:
        return name == self.name or name.startswith(f"{self.name}-") or name.endswith(
            f"-{self.name}") or name in self.secrets

    def selects(self, selector: dict[str, str], namespace: str | None) -> bool:
        """Whether a label selector (matchLabels) in ``namespace`` (None: any) can
        select one of the system's pods or Services."""
        if namespace is not None and namespace != self.namespace:
            return False
        chart = {"app.kubernetes.io/name": self.name}
        candidates = [*self.pod_labels, chart]
        for labels in candidates:
            # The chart's instance/component/part-of labels take any value.
            if all(labels.get(k) == v or (labels is chart and k in (
                    "app.kubernetes.io/instance", "app.kubernetes.io/component",
                    "app.kubernetes.io/part-of", "app.kubernetes.io/version", "helm.sh/chart"))
                    for k, v in selector.items()):
                return True
        return any(v == self.name and k.startswith("app.kubernetes.io/") for k, v in selector.items())


@dataclass(frozen=True)
class GateContext:
    """What the gate reads besides the change: settings, the system's identity, and what
    already exists (the repository at the synced revision, the live cluster)."""

    policy: PolicySettings
    system: SystemIdentity
    # (kind, namespace, name) already defined; namespace "" for cluster-scoped objects or
    # objects whose manifest names none (matched whatever namespace the change uses).
    existing: frozenset[tuple[str, str, str]] = frozenset()
    existing_secrets: frozenset[tuple[str, str]] = frozenset()
    existing_series: frozenset[str] = frozenset()
    existing_alerts: frozenset[str] = frozenset()
    existing_hosts: frozenset[str] = frozenset()  # Ingress hosts already routed
    # (namespace, "<template>-<statefulset>-") of the claims existing StatefulSets own.
    existing_claim_prefixes: frozenset[tuple[str, str]] = frozenset()
    # (kind, namespace, name) → spec.replicas of the repository's workloads (a companion's
    # disruption budget is judged against them).
    existing_replicas: Mapping[tuple[str, str, str], int] = field(default_factory=dict)
    # (kind, namespace, name) → the ServiceAccount an existing workload runs as ("default"
    # when it names none), and (namespace, account) → the workloads that run as it.
    existing_accounts: Mapping[tuple[str, str, str], str] = field(default_factory=dict)
    account_users: Mapping[tuple[str, str], frozenset[str]] = field(default_factory=dict)
    # (namespace, podSelector items) of the repository's NetworkPolicies that isolate ingress.
    existing_policies: frozenset[tuple[str, frozenset[tuple[str, str]]]] = frozenset()
    # (namespace, workload, its pod labels) of the workloads that already exist.
    existing_pods: frozenset[tuple[str, str, frozenset[tuple[str, str]]]] = frozenset()
    # (namespace, Service name, its selector items) of the Services that already exist.
    existing_selectors: frozenset[tuple[str, str, frozenset[tuple[str, str]]]] = frozenset()
    health_series: frozenset[str] = frozenset()
    # Asks the live cluster whether (kind, namespace, name) exists; None: no cluster.
    cluster_has: Callable[[str, str, str], bool] | None = None
    audit: bool = False

    @classmethod
    def default(cls, policy: PolicySettings | None = None, **kwargs: Any) -> "GateContext":
        policy = policy or PolicySettings()
        return cls(policy=policy, system=SystemIdentity.from_policy(policy), **kwargs)


def health_series(queries: Iterable[str]) -> frozenset[str]:
    """Every identifier the health queries read (metric names among them)."""
    return frozenset(m.group(0) for q in queries for m in _IDENT.finditer(q))


# -- helpers ---------------------------------------------------------------------------

def owned_secret_name(base: str, improvement_id: str) -> str:
    """The name of a Secret a change declares: its base and the improvement's id, so it can
    never be an existing Secret (the CA's key pair, another team's credentials) that a pod
    of the change would then read as "its own"."""
    return f"{base[:54].rstrip('-')}-{improvement_id[:8]}"


def _owned(name: str, improvement_id: Any) -> bool:
    return isinstance(improvement_id, str) and _IMPROVEMENT_ID.fullmatch(improvement_id) is not None \
        and name.endswith(f"-{improvement_id[:8]}")


def object_ref(manifest: Any) -> str:
    if not isinstance(manifest, dict):
        return "?"
    meta = manifest.get("metadata")
    meta = meta if isinstance(meta, dict) else {}
    ns, name = meta.get("namespace"), meta.get("name", "?")
    return f"{manifest.get('kind', '?')}/{str(ns)[:80] + '/' if ns else ''}{str(name)[:80]}"


def _dig(obj: Any, path: Iterable[str]) -> Any:
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _map(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _walk_strings(obj: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """(path, string) for every key and string value, iteratively (no recursion limit)."""
    stack: list[tuple[str, Any]] = [(path, obj)]
    budget = MAX_NODES
    while stack and budget > 0:
        budget -= 1
        where, value = stack.pop()
        if isinstance(value, str):
            yield where, value
        elif isinstance(value, dict):
            for k, v in value.items():
                yield f"{where}.{k}" if where else str(k), str(k)
                stack.append((f"{where}.{k}" if where else str(k), v))
        elif isinstance(value, list):
            for i, v in enumerate(value):
                stack.append((f"{where}[{i}]", v))


def image_registry(image: str) -> str:
    """``docker.io`` for short names; the first path part when it looks like a host."""
    first, sep, _ = image.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"


def image_allowed(image: str, allowed: Iterable[str]) -> bool:
    registry = image_registry(image)
    full = image if registry != "docker.io" or image.startswith("docker.io/") else (
        f"docker.io/{image if '/' in image else 'library/' + image}")
    return any(full == a or full.startswith(a.rstrip("/") + "/") for a in allowed)


_IMAGE_REF = re.compile(r"[a-z0-9][a-z0-9._/:-]{0,250}(@sha256:[a-f0-9]{64})?")


def image_pinned(image: str) -> bool:
    """A digest, or a version tag (with a digit) that is not a floating name."""
    if re.fullmatch(r"[^@]{1,255}@sha256:[a-f0-9]{64}", image):
        return True
    name = image.rsplit("/", 1)[-1]
    if ":" not in name:
        return False
    tag = name.split(":", 1)[1]
    return bool(re.search(r"[0-9]", tag)) and tag.lower() not in FLOATING_TAGS and not any(
        tag.lower().startswith(f"{f}-") or tag.lower().endswith(f"-{f}") for f in ("latest", "nightly", "edge"))


def _selector_labels(selector: Any) -> tuple[dict[str, str] | None, str]:
    """matchLabels of a LabelSelector, or None with why it cannot be reasoned about."""
    sel = _map(selector)
    if _list(sel.get("matchExpressions")):
        return None, "matchExpressions are never generated"
    labels = sel.get("matchLabels", {}) if "matchLabels" in sel or sel else {}
    if not isinstance(labels, dict):
        return None, "matchLabels is not a mapping"
    return {str(k): str(v) for k, v in labels.items()}, ""


# -- secret material -------------------------------------------------------------------

_SECRET_NAME_WORDS = re.compile(
    r"(?i)(passw(or)?d|passwd|pass(phrase)?$|^pass|_pass|pwd|secret|token|api_?key|apikey|"
    r"credential|private_?key|access_?key|auth_?(key|token|secret|pass)|authorization|bearer|"
    r"session_?key|signing_?key|cookie_?secret)")
_KEY_VALUE_LINE = re.compile(
    r"\s{0,40}(?:export\s{1,5})?[\"']?([A-Za-z0-9_.\-]{1,80})[\"']?\s{0,10}[:=]\s{0,10}[\"']?([^\"'\s,;]{0,200})")
_PLACEHOLDER = re.compile(r"^(\$\{[^}]{0,100}\}|\$\([^)]{0,100}\)|\$[A-Za-z_]\w{0,60}|<[^>]{0,100}>|\{\{.{0,100}\}\}|"
                          r"changeme|change-me|xxx+|\*+|none|null|true|false|\d{1,6}|\d{1,6}(ms|s|m|h|d)|"
                          r"[a-z][a-z0-9+.-]{0,20}://[^\s@:]{1,300}(:\d{1,5})?(/[^\s@]{0,300})?|)$", re.I)
_OWN_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("a bearer token", re.compile(r"(?i)\bbearer\s{1,5}[A-Za-z0-9._~+/=-]{12,}")),
    ("a GitHub fine-grained token", re.compile(r"\bgithub_pat_[A-Za-z0-9_]{20,}")),
    ("a GitHub token", re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}")),
    ("an API key", re.compile(r"\bsk-(?:live-|ant-|proj-)?[A-Za-z0-9_-]{16,}")),
    ("a private key", re.compile(r"-----BEGIN [A-Z ]{0,40}PRIVATE KEY( BLOCK)?-----")),
    ("a kubeconfig credential", re.compile(r"\b(client-key-data|client-certificate-data)\s{0,5}:")),
    ("credentials in a URL", re.compile(r"://[^/\s:@]{0,200}:[^/\s@]{3,200}@")),
    ("a credential parameter", re.compile(
        r"(?i)\b(password|passwd|pwd|secret|token|api_?key)\s{0,3}=\s{0,3}[\"']?(?![$<{*])[^\s\"'&;,)]{4,200}")),
    ("a credential on a command line", re.compile(
        r"(?i)--[a-z-]{0,30}(password|passwd|token|secret|api-key)[a-z-]{0,20}(=|\s{1,5})(?![$<{-])\S{4,200}")),
)


class SecretScanner:
    """detect-secrets' plugins (their regexes, keywords and Shannon entropy) over every
    string, plus key/value lines (``.env``, JSON, YAML, env literals) whose key names a
    credential. Linear in the input: per line, bounded patterns."""

    # High-entropy tokens: long runs of base64/hex characters mixing letters and digits.
    _TOKEN = re.compile(r"[A-Za-z0-9+/_=-]{24,512}")
    _NOISY = frozenset({"Base64HighEntropyString", "HexHighEntropyString", "IPPublicDetector"})

    def __init__(self) -> None:
        from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
        from detect_secrets.plugins.high_entropy_strings import Base64HighEntropyString

        # detect-secrets declares the values with an unbound TypeVar; they are plugin classes.
        plugin_classes: Mapping[str, type[BasePlugin]] = get_mapping_from_secret_type_to_class()
        self._plugins = sorted(c.__name__ for c in plugin_classes.values()
                               if c.__name__ not in self._NOISY)
        self._entropy = Base64HighEntropyString().calculate_shannon_entropy

    def _settings(self) -> Any:
        from detect_secrets.settings import transient_settings

        return transient_settings({"plugins_used": [{"name": n} for n in self._plugins]})

    def findings(self, strings: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
        """(path, what) for each string that carries secret material (first hit per string)."""
        from detect_secrets.core.scan import scan_line

        out: list[tuple[str, str]] = []
        with self._settings():
            for path, text in strings:
                what = self._own(text) or self._library(scan_line, text) or self._entropic(text)
                if what:
                    out.append((path, what))
        return out

    def _own(self, text: str) -> str | None:
        for label, pattern in _OWN_PATTERNS:
            if pattern.search(text):
                return label
        if "kind: Config" in text and "users:" in text and ("token:" in text or "password:" in text):
            return "a kubeconfig with credentials"
        for line in text.splitlines()[:5000]:
            m = _KEY_VALUE_LINE.match(line)
            if m and m.group(2) and _SECRET_NAME_WORDS.search(m.group(1)) and \
                    not _PLACEHOLDER.match(m.group(2)) and len(m.group(2)) >= 4:
                return f"a literal value for {m.group(1)[:60]!r}"
        return None

    @staticmethod
    def _library(scan_line: Any, text: str) -> str | None:
        for line in text.splitlines()[:5000] or [text]:
            for hit in scan_line(line[:20000]):
                return f"a {hit.type} (detect-secrets)"
        return None

    def _entropic(self, text: str) -> str | None:
        for m in self._TOKEN.finditer(text.replace("/", " ")):  # path segments, not paths
            token = m.group(0)
            if not (re.search(r"[0-9]", token) and re.search(r"[A-Za-z]", token)):
                continue
            if re.fullmatch(r"[a-f0-9]{64}", token):  # a sha256 digest is not a secret
                continue
            if re.search(r"[A-Z]", token) and re.search(r"[a-z]", token) and \
                    self._entropy(token) > 4.3:
                return "a high-entropy string (detect-secrets Shannon entropy)"
        return None


_SCANNER: SecretScanner | None = None
_OUR_ANNOTATIONS = frozenset(f"metadata.annotations.cortex-school.io/{k}"
                             for k in ("improvement-id", "source-video", "source-url"))


def scanner() -> SecretScanner:
    global _SCANNER
    if _SCANNER is None:
        _SCANNER = SecretScanner()
    return _SCANNER


# -- review-only content ---------------------------------------------------------------

_DESTRUCTIVE = re.compile(
    r"(?i)\b(drop\W{1,10}(database|table|schema|owned|role|user|collection|index)\b|"
    r"truncate\W{1,10}(table\W{1,10})?\w|truncate\s{1,5}-s|"
    r"delete\W{1,10}from\b|dropdb\b|flushall\b|flushdb\b|drop(database|collection)\s{0,3}\(|"
    r"delete_?many\s{0,3}\(|rm\s{1,10}(-{1,2}[a-z-]{0,20}\s{1,10}){0,4}(-[a-z]{0,10}r|--recursive)|"
    r"kubectl\b[^\n;|&]{0,300}\bdelete\b|find\b[^\n;|&]{0,300}\s-delete\b|mkfs\b|dd\s{1,10}if=|"
    r"mc\s{1,10}rm\b|aws\s{1,10}s3\s{1,10}rm\b|gsutil\s{1,10}(-m\s{1,5})?rm\b)|"
    r"(-X|--request)\s{0,5}['\"]?DELETE\b")
_REMOTE_CODE = re.compile(
    r"(?i)\b(curl|wget|fetch)\b[^|\n]{0,500}\|\s{0,10}(sudo\s{1,5})?(/?[\w.-]{0,40}/){0,4}"
    r"(busybox\s{1,5})?(ba|z|k|da|a)?sh\b|"
    r"\b(curl|wget)\b[^\n]{0,500}(&&|;|\|\|)\s{0,5}(/?[\w.-]{0,40}/){0,4}(ba|z|da)?sh\s{1,5}\S|"
    r"\b(exec|eval)\s{0,3}\([^\n]{0,300}(urlopen|urllib|requests\.get|http\.client|fetch\()|"
    r"\b(curl|wget)\b[^|\n]{0,500}\|\s{0,10}(sudo\s{1,5})?(python[0-9.]{0,4}|perl|ruby|node|php)\b|"
    r"\b(ba|z)?sh\s{0,5}<\(\s{0,5}(curl|wget)\b|\$\(\s{0,5}(curl|wget)\b|`\s{0,5}(curl|wget)\b|"
    r"\b(curl|wget)\b[^\n]{0,500}(-o|-O|--output)\s{0,5}\S{1,200}\s{0,5}(&&|;)\s{0,5}(ba|z)?sh\b")


def _commands(manifest: Manifest) -> Iterator[tuple[str, str]]:
    """Each container's command and args as the one command line they run."""
    kind = manifest.get("kind")
    if kind not in POD_PATHS:
        return
    spec = _dig(manifest, POD_PATHS[kind])
    if not isinstance(spec, dict):
        return
    for section in ("initContainers", "containers", "ephemeralContainers"):
        for i, c in enumerate(_list(spec.get(section))):
            words = [str(w) for w in (*_list(_map(c).get("command")), *_list(_map(c).get("args")))]
            if words:
                yield f"{'.'.join(POD_PATHS[kind])}.{section}[{i}].command", " ".join(words)


# -- the gate --------------------------------------------------------------------------

T = TypeVar("T")


def _record_of(records: Mapping[tuple[str, str, str], T], key: tuple[str, str, str]) -> T | None:
    """The repository's record of (kind, namespace, name), or of the same kind and name in a
    manifest that names no namespace (applied in whatever namespace its Application sets)."""
    found = records.get(key)
    return found if found is not None else records.get((key[0], "", key[2]))


def autoscaler_floor(obj: dict[str, Any]) -> tuple[str, str, str, int] | None:
    """(target kind, namespace, target name, fewest replicas) of an HPA or KEDA
    ScaledObject: the count a disruption budget over that workload must be judged at."""
    kind = obj.get("kind")
    if kind not in ("HorizontalPodAutoscaler", "ScaledObject"):
        return None
    meta, spec = _map(obj.get("metadata")), _map(obj.get("spec"))
    ref = _map(spec.get("scaleTargetRef"))
    key, default = ("minReplicas", 1) if kind == "HorizontalPodAutoscaler" else ("minReplicaCount", 0)
    low = spec.get(key, default)
    if not isinstance(low, int) or isinstance(low, bool) or not ref.get("name"):
        return None
    return (str(ref.get("kind") or "Deployment"), str(meta.get("namespace") or ""), str(ref["name"]), low)


@dataclass
class _Change:
    """What the change creates itself (change-relative rules read this)."""

    service_accounts: set[tuple[str, str]] = field(default_factory=set)
    roles: set[tuple[str, str]] = field(default_factory=set)
    services: set[tuple[str, str]] = field(default_factory=set)
    configmaps: set[tuple[str, str]] = field(default_factory=set)
    claims: set[tuple[str, str]] = field(default_factory=set)
    secrets: set[tuple[str, str]] = field(default_factory=set)  # declared (ExternalSecret/Certificate)
    pod_labels: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    workload_selectors: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    workloads: set[tuple[str, str, str]] = field(default_factory=set)  # (kind, namespace, name)
    bound: set[tuple[str, str]] = field(default_factory=set)  # SAs bound to the change's own Roles
    improvement_ids: set[str] = field(default_factory=set)
    ingress_hosts: set[tuple[str, str]] = field(default_factory=set)
    middlewares: set[tuple[str, str]] = field(default_factory=set)  # (namespace, name)
    # (kind, namespace, name) → the fewest replicas the change's autoscalers allow it
    floors: dict[tuple[str, str, str], int] = field(default_factory=dict)

    @classmethod
    def of(cls, manifests: list[Manifest]) -> "_Change":
        c = cls()
        for m in manifests:
            kind, meta = m.get("kind"), _map(m.get("metadata"))
            ns, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
            ident = _map(meta.get("annotations")).get(IMPROVEMENT_ANNOTATION)
            if isinstance(ident, str):
                c.improvement_ids.add(ident)
            if kind == "ServiceAccount":
                c.service_accounts.add((ns, name))
            elif kind == "Role":
                c.roles.add((ns, name))
            elif kind == "Service":
                c.services.add((ns, name))
            elif kind == "ConfigMap":
                c.configmaps.add((ns, name))
            elif kind == "Middleware":
                c.middlewares.add((ns, name))
            elif kind == "PersistentVolumeClaim":
                c.claims.add((ns, name))
            elif kind == "Ingress":
                for rule in _list(_dig(m, ("spec", "rules"))):
                    if isinstance(_map(rule).get("host"), str):
                        c.ingress_hosts.add((ns, _map(rule)["host"]))
            elif kind == "ExternalSecret":
                target = str(_map(_dig(m, ("spec", "target"))).get("name") or name)
                if _owned(target, ident):
                    c.secrets.add((ns, target))
            elif kind == "Certificate":
                secret = _dig(m, ("spec", "secretName"))
                if isinstance(secret, str) and _owned(secret, ident):
                    c.secrets.add((ns, secret))
            floor = autoscaler_floor(m)
            if floor is not None:
                key = floor[:3]
                c.floors[key] = min(c.floors.get(key, floor[3]), floor[3])
            if kind in POD_PATHS:
                labels = _dig(m, [*POD_PATHS[kind][:-1], "metadata", "labels"])
                if isinstance(labels, dict):
                    c.pod_labels.append((ns, {str(k): str(v) for k, v in labels.items()}))
                selector, _ = _selector_labels(_dig(m, ("spec", "selector")))
                if selector and kind != "CronJob" and kind != "Job":
                    c.workload_selectors.append((ns, selector))
                c.workloads.add((str(kind), ns, name))
                # A StatefulSet's claims come from its volumeClaimTemplates (named
                # <template>-<pod>); a pod's `volumes` may only name PVC objects of the change.
        for m in manifests:
            if m.get("kind") == "RoleBinding":
                ns = str(_map(m.get("metadata")).get("namespace") or "")
                ref = _map(m.get("roleRef"))
                if ref.get("kind") == "Role" and (ns, ref.get("name")) in c.roles:
                    for s in _list(m.get("subjects")):
                        s = _map(s)
                        if s.get("kind") == "ServiceAccount":
                            c.bound.add((str(s.get("namespace") or ns), str(s.get("name"))))
        return c

    def selects_own_pods(self, selector: dict[str, str], ns: str) -> bool:
        """Whether ``selector`` selects pods of this change and only those: it matches one of
        its workloads' pods and is at least as specific as that workload's own selector
        (``managed-by: cortex-school`` alone would select every improvement's pods)."""
        return bool(selector) and any(
            wns == ns and wsel.items() <= selector.items() for wns, wsel in self.workload_selectors
        ) and any(pns == ns and selector.items() <= labels.items() for pns, labels in self.pod_labels)


class _Checker:
    def __init__(self, manifest: Manifest, ctx: GateContext, change: _Change,
                 found: list[Violation]) -> None:
        self.m = manifest
        self.ctx = ctx
        self.policy = ctx.policy
        self.change = change
        self.found = found
        self.ref = object_ref(manifest)
        self.kind = str(manifest.get("kind", ""))
        self.meta = _map(manifest.get("metadata"))
        self.ns = str(self.meta.get("namespace") or "")
        self.name = str(self.meta.get("name") or "")
        self.serves: tuple[str, str, str] | None = None  # the existing object a companion serves

    def add(self, rule: str, path: str, detail: str, action: str = "refuse") -> None:
        self.found.append(Violation(rule=rule, object=self.ref, path=path, detail=detail,
                                    action=action))

    @property
    def generated(self) -> bool:
        return not self.ctx.audit

    # The system's own objects are off limits to generated changes; an audited repository
    # (the chart itself, say) may hold them.
    def sys_selects(self, labels: dict[str, str], namespace: str | None) -> bool:
        return self.generated and self.ctx.system.selects(labels, namespace)

    def sys_owns(self, name: str) -> bool:
        return self.generated and self.ctx.system.owns_name(name)

    # structure, names, kind, namespace ---------------------------------------------
    def structure(self) -> bool:
        """False when the object cannot be reasoned about further."""
        if not isinstance(self.m.get("kind"), str) or not isinstance(self.m.get("apiVersion"), str):
            self.add("malformed", "kind", "an object needs a string kind and apiVersion")
            return False
        if not isinstance(self.m.get("metadata"), dict):
            self.add("malformed", "metadata", "metadata is not a mapping")
            return False
        ok = True
        name = self.meta.get("name")
        dns = DNS1035_LABEL if self.kind == "Service" else DNS1123_LABEL
        if not isinstance(name, str) or not dns.fullmatch(name):
            self.add("name", "metadata.name", f"{str(name)[:80]!r} is not a valid "
                     f"{'DNS-1035' if dns is DNS1035_LABEL else 'DNS-1123'} name")
            ok = False
        ns = self.meta.get("namespace")
        if ns is not None and (not isinstance(ns, str) or not DNS1123_LABEL.fullmatch(ns)):
            self.add("name", "metadata.namespace", f"{str(ns)[:80]!r} is not a valid namespace name")
            ok = False
        for section in ("labels", "annotations"):
            values = self.meta.get(section)
            if values is None:
                continue
            if not isinstance(values, dict):
                self.add("malformed", f"metadata.{section}", f"{section} is not a mapping")
                ok = False
                continue
            for k, v in values.items():
                if not isinstance(k, str) or not _label_key(k):
                    self.add("name", f"metadata.{section}", f"{str(k)[:80]!r} is not a valid key")
                    ok = False
                elif section == "labels" and (not isinstance(v, str) or not _LABEL_VALUE.fullmatch(v)):
                    self.add("name", f"metadata.labels.{k}", f"{str(v)[:80]!r} is not a valid label value")
                    ok = False
                elif section == "annotations" and not isinstance(v, str):
                    self.add("malformed", f"metadata.annotations.{k}", "annotation values are strings")
                    ok = False
        if self.generated:
            extra = set(self.meta) - {"name", "namespace", "labels", "annotations"}
            if extra:
                self.add("malformed", "metadata", f"fields never generated: {', '.join(sorted(map(str, extra)))}")
            self.metadata_keys(self.meta, "metadata")
        return ok

    def metadata_keys(self, meta: dict[str, Any], where: str) -> None:
        """Annotations are ours only (ArgoCD sync options and hooks, Helm hooks, ingress
        controller snippets and priorities all live there); labels may not claim a
        reserved prefix or another tool's tracking."""
        for key in _map(meta.get("annotations")):
            if key == MIDDLEWARES_ANNOTATION and self.kind == "Ingress" and where == "metadata":
                continue  # the change's own Middlewares only: checked in ingress()
            if not str(key).startswith(f"{ANNOTATION_PREFIX}/"):
                self.add("name", f"{where}.annotations.{key}", f"annotation {str(key)[:80]!r} is "
                         "never generated (only cortex-school.io/*)")
        for key in _map(meta.get("labels")):
            k = str(key)
            prefix = k.rpartition("/")[0]
            if k in RESERVED_LABELS or prefix.endswith(("kubernetes.io", "k8s.io", "argoproj.io",
                                                        "helm.sh")) and k not in ALLOWED_LABELS:
                self.add("name", f"{where}.labels.{k}", f"label {k[:80]!r} belongs to another "
                         "tool (tracking, hooks, reserved prefixes)")

    def kind_row(self) -> KindRule | None:
        rule = KINDS.get(self.kind)
        if rule is None:
            if self.kind == "Secret":
                self.add("secret-object", "kind", "no Secret objects: a secret store "
                         "(ExternalSecret) holds values, and even a data-less "
                         "service-account-token Secret mints a token")
            elif self.generated:
                self.add("kind", "kind", f"{self.kind} is not a kind the workers generate "
                         f"(allowed: {', '.join(sorted(KINDS))})")
            return None
        if self.m.get("apiVersion") not in rule.api_versions:
            self.add("kind", "apiVersion", f"{self.m.get('apiVersion')!r} is not an allowed API "
                     f"version of {self.kind} ({', '.join(rule.api_versions)})")
        if self.generated:
            extra = set(self.m) - rule.top_keys
            if extra:
                self.add("malformed", "", f"top-level fields never generated for {self.kind}: "
                         f"{', '.join(sorted(map(str, extra)))}")
        return rule

    def namespace(self, rule: KindRule) -> None:
        if not rule.namespaced:
            if "namespace" in self.meta:
                self.add("namespace", "metadata.namespace", f"{self.kind} is cluster-scoped")
            return
        if not self.ns:
            self.add("namespace", "metadata.namespace",
                     "no namespace: it would land wherever the sync defaults to")
        elif self.ns not in self.policy.allowed_namespaces:
            self.add("namespace", "metadata.namespace", f"namespace {self.ns!r} is not in the "
                     f"allowlist ({', '.join(self.policy.allowed_namespaces)})")

    # the system and what exists ----------------------------------------------------
    def system_and_ownership(self, rule: KindRule | None) -> None:
        system = self.ctx.system
        if self.sys_owns(self.name):
            self.add("system-object", "metadata.name", f"{self.name!r} is (or shadows) one of "
                     f"the system's own objects ({system.name}*)")
        ns = self.ns if (rule is None or rule.namespaced) else ""
        if self.kind == "PersistentVolumeClaim" and any(
                pns in (self.ns, "") and self.name.startswith(prefix)
                for pns, prefix in self.ctx.existing_claim_prefixes):
            self.add("ownership", "metadata.name", f"{self.name} is the claim of an existing "
                     "StatefulSet (its data would be mounted by this change)")
        existing = self.ctx.existing
        if (self.kind, ns, self.name) in existing or (ns and (self.kind, "", self.name) in existing):
            self.add("ownership", "metadata.name", f"{self.kind} {self.name} already exists in the "
                     "GitOps repository; cortex-school does not take over objects it did not create")
        elif self.ctx.cluster_has is not None:
            try:
                live = self.ctx.cluster_has(self.kind, ns, self.name)
            except Exception as exc:  # noqa: BLE001 - any failure to ask is a finding, not a pass
                self.add("ownership", "metadata.name", f"the cluster could not be asked whether "
                         f"{self.kind} {self.name} exists: {type(exc).__name__}: {str(exc)[:160]}")
                return
            if live:
                self.add("ownership", "metadata.name", f"{self.kind} {self.name} already exists in "
                         "the cluster; cortex-school does not take over objects it did not create")

    def provenance(self) -> None:
        if _map(self.meta.get("labels")).get(MANAGED_BY_LABEL) != "cortex-school":
            self.add("provenance", f"metadata.labels.{MANAGED_BY_LABEL}",
                     f"missing label {MANAGED_BY_LABEL}: cortex-school")
        ident = _map(self.meta.get("annotations")).get(IMPROVEMENT_ANNOTATION)
        label = _map(self.meta.get("labels")).get(IMPROVEMENT_ANNOTATION, ident)
        if not ident:
            self.add("provenance", f"metadata.annotations.{IMPROVEMENT_ANNOTATION}",
                     f"missing annotation {IMPROVEMENT_ANNOTATION}")
        elif not _IMPROVEMENT_ID.fullmatch(str(ident)) or label != ident:
            self.add("provenance", f"metadata.annotations.{IMPROVEMENT_ANNOTATION}",
                     f"{str(ident)[:40]!r} is not this change's improvement id (16 hex digits, "
                     "the same on label and annotation)")
        elif self.change.improvement_ids - {ident}:
            self.add("provenance", f"metadata.annotations.{IMPROVEMENT_ANNOTATION}",
                     "one change carries the ids of several improvements: "
                     f"{', '.join(sorted(self.change.improvement_ids))[:200]}")

    def shape(self) -> None:
        """No mapping, list or object larger than anything the renderers make."""
        stack: list[tuple[str, Any]] = [("", self.m)]
        total, nodes = 0, 0
        while stack:
            where, value = stack.pop()
            nodes += 1
            if nodes > MAX_NODES:
                self.add("size", "", f"more than {MAX_NODES} fields (shared YAML aliases?)")
                return
            if isinstance(value, dict):
                if len(value) > MAX_KEYS:
                    self.add("size", where, f"{len(value)} keys (limit {MAX_KEYS})")
                    continue
                stack += [(f"{where}.{k}" if where else str(k), v) for k, v in value.items()]
            elif isinstance(value, list):
                if len(value) > MAX_ITEMS:
                    self.add("size", where, f"{len(value)} items (limit {MAX_ITEMS})")
                    continue
                stack += [(f"{where}[{i}]", v) for i, v in enumerate(value)]
            elif isinstance(value, str):
                total += len(value)
        if total > 4 * self.policy.max_field_bytes:
            self.add("size", "", f"{total} characters of text in one object "
                     f"(limit {4 * self.policy.max_field_bytes})")

    def strings(self) -> None:
        """Size, secret material, and review-only content in every string."""
        limit = self.policy.max_field_bytes
        scan: list[tuple[str, str]] = []
        review_text: list[tuple[str, str]] = []
        for path, text in _walk_strings(self.m):
            if len(text.encode("utf-8", "surrogatepass")) > limit:
                self.add("size", path, f"a string of {len(text)} characters (limit {limit} bytes)")
                continue
            if path.endswith(".image") or path in _OUR_ANNOTATIONS:
                continue  # images are checked by their own rules; ids and URLs are ours
            scan.append((path, text))
            if not path.startswith("metadata."):
                review_text.append((path, text))
        if self.kind == "ConfigMap":
            for key, value in _map(self.m.get("data")).items():
                if isinstance(value, str) and _SECRET_NAME_WORDS.search(str(key)) and \
                        len(value) >= 4 and not _PLACEHOLDER.match(value) and "\n" not in value:
                    self.add("secret-value", f"data.{key}", f"{str(key)[:60]} holds a literal value; "
                             "credentials come from an ExternalSecret")
        for path, what in scanner().findings(scan):
            self.add("secret-value", path, f"looks like {what}; secrets never go in manifests")
        if not self.generated and self.kind not in ("ConfigMap", "Job", "CronJob"):
            return
        for path, value in _commands(self.m):
            review_text.append((path, value))
        for path, text in review_text:
            if _REMOTE_CODE.search(text):
                self.add("remote-code", path, "downloads code and runs it", "review")
            if self.kind in ("Job", "CronJob", "ConfigMap") or self.kind in POD_PATHS:
                if m := _DESTRUCTIVE.search(text):
                    self.add("destructive", path, f"destructive command {m.group(0)[:60]!r}",
                             "review")

    # pods --------------------------------------------------------------------------
    def pod(self, path: tuple[str, ...]) -> None:
        spec = _dig(self.m, path)
        base = ".".join(path)
        if not isinstance(spec, dict):
            self.add("malformed", base, "no pod spec")
            return
        self.lists(spec, base, ("containers", "initContainers", "ephemeralContainers", "volumes",
                                "imagePullSecrets"))
        template_meta = _map(_dig(self.m, [*path[:-1], "metadata"]))
        self.pss(spec, base, _map(template_meta.get("annotations")))
        if self.generated:
            self.pod_generated(spec, base)
            tpath = ".".join([*path[:-1], "metadata"])
            if set(template_meta) - {"labels", "annotations"}:
                self.add("pod-security", tpath, "pod template metadata never carries "
                         f"{', '.join(sorted(map(str, set(template_meta) - {'labels', 'annotations'})))}")
            self.metadata_keys(template_meta, tpath)
            self.workload_spec()

    def pss(self, spec: dict[str, Any], base: str, annotations: dict[str, Any]) -> None:
        """The Pod Security Standards restricted profile (baseline included)."""
        for host in ("hostNetwork", "hostPID", "hostIPC"):
            if spec.get(host):
                self.add("pod-security", f"{base}.{host}", f"{host}: true shares a host namespace")
        psc = _map(spec.get("securityContext"))
        self._windows(psc, f"{base}.securityContext")
        self._selinux(psc, f"{base}.securityContext")
        for sysctl in _list(psc.get("sysctls")):
            name = _map(sysctl).get("name")
            if name not in SAFE_SYSCTLS:
                self.add("pod-security", f"{base}.securityContext.sysctls",
                         f"sysctl {str(name)[:80]!r} is not in the safe set")
        pod_seccomp = _map(psc.get("seccompProfile")).get("type")
        if pod_seccomp is not None and pod_seccomp not in ("RuntimeDefault", "Localhost"):
            self.add("pod-security", f"{base}.securityContext.seccompProfile.type",
                     f"seccomp {pod_seccomp!r}: RuntimeDefault or Localhost required")
        self._apparmor(psc, f"{base}.securityContext")
        for key, value in annotations.items():
            if str(key).startswith("container.apparmor.security.beta.kubernetes.io/") and not (
                    value == "runtime/default" or str(value).startswith("localhost/")):
                self.add("pod-security", f"metadata.annotations.{key}", f"AppArmor {value!r}")
            if str(key).startswith(("seccomp.security.alpha.kubernetes.io/",
                                    "container.seccomp.security.alpha.kubernetes.io/")) and \
                    value not in ("runtime/default", "docker/default") and not str(value).startswith("localhost/"):
                self.add("pod-security", f"metadata.annotations.{key}", f"seccomp {value!r}")
        for key in ("runAsUser", "runAsGroup", "fsGroup"):
            if psc.get(key) == 0:
                self.add("pod-security", f"{base}.securityContext.{key}", f"{key}: 0 (root)")
        if 0 in _list(psc.get("supplementalGroups")):
            self.add("pod-security", f"{base}.securityContext.supplementalGroups", "root group")
        volume_types = PSS_VOLUME_TYPES if self.ctx.audit else GENERATED_VOLUME_TYPES
        for i, volume in enumerate(_list(spec.get("volumes"))):
            types = set(_map(volume)) - {"name"}
            bad = types - volume_types
            if bad or not types:
                self.add("pod-security", f"{base}.volumes[{i}]", f"volume type "
                         f"{', '.join(sorted(map(str, bad))) or 'none'} is not allowed "
                         f"({', '.join(sorted(volume_types))})")
        containers = self._containers(spec, base)
        if not containers:
            self.add("malformed", f"{base}.containers", "no containers")
        pod_nonroot = psc.get("runAsNonRoot") is True
        for cpath, c in containers:
            csc = _map(c.get("securityContext"))
            where = f"{cpath}.securityContext"
            if csc.get("privileged"):
                self.add("pod-security", f"{where}.privileged", "privileged container")
            if csc.get("allowPrivilegeEscalation") is not False:
                self.add("pod-security", f"{where}.allowPrivilegeEscalation",
                         "allowPrivilegeEscalation must be false")
            nonroot = csc.get("runAsNonRoot", psc.get("runAsNonRoot"))
            if nonroot is not True and not (pod_nonroot and "runAsNonRoot" not in csc):
                self.add("pod-security", f"{where}.runAsNonRoot", "runAsNonRoot must be true")
            for key in ("runAsUser", "runAsGroup"):
                if csc.get(key) == 0:
                    self.add("pod-security", f"{where}.{key}", f"{key}: 0 (root)")
            seccomp = _map(csc.get("seccompProfile")).get("type", pod_seccomp)
            if seccomp not in ("RuntimeDefault", "Localhost"):
                self.add("pod-security", f"{where}.seccompProfile.type",
                         f"seccomp {seccomp!r}: RuntimeDefault or Localhost required")
            self._apparmor(csc, where)
            self._windows(csc, where)
            self._selinux(csc, where)
            if csc.get("procMount") not in (None, "Default"):
                self.add("pod-security", f"{where}.procMount", f"procMount {csc.get('procMount')!r}")
            caps = _map(csc.get("capabilities"))
            if "ALL" not in _list(caps.get("drop")):
                self.add("pod-security", f"{where}.capabilities.drop", "capabilities must drop ALL")
            added = {str(a) for a in _list(caps.get("add"))} - ALLOWED_ADDED_CAPABILITIES
            if added:
                self.add("pod-security", f"{where}.capabilities.add",
                         f"adds {', '.join(sorted(added))} (only NET_BIND_SERVICE)")
            for j, port in enumerate(_list(c.get("ports"))):
                if _map(port).get("hostPort"):
                    self.add("pod-security", f"{cpath}.ports[{j}].hostPort", "binds a host port")

    def _containers(self, spec: dict[str, Any], base: str) -> list[tuple[str, dict[str, Any]]]:
        out = []
        for section in ("initContainers", "containers", "ephemeralContainers"):
            for i, c in enumerate(_list(spec.get(section))):
                if isinstance(c, dict):
                    out.append((f"{base}.{section}[{i}]", c))
                else:
                    self.add("malformed", f"{base}.{section}[{i}]", "a container that is not a mapping")
        return out

    def _apparmor(self, sc: dict[str, Any], where: str) -> None:
        kind = _map(sc.get("appArmorProfile")).get("type")
        if kind is not None and kind not in ("RuntimeDefault", "Localhost"):
            self.add("pod-security", f"{where}.appArmorProfile.type", f"AppArmor {kind!r}")

    def _windows(self, sc: dict[str, Any], where: str) -> None:
        if _map(sc.get("windowsOptions")).get("hostProcess"):
            self.add("pod-security", f"{where}.windowsOptions.hostProcess", "Windows hostProcess")

    def _selinux(self, sc: dict[str, Any], where: str) -> None:
        opts = _map(sc.get("seLinuxOptions"))
        if opts.get("type") not in (None, "", *SELINUX_TYPES):
            self.add("pod-security", f"{where}.seLinuxOptions.type", f"SELinux type {opts.get('type')!r}")
        for key in ("user", "role"):
            if opts.get(key):
                self.add("pod-security", f"{where}.seLinuxOptions.{key}", f"SELinux {key} set")

    def pod_generated(self, spec: dict[str, Any], base: str) -> None:
        """Beyond PSS, for generated pods: fields, identity, images, resources, references."""
        extra = set(spec) - POD_FIELDS
        if extra:
            self.add("pod-security", base, f"pod fields never generated: {', '.join(sorted(map(str, extra)))}")
        for i, ref in enumerate(_list(spec.get("imagePullSecrets"))):
            self._secret_ref(str(_map(ref).get("name")), f"{base}.imagePullSecrets[{i}].name")
        sa = spec.get("serviceAccountName") or spec.get("serviceAccount")
        own_sa = sa is not None and (self.ns, str(sa)) in self.change.service_accounts
        if sa is not None and not own_sa:
            self.add("service-account", f"{base}.serviceAccountName",
                     f"runs as ServiceAccount {str(sa)[:80]!r}, which this change does not create")
        if spec.get("automountServiceAccountToken") is not False:
            if not (own_sa and (self.ns, str(sa)) in self.change.bound):
                self.add("service-account", f"{base}.automountServiceAccountToken",
                         "mounts a ServiceAccount token; only a ServiceAccount this change creates "
                         "and binds to its own Role may have one")
            images = {str(_map(c).get("image")) for _, c in self._containers(spec, base)}
            if images - TOKEN_IMAGES:
                self.add("service-account", f"{base}.automountServiceAccountToken",
                         f"a pod holding a token runs only {', '.join(sorted(TOKEN_IMAGES))} "
                         f"(not {', '.join(sorted(images - TOKEN_IMAGES))[:120]})")
        psc = _map(spec.get("securityContext"))
        extra = set(psc) - {"runAsNonRoot", "runAsUser", "runAsGroup", "fsGroup", "seccompProfile"}
        if extra:
            self.add("pod-security", f"{base}.securityContext", f"fields never generated: "
                     f"{', '.join(sorted(map(str, extra)))}")
        if _map(psc.get("seccompProfile")).get("type") not in (None, "RuntimeDefault"):
            self.add("pod-security", f"{base}.securityContext.seccompProfile", "generated pods use "
                     "the RuntimeDefault seccomp profile")
        grace = spec.get("terminationGracePeriodSeconds")
        if grace is not None and (not isinstance(grace, int) or grace > 300):
            self.add("pod-security", f"{base}.terminationGracePeriodSeconds", "at most 300 s")
        for i, volume in enumerate(_list(spec.get("volumes"))):
            empty = _map(_map(volume).get("emptyDir"))
            if "emptyDir" in _map(volume) and (empty.get("medium") or "sizeLimit" not in empty):
                self.add("pod-security", f"{base}.volumes[{i}].emptyDir", "an emptyDir is on disk "
                         "with a sizeLimit")
        for i, volume in enumerate(_list(spec.get("volumes"))):
            self._volume_refs(_map(volume), f"{base}.volumes[{i}]")
        for cpath, c in self._containers(spec, base):
            self._container(c, cpath)

    def _volume_refs(self, volume: dict[str, Any], where: str) -> None:
        if "secret" in volume:
            self._secret_ref(str(_map(volume["secret"]).get("secretName")), f"{where}.secret.secretName")
        if "configMap" in volume:
            self._own(self.change.configmaps, _map(volume["configMap"]).get("name"), "ConfigMap",
                      f"{where}.configMap.name")
        if "persistentVolumeClaim" in volume:
            self._own(self.change.claims, _map(volume["persistentVolumeClaim"]).get("claimName"),
                      "PersistentVolumeClaim", f"{where}.persistentVolumeClaim.claimName")
        for j, source in enumerate(_list(_map(volume.get("projected")).get("sources"))):
            source = _map(source)
            if "serviceAccountToken" in source or "clusterTrustBundle" in source:
                self.add("service-account", f"{where}.projected.sources[{j}]",
                         "projects a ServiceAccount token or trust bundle")
            if "secret" in source:
                self._secret_ref(str(_map(source["secret"]).get("name")),
                                 f"{where}.projected.sources[{j}].secret.name")
            if "configMap" in source:
                self._own(self.change.configmaps, _map(source["configMap"]).get("name"), "ConfigMap",
                          f"{where}.projected.sources[{j}].configMap.name")

    def _own(self, created: set[tuple[str, str]], name: Any, kind: str, where: str) -> None:
        if (self.ns, str(name)) not in created:
            self.add("secret-ref" if kind == "Secret" else "selector", where,
                     f"uses {kind} {str(name)[:80]!r}, which this change does not create")

    def _secret_ref(self, name: str, where: str) -> None:
        if (self.ns, name) not in self.change.secrets:
            self.add("secret-ref", where, f"references secret {name[:80]!r}, which this change "
                     "does not declare (ExternalSecret/Certificate of its own)")

    def lists(self, obj: dict[str, Any], where: str, keys: Iterable[str]) -> None:
        """Fields that must be lists: a mapping there would be read as nothing."""
        for key in keys:
            if key in obj and not isinstance(obj[key], list):
                self.add("malformed", f"{where}.{key}" if where else key,
                         f"{key} is a {type(obj[key]).__name__}, not a list")

    def _container(self, c: dict[str, Any], where: str) -> None:
        self.lists(c, where, ("env", "envFrom", "ports", "volumeMounts", "command", "args"))
        csc = _map(c.get("securityContext"))
        extra = set(csc) - {"runAsNonRoot", "allowPrivilegeEscalation", "readOnlyRootFilesystem",
                            "capabilities", "runAsUser", "runAsGroup", "seccompProfile"}
        if extra:
            self.add("pod-security", f"{where}.securityContext", f"fields never generated: "
                     f"{', '.join(sorted(map(str, extra)))}")
        if csc.get("readOnlyRootFilesystem") is not True:
            self.add("pod-security", f"{where}.securityContext.readOnlyRootFilesystem",
                     "generated containers have a read-only root filesystem")
        if _map(csc.get("seccompProfile")).get("type") not in (None, "RuntimeDefault"):
            self.add("pod-security", f"{where}.securityContext.seccompProfile", "RuntimeDefault only")
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            spec = _map(c.get(probe))
            extra = set(spec) - {"tcpSocket", "httpGet", "periodSeconds", "initialDelaySeconds",
                                 "failureThreshold", "timeoutSeconds", "successThreshold"}
            if extra or "host" in _map(spec.get("httpGet")) or "host" in _map(spec.get("tcpSocket")):
                self.add("pod-security", f"{where}.{probe}", "probes check the container's own "
                         "port (no exec, no other host)")
        for i, mount in enumerate(_list(c.get("volumeMounts"))):
            if set(_map(mount)) - {"name", "mountPath", "readOnly"}:
                self.add("pod-security", f"{where}.volumeMounts[{i}]", "subPath and propagation "
                         "are never generated")
        limits = _map(_map(c.get("resources")).get("limits"))
        if _quantity(limits.get("cpu")) > MAX_CPU or _quantity(limits.get("memory")) > MAX_MEMORY:
            self.add("resources", f"{where}.resources.limits", f"above {MAX_CPU:g} CPU or "
                     f"{MAX_MEMORY / 2**30:g}Gi per container")
        extra = set(c) - CONTAINER_FIELDS
        if extra:
            self.add("pod-security", where, f"container fields never generated: {', '.join(sorted(map(str, extra)))}")
        image = c.get("image")
        if not isinstance(image, str) or not image:
            self.add("image-pin", f"{where}.image", "no image")
        else:
            if not _IMAGE_REF.fullmatch(image):
                self.add("image-registry", f"{where}.image", f"{image[:120]!r} is not an image reference")
            elif not image_allowed(image, self.policy.allowed_registries):
                self.add("image-registry", f"{where}.image", f"{image[:120]} is not from an allowed "
                         f"registry ({', '.join(self.policy.allowed_registries) or 'none configured'})")
            if not image_pinned(image):
                self.add("image-pin", f"{where}.image", f"{image[:120]} is not pinned to a version "
                         "tag or a digest")
        resources = _map(c.get("resources"))
        for section in ("requests", "limits"):
            missing = [r for r in ("cpu", "memory") if r not in _map(resources.get(section))]
            if missing:
                self.add("resources", f"{where}.resources.{section}", f"no {section} for {', '.join(missing)}")
        for i, env in enumerate(_list(c.get("env"))):
            env = _map(env)
            source = _map(env.get("valueFrom"))
            if "secretKeyRef" in source:
                self._secret_ref(str(_map(source["secretKeyRef"]).get("name")),
                                 f"{where}.env[{i}].valueFrom.secretKeyRef.name")
            if "configMapKeyRef" in source:
                self._own(self.change.configmaps, _map(source["configMapKeyRef"]).get("name"),
                          "ConfigMap", f"{where}.env[{i}].valueFrom.configMapKeyRef.name")
            value = env.get("value")
            if isinstance(value, str) and len(value) >= 4 and _SECRET_NAME_WORDS.search(
                    str(env.get("name", ""))) and not _PLACEHOLDER.match(value):
                self.add("secret-value", f"{where}.env[{i}].value",
                         f"{str(env.get('name'))[:60]} set to a literal value; use a secretKeyRef "
                         "to an ExternalSecret of this change")
        for i, src in enumerate(_list(c.get("envFrom"))):
            src = _map(src)
            if "secretRef" in src:
                self._secret_ref(str(_map(src["secretRef"]).get("name")), f"{where}.envFrom[{i}].secretRef")
            if "configMapRef" in src:
                self._own(self.change.configmaps, _map(src["configMapRef"]).get("name"), "ConfigMap",
                          f"{where}.envFrom[{i}].configMapRef")

    # per kind ----------------------------------------------------------------------
    def role(self) -> None:
        self.lists(self.m, "", ("rules",))
        for i, rule in enumerate(_list(self.m.get("rules"))):
            if not isinstance(rule, dict):
                self.add("malformed", f"rules[{i}]", "a rule that is not a mapping")
                continue
            for detail in rbac_refusals(rule, declared_secrets={
                    n for ns, n in self.change.secrets if ns == self.ns} if self.generated else None,
                    system=self.ctx.system):
                self.add("rbac", f"rules[{i}]", detail)
            sensitive = {str(r) for r in _list(rule.get("resources"))} & SYSTEM_NAMESPACE_SENSITIVE
            if self.generated and self.ns == self.ctx.system.namespace and sensitive and \
                    not rule.get("resourceNames"):
                self.add("rbac", f"rules[{i}]", f"reads {', '.join(sorted(sensitive))} in the "
                         "system's own namespace without resourceNames (the system's logs and "
                         "configuration are not the change's)")
        if "aggregationRule" in self.m:
            self.add("rbac", "aggregationRule", "aggregated roles are never generated")

    def rolebinding(self) -> None:
        self.lists(self.m, "", ("subjects",))
        ref = _map(self.m.get("roleRef"))
        if self.generated:
            if ref.get("kind") != "Role" or (self.ns, ref.get("name")) not in self.change.roles:
                self.add("rbac-binding", "roleRef", f"binds {ref.get('kind')} {str(ref.get('name'))[:80]!r};"
                         " only a Role this change creates in the same namespace may be bound")
        elif ref.get("kind") == "ClusterRole" and ref.get("name") in ("cluster-admin", "admin", "edit") \
                or str(ref.get("name", "")).startswith("system:"):
            self.add("rbac-binding", "roleRef", f"binds the built-in ClusterRole {ref.get('name')}")
        if self.sys_owns(str(ref.get("name", ""))):
            self.add("system-object", "roleRef.name", "binds one of the system's own Roles")
        subjects = _list(self.m.get("subjects"))
        if not subjects:
            self.add("rbac-binding", "subjects", "no subjects")
        for i, s in enumerate(subjects):
            s = _map(s)
            ns = str(s.get("namespace") or self.ns)
            name = str(s.get("name", ""))
            if s.get("kind") != "ServiceAccount":
                if self.generated or name.startswith("system:"):
                    self.add("rbac-binding", f"subjects[{i}]", f"subject {s.get('kind')} {name[:80]!r}; "
                             "only ServiceAccounts this change creates may be bound")
            elif self.generated and ns == self.ns and (ns, name) not in self.change.service_accounts \
                    and name == self._served_account():
                assert self.serves is not None
                served = f"{self.serves[0]} {self.serves[2]}"
                others = sorted((self.ctx.account_users.get((ns, name), frozenset())
                                 | self.ctx.account_users.get(("", name), frozenset())) - {served})
                if others:
                    self.add("rbac-binding", f"subjects[{i}]", f"ServiceAccount {ns}/{name[:80]} also runs "
                             f"{', '.join(others[:3])}: the Role would reach them too", "review")
            elif self.generated and (ns != self.ns or (ns, name) not in self.change.service_accounts):
                self.add("rbac-binding", f"subjects[{i}]", f"ServiceAccount {ns}/{name[:80]} is not "
                         "created by this change in the binding's namespace (nor the account of the "
                         "workload it names as companion-of)")
            if self.sys_owns(name):
                self.add("system-object", f"subjects[{i}]", "binds the system's own ServiceAccount")

    def _served_account(self) -> str | None:
        """The ServiceAccount the existing workload this companion serves runs as; None for
        the namespace's default (bound, it would reach every pod that runs as it) and for
        what the system owns."""
        if self.serves is None:
            return None
        account = _record_of(self.ctx.existing_accounts, self.serves)
        if not account or account == "default" or self.sys_owns(account):
            return None
        return account

    def service(self) -> None:
        spec = _map(self.m.get("spec"))
        kind = spec.get("type", "ClusterIP")
        if kind != "ClusterIP":
            self.add("service", "spec.type", f"type {kind}: only ClusterIP Services (never "
                     "published outside the cluster)")
        for key in ("externalIPs", "externalName", "loadBalancerIP", "loadBalancerSourceRanges",
                    "loadBalancerClass", "healthCheckNodePort"):
            if spec.get(key):
                self.add("service", f"spec.{key}", f"{key} publishes or redirects the Service")
        for i, port in enumerate(_list(spec.get("ports"))):
            if _map(port).get("nodePort"):
                self.add("service", f"spec.ports[{i}].nodePort", "a node port")
        selector = spec.get("selector")
        if not isinstance(selector, dict) or not selector:
            if self.generated:
                self.add("selector", "spec.selector", "a Service without a selector (hand-made "
                         "endpoints) is never generated")
            return
        labels = {str(k): str(v) for k, v in selector.items()}
        if self.sys_selects(labels, self.ns):
            self.add("system-object", "spec.selector", "selects the system's own pods")
        if self.generated and not self.change.selects_own_pods(labels, self.ns):
            self.add("selector", "spec.selector", f"selects {labels}, pods this change does not run")
        self._existing_pods(labels, "spec.selector")

    def ingress(self) -> None:
        spec = _map(self.m.get("spec"))
        cls = spec.get("ingressClassName") or _map(self.meta.get("annotations")).get(
            "kubernetes.io/ingress.class")
        if cls not in self.policy.allowed_ingress_classes:
            self.add("ingress", "spec.ingressClassName", f"class {cls!r} is not allowed "
                     f"({', '.join(self.policy.allowed_ingress_classes)})")
        if spec.get("defaultBackend"):
            self.add("ingress", "spec.defaultBackend", "a default backend catches every host")
        attached = _map(self.meta.get("annotations")).get(MIDDLEWARES_ANNOTATION)
        if attached is not None and self.generated:
            for ref in str(attached).split(","):
                ref = ref.strip()
                name = ref.removeprefix(f"{self.ns}-").removesuffix("@kubernetescrd")
                if not ref.endswith("@kubernetescrd") or not ref.startswith(f"{self.ns}-") or \
                        (self.ns, name) not in self.change.middlewares:
                    self.add("ingress", f"metadata.annotations.{MIDDLEWARES_ANNOTATION}", f"attaches "
                             f"{ref[:100]!r}: only Middlewares this change creates in {self.ns}")
        rules = _list(spec.get("rules"))
        if not rules:
            self.add("ingress", "spec.rules", "no rules")
        for i, rule in enumerate(rules):
            rule = _map(rule)
            self._host(rule.get("host"), f"spec.rules[{i}].host", "ingress")
            for j, p in enumerate(_list(_map(rule.get("http")).get("paths"))):
                backend = _map(_map(p).get("backend"))
                svc = _map(backend.get("service")).get("name")
                where = f"spec.rules[{i}].http.paths[{j}].backend"
                if "resource" in backend or svc is None:
                    self.add("ingress", where, "backends are Services this change creates")
                elif self.sys_owns(str(svc)):
                    self.add("system-object", where, f"publishes the system's own Service {svc}")
                elif (self.ns, str(svc)) not in self.change.services:
                    self.add("ingress", where, f"routes to Service {str(svc)[:80]!r}, which this "
                             "change does not create")
        for i, tls in enumerate(_list(spec.get("tls"))):
            tls = _map(tls)
            if tls.get("secretName") is not None and self.generated:
                self._secret_ref(str(tls.get("secretName")), f"spec.tls[{i}].secretName")
            for j, host in enumerate(_list(tls.get("hosts"))):
                self._host(host, f"spec.tls[{i}].hosts[{j}]", "ingress")

    def _host(self, host: Any, where: str, rule: str) -> None:
        if not isinstance(host, str) or not host:
            self.add(rule, where, "no host: it would match every host")
            return
        if "*" in host or not _DNS_SUBDOMAIN.fullmatch(host):
            self.add(rule, where, f"{host[:120]!r} is a wildcard or not a DNS name")
            return
        suffixes = self.policy.allowed_host_suffixes
        if not any(host.endswith(s) and host != s.lstrip(".") for s in suffixes):
            self.add(rule, where, f"{host} is not under an allowed suffix ({', '.join(suffixes)})")
        elif self.generated and host in self.ctx.existing_hosts:
            self.add(rule, where, f"{host} is already routed by an existing Ingress (a longer "
                     "path or a certificate for it would take its traffic)")

    def network_policy(self) -> None:
        spec = _map(self.m.get("spec"))
        selector, why = _selector_labels(spec.get("podSelector"))
        if selector is None:
            self.add("network-policy", "spec.podSelector", why)
            return
        if self.sys_selects(selector, self.ns):
            self.add("system-object", "spec.podSelector", "applies to the system's own pods "
                     "(an allow rule there would expose them)")
        elif self.generated:
            self._policy_over_others(selector)
            if self.serves is not None and not self.change.selects_own_pods(selector, self.ns):
                self._companion_policy(spec)
        for direction, peers_key in (("ingress", "from"), ("egress", "to")):
            for i, rule in enumerate(_list(spec.get(direction))):
                rule = _map(rule)
                where = f"spec.{direction}[{i}]"
                peers = rule.get(peers_key)
                if not isinstance(peers, list) or not peers:
                    self.add("network-policy", f"{where}.{peers_key}", f"no '{peers_key}': allows "
                             "every source and destination")
                    continue
                for j, peer in enumerate(peers):
                    self._peer(_map(peer), f"{where}.{peers_key}[{j}]", not selector)

    def _companion_policy(self, spec: dict[str, Any]) -> None:
        """A policy over pods another team runs may only admit traffic: isolating their egress
        cuts their DNS and dependencies, and a policy with no ingress rule denies them all."""
        if self.serves is None:
            return
        served = f"{self.serves[0]} {self.serves[2]}"
        types = [str(t) for t in _list(spec.get("policyTypes"))]
        if "Egress" in types or "egress" in spec:
            self.add("network-policy", "spec.policyTypes", f"isolates the egress of {served}, which "
                     "this change does not run: its DNS and dependencies are cut off")
        if not _list(spec.get("ingress")):
            self.add("network-policy", "spec.ingress", f"no ingress rule: denies all traffic to {served}, "
                     "which this change does not run", "review")
        # Policies only add allowances: admitting other namespaces (or addresses) to pods
        # another team already isolates opens what their own policies keep closed. (Pods no
        # policy selects take any traffic: a first policy over them only restricts it.)
        served_labels = [labels for ns, workload, labels in self.ctx.existing_pods
                         if ns in (self.ns, "") and workload == served]
        isolated = any(ns in (self.ns, "") and selector <= labels
                       for ns, selector in self.ctx.existing_policies for labels in served_labels)
        for i, rule in enumerate(_list(spec.get("ingress")) if isolated else []):
            for j, peer in enumerate(_list(_map(rule).get("from"))):
                peer = _map(peer)
                own = _map(peer.get("namespaceSelector")) == {"matchLabels": {"kubernetes.io/metadata.name": self.ns}}
                if ("namespaceSelector" in peer and not own) or "ipBlock" in peer:
                    self.add("network-policy", f"spec.ingress[{i}].from[{j}]", f"admits another namespace or "
                             f"address to {served}, which this change does not run and which the repository's "
                             "policies already isolate (this would open what they keep closed)", "review")

    def _policy_over_others(self, selector: dict[str, str]) -> None:
        """A policy that selects pods cuts their other traffic off: over pods this change
        does not run it is for a person, unless it is the companion of the one workload it
        selects (and selects no other's)."""
        served = f"{self.serves[0]} {self.serves[2]}" if self.serves else None
        hit = sorted({workload for ns, workload, labels in self.ctx.existing_pods
                      if ns in (self.ns, "") and set(selector.items()) <= labels})
        others = [w for w in hit if w != served]
        if not selector and hit:
            self.add("network-policy", "spec.podSelector", f"selects every pod of namespace {self.ns}, "
                     f"{len(hit)} existing workload(s) ({', '.join(hit[:3])}): their other traffic is cut off",
                     "review")
        elif others and not self.change.selects_own_pods(selector, self.ns):
            self.add("network-policy", "spec.podSelector", f"selects the pods of {', '.join(others[:3])}, which this "
                     "change does not run and does not name as companion-of: their other traffic is cut off",
                     "review")

    def _peer(self, peer: dict[str, Any], where: str, all_pods: bool) -> None:
        if not peer:
            self.add("network-policy", where, "an empty peer allows everything")
            return
        if "ipBlock" in peer:
            cidr = str(_map(peer["ipBlock"]).get("cidr", ""))
            try:
                wide = ipaddress.ip_network(cidr, strict=False).prefixlen < 16
            except ValueError:
                wide = True
            if wide or self.generated:
                self.add("network-policy", f"{where}.ipBlock", f"ipBlock {cidr[:60]!r} opens the "
                         "pods to addresses outside the cluster's selectors")
        if "namespaceSelector" in peer:
            labels, why = _selector_labels(peer["namespaceSelector"])
            if labels is None or not labels:
                self.add("network-policy", f"{where}.namespaceSelector", why or
                         "namespaceSelector {} opens the pods to every namespace")
            elif all_pods:
                self.add("network-policy", f"{where}.namespaceSelector", "podSelector {} opened to "
                         "other namespaces: every pod of the namespace becomes reachable")
        if "podSelector" in peer:
            labels, why = _selector_labels(peer["podSelector"])
            if labels is None:
                self.add("network-policy", f"{where}.podSelector", why)

    def pdb(self) -> None:
        labels, why = _selector_labels(_dig(self.m, ("spec", "selector")))
        if labels is None or not labels:
            self.add("disruption-budget", "spec.selector", why or "selects every pod", "review")
            return
        if self.sys_selects(labels, self.ns):
            self.add("system-object", "spec.selector", "a disruption budget over the system's "
                     "own workers")
        elif self.serves is not None and self._selects_served(labels):
            spec = _map(self.m.get("spec"))
            budget, floor = spec.get("maxUnavailable"), spec.get("minAvailable")
            kind, ns, name = self.serves
            replicas = _record_of(self.ctx.existing_replicas, (kind, ns, name))
            # An autoscaler of the change or the repository may take the workload down to its
            # floor: a budget must leave a pod to evict at that count too.
            lowest = self.change.floors.get((kind, ns, name))
            if lowest is not None:
                replicas = lowest if replicas is None else min(replicas, lowest)
            evictable = (isinstance(budget, int) and not isinstance(budget, bool) and budget >= 1) or (
                isinstance(floor, int) and not isinstance(floor, bool) and replicas is not None and floor < replicas)
            if not evictable:
                self.add("disruption-budget", "spec", f"a budget over {kind} {name}'s pods ({replicas or '?'} replicas) "
                         "that leaves no pod to evict can block node drains", "review")
        elif not self.change.selects_own_pods(labels, self.ns):
            self.add("disruption-budget", "spec.selector", f"covers pods this change does not run "
                     f"({labels}): can block node drains for others", "review")
        self._existing_pods(labels, "spec.selector")

    def external_secret(self) -> None:
        spec = _map(self.m.get("spec"))
        store = _map(spec.get("secretStoreRef"))
        if store.get("name") != self.policy.secret_store or store.get("kind") != "ClusterSecretStore":
            self.add("external-secret", "spec.secretStoreRef", f"store {store.get('kind')}/"
                     f"{str(store.get('name'))[:80]}; only ClusterSecretStore {self.policy.secret_store}")
        if "dataFrom" in spec:
            self.add("external-secret", "spec.dataFrom", "dataFrom copies whole remote secrets")
        target = _map(spec.get("target"))
        name = str(target.get("name") or self.name)
        ident = _map(self.meta.get("annotations")).get(IMPROVEMENT_ANNOTATION)
        if self.generated and not (isinstance(ident, str) and name == owned_secret_name(self.name, ident)):
            self.add("external-secret", "spec.target.name", f"writes Secret {name[:80]!r}; a change "
                     "writes only <its name>-<improvement id> (never an existing Secret)")
        for i, item in enumerate(_list(spec.get("data"))):
            extra = set(_map(item)) - {"secretKey", "remoteRef"}
            ref_extra = set(_map(_map(item).get("remoteRef"))) - {"key", "property"}
            if extra or ref_extra:
                self.add("external-secret", f"spec.data[{i}]", "fields never generated: "
                         f"{', '.join(sorted(map(str, extra | ref_extra)))} (another store, a generator)")
        extra = set(spec) - {"refreshInterval", "secretStoreRef", "target", "data"}
        if extra and self.generated:
            self.add("external-secret", "spec", f"fields never generated: {', '.join(sorted(map(str, extra)))}")
        for key in ("template", "deletionPolicy"):
            if key in target:
                self.add("external-secret", f"spec.target.{key}", f"{key} is never generated "
                         "(a template can mint any Secret type)")
        if target.get("creationPolicy", "Owner") != "Owner":
            self.add("external-secret", "spec.target.creationPolicy", "only creationPolicy Owner "
                     "(never merge into an existing Secret)")
        if (self.ns, name) in self.ctx.existing_secrets or ("", name) in self.ctx.existing_secrets \
                or self.sys_owns(name) or (self.ctx.cluster_has is not None and
                                                       self.ctx.cluster_has("Secret", self.ns, name)):
            self.add("external-secret", "spec.target.name", f"Secret {name!r} already exists "
                     "(or is the system's): an ExternalSecret would replace it")
        own_key = f"{self.ns}/{self.name}"
        for i, item in enumerate(_list(spec.get("data"))):
            remote_key = _map(_map(item).get("remoteRef")).get("key")
            if remote_key != own_key:
                self.add("external-secret", f"spec.data[{i}].remoteRef.key", f"fetches "
                         f"{str(remote_key)[:80]!r}; a change may only fetch its own key {own_key}")

    def certificate(self) -> None:
        spec = _map(self.m.get("spec"))
        names = [*_list(spec.get("dnsNames")), *([spec["commonName"]] if spec.get("commonName") else [])]
        if not names:
            self.add("certificate", "spec.dnsNames", "no DNS names")
        for i, host in enumerate(names):
            self._host(host, f"spec.dnsNames[{i}]", "certificate")
        for key in ("ipAddresses", "uris", "emailAddresses", "isCA", "keystores"):
            if spec.get(key):
                self.add("certificate", f"spec.{key}", f"{key} is never generated")
        issuer = _map(spec.get("issuerRef"))
        if issuer.get("name") not in self.policy.allowed_cert_issuers or issuer.get(
                "group", "cert-manager.io") != "cert-manager.io" or issuer.get("kind") != "ClusterIssuer":
            self.add("certificate", "spec.issuerRef", f"issuer {issuer.get('kind')}/"
                     f"{str(issuer.get('name'))[:80]} is not allowed (ClusterIssuer "
                     f"{', '.join(self.policy.allowed_cert_issuers)})")
        secret = str(spec.get("secretName", ""))
        ident = _map(self.meta.get("annotations")).get(IMPROVEMENT_ANNOTATION)
        if (self.ns, secret) in self.ctx.existing_secrets or self.sys_owns(secret) or (
                self.generated and not _owned(secret, ident)):
            self.add("certificate", "spec.secretName", f"writes Secret {secret[:80]!r}; a change "
                     "writes only <name>-<improvement id> (never an existing Secret)")
        extra = set(spec) - {"secretName", "dnsNames", "duration", "renewBefore", "privateKey",
                             "issuerRef", "commonName"}
        if extra and self.generated:
            self.add("certificate", "spec", f"fields never generated: {', '.join(sorted(map(str, extra)))} "
                     "(subjects, usages, secret templates)")
        hosts = {h for ns, h in self.change.ingress_hosts if ns == self.ns}
        for i, host in enumerate(names):
            if self.generated and host not in hosts:
                self.add("certificate", f"spec.dnsNames[{i}]", f"{str(host)[:80]} is not a host of "
                         "an Ingress this change creates")

    def prometheus_rule(self) -> None:
        for i, group in enumerate(_list(_dig(self.m, ("spec", "groups")))):
            if self.generated and set(_map(group)) - {"name", "rules"}:
                self.add("recording-rule", f"spec.groups[{i}]", "group fields never generated: "
                         f"{', '.join(sorted(map(str, set(_map(group)) - {'name', 'rules'})))}")
            for j, rule in enumerate(_list(_map(group).get("rules"))):
                rule = _map(rule)
                where = f"spec.groups[{i}].rules[{j}]"
                if "record" in rule:
                    self._recording(str(rule["record"]), where)
                    if rule.get("labels"):
                        self.add("recording-rule", f"{where}.labels", "recording rules carry no labels")
                elif "alert" in rule:
                    if self.generated and set(rule) - {"alert", "expr", "for", "labels", "annotations"}:
                        self.add("recording-rule", where, "alert fields never generated")
                    if str(rule["alert"]) in self.ctx.existing_alerts:
                        self.add("recording-rule", f"{where}.alert", f"alert {str(rule['alert'])[:80]} "
                                 "already exists (a second one could inhibit or confuse it)")
                    extra = set(_map(rule.get("labels"))) - {"severity"}
                    if extra and self.generated:
                        self.add("recording-rule", f"{where}.labels", f"alert labels "
                                 f"{', '.join(sorted(map(str, extra)))} are never generated")
                else:
                    self.add("malformed", where, "neither an alert nor a recording rule")

    def _recording(self, record: str, where: str) -> None:
        if not _SERIES.fullmatch(record) or ":" not in record:
            self.add("recording-rule", f"{where}.record", f"{record[:80]!r}: recorded series are "
                     "named level:metric:operations (a colon), never like a raw metric")
        if record in self.ctx.health_series:
            self.add("recording-rule", f"{where}.record", f"{record} is read by the health checks")
        if record in self.ctx.existing_series:
            self.add("recording-rule", f"{where}.record", f"{record} is already recorded in the repository")

    def service_monitor(self) -> None:
        spec = _map(self.m.get("spec"))
        labels, why = _selector_labels(spec.get("selector"))
        nsel = _map(spec.get("namespaceSelector"))
        namespaces = _list(nsel.get("matchNames")) or [self.ns]
        if nsel.get("any"):
            self.add("selector", "spec.namespaceSelector.any", "scrapes every namespace")
        outside = [str(n) for n in namespaces if n not in self.policy.allowed_namespaces]
        if outside and self.generated:
            self.add("selector", "spec.namespaceSelector.matchNames", f"selects Services in "
                     f"{', '.join(outside)[:120]}, outside the allowed namespaces")
        if labels is None or not labels:
            self.add("selector", "spec.selector", why or "selects every Service")
        elif any(self.sys_selects(labels, str(ns)) for ns in namespaces):
            self.add("system-object", "spec.selector", "scrapes the system's own Services")
        if not self.generated:
            return
        extra = set(spec) - {"selector", "endpoints", "namespaceSelector"}
        if extra:  # targetLabels, podTargetLabels, jobLabel rename the series health checks read
            self.add("selector", "spec", f"fields never generated: {', '.join(sorted(map(str, extra)))}")
        for i, ep in enumerate(_list(spec.get("endpoints"))):
            extra = set(_map(ep)) - {"port", "interval", "path"}
            if extra:
                self.add("selector", f"spec.endpoints[{i}]", f"{', '.join(sorted(map(str, extra)))} "
                         "never generated (credentials, or rewriting the series health checks read)")

    def workload_spec(self) -> None:
        """Only the workload fields the renderers produce, within bounds."""
        spec = _map(self.m.get("spec"))
        allowed = WORKLOAD_SPEC_FIELDS.get(self.kind, frozenset())
        extra = set(spec) - allowed
        if extra:
            self.add("pod-security", "spec", f"{self.kind} fields never generated: "
                     f"{', '.join(sorted(map(str, extra)))}")
        if "strategy" in spec and spec["strategy"] != {"type": "Recreate"}:
            self.add("pod-security", "spec.strategy", "the one generated strategy is Recreate (a claim "
                     "of the change mounted by one pod at a time)")
        replicas = spec.get("replicas")
        if replicas is not None and (not isinstance(replicas, int) or not 0 <= replicas <= MAX_REPLICAS):
            self.add("resources", "spec.replicas", f"replicas {str(replicas)[:20]} (0..{MAX_REPLICAS})")
        if self.kind == "CronJob":
            if spec.get("concurrencyPolicy") != "Forbid":
                self.add("pod-security", "spec.concurrencyPolicy", "generated CronJobs never overlap (Forbid)")
            job = _map(_map(spec.get("jobTemplate")).get("spec"))
            if set(job) - WORKLOAD_SPEC_FIELDS["Job"]:
                self.add("pod-security", "spec.jobTemplate.spec", "Job fields never generated: "
                         f"{', '.join(sorted(map(str, set(job) - WORKLOAD_SPEC_FIELDS['Job'])))}")

    def workload_labels(self) -> None:
        """A workload's pods may not wear labels that existing Services (the system's or
        the platform's) select: they would receive that Service's traffic."""
        pod = POD_PATHS[self.kind]
        labels = _map(_dig(self.m, [*pod[:-1], "metadata", "labels"]))
        where = ".".join([*pod[:-1], "metadata", "labels"])
        selector, why = _selector_labels(_dig(self.m, ("spec", "selector")))
        if self.kind not in ("Job", "CronJob") and not selector:
            self.add("selector", "spec.selector", why or "a workload selecting every pod")
        if labels.get("app.kubernetes.io/name") == self.ctx.system.name or (
                selector and self.sys_selects(selector, self.ns)):
            self.add("system-object", where, "its pods would pass for the system's own")
        for ns, service, wanted in self.ctx.existing_selectors:
            if ns in (self.ns, "") and wanted and wanted <= set(labels.items()):
                self.add("selector", where, f"its pods would receive the traffic of the existing "
                         f"Service {service}")
        self._existing_pods(selector or {}, "spec.selector")

    def _existing_pods(self, selector: dict[str, str], where: str) -> None:
        """A generated selector may not also match pods that already run (another team's
        workload with the same labels would be exposed, pinned or adopted); a companion's
        may match the pods of the workload it serves, and no other's."""
        if not self.generated or not selector:
            return
        served = f"{self.serves[0]} {self.serves[2]}" if self.serves else None
        for ns, workload, labels in self.ctx.existing_pods:
            if ns in (self.ns, "") and set(selector.items()) <= labels and workload != served:
                self.add("selector", where, f"also selects the pods of the existing {workload}")

    def companion(self) -> None:
        """``cortex-school.io/companion-of: Kind/namespace/name``: the object must be one the
        repository defines, in this object's namespace, not one of the system's own; the
        companion rules (a disruption budget, an autoscaler, a selector over its pods) then
        apply to that object only."""
        value = _map(self.meta.get("annotations")).get(COMPANION_ANNOTATION)
        if value is None:
            return
        if self.kind not in _COMPANION_OF:
            self.add("companion", f"metadata.annotations.{COMPANION_ANNOTATION}", f"a {self.kind} is never a "
                     f"companion (only {', '.join(sorted(_COMPANION_OF))}): it would select another's pods")
            return
        parts = str(value).split("/")
        if len(parts) != 3 or parts[0] not in _COMPANION_KINDS:
            self.add("companion", f"metadata.annotations.{COMPANION_ANNOTATION}",
                     f"{str(value)[:120]!r} is not Kind/namespace/name of a workload or Service")
            return
        kind, ns, name = parts
        existing = self.ctx.existing
        if ns != self.ns:
            self.add("companion", f"metadata.annotations.{COMPANION_ANNOTATION}",
                     f"serves {value}: a companion lives in the namespace of what it serves ({self.ns})")
        elif (kind, ns, name) not in existing and (kind, "", name) not in existing:
            self.add("companion", f"metadata.annotations.{COMPANION_ANNOTATION}",
                     f"serves {kind} {ns}/{name}, which the GitOps repository does not define")
        elif self.ctx.system.owns_name(name) or ns == self.ctx.system.namespace:
            self.add("system-object", f"metadata.annotations.{COMPANION_ANNOTATION}",
                     f"serves {kind} {ns}/{name}, one of the system's own objects")
        else:
            self.serves = (kind, ns, name)

    def _selects_served(self, selector: dict[str, str]) -> bool:
        """Whether ``selector`` matches the pods of the workload this companion serves."""
        if self.serves is None:
            return False
        served = f"{self.serves[0]} {self.serves[2]}"
        return any(ns in (self.ns, "") and workload == served and set(selector.items()) <= labels
                   for ns, workload, labels in self.ctx.existing_pods)

    def _scales(self, ref: dict[str, Any], where: str) -> None:
        """A scale target: an apps/v1 Deployment/StatefulSet this change creates, or the
        existing one it is a companion of."""
        kind, name = str(ref.get("kind", "")), str(ref.get("name", ""))
        own = (kind, self.ns, name) in self.change.workloads
        served = self.serves is not None and self.serves[0] == kind and self.serves[2] == name
        if ref.get("apiVersion", "apps/v1") != "apps/v1" or kind not in ("Deployment", "StatefulSet"):
            self.add("autoscaler", where, f"scales {kind[:40]!r}: only apps/v1 Deployments and StatefulSets")
        elif not (own or served):
            self.add("autoscaler", where, f"scales {kind} {name[:80]}, which is neither created by this change "
                     "nor the existing workload it names as companion-of")

    def _companion_floor(self, low: Any, key: str) -> None:
        """An autoscaler of a workload another team runs may not take it below the replicas
        they gave it (their capacity, their call)."""
        if self.serves is None:
            return
        replicas = _record_of(self.ctx.existing_replicas, self.serves)
        if replicas is not None and isinstance(low, int) and low < replicas:
            self.add("autoscaler", f"spec.{key}", f"{key} {low} takes {self.serves[0]} {self.serves[2]} below "
                     f"the {replicas} replicas its owners set", "review")

    def scaled_object(self) -> None:
        """KEDA: the scale target as for an HPA; replicas within bounds; triggers only
        Prometheus queries against an in-cluster Prometheus (an address outside the cluster
        is a way out), CPU or memory; no authentication reference (a Secret's contents).
        Generated objects only: an audited repository's own autoscalers are not this shape."""
        if not self.generated:
            return
        spec = _map(self.m.get("spec"))
        extra = set(spec) - {"scaleTargetRef", "minReplicaCount", "maxReplicaCount", "triggers"}
        if extra:
            self.add("autoscaler", "spec", f"fields never generated: {', '.join(sorted(map(str, extra)))}")
        self._scales(_map(spec.get("scaleTargetRef")), "spec.scaleTargetRef")
        self._companion_floor(spec.get("minReplicaCount", 0), "minReplicaCount")
        # Scale to zero only what the change runs itself: an existing workload it serves
        # keeps at least one replica (its team's "never scale to zero" is not ours to break).
        own_target = (str(_map(spec.get("scaleTargetRef")).get("kind", "")), self.ns,
                      str(_map(spec.get("scaleTargetRef")).get("name", ""))) in self.change.workloads
        if "minReplicaCount" not in spec and not own_target:
            self.add("resources", "spec.minReplicaCount", "unset means 0: an existing workload keeps at least 1")
        for key, low in (("minReplicaCount", 0 if own_target else 1), ("maxReplicaCount", 1)):
            value = spec.get(key)
            if key in spec and not (isinstance(value, int) and not isinstance(value, bool)
                                    and low <= value <= MAX_REPLICAS):
                self.add("resources", f"spec.{key}", f"{key} {str(value)[:20]} ({low}..{MAX_REPLICAS})")
        for i, trigger in enumerate(_list(spec.get("triggers"))):
            trigger = _map(trigger)
            where = f"spec.triggers[{i}]"
            kind = trigger.get("type")
            meta = _map(trigger.get("metadata"))
            if "authenticationRef" in trigger or set(trigger) - {"type", "metadata", "metricType"}:
                self.add("autoscaler", where, "only type, metadata and metricType are generated (no authenticationRef)")
            if kind == "prometheus":
                if set(meta) - {"serverAddress", "query", "threshold"}:
                    self.add("autoscaler", f"{where}.metadata", "only serverAddress, query and threshold")
                address = str(meta.get("serverAddress", ""))
                if not _IN_CLUSTER_URL.fullmatch(address):
                    self.add("autoscaler", f"{where}.metadata.serverAddress", f"{address[:100]!r} is not an "
                             "in-cluster Service address (http://<service>.<namespace>.svc[.cluster.local]:<port>)")
                else:
                    service, namespace = address.split("://", 1)[1].split(".")[:2]
                    if (service, namespace) == ("kubernetes", "default") or namespace == self.ctx.system.namespace:
                        self.add("autoscaler", f"{where}.metadata.serverAddress", f"{address[:100]!r}: KEDA "
                                 "would send its queries to the API server or this system's own Services")
            elif kind in ("cpu", "memory"):
                if set(meta) != {"value"} or trigger.get("metricType") != "Utilization":
                    self.add("autoscaler", where, "a cpu/memory trigger is Utilization with a value only")
            else:
                self.add("autoscaler", f"{where}.type", f"trigger {str(kind)[:40]!r}: only prometheus, cpu, memory")

    def hpa(self) -> None:
        """Scales a workload of this change, or the existing one it is a companion of; CPU
        and memory utilisation only; replicas within the gate's bound (generated objects only)."""
        if not self.generated:
            return
        spec = _map(self.m.get("spec"))
        extra = set(spec) - {"scaleTargetRef", "minReplicas", "maxReplicas", "metrics", "behavior"}
        if extra:
            self.add("autoscaler", "spec", f"fields never generated: {', '.join(sorted(map(str, extra)))}")
        ref = _map(spec.get("scaleTargetRef"))
        if ref.get("apiVersion") != "apps/v1":
            self.add("autoscaler", "spec.scaleTargetRef", "scaleTargetRef.apiVersion must be apps/v1")
        else:
            self._scales(ref, "spec.scaleTargetRef")
        self._companion_floor(spec.get("minReplicas", 1), "minReplicas")
        for key in ("minReplicas", "maxReplicas"):
            value = spec.get(key)
            if key in spec and not (isinstance(value, int) and not isinstance(value, bool)
                                    and 1 <= value <= MAX_REPLICAS):
                self.add("resources", f"spec.{key}", f"{key} {str(value)[:20]} (1..{MAX_REPLICAS})")
        for i, metric in enumerate(_list(spec.get("metrics"))):
            metric = _map(metric)
            resource = _map(metric.get("resource"))
            if metric.get("type") != "Resource" or resource.get("name") not in ("cpu", "memory") or \
                    _map(resource.get("target")).get("type") != "Utilization":
                self.add("autoscaler", f"spec.metrics[{i}]", "only cpu/memory Utilization metrics are generated")
        behavior = _map(spec.get("behavior"))
        if set(behavior) - {"scaleDown"} or set(_map(behavior.get("scaleDown"))) - {"stabilizationWindowSeconds"}:
            self.add("autoscaler", "spec.behavior", "only a scale-down stabilisation window is generated")

    def middleware(self) -> None:
        """A Traefik Middleware of one allowlisted type with its generated fields only (no
        forwardAuth, basicAuth, chain, plugin, request headers, routing). An audited
        repository's own Middlewares are not this shape."""
        if not self.generated:
            return
        spec = _map(self.m.get("spec"))
        if len(spec) != 1 or next(iter(spec)) not in _MIDDLEWARE_FIELDS:
            self.add("middleware", "spec", f"{', '.join(sorted(map(str, spec)))[:120] or 'nothing'}: a generated "
                     f"Middleware is one of {', '.join(sorted(_MIDDLEWARE_FIELDS))}")
            return
        kind, body = next(iter(spec.items()))
        body = _map(body)
        extra = set(body) - _MIDDLEWARE_FIELDS[kind]
        if extra:
            self.add("middleware", f"spec.{kind}", f"fields never generated: {', '.join(sorted(map(str, extra)))}")
        criterion = _map(body.get("sourceCriterion"))
        if criterion and (set(criterion) != {"ipStrategy"} or set(_map(criterion["ipStrategy"])) - {"depth"}):
            self.add("middleware", f"spec.{kind}.sourceCriterion", "only ipStrategy.depth is generated")
        for key in ("average", "burst", "amount", "stsSeconds"):
            value = body.get(key, 1)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                self.add("middleware", f"spec.{kind}.{key}", f"{key} is a count")
        depth = _map(criterion.get("ipStrategy")).get("depth", 0)
        if not isinstance(depth, int) or isinstance(depth, bool) or not 0 <= depth <= 10:
            self.add("middleware", f"spec.{kind}.sourceCriterion.ipStrategy.depth", "depth is a count (0..10)")
        if "period" in body and not re.fullmatch(r"[1-9][0-9]{0,3}(s|m)", str(body["period"])):
            self.add("middleware", f"spec.{kind}.period", f"{str(body['period'])[:20]!r}: a period like 1s or 1m")
        # Traefik names it <namespace>-<name>: the same string from another namespace/name
        # pair would replace that Middleware (an auth Middleware of another team's routes).
        traefik_name = f"{self.ns}-{self.name}"
        others = {(ns, name) for kind_, ns, name in self.ctx.existing if kind_ == "Middleware"} | self.change.middlewares
        taken = sorted(f"{ns}/{name}" for ns, name in others
                       if (ns, name) != (self.ns, self.name) and f"{ns}-{name}" == traefik_name)
        if taken:
            self.add("middleware", "metadata.name", f"Traefik calls it {traefik_name}, as it calls Middleware "
                     f"{taken[0]}: one would replace the other")
        if "referrerPolicy" in body and body["referrerPolicy"] not in _REFERRER_POLICIES:
            self.add("middleware", f"spec.{kind}.referrerPolicy", f"{str(body['referrerPolicy'])[:60]!r} is not "
                     "a referrer policy")
        if kind == "redirectScheme" and body.get("scheme") != "https":
            self.add("middleware", f"spec.{kind}.scheme", "redirects only to https")

    def storage_class(self) -> None:
        self.add("storage-class", "", "a StorageClass is cluster-wide: a person reviews it",
                 "review")
        if self.m.get("reclaimPolicy") != "Retain":
            self.add("storage-class", "reclaimPolicy", "reclaimPolicy must be Retain", "review")

    def pvc(self, spec: Any, where: str) -> None:
        spec = _map(spec)
        for key in ("volumeName", "dataSource", "dataSourceRef", "selector"):
            if key in spec:
                self.add("selector", f"{where}.{key}", f"{key} binds or copies an existing volume")


def _label_key(key: str) -> bool:
    prefix, sep, name = key.rpartition("/")
    if sep and (not prefix or len(prefix) > 253 or not _DNS_SUBDOMAIN.fullmatch(prefix)):
        return False
    return bool(_LABEL_NAME.fullmatch(name))


def _resource_matches(rule_resource: str, resource: str) -> bool:
    """RBAC resource matching as the API server does it: ``*`` matches everything,
    ``*/exec`` every resource's exec subresource; ``pods/*`` (not an API-server form)
    is read as every subresource of pods, to be safe."""
    if rule_resource in ("*", resource):
        return True
    base, _, sub = resource.partition("/")
    rbase, _, rsub = rule_resource.partition("/")
    if rbase == "*" and sub and rsub in (sub, "*"):
        return True
    return rbase == base and rsub == "*"


def rbac_refusals(rule: dict[str, Any], *, declared_secrets: set[str] | None,
                  system: SystemIdentity) -> list[str]:
    """Why one Role rule grants too much (empty: it is allowed). ``declared_secrets``
    None means audit mode: no change to compare names with."""
    groups = [str(g) for g in _list(rule.get("apiGroups"))]
    resources = [str(r) for r in _list(rule.get("resources"))]
    verbs = {str(v) for v in _list(rule.get("verbs"))}
    names = {str(n) for n in _list(rule.get("resourceNames"))}
    out: list[str] = []
    if rule.get("nonResourceURLs"):
        out.append("nonResourceURLs in a Role")
    if not groups or not resources or not verbs:
        out.append("a rule needs apiGroups, resources and verbs")
    bad_verbs = verbs - RBAC_VERBS
    if bad_verbs:
        out.append(f"verbs {', '.join(sorted(bad_verbs))} (only {', '.join(sorted(RBAC_VERBS))})")
    # An audited repository may grant other groups (the chart patches ArgoCD Applications);
    # a generated Role never does.
    bad_groups = [g for g in groups if g not in RBAC_GROUPS] if declared_secrets is not None else [
        g for g in groups if g == "rbac.authorization.k8s.io" and verbs - READ_VERBS]
    if bad_groups:
        out.append(f"API groups {', '.join(repr(g) for g in bad_groups)}: RBAC, ArgoCD, admission, "
                   "CRDs and other groups are off limits")
    # Every sensitive grant the rule matches, the way the API server matches it.
    effective_verbs = RBAC_VERBS | {"*"} if "*" in verbs else verbs
    for group in groups:
        for probe_resource, probe_group in _SENSITIVE_PROBES:
            if group not in ("*", probe_group):
                continue
            if not any(_resource_matches(r, probe_resource) for r in resources):
                continue
            base, _, sub = probe_resource.partition("/")
            if sub in DANGEROUS_SUBRESOURCES:
                out.append(f"grants {probe_resource} (via {', '.join(resources)})")
            elif base == "secrets" and not sub:
                ok = (declared_secrets is not None and names and names <= declared_secrets
                      and not effective_verbs & {"list", "watch", "create", "*"})
                if declared_secrets is None:
                    ok = bool(names) and not effective_verbs & {"list", "watch", "*"}
                if not ok:
                    out.append(f"secrets access ({', '.join(sorted(verbs))}) without resourceNames "
                               "naming only Secrets this change declares")
            elif (probe_group, base) in WORKLOAD_RESOURCES and effective_verbs & {
                    "create", "update", "patch", "*"}:
                out.append(f"writes {probe_group + '/' if probe_group else ''}{base} (can run any "
                           "image with any identity)")
    if any("*" in r for r in resources) and not out:
        out.append(f"wildcard resources {', '.join(resources)}")
    if "*" in groups and not any("API groups" in o for o in out):
        out.append("every API group ('*')")
    writes = effective_verbs - READ_VERBS
    if writes and declared_secrets is not None:
        # The one write a generated Role makes: the rotation job's patch of its own named
        # ExternalSecret. Anything else could change objects after review.
        allowed = (set(groups) == {"external-secrets.io"} and set(resources) == {"externalsecrets"}
                   and writes <= {"patch"} and names)
        if not allowed:
            out.append(f"write verbs ({', '.join(sorted(writes))}) on {', '.join(resources)[:80]}: "
                       "a generated Role only reads, or patches its own named ExternalSecret")
    for name in names:
        if system.owns_name(name):
            out.append(f"names the system's own object {name!r}")
    return list(dict.fromkeys(out))


_SENSITIVE_PROBES: tuple[tuple[str, str], ...] = (
    *((f"pods/{s}", "") for s in ("exec", "attach", "portforward", "proxy", "ephemeralcontainers")),
    ("services/proxy", ""), ("nodes/proxy", ""), ("serviceaccounts/token", ""),
    ("secrets", ""),
    *((r, g) for g, r in WORKLOAD_RESOURCES),
)


def check_change(manifests: list[Any], ctx: GateContext) -> list[Violation]:
    """Every finding of a change (all its objects together). Never raises on odd input."""
    found: list[Violation] = []
    if not ctx.audit and len(manifests) > ctx.policy.max_objects:
        found.append(Violation(rule="size", object="change", detail=(
            f"{len(manifests)} objects (limit {ctx.policy.max_objects})")))
    objects = [m for m in manifests if isinstance(m, dict)]
    if not ctx.audit and len(objects) > ctx.policy.max_objects:
        return found  # refused for its size; reading thousands of objects proves nothing more
    for m in manifests:
        if not isinstance(m, dict):
            found.append(Violation(rule="malformed", object="?", detail="a document that is not a mapping"))
    try:
        change = _Change.of(objects)
    except (TypeError, AttributeError, ValueError) as exc:
        found.append(Violation(rule="malformed", object="change", detail=f"cannot be read: {exc}"[:300]))
        return found
    seen: set[tuple[str, str, str]] = set()
    for m in objects:
        checker = _Checker(m, ctx, change, found)
        ident = (checker.kind, checker.ns, checker.name)
        if ident in seen and not ctx.audit:
            checker.add("ownership", "metadata.name", "defined twice by the change")
        seen.add(ident)
        try:
            _check_object(checker)
        except (TypeError, AttributeError, KeyError, ValueError) as exc:
            checker.add("malformed", "", f"cannot be checked: {type(exc).__name__}: {str(exc)[:200]}")
    return found


def _check_object(c: _Checker) -> None:
    named = c.structure()
    if not isinstance(c.m.get("kind"), str) or not isinstance(c.m.get("metadata"), dict):
        return
    row = c.kind_row()
    if not named:
        return  # nothing else is read from an object whose name is unusable
    if row is not None and c.generated:
        c.namespace(row)
        c.provenance()
    if c.generated:
        c.system_and_ownership(row)
        c.companion()
    c.shape()
    c.strings()
    kind = c.kind
    if kind in POD_PATHS and (row is not None or c.ctx.audit):
        c.pod(POD_PATHS[kind])
    handlers: dict[str, Callable[[], None]] = {
        "Role": c.role, "ClusterRole": c.role, "RoleBinding": c.rolebinding,
        "ClusterRoleBinding": c.rolebinding, "Service": c.service, "Ingress": c.ingress,
        "NetworkPolicy": c.network_policy, "PodDisruptionBudget": c.pdb,
        "ExternalSecret": c.external_secret, "Certificate": c.certificate,
        "PrometheusRule": c.prometheus_rule, "VMRule": c.prometheus_rule, "ServiceMonitor": c.service_monitor,
        "StorageClass": c.storage_class, "HorizontalPodAutoscaler": c.hpa, "ScaledObject": c.scaled_object,
        "Middleware": c.middleware,
    }
    if kind in handlers and (row is not None or c.ctx.audit):
        handlers[kind]()
    if kind == "PersistentVolumeClaim" and c.generated:
        c.pvc(c.m.get("spec"), "spec")
    if kind == "StatefulSet" and c.generated:
        for i, t in enumerate(_list(_dig(c.m, ("spec", "volumeClaimTemplates")))):
            c.pvc(_map(t).get("spec"), f"spec.volumeClaimTemplates[{i}].spec")
        svc = _dig(c.m, ("spec", "serviceName"))
        if svc is not None and (c.ns, str(svc)) not in c.change.services:
            c.add("selector", "spec.serviceName", f"governed by Service {str(svc)[:80]!r}, which "
                  "this change does not create")
    if kind in WORKLOAD_KINDS and c.generated:
        c.workload_labels()


def check_all(manifests: list[Any], policy: PolicySettings, *, generated: bool = True,
              ctx: GateContext | None = None) -> list[Violation]:
    """The gate with the default context for ``policy`` (``generated=False``: audit)."""
    if ctx is None:
        ctx = GateContext.default(policy, audit=not generated)
    return check_change(manifests, ctx)


def check_manifest(manifest: Manifest, policy: PolicySettings, *,
                   generated: bool = True) -> list[Violation]:
    """One object on its own (a change of one)."""
    return check_all([manifest], policy, generated=generated)



# -- plans, before anything is rendered ----------------------------------------------------

PLAN_STRING_BYTES = 4096  # any plan string but ConfigMap values (those: max_field_bytes)
_WORKLOAD_PLAN_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet"})


def check_plan(plan: Any, policy: PolicySettings, system: SystemIdentity) -> list[Violation]:
    """Size bounds and references a plan may not make, before rendering: a plan names only
    ServiceAccounts, Roles, Secrets, Services and selectors it creates itself, and never
    the system's own objects. (The renderers turn plan fields into data for fixed
    templates; this is what keeps their references honest.)"""
    found: list[Violation] = []
    raw = plan.model_dump(mode="json")
    total = len(json.dumps(raw, ensure_ascii=False).encode())
    if total > 8 * policy.max_field_bytes:
        found.append(Violation(rule="size", object="plan", detail=f"{total} bytes of plan "
                               f"(limit {8 * policy.max_field_bytes})"))
    for path, text in _walk_strings(raw):
        limit = policy.max_field_bytes if ".config." in f".{path}" else PLAN_STRING_BYTES
        if len(text.encode()) > limit:
            found.append(Violation(rule="size", object="plan", path=path, detail=(
                f"a string of {len(text)} characters (limit {limit} bytes)")))
    resources = list(plan.resources)
    if len(resources) > policy.max_objects:
        found.append(Violation(rule="size", object="plan", detail=f"{len(resources)} resources"))

    def names(*kinds: str) -> set[tuple[str, str]]:
        return {(r.namespace, r.name) for r in resources if r.kind in kinds}

    accounts = names("ServiceAccount", "SecretRotationCronJob")
    roles = names("Role", "SecretRotationCronJob")
    services = names("Service", "StatefulSet")
    external = names("ExternalSecret")
    secrets = external | {(r.namespace, f"{r.name[:59]}-tls") for r in resources
                          if r.kind == "Certificate"}
    workloads = [(r.namespace, r.selector or {"app.kubernetes.io/name": r.name})
                 for r in resources if r.kind in _WORKLOAD_PLAN_KINDS]

    for i, r in enumerate(resources):
        ref = f"{r.kind}/{r.namespace}/{r.name}"

        def add(rule: str, path: str, detail: str, ref: str = ref, i: int = i) -> None:
            found.append(Violation(rule=rule, object=ref, path=f"resources[{i}].{path}",
                                   detail=detail))

        if r.namespace not in policy.allowed_namespaces:
            # Also for cluster-scoped kinds: the namespace is the folder (apps/<namespace>/)
            # the file lands in, and so the ArgoCD Application that applies it.
            add("namespace", "namespace", f"namespace {r.namespace!r} is not in the allowlist "
                f"({', '.join(policy.allowed_namespaces)})")
        for field_name in ("name", "subject", "target"):
            value = getattr(r, field_name)
            if value and system.owns_name(value):
                add("system-object", field_name, f"{value!r} is (or shadows) one of the system's "
                    "own objects")
        for j, env in enumerate(r.env):
            if env.secret_name and (r.namespace, env.secret_name) not in secrets:
                add("plan-ref", f"env[{j}].secret_name", f"reads secret {env.secret_name!r}, which "
                    "the plan does not declare (an ExternalSecret of its own)")
        if r.kind == "RoleBinding":
            # A companion binds the account its existing workload runs as: the gate checks
            # that account against the repository.
            if r.subject and (r.namespace, r.subject) not in accounts and not r.companion_of:
                add("plan-ref", "subject", f"binds ServiceAccount {r.subject!r}, which the plan "
                    "does not create")
            if (r.namespace, r.target or r.name) not in roles:
                add("plan-ref", "target", f"binds Role {r.target or r.name!r}, which the plan "
                    "does not create")
        if r.kind == "Ingress" and (r.namespace, r.target or r.name) not in services:
            add("plan-ref", "target", f"routes to Service {r.target or r.name!r}, which the plan "
                "does not create")
        if r.kind == "Deployment" and r.storage is not None and (r.replicas or 1) > 1 and \
                r.storage.access_mode != "ReadWriteMany":
            add("plan-ref", "storage", f"{r.replicas} replicas share one {r.storage.access_mode} claim: the "
                "pods on other nodes could never attach it (ReadWriteMany, or one replica)")
        for name in r.middlewares:
            if not any(m.kind == "Middleware" and m.namespace == r.namespace and m.name == name for m in resources):
                add("plan-ref", "middlewares", f"attaches Middleware {name!r}, which the plan does not create "
                    f"in {r.namespace}")
        if r.certificate and not any(c.kind == "Certificate" and c.namespace == r.namespace and c.name == r.certificate
                                     and r.host in c.dns_names for c in resources):
            add("plan-ref", "certificate", f"serves the Secret of Certificate {r.certificate!r}, which the plan "
                f"does not create for {r.host}")
        if r.kind == "SecretRotationCronJob" and r.target and (r.namespace, r.target) not in external:
            add("plan-ref", "target", f"rotates ExternalSecret {r.target!r}, which the plan does "
                "not create")
        if r.kind in ("HorizontalPodAutoscaler", "ScaledObject") and not r.companion_of and \
                (r.namespace, r.target) not in {(w.namespace, w.name) for w in resources
                                                if w.kind in ("Deployment", "StatefulSet")}:
            add("plan-ref", "target", f"scales {r.target!r}, which the plan does not create "
                "(and it names no existing workload as companion_of)")
        if r.kind == "Service" or (r.kind == "PodDisruptionBudget" and not r.companion_of):
            selector = r.selector or {"app.kubernetes.io/name": r.name}
            if not any(ns == r.namespace and all(labels.get(k) == v for k, v in selector.items())
                       for ns, labels in workloads):
                add("plan-ref", "selector", f"selects {selector}, pods the plan does not run")
        if system.selects(dict(r.selector), r.namespace) and r.selector:
            add("system-object", "selector", "selects the system's own pods")
    return found
