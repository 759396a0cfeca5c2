"""What the delivery steps share: the step outcome, the deployer's parts, reading an
improvement's committed files, and whether a rollback is under way."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import yaml
from pydantic import BaseModel

from cortex_school.clients.cluster import ClusterTarget, path_covers
from cortex_school.clients.cluster.metrics import MetricsSource
from cortex_school.clients.gitops import GitOpsRepo
from cortex_school.models import Status
from cortex_school.settings import DeploySettings, ServiceSettings
from cortex_school.store import RedisStore

GUARD = "rollback-guard"


class Step(BaseModel):
    improvement_id: str
    stage: str
    outcome: Literal["waiting", "done", "failed", "skipped", "missing"]
    status: str | None
    detail: str


@dataclass
class Deployer:
    cluster: ClusterTarget
    metrics: MetricsSource
    repo: GitOpsRepo
    cfg: DeploySettings
    services: ServiceSettings
    co_author: str

    def app_for(self, namespace: str) -> str:
        return self.cfg.argocd_app_template.format(namespace=namespace)


def parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def namespaces_of(files: list[str]) -> list[str]:
    return sorted({f.split("/")[1] for f in files if f.startswith("apps/") and f.count("/") >= 2})


def sync_target_problems(cluster: ClusterTarget, namespaces: list[str], cfg: DeploySettings) -> list[str]:
    """Why ArgoCD would never apply files under ``apps/<namespace>/`` (empty: it will)."""
    problems = []
    for ns in namespaces:
        app_name = cfg.argocd_app_template.format(namespace=ns)
        app = cluster.application(app_name)
        if app is None:
            problems.append(f"no ArgoCD Application {cfg.argocd_namespace}/{app_name} for "
                            f"apps/{ns}/: nothing would apply these files")
        elif not path_covers(app, f"apps/{ns}"):
            problems.append(f"ArgoCD Application {app_name} syncs path {app.path!r}"
                            f"{' recursively' if app.recurse else ''}, which does not cover apps/{ns}/")
    return problems


def committed_manifests(d: Deployer, fields: dict[str, str]) -> list[dict[str, Any]]:
    """The improvement's committed manifests, from a clone synced now (each worker process
    has its own clone; one that missed the merge must not judge an empty change healthy)."""
    from cortex_school.clients.gitops import GitOpsError

    files = json.loads(fields.get("git_files") or "[]")
    d.repo.sync()
    texts = d.repo.read_files(fields["git_commit"], files)
    if len(texts) != len(files):
        raise GitOpsError(f"{len(files) - len(texts)} of the improvement's files are not readable "
                          f"at {fields['git_commit'][:12]}")
    return [doc for text in texts.values() for doc in yaml.safe_load_all(text) if isinstance(doc, dict)]


def planned_dependencies(fields: dict[str, str]) -> list[str]:
    plan = json.loads(fields.get("plan") or "{}")
    return sorted({dep for r in plan.get("resources", []) for dep in r.get("dependencies", [])})


def step(iid: str, stage: str, outcome: str, status: str | None, detail: str) -> Step:
    return Step(improvement_id=iid, stage=stage, outcome=outcome, status=status, detail=detail)


def fields_at(store: RedisStore, improvement_id: str, stage: str,
               expected: Status) -> dict[str, str] | Step:
    """The improvement's fields if it is at ``expected``; otherwise the step that says why not."""
    fields = store.raw_fields(improvement_id)
    if not fields:
        return step(improvement_id, stage, "missing", None, "no such improvement")
    if fields["status"] != expected.value:
        return step(improvement_id, stage, "skipped", fields["status"],
                     f"nothing to do: status is {fields['status']}, this stage acts on {expected.value}")
    return fields


def rollback_under_way(fields: dict[str, str]) -> str | None:
    """Why the improvement is being rolled back (revert made or a person asked), else None."""
    if not (fields.get("rollback_commit") or fields.get("rollback_requested")):
        return None
    return fields.get("failure_reason") or fields.get("rollback_requested") or "rollback under way"
