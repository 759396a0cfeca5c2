"""What the delivery steps share: the step outcome, the deployer's parts, reading an
improvement's committed files, and whether a rollback is under way."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel

from cortex_school.clients.cluster import ClusterTarget, path_covers
from cortex_school.clients.cluster.metrics import MetricsSource
from cortex_school.clients.gitops import GitOpsError, GitOpsRepo
from cortex_school.models import Delivery, Improvement, Status
from cortex_school.platform_model.argocd import Coverage, normalise_repo_url
from cortex_school.platform_model.files import MANIFEST_SUFFIXES
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
    repo_urls: frozenset[str] = frozenset()  # what this repository is called in Applications' repoURL

    def apps_for(self, files: list[str]) -> tuple[list[str], list[str]]:
        """(the Applications that apply ``files``, why some file would not be applied)."""
        return argocd_apps_for(self.cluster, self.repo.sync(), files, self.cfg, repo_urls=self.repo_urls)


def argocd_apps_for(cluster: ClusterTarget, root: Path, files: list[str], cfg: DeploySettings, *,
                    repo_urls: frozenset[str] = frozenset(),
                    overrides: dict[str, str] | None = None) -> tuple[list[str], list[str]]:
    """Which ArgoCD Applications will apply ``files`` (their names, sorted), and the problems
    that stop a change: a file no Application applies (named, with the Applications that
    exist), a kustomization that does not list it. Discovered from the Applications ArgoCD
    has (the live cluster's, or the simulation's from the repository) by source coverage
    (:mod:`cortex_school.platform_model.argocd`); ``overrides`` are files as the change would
    leave them. ``ARGOCD_APP_TEMPLATE``, when set, names the one Application per namespace
    instead (the old convention, as an explicit override)."""
    manifests = [f for f in files if f.endswith(MANIFEST_SUFFIXES)]
    if cfg.argocd_app_template:
        return _templated(cluster, manifests, cfg.argocd_app_template, cfg.argocd_namespace)
    sources = cluster.applications()
    known = frozenset(normalise_repo_url(u) for u in repo_urls if u)
    if not any(normalise_repo_url(s.repo_url) in known for s in sources):
        known = frozenset()  # no Application names this repository as configured: every git source counts
    coverage = Coverage(sources, root, known, dict(overrides or {}))
    apps: set[str] = set()
    uncovered: list[str] = []
    problems: list[str] = []
    for f in manifests:
        names = {s.name for s in coverage.covering(f)}
        if not names:
            uncovered.append(f)
        apps |= names
    if uncovered:  # a new folder an ApplicationSet of the repository will generate an Application for
        # The live cluster names an Application outside the ArgoCD namespace <namespace>/<name>.
        qualify = cfg.argocd_namespace if hasattr(cluster, "app_namespaces") else None
        generated = _generated_for(root, uncovered, known, dict(overrides or {}), qualify)
        existing = {s.name for s in sources}
        collided = {f: sorted(names & existing) for f, names in generated.items() if names & existing}
        for f, taken in sorted(collided.items()):  # ArgoCD keeps the existing Application of that name
            problems.append(f"an ApplicationSet would generate Application {taken[0]} for {f}, but an "
                            "Application of that name already exists and does not apply it")
        apps |= {name for f, names in generated.items() if f not in collided for name in names}
        uncovered = [f for f in uncovered if not generated.get(f) and f not in collided]
    if uncovered:
        listed = [s.describe() for s in sources if coverage.ours(s)][:8]
        more = len([s for s in sources if coverage.ours(s)]) - len(listed)
        problems.append(
            f"no ArgoCD Application applies {', '.join(uncovered[:5])}"
            + (f" (+{len(uncovered) - 5} more)" if len(uncovered) > 5 else "")
            + (f"; the Applications of this repository: {'; '.join(listed)}" + (f" (+{more} more)" if more > 0 else "")
               if listed else f"; ArgoCD has no Application of this repository ({len(sources)} in all)"))
    return sorted(apps), problems


def _generated_for(root: Path, files: list[str], known: frozenset[str],
                   overrides: dict[str, str], qualify: str | None = None) -> dict[str, set[str]]:
    """For files in folders that do not exist yet: the Applications the repository's
    ApplicationSets will generate once the folders are committed (a git directory
    generator over ``apps/*/*`` makes one for every new component folder)."""
    from cortex_school.platform_model.argocd import discover
    from cortex_school.platform_model.model import read_inventory

    inventory = read_inventory(root)
    sets = [(f, o) for f, o in inventory.argo_objects if o.get("kind") == "ApplicationSet"]
    if not sets:
        return {}
    parts = [f.split("/")[:-1] for f in files]
    folders = sorted(set(inventory.folders) | {"/".join(p[:i]) for p in parts for i in range(1, len(p) + 1)})
    coverage = Coverage(discover(sets, folders), root, known, overrides)
    return {f: {s.name if qualify is None or s.namespace in ("", qualify) else f"{s.namespace}/{s.name}"
                for s in coverage.covering(f)} for f in files}


def _templated(cluster: ClusterTarget, files: list[str], template: str,
               argocd_namespace: str) -> tuple[list[str], list[str]]:
    """``ARGOCD_APP_TEMPLATE`` set: ``apps/<namespace>/…`` is applied by the Application the
    template names for that namespace, if it exists and its path covers the folder."""
    apps, problems = [], []
    for ns in namespaces_of(files):
        app_name = template.format(namespace=ns)
        app = cluster.application(app_name)
        if app is None:
            problems.append(f"no ArgoCD Application {argocd_namespace}/{app_name} for "
                            f"apps/{ns}/: nothing would apply these files")
        elif not path_covers(app, f"apps/{ns}"):
            problems.append(f"ArgoCD Application {app_name} syncs path {app.path!r}"
                            f"{' recursively' if app.recurse else ''}, which does not cover apps/{ns}/")
        else:
            apps.append(app_name)
    return apps, problems


def namespaces_of(files: list[str]) -> list[str]:
    return sorted({f.split("/")[1] for f in files if f.startswith("apps/") and f.count("/") >= 2})


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
