"""Database worker: migration Jobs and backup CronJobs (with their volume)."""

from __future__ import annotations

from cortex_school.workers.manifests import (
    Manifest,
    PlanError,
    RenderContext,
    container,
    metadata,
    pod_spec,
    requires_image,
)
from cortex_school.workers.plan import PlannedResource, Storage

KINDS = ("MigrationJob", "BackupCronJob")


def migration_job(res: PlannedResource, ctx: RenderContext) -> list[Manifest]:
    requires_image(res)
    if not res.command:
        raise PlanError(f"migration {res.name} needs the command that runs it")
    return [{
        "apiVersion": "batch/v1", "kind": "Job", "metadata": metadata(res, ctx),
        "spec": {
            # A migration runs once; a failure is for a person to read, not to retry blindly.
            "backoffLimit": 0,
            "ttlSecondsAfterFinished": 86400,
            "template": {"spec": pod_spec([container(res)], restart_policy="Never")},
        },
    }]


def backup_cronjob(res: PlannedResource, ctx: RenderContext) -> list[Manifest]:
    """A CronJob writing dumps to its own PVC, and that PVC."""
    requires_image(res)
    if not res.schedule or not res.command:
        raise PlanError(f"backup {res.name} needs a schedule and the command that dumps")
    storage = res.storage or Storage(size="10Gi")
    main = container(res)
    main["volumeMounts"].append({"name": "backup", "mountPath": "/backup"})
    claim_name = f"{res.name[:56]}-data"
    spec = pod_spec([main], restart_policy="OnFailure", volumes=[
        {"name": "backup", "persistentVolumeClaim": {"claimName": claim_name}}])
    pvc_spec: dict = {"accessModes": [storage.access_mode],
                      "resources": {"requests": {"storage": storage.size}}}
    if storage.storage_class:
        pvc_spec["storageClassName"] = storage.storage_class
    claim = res.model_copy(update={"name": claim_name})
    return [
        {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": metadata(claim, ctx),
         "spec": pvc_spec},
        {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": metadata(res, ctx),
         "spec": {"schedule": res.schedule, "concurrencyPolicy": "Forbid",
                  "successfulJobsHistoryLimit": 3, "failedJobsHistoryLimit": 3,
                  "jobTemplate": {"spec": {"backoffLimit": 2, "template": {"spec": spec}}}}},
    ]


RENDERERS = {"MigrationJob": migration_job, "BackupCronJob": backup_cronjob}
