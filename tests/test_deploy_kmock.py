"""The stateful ArgoCD flow on kmock's Kubernetes emulator: the Application object lives
in the emulator; our hard refresh patches it there, "ArgoCD" then patches its status
from OutOfSync to Synced at the new revision, and the deploy stage sees it through the
official client. (kmock ignores label selectors and serves no pod logs: those paths are
tested on the exact-request server in test_deploy.py.)"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest

from cortex_school.clients.cluster.kubernetes_api import KubernetesCluster
from cortex_school.delivery import Deployer, run_deploy, argocd_apps_for
from cortex_school.models import Status, utcnow
from cortex_school.settings import DeploySettings, PolicySettings, ServiceSettings
from cortex_school.clients.gitops import GitOpsRepo, ensure_bare_remote
from cortex_school.workers.implement import Implementer, run_implement
from cortex_school.workers.planning import OfflinePlanner
from cortex_school.workers.schema_check import SchemaChecker
from tests.fake_kube import kube_client
from tests.test_deploy import AUTHOR, SEED, QuietMetrics
from tests.test_implement_live import alert_improvement, approved

APPS = "/apis/argoproj.io/v1alpha1/namespaces/argocd/applications"


def application(name: str, path: str, revision: str) -> dict:
    return {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
            "metadata": {"name": name, "namespace": "argocd"},
            "spec": {"project": "default", "source": {"repoURL": "https://example.invalid/g.git",
                                                      "path": path, "targetRevision": "main"}},
            "status": {"sync": {"status": "Synced", "revision": revision},
                       "health": {"status": "Healthy"}}}


@pytest.mark.asyncio
async def test_an_application_goes_from_out_of_sync_to_synced_on_the_emulator(kmock, store, tmp_path):
    url = str(kmock.url)
    async with aiohttp.ClientSession(base_url=url) as http:
        for resp in [await http.post(APPS, json=application("monitoring-apps", "apps/monitoring", "seed"))]:
            assert resp.status == 200
    cluster = KubernetesCluster(api_client=kube_client(url))
    cfg = DeploySettings(sync_timeout_seconds=600)
    remote = ensure_bare_remote(tmp_path / "remote.git", "main", SEED)
    repo = GitOpsRepo(remote=str(remote), branch="main", workdir=tmp_path / "w", author=AUTHOR)
    implementer = Implementer(
        planner=OfflinePlanner(), repo=repo, schemas=SchemaChecker("1.31.0"),
        policy=PolicySettings(allowed_namespaces=["monitoring"]), co_author=AUTHOR,
        sync_check=lambda root, files, over: argocd_apps_for(cluster, root, files, cfg, overrides=over))
    imp = approved(store, alert_improvement("kmockvid001"))
    outcome, result = await asyncio.to_thread(
        run_implement, store, imp.id, implementer=implementer, worker="monitoring", actor="t@h")
    assert outcome.status == "committed", outcome.detail

    deployer = Deployer(cluster=cluster, metrics=QuietMetrics(), repo=repo, cfg=cfg,
                        services=ServiceSettings(), co_author=AUTHOR)
    t0 = utcnow()
    first = await asyncio.to_thread(run_deploy, store, imp.id, deployer, actor="t@h", now=t0)
    assert first.outcome == "waiting" and "Synced at seed" in first.detail
    stored = kmock.objects[("argoproj.io/v1alpha1/applications", "argocd", "monitoring-apps")]
    assert stored["metadata"]["annotations"]["argocd.argoproj.io/refresh"] == "hard"

    # ArgoCD notices the refresh: OutOfSync first, then Synced at the merge commit.
    async with aiohttp.ClientSession(base_url=url) as http:
        await http.patch(f"{APPS}/monitoring-apps", json={"status": {"sync": {"status": "OutOfSync"}}},
                         headers={"Content-Type": "application/merge-patch+json"})
    second = await asyncio.to_thread(run_deploy, store, imp.id, deployer, actor="t@h",
                                     now=t0 + timedelta(seconds=10))
    assert second.outcome == "waiting" and "OutOfSync" in second.detail
    async with aiohttp.ClientSession(base_url=url) as http:
        await http.patch(f"{APPS}/monitoring-apps",
                         json={"status": {"sync": {"status": "Synced", "revision": result.merge_commit}}},
                         headers={"Content-Type": "application/merge-patch+json"})
    third = await asyncio.to_thread(run_deploy, store, imp.id, deployer, actor="t@h",
                                    now=t0 + timedelta(seconds=20))
    assert third.outcome == "done", third.detail
    fields = store.raw_fields(imp.id)
    assert fields["status"] == Status.DEPLOYED.value
    assert fields["argocd_sync_revision"] == result.merge_commit
