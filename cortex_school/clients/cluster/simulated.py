"""A simulated cluster for the demo and tests only (``CLUSTER_TARGET=simulated``).

It plays ArgoCD and the kubelet over the GitOps repository: Applications are the
``argoproj.io/Application`` objects anywhere in the repository, with those its
ApplicationSets generate; a hard refresh "syncs" an Application to the branch tip,
applying the manifests it covers (directory, Kustomize and Helm rules) to an in-memory
model kept in Redis (so every worker process sees the same cluster). Pods follow the
workloads' replicas and are healthy unless a fault is injected for them:

* ``name=crashloop``: the pods crash-loop (CrashLoopBackOff, panics in the logs);
* ``name=oom``: the pods are OOMKilled and not ready;
* ``name=error_rate:0.05``: the service answers 5% errors (read by the metrics source);
* ``app=never_sync``: the Application never reaches the new revision.

Nothing here is a claim about a real cluster: the ``kubernetes`` target is the real one.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import redis
import yaml

from cortex_school.clients.cluster import AppState, ClusterRefused, PodState
from cortex_school.clients.cluster.argo import AppSource

KEY = "simulated:cluster"  # hash: app name → JSON state
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet")


def parse_faults(text: str) -> dict[str, str]:
    faults: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        name, sep, fault = item.partition("=")
        if not sep or not fault:
            raise ValueError(f"SIMULATED_FAULTS entry {item!r} is not name=fault")
        faults[name.strip()] = fault.strip()
    return faults


def _read(root: Path, files: Iterable[str]) -> list[dict[str, Any]]:
    out = []
    for rel in sorted(files):
        try:
            out += [d for d in yaml.safe_load_all((root / rel).read_text()) if isinstance(d, dict)]
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            continue
    return out


class SimulatedCluster:
    name = "simulated"

    def __init__(self, client: redis.Redis, repo: Any, faults: dict[str, str],
                 discover: Callable[[Path], dict[str, dict[str, Any]]]) -> None:
        self.redis = client
        self.repo = repo  # a GitOpsRepo: the simulation reads what ArgoCD would read
        self.faults = faults
        self.discover = discover  # checkout → {Application: {path, recurse, repo_url, files}}

    # -- ArgoCD ---------------------------------------------------------------------
    def _applications(self, root: Path) -> dict[str, dict[str, Any]]:
        """ArgoCD's Applications: the repository's own, wherever they are in it, with each
        ApplicationSet's generated ones; each with the files it applies (``discover``,
        given by the runtime: the platform model's rules)."""
        return self.discover(root)

    def applications(self) -> list[AppSource]:
        root = self.repo.sync()
        return [AppSource(name=name, repo_url=spec["repo_url"], path=spec["path"], recurse=spec["recurse"],
                          origin="simulated") for name, spec in self._applications(root).items()]

    def _bootstrap(self) -> None:
        """The first look finds every Application synced, as ArgoCD would have left them."""
        if self.redis.exists(KEY):
            return
        root = self.repo.sync()
        revision = self.repo.head()
        for app, spec in self._applications(root).items():
            state = {**spec, "revision": revision, "sync_status": "Synced", "objects": _read(root, spec["files"])}
            self.redis.hsetnx(KEY, app, json.dumps(state))

    def _state(self, app: str) -> dict[str, Any] | None:
        self._bootstrap()
        raw = self.redis.hget(KEY, app)
        return json.loads(raw) if raw else None

    def application(self, app: str) -> AppState | None:
        state = self._state(app)
        if state is None:
            return None
        return AppState(name=app, sync_status=state["sync_status"], revision=state["revision"],
                        health=self._health(state), path=state["path"], recurse=state["recurse"],
                        repo_url=state.get("repo_url", ""))

    def hard_refresh(self, app: str) -> None:
        root = self.repo.sync()
        spec = self._applications(root).get(app)
        if spec is None:
            raise ClusterRefused(f"ArgoCD Application {app} not found")
        previous = self._state(app) or {}
        if self.faults.get(app) == "never_sync":
            state = {**spec, "revision": previous.get("revision"), "sync_status": "OutOfSync",
                     "objects": previous.get("objects", [])}
        else:
            revision = self.repo.head()
            state = {**spec, "revision": revision, "sync_status": "Synced", "objects": _read(root, spec["files"])}
        self.redis.hset(KEY, app, json.dumps(state))

    def _health(self, state: dict[str, Any]) -> str:
        for obj in state.get("objects", []):
            if obj.get("kind") in WORKLOAD_KINDS and self._fault_of(obj) in ("crashloop", "oom"):
                return "Degraded"
        return "Healthy"

    # -- the kubelet ----------------------------------------------------------------
    def _objects(self) -> Iterable[dict[str, Any]]:
        self._bootstrap()
        for raw in self.redis.hvals(KEY):
            yield from json.loads(raw).get("objects", [])

    def _fault_of(self, obj: dict[str, Any]) -> str | None:
        return self.faults.get((obj.get("metadata") or {}).get("name", ""))

    def _workloads(self, namespace: str) -> list[dict[str, Any]]:
        return [o for o in self._objects() if o.get("kind") in WORKLOAD_KINDS
                and (o.get("metadata") or {}).get("namespace") == namespace]

    def _pods_of(self, obj: dict[str, Any]) -> list[PodState]:
        meta = obj["metadata"]
        labels = ((obj.get("spec") or {}).get("template") or {}).get("metadata", {}).get("labels", {})
        replicas = 1 if obj["kind"] == "DaemonSet" else (obj.get("spec") or {}).get("replicas", 1)
        fault = self._fault_of(obj)
        pods = []
        for n in range(replicas):
            name = f"{meta['name']}-{n}" if obj["kind"] == "StatefulSet" else f"{meta['name']}-sim{n}"
            if fault == "crashloop":
                pods.append(PodState(name, "Running", False, "CrashLoopBackOff", "Error", 6, labels))
            elif fault == "oom":
                pods.append(PodState(name, "Running", False, None, "OOMKilled", 3, labels))
            else:
                pods.append(PodState(name, "Running", True, None, None, 0, labels))
        return pods

    def pods(self, namespace: str, selector: dict[str, str]) -> list[PodState]:
        return [p for w in self._workloads(namespace) for p in self._pods_of(w)
                if all(p.labels.get(k) == v for k, v in selector.items())]

    def logs(self, namespace: str, pod: str, since_seconds: int,
             containers: tuple[str, ...] = ()) -> str:
        for w in self._workloads(namespace):
            if pod.startswith(w["metadata"]["name"]):
                fault = self._fault_of(w)
                if fault == "crashloop":
                    return "starting\npanic: runtime error: invalid memory address\n"
                if fault == "oom":
                    return "starting\nloading index\n"
                return "starting\nlistening\n"
        return ""

    def workload(self, kind: str, namespace: str, name: str) -> tuple[int, int] | None:
        for w in self._workloads(namespace):
            if w["kind"] == kind and w["metadata"]["name"] == name:
                pods = self._pods_of(w)
                return len(pods), sum(1 for p in pods if p.ready)
        return None

    def endpoints(self, namespace: str, service: str) -> int | None:
        for obj in self._objects():
            meta = obj.get("metadata") or {}
            if obj.get("kind") == "Service" and meta.get("name") == service and \
                    meta.get("namespace") == namespace:
                selector = (obj.get("spec") or {}).get("selector") or {}
                return sum(1 for p in self.pods(namespace, selector) if p.ready) if selector else 0
        return None

    def object_exists(self, kind: str, namespace: str, name: str) -> bool | None:
        """Whether the simulated cluster runs an object this system did not create."""
        for obj in self._objects():
            meta = obj.get("metadata") or {}
            if obj.get("kind") == kind and meta.get("name") == name and \
                    (meta.get("namespace") or "") == namespace and \
                    (meta.get("labels") or {}).get("app.kubernetes.io/managed-by") != "cortex-school":
                return True
        return False

    def system_pod_labels(self, namespace: str, name: str) -> list[dict[str, str]]:
        return []  # the simulation does not run the system itself

    def error_rate(self, service: str) -> float | None:
        fault = self.faults.get(service, "")
        if fault.startswith("error_rate:"):
            return float(fault.split(":", 1)[1])
        return 0.002

    def reset(self) -> None:
        self.redis.delete(KEY)
