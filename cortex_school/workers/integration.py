"""Integration worker: Services, Ingress routes, and secret placeholders.

A secret is never generated with a value: an ExternalSecret names the key in the
cluster's secret store; a person puts the value there.
"""

from __future__ import annotations

from typing import Any

from cortex_school.workers.manifests import Manifest, PlanError, RenderContext, app_labels, metadata
from cortex_school.workers.plan import PlannedResource

KINDS = ("Service", "Ingress", "Middleware", "ExternalSecret")

# How Traefik names a Middleware of the Kubernetes CRD provider in a router annotation.
MIDDLEWARES_ANNOTATION = "traefik.ingress.kubernetes.io/router.middlewares"


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
    meta = metadata(res, ctx)
    if res.middlewares:  # attached by the annotation Traefik reads, to this Ingress only
        meta["annotations"][MIDDLEWARES_ANNOTATION] = ",".join(
            f"{res.namespace}-{name}@kubernetescrd" for name in res.middlewares)
    return [{
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": meta,
        "spec": {
            "ingressClassName": res.ingress_class or ctx.ingress_class,
            "rules": [{"host": res.host, "http": {"paths": [{
                "path": res.path, "pathType": "Prefix",
                "backend": {"service": {"name": res.target or res.name,
                                        "port": {"number": res.ports[0].number}}},
            }]}}],
            # The Secret the plan's Certificate writes (named as security.certificate names it).
            **({"tls": [{"hosts": [res.host], "secretName": ctx.secret_name(f"{res.certificate[:50]}-tls")}]}
               if res.certificate else {}),
        },
    }]


def middleware(res: PlannedResource, ctx: RenderContext) -> list[Manifest]:
    """A traefik.io/v1alpha1 Middleware of the plan's one allowlisted type."""
    m = res.middleware
    if m is None:
        raise PlanError(f"Middleware {res.name} needs its type and values")
    spec: dict[str, Any]
    source = {"sourceCriterion": {"ipStrategy": {"depth": m.depth}}} if m.depth is not None else {}
    if m.type == "rateLimit":
        if m.average is None:
            raise PlanError(f"Middleware {res.name}: a rate limit needs its average")
        spec = {"average": m.average, **({"burst": m.burst} if m.burst else {}),
                **({"period": m.period} if m.period else {}), **source}
    elif m.type == "inFlightReq":
        if m.amount is None:
            raise PlanError(f"Middleware {res.name}: an in-flight limit needs its amount")
        spec = {"amount": m.amount, **source}
    elif m.type == "headers":
        spec = {**({"stsSeconds": m.sts_seconds, "stsIncludeSubdomains": True} if m.sts_seconds else {}),
                **({"frameDeny": True} if m.frame_deny else {}),
                **({"contentTypeNosniff": True} if m.content_type_nosniff else {}),
                **({"referrerPolicy": m.referrer_policy} if m.referrer_policy else {})}
        if not spec:
            raise PlanError(f"Middleware {res.name}: no security header named")
    elif m.type == "redirectScheme":
        spec = {"scheme": "https", "permanent": True}
    else:
        spec = {}
    return [{"apiVersion": "traefik.io/v1alpha1", "kind": "Middleware", "metadata": metadata(res, ctx),
             "spec": {m.type: spec}}]


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


RENDERERS = {"Service": service, "Ingress": ingress, "Middleware": middleware, "ExternalSecret": external_secret}
