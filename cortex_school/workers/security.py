"""Security worker: least-privilege RBAC, NetworkPolicies, TLS certificates and secret
rotation."""

from __future__ import annotations

from cortex_school.workers.manifests import (
    Manifest,
    PlanError,
    RenderContext,
    container,
    metadata,
    pod_spec,
)
from cortex_school.workers.plan import PlannedResource

KINDS = ("Role", "RoleBinding", "ServiceAccount", "NetworkPolicy", "Certificate",
         "SecretRotationCronJob")
KUBECTL_IMAGE = "bitnami/kubectl:1.31.4"  # the gate's TOKEN_IMAGES: keep them equal


def role(res: PlannedResource, ctx: RenderContext) -> list[Manifest]:
    if not res.rbac_rules:
        raise PlanError(f"Role {res.name} has no rules")
    return [{
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": metadata(res, ctx),
        "rules": [{"apiGroups": list(r.api_groups), "resources": list(r.resources),
                   "verbs": list(r.verbs)} for r in res.rbac_rules],
    }]


def rolebinding(res: PlannedResource, ctx: RenderContext) -> list[Manifest]:
    if not res.subject:
        raise PlanError(f"RoleBinding {res.name} needs a subject ServiceAccount")
    return [{
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": metadata(res, ctx),
        # Always a namespaced Role of the same namespace: never a ClusterRole.
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                    "name": res.target or res.name},
        "subjects": [{"kind": "ServiceAccount", "name": res.subject, "namespace": res.namespace}],
    }]


def serviceaccount(res: PlannedResource, ctx: RenderContext) -> list[Manifest]:
    return [{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata(res, ctx),
             "automountServiceAccountToken": False}]


def networkpolicy(res: PlannedResource, ctx: RenderContext) -> list[Manifest]:
    spec: dict = {
        "podSelector": {"matchLabels": dict(res.selector)} if res.selector else {},
        "policyTypes": ["Ingress"],
    }
    if res.deny_all:
        spec["ingress"] = []
    else:
        rules = [(r.peers, r.ports) for r in res.ingress_rules] or \
            ([(res.allow_from, res.ports)] if res.allow_from else [])
        if not rules:
            raise PlanError(f"NetworkPolicy {res.name} allows nothing and is not a deny-all")
        spec["ingress"] = [_ingress_rule(peers, ports) for peers, ports in rules]
    return [{"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
             "metadata": metadata(res, ctx), "spec": spec}]


def _ingress_rule(peers: list, ports: list) -> dict:
    entries = []
    for peer in peers:
        entry: dict = {}
        if peer.namespace:
            entry["namespaceSelector"] = {"matchLabels": {"kubernetes.io/metadata.name": peer.namespace}}
        if peer.pod_labels:
            entry["podSelector"] = {"matchLabels": dict(peer.pod_labels)}
        entries.append(entry)
    rule: dict = {"from": entries}
    if ports:
        rule["ports"] = [{"protocol": p.protocol, "port": p.number} for p in ports]
    return rule


def certificate(res: PlannedResource, ctx: RenderContext) -> list[Manifest]:
    if not res.dns_names:
        raise PlanError(f"Certificate {res.name} needs DNS names")
    return [{
        "apiVersion": "cert-manager.io/v1", "kind": "Certificate",
        "metadata": metadata(res, ctx),
        "spec": {
            "secretName": ctx.secret_name(f"{res.name[:50]}-tls"),
            "dnsNames": list(res.dns_names),
            "duration": "2160h",
            "renewBefore": "360h",
            "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
            "issuerRef": {"name": res.issuer or ctx.cert_issuer, "kind": "ClusterIssuer",
                          "group": "cert-manager.io"},
        },
    }]


def secret_rotation(res: PlannedResource, ctx: RenderContext) -> list[Manifest]:
    """A CronJob that forces the ExternalSecret ``target`` to refresh from the store, with
    a ServiceAccount allowed to patch exactly that one object."""
    if not res.target or not res.schedule:
        raise PlanError(f"secret rotation {res.name} needs the ExternalSecret to rotate and a schedule")
    job = res.model_copy(update={
        # Always the one kubectl image: a plan never chooses what runs with a token.
        "image": KUBECTL_IMAGE,
        "command": ["/bin/sh", "-c",
                    f"kubectl annotate externalsecret {res.target} "
                    "force-sync=$(date +%s) --overwrite"],
        "ports": [],
    })
    spec = pod_spec([container(job)], restart_policy="OnFailure")
    spec["serviceAccountName"] = res.name
    spec["automountServiceAccountToken"] = True  # kubectl needs its token
    rules = {"apiGroups": ["external-secrets.io"], "resources": ["externalsecrets"],
             "resourceNames": [res.target], "verbs": ["get", "patch"]}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata(res, ctx),
         "automountServiceAccountToken": False},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": metadata(res, ctx), "rules": [rules]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": metadata(res, ctx),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": res.name},
         "subjects": [{"kind": "ServiceAccount", "name": res.name, "namespace": res.namespace}]},
        {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": metadata(res, ctx),
         "spec": {"schedule": res.schedule, "concurrencyPolicy": "Forbid",
                  "successfulJobsHistoryLimit": 3, "failedJobsHistoryLimit": 3,
                  "jobTemplate": {"spec": {"backoffLimit": 2, "template": {"spec": spec}}}}},
    ]


RENDERERS = {
    "Role": role,
    "RoleBinding": rolebinding,
    "ServiceAccount": serviceaccount,
    "NetworkPolicy": networkpolicy,
    "Certificate": certificate,
    "SecretRotationCronJob": secret_rotation,
}
