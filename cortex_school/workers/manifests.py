"""Building blocks every worker's renderers share: metadata, pod templates, containers.

Secure defaults live here, once: non-root, no privilege escalation, all capabilities
dropped, read-only root filesystem, RuntimeDefault seccomp, requests and limits,
probes on the first port. Every object carries ``app.kubernetes.io/managed-by:
cortex-school`` and annotations naming the improvement and its source video.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cortex_school.workers.plan import PlannedResource
from cortex_school.workers.policy import owned_secret_name

MANAGED_BY = "cortex-school"
ANNOTATION_PREFIX = "cortex-school.io"
# On a companion: the existing object (Kind/namespace/name) it serves; the gate checks it.
COMPANION_ANNOTATION = f"{ANNOTATION_PREFIX}/companion-of"

Manifest = dict[str, Any]

# Requests and limits when the plan names none: small, and always set.
DEFAULT_RESOURCES: dict[str, dict[str, str]] = {
    "requests": {"cpu": "50m", "memory": "64Mi"},
    "limits": {"cpu": "500m", "memory": "256Mi"},
}
NONROOT_UID = 65532


@dataclass(frozen=True)
class RenderContext:
    """Where a generated object came from (written onto every object), and the
    cluster conventions renderers need."""

    improvement_id: str
    video_id: str
    title: str
    secret_store: str = "cortex-secrets"
    ingress_class: str = "traefik"  # K3s ships Traefik
    cert_issuer: str = "cortex-ca"

    def secret_name(self, base: str) -> str:
        """The Secret a change declares under ``base``: never an existing one."""
        return owned_secret_name(base, self.improvement_id)

    def annotations(self) -> dict[str, str]:
        return {
            f"{ANNOTATION_PREFIX}/improvement-id": self.improvement_id,
            f"{ANNOTATION_PREFIX}/source-video": self.video_id,
            f"{ANNOTATION_PREFIX}/source-url": f"https://www.youtube.com/watch?v={self.video_id}",
            f"{ANNOTATION_PREFIX}/source-title": self.title[:200],
        }


def app_labels(resource: PlannedResource) -> dict[str, str]:
    """The selector labels of a workload (stable: never the provenance)."""
    return resource.selector or {"app.kubernetes.io/name": resource.name}


def metadata(resource: PlannedResource, prov: RenderContext, *, namespaced: bool = True,
             labels: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": resource.name}
    if namespaced:
        meta["namespace"] = resource.namespace
    meta["labels"] = {
        **(labels or {}),
        "app.kubernetes.io/name": (labels or {}).get("app.kubernetes.io/name", resource.name),
        "app.kubernetes.io/managed-by": MANAGED_BY,
        f"{ANNOTATION_PREFIX}/improvement-id": prov.improvement_id,
    }
    meta["annotations"] = prov.annotations() | (
        {f"{ANNOTATION_PREFIX}/purpose": resource.purpose} if resource.purpose else {}
    ) | ({COMPANION_ANNOTATION: resource.companion_of} if resource.companion_of else {})
    return meta


def container(resource: PlannedResource, *, name: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": name or resource.name[:63],
        "image": resource.image,
        "imagePullPolicy": "IfNotPresent",
        "resources": resources_of(resource),
        "securityContext": {
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        # The root filesystem is read-only; /tmp is the one writable place.
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    if resource.command:
        spec["command"] = list(resource.command)
    if resource.ports:
        spec["ports"] = [
            {"containerPort": p.number, "protocol": p.protocol, **({"name": p.name} if p.name else {})}
            for p in resource.ports
        ]
        tcp = next((p for p in resource.ports if p.protocol == "TCP"), None)
        if tcp is not None:
            probe = {"tcpSocket": {"port": tcp.number}, "periodSeconds": 10}
            spec["readinessProbe"] = {**probe, "initialDelaySeconds": 5}
            spec["livenessProbe"] = {**probe, "initialDelaySeconds": 15, "failureThreshold": 3}
    if resource.env:
        spec["env"] = [env_var(e) for e in resource.env]
    return spec


def resources_of(resource: PlannedResource) -> dict[str, dict[str, str]]:
    """The defaults, with the requests the plan names (and limits equal to them: what a
    proposal sized is what the scheduler and the capacity check count)."""
    out = {k: dict(v) for k, v in DEFAULT_RESOURCES.items()}
    for key in ("cpu", "memory"):
        value = getattr(resource, key)
        if value:
            out["requests"][key] = value
            out["limits"][key] = value
    return out


def env_var(env: Any) -> dict[str, Any]:
    if env.secret_name:
        return {"name": env.name, "valueFrom": {"secretKeyRef": {
            "name": env.secret_name, "key": env.secret_key or env.name.lower()}}}
    return {"name": env.name, "value": env.value or ""}


def pod_spec(containers: list[dict[str, Any]], *, restart_policy: str | None = None,
             volumes: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": NONROOT_UID,
            "runAsGroup": NONROOT_UID,
            "fsGroup": NONROOT_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": containers,
    }
    if restart_policy:
        spec["restartPolicy"] = restart_policy
    spec["volumes"] = [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}, *(volumes or [])]
    return spec


def pod_template(resource: PlannedResource, prov: RenderContext, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {
            "labels": {**app_labels(resource), "app.kubernetes.io/managed-by": MANAGED_BY},
            "annotations": {f"{ANNOTATION_PREFIX}/improvement-id": prov.improvement_id},
        },
        "spec": spec,
    }


def requires_image(resource: PlannedResource) -> str:
    if not resource.image:
        raise PlanError(f"{resource.kind} {resource.name} needs an image and the plan names none")
    return resource.image


class PlanError(ValueError):
    """A plan that cannot be rendered as asked (a missing image, an unknown kind, ...)."""
