"""Architecture worker: workloads, configuration, storage and disruption budgets."""

from __future__ import annotations

from cortex_school.workers.manifests import (
    Manifest,
    PlanError,
    RenderContext,
    app_labels,
    container,
    metadata,
    pod_spec,
    pod_template,
    requires_image,
)
from cortex_school.workers.plan import PlannedResource, Storage

KINDS = ("Deployment", "StatefulSet", "DaemonSet", "ConfigMap", "PersistentVolumeClaim",
         "StorageClass", "PodDisruptionBudget", "HorizontalPodAutoscaler", "ScheduledJob", "ScaledObject")


def deployment(res: PlannedResource, ctx: RenderContext) -> list[Manifest]:
    """A Deployment; with ``storage`` also its PersistentVolumeClaim ``<name>-data``, mounted
    at the plan's path, and the Recreate strategy (a ReadWriteOnce claim cannot be attached
    to the old and the new pod at once)."""
    requires_image(res)
    main = container(res)
    volumes: list[dict] = []
    spec: dict = {
        "replicas": 1 if res.replicas is None else res.replicas,
        "revisionHistoryLimit": 3,
        "selector": {"matchLabels": app_labels(res)},
    }
    out: list[Manifest] = []
    if res.storage is not None:
        claim = f"{res.name[:58]}-data"
        main["volumeMounts"].append({"name": "data", "mountPath": res.storage.mount_path or "/data"})
        volumes.append({"name": "data", "persistentVolumeClaim": {"claimName": claim}})
        if res.storage.access_mode != "ReadWriteMany":
            spec["strategy"] = {"type": "Recreate"}
        out = pvc(res.model_copy(update={"name": claim}), ctx)
    spec["template"] = pod_template(res, ctx, pod_spec([main], volumes=volumes))
    return [{
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": metadata(res, ctx, labels=app_labels(res)),
        "spec": spec,
    }, *out]


def statefulset(res: PlannedResource, ctx: RenderContext) -> list[Manifest]:
    """A StatefulSet with its governing headless Service (a StatefulSet needs one)."""
    requires_image(res)
    main = container(res)
    spec: dict = {
        "replicas": 1 if res.replicas is None else res.replicas,
        "serviceName": res.name,
        "selector": {"matchLabels": app_labels(res)},
        "template": pod_template(res, ctx, pod_spec([main])),
    }
    if res.storage is not None:
        main["volumeMounts"].append({"name": "data", "mountPath": res.storage.mount_path or "/data"})
        claim: dict = {"accessModes": [res.storage.access_mode],
                       "resources": {"requests": {"storage": res.storage.size}}}
        if res.storage.storage_class:
            claim["storageClassName"] = res.storage.storage_class
        spec["volumeClaimTemplates"] = [{"metadata": {"name": "data"}, "spec": claim}]
    headless = {
        "apiVersion": "v1", "kind": "Service",
        "metadata": metadata(res, ctx, labels=app_labels(res)),
        "spec": {
            "clusterIP": "None",
            "selector": app_labels(res),
            "ports": [{"name": p.name or f"port-{p.number}", "port": p.number,
                       "targetPort": p.number, "protocol": p.protocol} for p in res.ports]
            or [{"name": "none", "port": 1, "targetPort": 1}],
        },
    }
    workload = {"apiVersion": "apps/v1", "kind": "StatefulSet",
                "metadata": metadata(res, ctx, labels=app_labels(res)), "spec": spec}
    return [workload, headless]


def daemonset(res: PlannedResource, ctx: RenderContext) -> list[Manifest]:
    requires_image(res)
    return [{
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": metadata(res, ctx, labels=app_labels(res)),
        "spec": {
            "selector": {"matchLabels": app_labels(res)},
            "template": pod_template(res, ctx, pod_spec([container(res)])),
        },
    }]


def configmap(res: PlannedResource, ctx: RenderContext) -> list[Manifest]:
    return [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata(res, ctx),
             "data": dict(res.config)}]


def pvc(res: PlannedResource, ctx: RenderContext) -> list[Manifest]:
    storage = res.storage or Storage()
    spec: dict = {"accessModes": [storage.access_mode],
                  "resources": {"requests": {"storage": storage.size}}}
    if storage.storage_class:
        spec["storageClassName"] = storage.storage_class
    return [{"apiVersion": "v1", "kind": "PersistentVolumeClaim",
             "metadata": metadata(res, ctx), "spec": spec}]


def storageclass(res: PlannedResource, ctx: RenderContext) -> list[Manifest]:
    if res.storage is None or not res.storage.provisioner:
        raise PlanError(f"StorageClass {res.name} needs a provisioner")
    return [{
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": metadata(res, ctx, namespaced=False),
        "provisioner": res.storage.provisioner,
        "parameters": dict(res.storage.parameters),
        # Data outlives a mistaken improvement: a revert must not delete volumes.
        "reclaimPolicy": "Retain",
        "volumeBindingMode": "WaitForFirstConsumer",
        "allowVolumeExpansion": True,
    }]


def pdb(res: PlannedResource, ctx: RenderContext) -> list[Manifest]:
    """``maxUnavailable`` when the plan names it (it never blocks a drain on its own),
    else ``minAvailable`` (1 unless named)."""
    budget = {"maxUnavailable": res.max_unavailable} if res.max_unavailable is not None else \
        {"minAvailable": 1 if res.min_available is None else res.min_available}
    return [{
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": metadata(res, ctx),
        "spec": {**budget, "selector": {"matchLabels": app_labels(res)}},
    }]


_SCALABLE = ("Deployment", "StatefulSet")


def hpa(res: PlannedResource, ctx: RenderContext) -> list[Manifest]:
    """An autoscaling/v2 HorizontalPodAutoscaler on CPU and/or memory utilisation of the
    workload the plan names (``target``; its kind from ``companion_of``, else Deployment)."""
    kind = (res.companion_of or "Deployment/").split("/", 1)[0]
    if not res.target or kind not in _SCALABLE:
        raise PlanError(f"HorizontalPodAutoscaler {res.name} needs a Deployment or StatefulSet to scale")
    if res.max_replicas is None:
        raise PlanError(f"HorizontalPodAutoscaler {res.name} needs maxReplicas")
    low = res.min_replicas or 1
    if low > res.max_replicas:
        raise PlanError(f"HorizontalPodAutoscaler {res.name}: minReplicas {low} above maxReplicas {res.max_replicas}")
    metrics = [{"type": "Resource", "resource": {"name": name, "target": {"type": "Utilization",
                                                                           "averageUtilization": value}}}
               for name, value in (("cpu", res.cpu_utilization), ("memory", res.memory_utilization)) if value]
    spec: dict = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": kind, "name": res.target},
        "minReplicas": low, "maxReplicas": res.max_replicas,
        "metrics": metrics or [{"type": "Resource", "resource": {
            "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}],
    }
    if res.scale_down_seconds is not None:
        spec["behavior"] = {"scaleDown": {"stabilizationWindowSeconds": res.scale_down_seconds}}
    return [{"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
             "metadata": metadata(res, ctx), "spec": spec}]


def scheduled_job(res: PlannedResource, ctx: RenderContext) -> list[Manifest]:
    """A CronJob running the plan's image on its schedule: never two at once, a few
    histories kept, each run's pod on the secure defaults."""
    requires_image(res)
    if not res.schedule:
        raise PlanError(f"scheduled job {res.name} needs a schedule")
    return [{
        "apiVersion": "batch/v1", "kind": "CronJob", "metadata": metadata(res, ctx),
        "spec": {"schedule": res.schedule, "concurrencyPolicy": "Forbid",
                 "successfulJobsHistoryLimit": 3, "failedJobsHistoryLimit": 3,
                 "jobTemplate": {"spec": {"backoffLimit": 2, "template": {
                     "spec": pod_spec([container(res)], restart_policy="OnFailure")}}}},
    }]


def scaled_object(res: PlannedResource, ctx: RenderContext) -> list[Manifest]:
    """A KEDA ScaledObject for the workload the plan names: its triggers, min/max replicas."""
    kind = (res.companion_of or "Deployment/").split("/", 1)[0]
    if not res.target or kind not in _SCALABLE:
        raise PlanError(f"ScaledObject {res.name} needs a Deployment or StatefulSet to scale")
    if not res.triggers or res.max_replicas is None:
        raise PlanError(f"ScaledObject {res.name} needs a trigger and maxReplicaCount")
    triggers = []
    for t in res.triggers:
        if t.type == "prometheus":
            if not t.server_address or not t.query:
                raise PlanError(f"ScaledObject {res.name}: a prometheus trigger needs serverAddress and query")
            triggers.append({"type": "prometheus", "metadata": {
                "serverAddress": t.server_address, "query": t.query, "threshold": t.threshold}})
        else:
            triggers.append({"type": t.type, "metricType": "Utilization", "metadata": {"value": t.threshold}})
    spec: dict = {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": kind, "name": res.target},
                  "minReplicaCount": 1 if res.min_replicas is None else res.min_replicas,
                  "maxReplicaCount": res.max_replicas, "triggers": triggers}
    return [{"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": metadata(res, ctx), "spec": spec}]


RENDERERS = {
    "Deployment": deployment,
    "StatefulSet": statefulset,
    "DaemonSet": daemonset,
    "ConfigMap": configmap,
    "PersistentVolumeClaim": pvc,
    "StorageClass": storageclass,
    "PodDisruptionBudget": pdb,
    "HorizontalPodAutoscaler": hpa,
    "ScheduledJob": scheduled_job,
    "ScaledObject": scaled_object,
}
