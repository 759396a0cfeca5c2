"""The real cluster through the official ``kubernetes`` client."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from cortex_school.clients.cluster import (
    AppState,
    ClusterError,
    ClusterRefused,
    PodState,
    cluster_error,
)
from cortex_school.clients.cluster.argo import AppSource, from_application

ARGO_GROUP, ARGO_VERSION, ARGO_PLURAL = "argoproj.io", "v1alpha1", "applications"
# REST paths of the kinds the gate asks about: (API prefix, plural, namespaced).
OBJECT_PATHS: dict[str, tuple[str, str, bool]] = {
    "Deployment": ("/apis/apps/v1", "deployments", True),
    "StatefulSet": ("/apis/apps/v1", "statefulsets", True),
    "DaemonSet": ("/apis/apps/v1", "daemonsets", True),
    "Job": ("/apis/batch/v1", "jobs", True),
    "CronJob": ("/apis/batch/v1", "cronjobs", True),
    "ConfigMap": ("/api/v1", "configmaps", True),
    "Secret": ("/api/v1", "secrets", True),
    "Service": ("/api/v1", "services", True),
    "ServiceAccount": ("/api/v1", "serviceaccounts", True),
    "PersistentVolumeClaim": ("/api/v1", "persistentvolumeclaims", True),
    "StorageClass": ("/apis/storage.k8s.io/v1", "storageclasses", False),
    "PodDisruptionBudget": ("/apis/policy/v1", "poddisruptionbudgets", True),
    "Ingress": ("/apis/networking.k8s.io/v1", "ingresses", True),
    "NetworkPolicy": ("/apis/networking.k8s.io/v1", "networkpolicies", True),
    "Role": ("/apis/rbac.authorization.k8s.io/v1", "roles", True),
    "RoleBinding": ("/apis/rbac.authorization.k8s.io/v1", "rolebindings", True),
    "ExternalSecret": ("/apis/external-secrets.io/v1beta1", "externalsecrets", True),
    "Certificate": ("/apis/cert-manager.io/v1", "certificates", True),
    "PrometheusRule": ("/apis/monitoring.coreos.com/v1", "prometheusrules", True),
    "ServiceMonitor": ("/apis/monitoring.coreos.com/v1", "servicemonitors", True),
}


def has_kube_config(kubeconfig: str | None) -> bool:
    import os
    from pathlib import Path

    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        return True
    path = Path(kubeconfig or os.environ.get("KUBECONFIG") or Path.home() / ".kube" / "config")
    return path.is_file()


# (connect, read) seconds for each list of the live merge: a cluster that accepts the
# connection and never answers must not hold the platform model (and every validation).
LIVE_TIMEOUT = (3, 10)
APP_PAGE, MAX_APP_PAGES = 500, 20  # Applications listed per request, requests per listing


class KubernetesCluster:
    name = "kubernetes"

    def __init__(self, *, argocd_namespace: str = "argocd", api_client: Any = None,
                 kubeconfig: str | None = None, context: str | None = None,
                 app_namespaces: tuple[str, ...] = ()) -> None:
        from kubernetes import client, config

        if api_client is None:
            try:
                config.load_incluster_config()
            except config.ConfigException:
                config.load_kube_config(config_file=kubeconfig, context=context)
            api_client = client.ApiClient()
        self.argocd_namespace = argocd_namespace
        # ArgoCD's "applications in any namespace": further namespaces ("*": all) whose
        # Applications are named <namespace>/<name> here.
        self.app_namespaces = tuple(n for n in app_namespaces if n != argocd_namespace)
        self.api_client = api_client
        self.core = client.CoreV1Api(api_client)
        self.apps = client.AppsV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)
        self._api_exception = client.ApiException

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Call the API; 404 is None, anything else a ClusterError."""
        try:
            return fn(*args, **kwargs)
        except self._api_exception as exc:
            if exc.status == 404:
                return None
            raise cluster_error("Kubernetes API", exc.status, str(exc.reason), exc.headers) from exc
        except Exception as exc:  # urllib3 connection errors and the like
            raise cluster_error("Kubernetes API", None, f"{type(exc).__name__}: {str(exc)[:200]}") from exc

    def _where(self, app: str) -> tuple[str, str]:
        """(namespace, name) of an Application named ``name`` (the ArgoCD namespace) or
        ``namespace/name`` (one of the further namespaces)."""
        if "/" not in app:
            return self.argocd_namespace, app
        ns, name = app.split("/", 1)
        if "*" not in self.app_namespaces and ns not in self.app_namespaces:
            raise ClusterRefused(f"ArgoCD Application {app[:120]}: namespace {ns[:63]} is not one of "
                                 f"ARGOCD_APP_NAMESPACES ({', '.join(self.app_namespaces) or 'none'})")
        return ns, name

    def application(self, app: str) -> AppState | None:
        ns, name = self._where(app)
        obj = self._call(self.custom.get_namespaced_custom_object, ARGO_GROUP, ARGO_VERSION,
                         ns, ARGO_PLURAL, name)
        if obj is None:
            return None
        spec = obj.get("spec") or {}
        sources = spec.get("sources") or []
        at = next((i for i, s in enumerate(sources) if isinstance(s, dict) and s.get("path")), 0)
        source = spec.get("source") or (sources[at] if sources else {})
        status = obj.get("status") or {}
        sync = status.get("sync") or {}
        revisions = sync.get("revisions") or []  # a multi-source Application: one per source
        revision = sync.get("revision") or (revisions[at] if len(revisions) > at else None)
        return AppState(
            name=app, sync_status=sync.get("status", "Unknown"), revision=revision,
            health=(status.get("health") or {}).get("status", "Unknown"),
            path=source.get("path", ""), recurse=bool((source.get("directory") or {}).get("recurse")),
            repo_url=source.get("repoURL", ""),
        )

    def applications(self) -> list[AppSource]:
        """The live Applications in the ArgoCD namespace and the further namespaces (those
        an ApplicationSet generated are Applications there too), each source as an
        :class:`AppSource`; one outside the ArgoCD namespace is named ``namespace/name``."""
        out: list[AppSource] = []
        listings: list[tuple[Any, tuple[Any, ...]]] = [
            (self.custom.list_namespaced_custom_object, (ARGO_GROUP, ARGO_VERSION, self.argocd_namespace, ARGO_PLURAL))]
        if "*" in self.app_namespaces:
            listings = [(self.custom.list_cluster_custom_object, (ARGO_GROUP, ARGO_VERSION, ARGO_PLURAL))]
        else:
            listings += [(self.custom.list_namespaced_custom_object, (ARGO_GROUP, ARGO_VERSION, ns, ARGO_PLURAL))
                         for ns in self.app_namespaces]
        for fn, args in listings:
            token = None
            for _ in range(MAX_APP_PAGES):
                kwargs: dict[str, Any] = {"limit": APP_PAGE, "_request_timeout": LIVE_TIMEOUT}
                if token:
                    kwargs["_continue"] = token
                page = self._call(fn, *args, **kwargs) or {}
                for obj in page.get("items") or []:
                    if isinstance(obj, dict):
                        out += [s if s.namespace == self.argocd_namespace else replace(s, name=f"{s.namespace}/{s.name}")
                                for s in from_application(obj, "live")]
                token = (page.get("metadata") or {}).get("continue")
                if not token:
                    break
        return out

    def hard_refresh(self, app: str) -> None:
        # The client sends a dict body to patch_* as application/merge-patch+json.
        body = {"metadata": {"annotations": {"argocd.argoproj.io/refresh": "hard"}}}
        ns, name = self._where(app)
        if self._call(self.custom.patch_namespaced_custom_object, ARGO_GROUP, ARGO_VERSION,
                      ns, ARGO_PLURAL, name, body) is None:
            raise ClusterRefused(f"ArgoCD Application {ns}/{name} not found")

    def pods(self, namespace: str, selector: dict[str, str]) -> list[PodState]:
        label_selector = ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
        listed = self._call(self.core.list_namespaced_pod, namespace, label_selector=label_selector)
        out = []
        for pod in (listed.items if listed else []):
            statuses = pod.status.container_statuses or []
            waiting = next((s.state.waiting.reason for s in statuses
                            if s.state and s.state.waiting and s.state.waiting.reason), None)
            terminated = next((s.last_state.terminated.reason for s in statuses
                               if s.last_state and s.last_state.terminated), None)
            out.append(PodState(
                name=pod.metadata.name, phase=pod.status.phase or "Unknown",
                ready=bool(statuses) and all(s.ready for s in statuses),
                waiting_reason=waiting, terminated_reason=terminated,
                restarts=sum(s.restart_count or 0 for s in statuses),
                labels=dict(pod.metadata.labels or {}),
                containers=tuple(s.name for s in statuses),
            ))
        return out

    def logs(self, namespace: str, pod: str, since_seconds: int,
             containers: tuple[str, ...] = ()) -> str:
        """Every container's recent log (the API wants one container at a time when a pod
        has several); raw text, so JSON log lines stay JSON."""
        texts = []
        for container in containers or (None,):
            try:
                response = self.core.read_namespaced_pod_log(
                    pod, namespace, container=container, since_seconds=since_seconds,
                    tail_lines=2000, _preload_content=False)
                texts.append(response.data.decode("utf-8", "replace"))
            except self._api_exception as exc:
                if exc.status in (400, 404):  # not started yet, or gone: no log to read
                    continue
                raise cluster_error("Kubernetes API", exc.status, str(exc.reason), exc.headers) from exc
            except Exception as exc:
                raise cluster_error("Kubernetes API", None, type(exc).__name__) from exc
        return "\n".join(texts)

    def live_objects(self, limit: int = 5000) -> list[dict[str, Any]]:
        """The workloads and Services the cluster runs, in every namespace, as the API returns
        them (for the platform model: what runs but no manifest defines). At most ``limit`` of
        each kind (one page)."""
        out: list[dict[str, Any]] = []
        for kind, api_version, list_all in (
                ("Deployment", "apps/v1", self.apps.list_deployment_for_all_namespaces),
                ("StatefulSet", "apps/v1", self.apps.list_stateful_set_for_all_namespaces),
                ("DaemonSet", "apps/v1", self.apps.list_daemon_set_for_all_namespaces),
                ("Service", "v1", self.core.list_service_for_all_namespaces)):
            result = self._call(list_all, limit=limit, _request_timeout=LIVE_TIMEOUT)
            if result is None:
                continue
            answer = self.api_client.sanitize_for_serialization(result)
            items = answer.get("items") if isinstance(answer, dict) else None
            if not isinstance(items, list):
                continue
            out += [{**item, "kind": kind, "apiVersion": api_version} for item in items[:limit] if isinstance(item, dict)]
        return out

    def workload(self, kind: str, namespace: str, name: str) -> tuple[int, int] | None:
        read = {"Deployment": self.apps.read_namespaced_deployment,
                "StatefulSet": self.apps.read_namespaced_stateful_set}.get(kind)
        if read is None:
            return None
        obj = self._call(read, name, namespace)
        if obj is None:
            return None
        desired = obj.spec.replicas if obj.spec.replicas is not None else 1
        return desired, obj.status.ready_replicas or 0

    def endpoints(self, namespace: str, service: str) -> int | None:
        if self._call(self.core.read_namespaced_service, service, namespace) is None:
            return None
        ep = self._call(self.core.read_namespaced_endpoints, service, namespace)
        if ep is None:
            return 0
        return sum(len(s.addresses or []) for s in (ep.subsets or []))

    def object_exists(self, kind: str, namespace: str, name: str) -> bool | None:
        """Whether the cluster holds this object and this system did not create it; None
        when that cannot be told (a kind we do not know, no permission to read it: the
        chart grants get on every generated kind but Secrets)."""
        where = OBJECT_PATHS.get(kind)
        if where is None:
            return None
        prefix, plural, namespaced = where
        path = f"{prefix}/namespaces/{namespace}/{plural}/{name}" if namespaced else \
            f"{prefix}/{plural}/{name}"
        try:
            obj = self.api_client.call_api(
                path, "GET", auth_settings=["BearerToken"], response_types_map={200: "object"},
                _return_http_data_only=True, _preload_content=True)
        except self._api_exception as exc:
            if exc.status == 404:
                return False
            if exc.status in (401, 403):
                return None
            raise cluster_error("Kubernetes API", exc.status, str(exc.reason), exc.headers) from exc
        except Exception as exc:
            raise cluster_error("Kubernetes API", None, type(exc).__name__) from exc
        labels = ((obj or {}).get("metadata") or {}).get("labels") or {}
        return labels.get("app.kubernetes.io/managed-by") != "cortex-school"

    def system_pod_labels(self, namespace: str, name: str) -> list[dict[str, str]]:
        """Labels of the pods the system itself runs (app.kubernetes.io/name=<name>)."""
        try:
            pods = self._call(self.core.list_namespaced_pod, namespace,
                              label_selector=f"app.kubernetes.io/name={name}")
        except ClusterError:
            return []  # not allowed to look: the chart's labels still protect them
        return [dict(p.metadata.labels or {}) for p in (pods.items if pods else [])]
