"""A loopback HTTP server (pytest-httpserver) that answers the Kubernetes API paths the
cluster target uses, like the API server does: pods (with label selectors), pod logs,
Deployments, StatefulSets, Services, Endpoints and ArgoCD Applications with their
merge-patch. It keeps state, so an Application goes from OutOfSync to Synced after a
hard refresh, and records every request for assertions."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from werkzeug import Request, Response

POD_RE = re.compile(r"^/api/v1/namespaces/([^/]+)/pods$")
LOG_RE = re.compile(r"^/api/v1/namespaces/([^/]+)/pods/([^/]+)/log$")
SVC_RE = re.compile(r"^/api/v1/namespaces/([^/]+)/services/([^/]+)$")
EP_RE = re.compile(r"^/api/v1/namespaces/([^/]+)/endpoints/([^/]+)$")
WL_RE = re.compile(r"^/apis/apps/v1/namespaces/([^/]+)/(deployments|statefulsets)/([^/]+)$")
LIST_RE = re.compile(r"^/apis/apps/v1/(deployments|statefulsets|daemonsets)$|^/api/v1/(services)$")
APP_RE = re.compile(r"^/apis/argoproj.io/v1alpha1/namespaces/([^/]+)/applications/([^/]+)$")
APPS_RE = re.compile(r"^/apis/argoproj.io/v1alpha1/(?:namespaces/([^/]+)/)?applications$")


@dataclass
class FakeApp:
    path: str
    revision: str | None = None
    sync_status: str = "Synced"
    health: str = "Healthy"
    recurse: bool = False
    target: str | None = None  # what the next refresh syncs to; None: it never syncs
    annotations: dict[str, str] = field(default_factory=dict)
    namespace: str = "argocd"  # elsewhere: the key in FakeKube.apps is "<namespace>/<name>"


@dataclass
class FakeWorkload:
    labels: dict[str, str]
    replicas: int = 1
    crashloop: bool = False
    log: str = "starting\nlistening on :8080\n"
    image: str = "x:1"


class FakeKube:
    def __init__(self) -> None:
        self.apps: dict[str, FakeApp] = {}
        self.workloads: dict[tuple[str, str, str], FakeWorkload] = {}  # (kind, ns, name)
        self.services: dict[tuple[str, str], dict[str, str]] = {}  # (ns, name) → selector
        self.requests: list[dict[str, Any]] = []

    # -- what the test arranges ------------------------------------------------------
    def sync_to(self, app: str, revision: str | None) -> None:
        """The next hard refresh of ``app`` syncs to ``revision`` (None: never)."""
        self.apps[app].target = revision

    # -- serving ---------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        body = request.get_data(as_text=True)
        self.requests.append({"method": request.method, "path": request.path,
                              "query": request.args.to_dict(), "content_type": request.content_type,
                              "body": json.loads(body) if body else None})
        path = request.path
        if path.startswith("/hooks/"):  # the alert webhook
            return Response("ok", content_type="text/plain")
        if m := APP_RE.match(path):
            key = m.group(2) if m.group(1) == "argocd" else f"{m.group(1)}/{m.group(2)}"
            return self._app(request, key, json.loads(body) if body else None)
        if (m := APPS_RE.match(path)) and request.method == "GET":  # one namespace, or all
            return self._json({"apiVersion": "argoproj.io/v1alpha1", "kind": "ApplicationList", "metadata": {},
                               "items": [self._app_object(n, a) for n, a in self.apps.items()
                                         if m.group(1) in (None, a.namespace)]})
        if m := POD_RE.match(path):
            return self._json(self._pods(m.group(1), request.args.get("labelSelector", "")))
        if m := LOG_RE.match(path):
            for (kind, ns, name), w in self.workloads.items():
                if ns == m.group(1) and m.group(2).startswith(name):
                    text = "panic: nil map\nCrashLoopBackOff\n" if w.crashloop else w.log
                    return Response(text, content_type="text/plain")
            return self._missing("pods", m.group(2))
        if m := LIST_RE.match(path):  # every namespace (the platform model's live merge)
            return self._json(self._list(m.group(1) or m.group(2)))
        if m := WL_RE.match(path):
            kind = "Deployment" if m.group(2) == "deployments" else "StatefulSet"
            w = self.workloads.get((kind, m.group(1), m.group(3)))
            if w is None:
                return self._missing(m.group(2), m.group(3))
            return self._json({
                "apiVersion": "apps/v1", "kind": kind,
                "metadata": {"name": m.group(3), "namespace": m.group(1)},
                "spec": {"replicas": w.replicas, "selector": {"matchLabels": w.labels},
                         "template": {"metadata": {"labels": w.labels},
                                      "spec": {"containers": [{"name": "c", "image": w.image}]}},
                         **({"serviceName": m.group(3)} if kind == "StatefulSet" else {})},
                "status": {"replicas": w.replicas, "readyReplicas": 0 if w.crashloop else w.replicas},
            })
        if m := SVC_RE.match(path):
            if (m.group(1), m.group(2)) not in self.services:
                return self._missing("services", m.group(2))
            return self._json({"apiVersion": "v1", "kind": "Service",
                               "metadata": {"name": m.group(2), "namespace": m.group(1)},
                               "spec": {"selector": self.services[(m.group(1), m.group(2))]}})
        if m := EP_RE.match(path):
            selector = self.services.get((m.group(1), m.group(2)))
            if selector is None:
                return self._missing("endpoints", m.group(2))
            pods = [p for p in self._pods(m.group(1), _selector_text(selector))["items"]
                    if p["status"]["containerStatuses"][0]["ready"]]
            subsets = [{"addresses": [{"ip": f"10.42.0.{n + 10}"} for n in range(len(pods))]}] if pods else []
            return self._json({"apiVersion": "v1", "kind": "Endpoints",
                               "metadata": {"name": m.group(2), "namespace": m.group(1)},
                               "subsets": subsets})
        return self._missing("unknown", path)

    def _list(self, resource: str) -> dict[str, Any]:
        if resource == "services":
            items = [{"metadata": {"name": n, "namespace": ns}, "spec": {"selector": sel}}
                     for (ns, n), sel in self.services.items()]
            return {"apiVersion": "v1", "kind": "ServiceList", "metadata": {}, "items": items}
        kind = {"deployments": "Deployment", "statefulsets": "StatefulSet", "daemonsets": "DaemonSet"}[resource]
        items = [{"metadata": {"name": name, "namespace": ns, "labels": w.labels},
                  "spec": {"replicas": w.replicas, "selector": {"matchLabels": w.labels},
                           "template": {"metadata": {"labels": w.labels},
                                        "spec": {"containers": [{"name": "c", "image": w.image}]}}}}
                 for (k, ns, name), w in self.workloads.items() if k == kind]
        return {"apiVersion": "apps/v1", "kind": f"{kind}List", "metadata": {}, "items": items}

    def _app(self, request: Request, name: str, body: Any) -> Response:
        app = self.apps.get(name)
        if app is None:
            return self._missing("applications.argoproj.io", name)
        if request.method == "PATCH":
            annotations = ((body or {}).get("metadata") or {}).get("annotations") or {}
            app.annotations.update(annotations)
            if annotations.get("argocd.argoproj.io/refresh") == "hard":
                # ArgoCD picks the refresh up: out of sync now, synced on the next look.
                app.sync_status = "OutOfSync"
        elif request.method == "GET" and app.sync_status == "OutOfSync" and app.target:
            if app.annotations.pop("argocd.argoproj.io/refresh", None) is None:
                app.revision, app.sync_status = app.target, "Synced"
        return self._json(self._app_object(name, app))

    @staticmethod
    def _app_object(name: str, app: Any) -> dict[str, Any]:
        source: dict[str, Any] = {"repoURL": "https://example.invalid/gitops.git", "path": app.path,
                                  "targetRevision": "main"}
        if app.recurse:
            source["directory"] = {"recurse": True}
        return {
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
            "metadata": {"name": name.rsplit("/", 1)[-1], "namespace": app.namespace,
                         "annotations": dict(app.annotations)},
            "spec": {"project": "default", "source": source,
                     "destination": {"server": "https://kubernetes.default.svc"}},
            "status": {"sync": {"status": app.sync_status, "revision": app.revision},
                       "health": {"status": app.health}},
        }

    def _pods(self, namespace: str, selector: str) -> dict[str, Any]:
        wanted = dict(pair.split("=", 1) for pair in selector.split(",") if pair)
        items = []
        for (kind, ns, name), w in self.workloads.items():
            if ns != namespace or any(w.labels.get(k) != v for k, v in wanted.items()):
                continue
            for n in range(w.replicas):
                state = ({"waiting": {"reason": "CrashLoopBackOff"}} if w.crashloop
                         else {"running": {"startedAt": "2026-11-25T00:00:00Z"}})
                items.append({
                    "metadata": {"name": f"{name}-{n}", "namespace": ns, "labels": w.labels},
                    "status": {"phase": "Running", "containerStatuses": [{
                        "name": "c", "image": "x:1", "imageID": "", "ready": not w.crashloop,
                        "restartCount": 7 if w.crashloop else 0, "state": state,
                        "lastState": {"terminated": {"reason": "Error", "exitCode": 2}} if w.crashloop else {},
                    }]},
                })
        return {"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": items}

    @staticmethod
    def _json(data: Any) -> Response:
        return Response(json.dumps(data), content_type="application/json")

    @staticmethod
    def _missing(kind: str, name: str) -> Response:
        return Response(json.dumps({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                    "message": f'{kind} "{name}" not found', "reason": "NotFound",
                                    "code": 404}), status=404, content_type="application/json")


def _selector_text(selector: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(selector.items()))


def kube_client(url: str) -> Any:
    from kubernetes import client

    cfg = client.Configuration()
    cfg.host = url.rstrip("/")
    return client.ApiClient(cfg)
