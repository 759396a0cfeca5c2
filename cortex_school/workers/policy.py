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
    "ReplicationController": ("spec", "template", "spec"),
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
    if not isinstance(meta, dict):
        meta = {}
    ns = meta.get("namespace")
    return f"{manifest.get('kind', '?')}/{str(ns) + '/' if ns else ''}{meta.get('name', '?')}"


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
        elif role_ref.get("kind") == "ClusterRole" and role_ref.get("name") in ("admin", "edit"):
            add("rbac-escalation", f"{kind} to the built-in ClusterRole {role_ref.get('name')}")
    if kind in ("Role", "ClusterRole"):
        for rule in manifest.get("rules") or []:
            if not isinstance(rule, dict):
                add("rbac", "a rule that is not a mapping")
                continue
            found += [Violation(rule=r, object=ref, detail=d) for r, d in _rbac_findings(rule)]

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


# Verbs and subresources that hand out more than the rule says.
ESCALATING_VERBS = frozenset({"bind", "escalate", "impersonate"})
DANGEROUS_SUBRESOURCES = frozenset({"pods/exec", "pods/attach", "pods/portforward",
                                    "serviceaccounts/token", "nodes/proxy"})
SECRET_READ_OR_WRITE = frozenset({"*", "list", "watch", "create", "update", "patch", "delete",
                                  "deletecollection"})


def _rbac_findings(rule: dict[str, Any]) -> list[tuple[str, str]]:
    verbs = {str(v) for v in rule.get("verbs") or []}
    resources = {str(r) for r in rule.get("resources") or []}
    out: list[tuple[str, str]] = []
    if "*" in resources:
        # Every resource includes secrets: reading all of them is no better than writing.
        out.append(("rbac-wildcard", f"verbs {', '.join(sorted(verbs))} on every resource ('*')"))
    elif "secrets" in resources and verbs & SECRET_READ_OR_WRITE:
        named = bool(rule.get("resourceNames"))
        if not named or verbs & {"*", "list", "watch", "create", "deletecollection"}:
            out.append(("rbac-wildcard", f"broad access to secrets ({', '.join(sorted(verbs))}); "
                        "only get/update on named secrets is allowed"))
    if "*" in verbs and "rbac-wildcard" not in {r for r, _ in out}:
        out.append(("rbac-wildcard", f"every verb ('*') on {', '.join(sorted(resources))}"))
    if verbs & ESCALATING_VERBS:
        out.append(("rbac-escalation", f"verbs {', '.join(sorted(verbs & ESCALATING_VERBS))}"))
    if resources & DANGEROUS_SUBRESOURCES:
        out.append(("rbac-escalation", f"access to {', '.join(sorted(resources & DANGEROUS_SUBRESOURCES))}"))
    if resources & {"roles", "rolebindings", "clusterroles", "clusterrolebindings"} and \
            verbs & {"*", "create", "update", "patch"}:
        out.append(("rbac-escalation", "may write RBAC objects"))
    return out


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
    containers = [*(pod.get("initContainers") or []), *(pod.get("containers") or []),
                  *(pod.get("ephemeralContainers") or [])]
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
        if any(isinstance(p, dict) and p.get("hostPort") for p in c.get("ports") or []):
            out.append(("host-port", f"container {name} binds a hostPort"))
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
    found: list[Violation] = []
    for m in manifests:
        try:
            found += check_manifest(m, policy, generated=generated)
        except (TypeError, AttributeError, KeyError, ValueError) as exc:
            # Odd YAML (a list where a mapping belongs, ...) is a finding, never a crash.
            found.append(Violation(rule="malformed", object=object_ref(m) if isinstance(m, dict) else "?",
                                   detail=f"cannot be checked: {type(exc).__name__}: {str(exc)[:200]}"))
    return found


def check_plan_secrets(manifests: list[dict[str, Any]]) -> list[Violation]:
    """Pods may only reference secrets the same change provides (its ExternalSecrets): a
    plan must not mount the platform's existing credentials into something new."""
    provided = {(m["metadata"].get("namespace"), m["metadata"]["name"]) for m in manifests
                if m.get("kind") in ("ExternalSecret", "SealedSecret")}
    found = []
    for m in manifests:
        pod = _dig(m, WORKLOAD_POD_PATHS[m["kind"]]) if m.get("kind") in WORKLOAD_POD_PATHS else None
        if not isinstance(pod, dict):
            continue
        ns = m["metadata"].get("namespace")
        refs = set()
        for c in [*(pod.get("initContainers") or []), *(pod.get("containers") or [])]:
            for env in c.get("env") or []:
                ref = ((env.get("valueFrom") or {}).get("secretKeyRef") or {}).get("name")
                if ref:
                    refs.add(ref)
            for src in c.get("envFrom") or []:
                if (src.get("secretRef") or {}).get("name"):
                    refs.add(src["secretRef"]["name"])
        for v in pod.get("volumes") or []:
            if (v.get("secret") or {}).get("secretName"):
                refs.add(v["secret"]["secretName"])
        for ref in sorted(refs):
            if (ns, ref) not in provided:
                found.append(Violation(rule="secret-ref", object=object_ref(m), detail=(
                    f"references secret {ref!r}, which this change does not provide")))
    return found
