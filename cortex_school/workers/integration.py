"""Integration worker: Services, Ingress routes, and secret placeholders.

A secret is never generated with a value: an ExternalSecret names the key in the
cluster's secret store; a person puts the value there.
"""

from __future__ import annotations

from cortex_school.workers.manifests import Manifest, PlanError, RenderContext, app_labels, metadata
from cortex_school.workers.plan import PlannedResource

KINDS = ("Service", "Ingress", "ExternalSecret")


def service(res: PlannedResource, ctx: RenderContext) -> list[Manifest]:
    if not res.ports:
        raise PlanError(f"Service {res.name} needs at least one port")
    return [{
        "apiVersion": "v1", "kind": "Service",
        "metadata": metadata(res, ctx),
        "spec": {
            "type": "ClusterIP",
            "selector": app_labels(res),
            "ports": [{"name": p.name or f"port-{p.number}", "port": p.number,
                       "targetPort": p.number, "protocol": p.protocol} for p in res.ports],
        },
    }]


def ingress(res: PlannedResource, ctx: RenderContext) -> list[Manifest]:
    if not res.host or not res.ports:
        raise PlanError(f"Ingress {res.name} needs a host and the backend's port")
    return [{
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": metadata(res, ctx),
        "spec": {
            "ingressClassName": ctx.ingress_class,
            "rules": [{"host": res.host, "http": {"paths": [{
                "path": res.path, "pathType": "Prefix",
                "backend": {"service": {"name": res.target or res.name,
                                        "port": {"number": res.ports[0].number}}},
            }]}}],
        },
    }]


def external_secret(res: PlannedResource, ctx: RenderContext) -> list[Manifest]:
    keys = res.secret_keys or ["value"]
    return [{
        "apiVersion": "external-secrets.io/v1beta1", "kind": "ExternalSecret",
        "metadata": metadata(res, ctx),
        "spec": {
            "refreshInterval": "1h",
            "secretStoreRef": {"name": ctx.secret_store, "kind": "ClusterSecretStore"},
            "target": {"name": ctx.secret_name(res.name), "creationPolicy": "Owner"},
            "data": [{"secretKey": k, "remoteRef": {"key": f"{res.namespace}/{res.name}",
                                                    "property": k}} for k in keys],
        },
    }]


RENDERERS = {"Service": service, "Ingress": ingress, "ExternalSecret": external_secret}
