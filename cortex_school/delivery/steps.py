"""What the delivery steps share: the step outcome, the deployer's parts, reading an
improvement's committed files, and whether a rollback is under way."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import yaml
from pydantic import BaseModel

from cortex_school.clients.cluster import ClusterTarget, path_covers
from cortex_school.clients.cluster.metrics import MetricsSource
from cortex_school.clients.gitops import GitOpsError, GitOpsRepo
from cortex_school.models import Delivery, Improvement, Status
from cortex_school.settings import DeploySettings, ServiceSettings
from cortex_school.store.protocol import StateStore

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


def committed_manifests(d: Deployer, delivery: Delivery) -> list[dict[str, Any]]:
    """The improvement's committed manifests, from a clone synced now (each worker process
    has its own clone; one that missed the merge must not judge an empty change healthy)."""
    commit = delivery.git_commit or ""
    d.repo.sync()
    texts = d.repo.read_files(commit, delivery.git_files)
    if len(texts) != len(delivery.git_files):
        raise GitOpsError(f"{len(delivery.git_files) - len(texts)} of the improvement's files are "
                          f"not readable at {commit[:12]}")
    return [doc for text in texts.values() for doc in yaml.safe_load_all(text) if isinstance(doc, dict)]


def planned_dependencies(delivery: Delivery) -> list[str]:
    resources = (delivery.plan or {}).get("resources", [])
    return sorted({dep for r in resources if isinstance(r, dict) for dep in r.get("dependencies", [])})


def step(iid: str, stage: str, outcome: str, status: str | None, detail: str) -> Step:
    return Step(improvement_id=iid, stage=stage, outcome=outcome, status=status, detail=detail)


def loaded(store: StateStore, improvement_id: str, stage: str) -> Improvement | Step:
    """The improvement, or the step that says it does not exist."""
    improvement = store.get(improvement_id)
    if improvement is None:
        return step(improvement_id, stage, "missing", None, "no such improvement")
    return improvement


def at_status(store: StateStore, improvement_id: str, stage: str, expected: Status) -> Improvement | Step:
    """The improvement if it is at ``expected``; otherwise the step that says why not."""
    improvement = loaded(store, improvement_id, stage)
    if isinstance(improvement, Step) or improvement.status is expected:
        return improvement
    status = improvement.status.value
    return step(improvement_id, stage, "skipped", status,
                f"nothing to do: status is {status}, this stage acts on {expected.value}")


def rollback_under_way(improvement: Improvement) -> str | None:
    """Why the improvement is being rolled back (revert made or a person asked), else None."""
    return improvement.delivery.rolling_back
