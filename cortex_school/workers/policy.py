"""The policy every manifest passes before it is committed.

This system deploys what it read in a video, so the rules are explicit code, not
configuration a proposal could reach: no privileged or host-level pods, non-root
without privilege escalation, requests and limits, no cluster-admin or wildcard
access to secrets, no secret values anywhere, namespaces and registries from
allowlists. Every finding names the object and the rule.
"""

from __future__ import annotations

import re
from typing import Any, Iterator

from pydantic import BaseModel

from cortex_school.settings import PolicySettings

CLUSTER_SCOPED = frozenset({
    "Namespace", "ClusterRole", "ClusterRoleBinding", "StorageClass", "PersistentVolume",
    "CustomResourceDefinition", "PriorityClass", "IngressClass", "ClusterIssuer",
    "ClusterSecretStore", "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration",
    "APIService", "RuntimeClass", "CSIDriver", "Node",
})
# The one cluster-scoped kind workers may create (storage tiers); reclaimPolicy Retain.
ALLOWED_CLUSTER_KINDS = frozenset({"StorageClass"})
WORKLOAD_POD_PATHS: dict[str, tuple[str, ...]] = {
    "Pod": ("spec",),
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}
SAFE_CAPABILITIES = frozenset({"NET_BIND_SERVICE"})
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"

# High-confidence shapes of secret values; a match anywhere in a manifest blocks it.
SECRET_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("private key", re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")),
    ("AWS access key", re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b")),
    ("GitHub token", re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}\b")),
    ("API key", re.compile(r"\bsk-(live-|ant-|proj-)?[A-Za-z0-9_-]{12,}\b")),
    ("Slack token", re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}\b")),
    ("JWT", re.compile(r"\beyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}")),
    ("credential assignment", re.compile(
        r"(?i)\b(password|passwd|secret|token|api[_-]?key)\s*[:=]\s*['\"]?(?!\$\()[^\s'\"<>{}$]{6,}")),
    ("credentials in a URL", re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@]+:[^/\s@]{3,}@")),
)
SECRET_ENV_NAME = re.compile(r"(?i)(password|passwd|secret|token|api_?key|credential|private_?key)")


class Violation(BaseModel):
    rule: str
    object: str  # Kind/namespace/name
    detail: str

    def __str__(self) -> str:
        return f"{self.object}: {self.rule}: {self.detail}"


def object_ref(manifest: dict[str, Any]) -> str:
    meta = manifest.get("metadata") or {}
    ns = meta.get("namespace")
    return f"{manifest.get('kind', '?')}/{ns + '/' if ns else ''}{meta.get('name', '?')}"


def _dig(obj: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _strings(obj: Any) -> Iterator[str]:
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield str(k)
            yield from _strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _strings(v)


def image_registry(image: str) -> str:
    """``docker.io`` for short names; the first path part when it looks like a host."""
    first, sep, _ = image.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"


def _image_allowed(image: str, allowed: list[str]) -> bool:
    if not allowed:
        return True
    full = image if image_registry(image) != "docker.io" or image.startswith("docker.io/") else (
        f"docker.io/{image if '/' in image else 'library/' + image}")
    return any(full == a or full.startswith(a.rstrip("/") + "/") for a in allowed)


def _pinned(image: str) -> bool:
    if "@sha256:" in image:
        return True
    name = image.rsplit("/", 1)[-1]
    return ":" in name and not name.endswith(":latest")


def check_manifest(manifest: dict[str, Any], policy: PolicySettings, *,
                   generated: bool = True) -> list[Violation]:
    """Every policy violation of one object. ``generated`` adds the provenance rules that
    only apply to what this system writes."""
    ref = object_ref(manifest)
    kind = manifest.get("kind", "")
    meta = manifest.get("metadata") or {}
    found: list[Violation] = []

    def add(rule: str, detail: str) -> None:
        found.append(Violation(rule=rule, object=ref, detail=detail))

    if kind in CLUSTER_SCOPED:
        if kind not in ALLOWED_CLUSTER_KINDS:
            add("cluster-scoped", f"{kind} is cluster-scoped; only namespaced objects in "
                f"{', '.join(policy.allowed_namespaces)} may be generated")
    else:
        namespace = meta.get("namespace")
        if not namespace:
            add("namespace", "no namespace: it would land wherever the sync defaults to")
        elif namespace not in policy.allowed_namespaces:
            add("namespace", f"namespace {namespace!r} is not in the allowlist "
                f"({', '.join(policy.allowed_namespaces)})")

    if kind == "Secret" and (manifest.get("data") or manifest.get("stringData")):
        add("secret-data", "a Secret carrying data; reference a secret store (ExternalSecret) "
            "or a SealedSecret instead")

    if kind in ("ClusterRoleBinding", "RoleBinding"):
        role_ref = manifest.get("roleRef") or {}
        if role_ref.get("name") == "cluster-admin":
            add("cluster-admin", f"{kind} to cluster-admin")
    if kind in ("Role", "ClusterRole"):
        for rule in manifest.get("rules") or []:
            verbs = set(rule.get("verbs") or [])
            resources = set(rule.get("resources") or [])
            if "*" in verbs and resources & {"secrets", "*"}:
                add("rbac-wildcard", f"wildcard verbs on {', '.join(sorted(resources))}")
            elif "*" in resources and verbs & {"*", "create", "update", "patch", "delete"}:
                add("rbac-wildcard", "write access to every resource ('*')")

    pod = _dig(manifest, WORKLOAD_POD_PATHS[kind]) if kind in WORKLOAD_POD_PATHS else None
    if isinstance(pod, dict):
        found += [Violation(rule=r, object=ref, detail=d) for r, d in _pod_findings(pod, policy)]

    for label, pattern in SECRET_PATTERNS:
        for text in _strings(manifest):
            if pattern.search(text):
                add("secret-value", f"looks like a {label} in the manifest; secrets never go in "
                    "manifests")
                break

    if generated:
        if (meta.get("labels") or {}).get(MANAGED_BY_LABEL) != "cortex-school":
            add("provenance", f"missing label {MANAGED_BY_LABEL}: cortex-school")
        if not (meta.get("annotations") or {}).get("cortex-school.io/improvement-id"):
            add("provenance", "missing annotation cortex-school.io/improvement-id")
    return found


def _pod_findings(pod: dict[str, Any], policy: PolicySettings) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for host_field in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(host_field):
            out.append(("host-namespace", f"{host_field}: true"))
    for volume in pod.get("volumes") or []:
        if isinstance(volume, dict) and "hostPath" in volume:
            out.append(("host-path", f"volume {volume.get('name')!r} mounts a hostPath"))
    pod_ctx = pod.get("securityContext") or {}
    pod_nonroot = pod_ctx.get("runAsNonRoot") is True
    containers = [*(pod.get("initContainers") or []), *(pod.get("containers") or [])]
    for c in containers:
        if not isinstance(c, dict):
            continue
        name = c.get("name", "?")
        ctx = c.get("securityContext") or {}
        if ctx.get("privileged"):
            out.append(("privileged", f"container {name} is privileged"))
        if ctx.get("allowPrivilegeEscalation") is not False:
            out.append(("privilege-escalation",
                        f"container {name} does not set allowPrivilegeEscalation: false"))
        nonroot = ctx.get("runAsNonRoot", pod_nonroot)
        if nonroot is not True or ctx.get("runAsUser") == 0:
            out.append(("run-as-root", f"container {name} may run as root (runAsNonRoot not set)"))
        added = set((ctx.get("capabilities") or {}).get("add") or []) - SAFE_CAPABILITIES
        if added:
            out.append(("capabilities", f"container {name} adds {', '.join(sorted(added))}"))
        resources = c.get("resources") or {}
        for section in ("requests", "limits"):
            missing = [r for r in ("cpu", "memory") if r not in (resources.get(section) or {})]
            if missing:
                out.append(("resources", f"container {name} has no {section} for "
                            f"{', '.join(missing)}"))
        image = c.get("image") or ""
        if not image:
            out.append(("image", f"container {name} has no image"))
        else:
            if not _pinned(image):
                out.append(("image-tag", f"container {name} image {image} is not pinned to a "
                            "tag or digest"))
            if not _image_allowed(image, policy.allowed_registries):
                out.append(("registry", f"container {name} image {image} is not from an "
                            f"allowed registry ({', '.join(policy.allowed_registries)})"))
        for env in c.get("env") or []:
            if (isinstance(env, dict) and env.get("value") and
                    SECRET_ENV_NAME.search(str(env.get("name", "")))):
                out.append(("secret-value", f"container {name} sets {env.get('name')} to a "
                            "literal value; use a secretKeyRef"))
    return out


def check_all(manifests: list[dict[str, Any]], policy: PolicySettings, *,
              generated: bool = True) -> list[Violation]:
    return [v for m in manifests for v in check_manifest(m, policy, generated=generated)]
