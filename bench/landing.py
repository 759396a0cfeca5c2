"""Landing: do the clean proposals of a labelled fixture reach the GitOps repository and
verify? Each clean proposal is approved and taken through the real stages (plan on the
platform model, render, schema and policy gate, ArgoCD discovery, commit to a bare git
remote seeded with the fixture's repository, deploy and verify on the simulated cluster).

    .venv/bin/python bench/landing.py [--fixture examples/platform-k3s] [-v]

Prints, per proposal, where it ended and why, then ``clean proposals landed: N of M``.
A proposal a person must carry out (a concept, an edit of an object the system does not
own) ends with the plan's reason; that is counted as not landed, and listed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import redis  # noqa: E402
import yaml  # noqa: E402

from cortex_school.clients.cluster.metrics import SimulatedMetrics  # noqa: E402
from cortex_school.clients.cluster.simulated import SimulatedCluster  # noqa: E402
from cortex_school.clients.gitops import GitOpsRepo, ensure_bare_remote  # noqa: E402
from cortex_school.delivery import Deployer, argocd_apps_for, run_deploy, run_verify  # noqa: E402
from cortex_school.models import Status, utcnow  # noqa: E402
from cortex_school.platform_model import read_inventory  # noqa: E402
from cortex_school.platform_model.argocd import simulated_applications  # noqa: E402
from cortex_school.settings import DeploySettings, PolicySettings, ServiceSettings  # noqa: E402
from cortex_school.store.memory import MemoryStore  # noqa: E402
from cortex_school.workers.implement import Implementer, run_implement  # noqa: E402
from cortex_school.workers.planning import OfflinePlanner  # noqa: E402
from cortex_school.workers.schema_check import SchemaChecker  # noqa: E402
from judgment_bench import labelled  # noqa: E402

AUTHOR = "Cortex Online School <school@cortex.ai>"
REDIS_DB = 14  # the simulated cluster's state, apart from the demo's and the tests'


def land(fixture: Path, verbose: bool = False) -> tuple[int, int, list[tuple[str, str, str]]]:
    """(landed, clean proposals, [(description, where it ended, why)])."""
    rows = [(imp, lab) for imp, lab in labelled(fixture) if lab["expect"] == ["clean"]]
    policy_file = fixture / "policy.yaml"
    policy = yaml.safe_load(policy_file.read_text()) if policy_file.exists() else {
        "allowed_namespaces": sorted(set(read_inventory(fixture / "gitops").namespaces()) - {"kube-system", "argocd"})}
    namespaces = policy["allowed_namespaces"]
    client = redis.Redis(db=REDIS_DB)
    results = []
    landed = 0
    with tempfile.TemporaryDirectory() as tmp:
        remote = ensure_bare_remote(Path(tmp) / "remote.git", "main", fixture / "gitops")
        repo = GitOpsRepo(remote=str(remote), branch="main", workdir=Path(tmp) / "clones", author=AUTHOR)
        cluster = SimulatedCluster(client, repo, {}, simulated_applications)
        cluster.reset()
        cfg = DeploySettings(sync_timeout_seconds=600)
        store = MemoryStore()
        implementer = Implementer(
            planner=OfflinePlanner(namespaces[0]), repo=repo, schemas=SchemaChecker("1.31.0"),
            policy=PolicySettings(**policy), co_author=AUTHOR,
            sync_check=lambda root, files, over: argocd_apps_for(cluster, root, files, cfg, overrides=over))
        deployer = Deployer(cluster=cluster, metrics=SimulatedMetrics(cluster), repo=repo, cfg=cfg,
                            services=ServiceSettings(health_check_duration=60), co_author=AUTHOR)
        for imp, _label in rows:
            store.create(imp, actor="bench", reason="bench")
            for target in (Status.CATEGORIZED, Status.ASSESSED, Status.VALIDATED, Status.APPROVED):
                store.transition(imp.id, target, actor="bench", reason="bench")
            outcome, _ = run_implement(store, imp.id, implementer=implementer, worker="architecture", actor="bench")
            end, why = outcome.status, outcome.detail
            if outcome.status == "committed":
                now = utcnow()
                step: Any = run_deploy(store, imp.id, deployer, actor="bench", now=now)
                for _ in range(5):
                    if step.outcome != "waiting":
                        break
                    step = run_deploy(store, imp.id, deployer, actor="bench", now=now)
                if step.status == "deployed":
                    step = run_verify(store, imp.id, deployer, actor="bench", now=now + timedelta(seconds=90))
                end, why = step.status or "?", step.detail
            else:
                why = store.field(imp.id, "review_reason") or why
            if end == "verified":
                landed += 1
                why = f"{why}; files: {store.field(imp.id, 'git_files')}"
            results.append((imp.description, str(end), str(why)))
        cluster.reset()
    return landed, len(rows), results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fixture", action="append", default=None)
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()
    for name in args.fixture or [str(ROOT / "examples" / "platform-k3s")]:
        fixture = Path(name)
        landed, total, results = land(fixture, args.verbose)
        for description, end, why in results:
            print(f"  {end:>14}: {description[:90]}")
            print(f"      {why[:400]}")
        print(f"{fixture.name} · clean proposals landed: {landed} of {total}")


if __name__ == "__main__":
    main()
