"""GITOPS_MODE=branch to the end: a person merges improvement/<id> (a --no-ff merge, a
fast-forward, a squash, a rebase) in a clone of their own, and the merge watch (the sweep,
`cortex-school deploy`, the deploy stage) records the merge and deploys it on the simulated
cluster; a branch deleted unmerged is rejected; the pull request is opened against a local
server answering like GitHub's API. Real Redis, real bare remotes."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cortex_school.cli import app as cli
from cortex_school.clients.cluster.metrics import SimulatedMetrics
from cortex_school.clients.cluster.simulated import KEY, SimulatedCluster
from cortex_school.clients.gitops import GitHubPullRequests, GitOpsRepo, ensure_bare_remote
from cortex_school.platform_model.argocd import simulated_applications
from cortex_school.delivery import Deployer, argocd_apps_for, run_deploy, run_verify
from cortex_school.delivery.merge import LOCK, human_duration, pending_merges, settle_merge
from cortex_school.metrics import registry_for
from cortex_school.models import Decision, Status, utcnow
from cortex_school.pipeline import after_commit
from cortex_school.settings import DeploySettings, GitOpsSettings, PolicySettings, ServiceSettings
from cortex_school.sweeper import find_stuck, watch_merges
from cortex_school.workers.implement import Implementer, run_implement
from cortex_school.workers.planning import OfflinePlanner
from cortex_school.workers.schema_check import SchemaChecker
from tests.factories import make_improvement

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "examples" / "platform" / "gitops"
AUTHOR = "Cortex Online School <school@cortex.ai>"
TOKEN = "ghp_" + "t0k3n" * 7
DEPLOY_QUEUE = "deploy"  # the deploy stage's Celery queue (no worker consumes it here)


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout


def bare(remote: Path, *args: str) -> str:
    return git(remote, "--git-dir", str(remote), *args)


@dataclass
class World:
    remote: Path
    repo: GitOpsRepo
    implementer: Implementer
    deployer: Deployer
    tmp: Path

    def repo_factory(self) -> GitOpsRepo:
        """Another process's clone (its own slot), as a second sweeper would have."""
        return GitOpsRepo(remote=str(self.remote), branch="main", workdir=self.tmp / "clones",
                          author=AUTHOR, mode="branch")


@pytest.fixture
def world(tmp_path, store):
    store._redis.delete(KEY, DEPLOY_QUEUE)  # the simulated cluster and the deploy queue
    remote = ensure_bare_remote(tmp_path / "remote.git", "main", SEED)
    repo = GitOpsRepo(remote=str(remote), branch="main", workdir=tmp_path / "clones", author=AUTHOR,
                      mode="branch")
    cluster = SimulatedCluster(store._redis, repo, {}, simulated_applications)
    cfg = DeploySettings(sync_timeout_seconds=600)
    implementer = Implementer(
        planner=OfflinePlanner(), repo=repo, schemas=SchemaChecker("1.31.0"),
        policy=PolicySettings(allowed_namespaces=["cortex-system", "cortex", "monitoring"]),
        co_author=AUTHOR, sync_check=lambda root, files, over: argocd_apps_for(cluster, root, files, cfg, overrides=over))
    deployer = Deployer(cluster=cluster, metrics=SimulatedMetrics(cluster), repo=repo, cfg=cfg,
                        services=ServiceSettings(health_check_duration=300), co_author=AUTHOR)
    yield World(remote, repo, implementer, deployer, tmp_path)
    repo.close()
    store._redis.delete(KEY, DEPLOY_QUEUE)


def committed_on_a_branch(store, world: World, video: str, port: int = 8080) -> str:
    """An approved improvement implemented in branch mode: its branch pushed, main untouched."""
    imp = make_improvement("Run the steady API service", video_id=video,
                           category="architecture", type="tool", relevance=0.97,
                           notes=f"Deploy ghcr.io/cortex/steady-api:1.4.2 in cortex-system on port {port}.")
    store.create(imp, actor="test", reason="test")
    decision = Decision(approved=True, reasons=["test"], decided_by="auto-approval-gate")
    for target in (Status.CATEGORIZED, Status.ASSESSED, Status.VALIDATED, Status.APPROVED):
        store.transition(imp.id, target, actor="test", reason="test",
                         fields={"decision": decision.model_dump_json()})
    main_before = bare(world.remote, "rev-parse", "main").strip()
    outcome, result = run_implement(store, imp.id, implementer=world.implementer,
                                    worker="architecture", actor="t@h")
    assert outcome.status == "committed", outcome.detail
    fields = store.raw_fields(imp.id)
    assert fields["merge_pending"] == "true" and result.merge_commit is None
    assert bare(world.remote, "rev-parse", "main").strip() == main_before
    assert bare(world.remote, "rev-parse", f"improvement/{imp.id}").strip() == fields["git_branch_commit"]
    assert not after_commit(store, imp.id)  # nothing is deployed before a person merges
    return imp.id


def person_clone(world: World, name: str) -> Path:
    work = world.tmp / f"person-{name}"
    subprocess.run(["git", "clone", "-q", str(world.remote), str(work)], check=True)
    git(work, "config", "user.name", "Pat Reviewer")
    git(work, "config", "user.email", "pat@example.invalid")
    return work


def person_merges(world: World, iid: str, how: str, *, delete_branch: bool = False) -> str:
    """What a person does on GitHub or in a terminal; returns main's new tip."""
    work = person_clone(world, how)
    branch = f"improvement/{iid}"
    if how == "no-ff":
        git(work, "merge", "--no-ff", f"origin/{branch}", "-m", f"Merge pull request #1 from acme/{branch}")
    elif how == "ff":
        git(work, "merge", "--ff-only", f"origin/{branch}")
    elif how == "squash":  # GitHub's squash message: title (#n), the commits, co-authors
        message = git(work, "log", "-1", "--format=%B", f"origin/{branch}").strip()
        title, _, body = message.partition("\n")
        git(work, "merge", "--squash", f"origin/{branch}")
        git(work, "commit", "-q", "-m", f"{title} (#7)\n\n* {title}\n{body}\n\n---------\n\n"
            "Co-authored-by: Pat Reviewer <pat@example.invalid>")
    elif how == "rebase":  # main moved meanwhile: the branch commit is rewritten onto it
        (work / "NOTES.md").write_text("someone else's change\n")
        git(work, "add", "NOTES.md")
        git(work, "commit", "-q", "-m", "Unrelated change on main")
        git(work, "checkout", "-q", "-b", "rebased", f"origin/{branch}")
        git(work, "rebase", "-q", "main")
        git(work, "checkout", "-q", "main")
        git(work, "merge", "--ff-only", "rebased")
    git(work, "push", "-q", "origin", "main")
    if delete_branch:
        git(work, "push", "-q", "origin", "--delete", branch)
    return git(work, "rev-parse", "main").strip()


def notes(store, iid: str, prefix: str) -> list[str]:
    return [e.reason for e in store.timeline(iid) if e.reason.startswith(prefix)]


# -- merged by a person, then deployed ----------------------------------------------------

def test_a_no_ff_merge_by_a_person_is_deployed_and_verified_on_the_simulated_cluster(store, world):
    """GIVEN a branch-mode commit WHEN a person merges it --no-ff and the deploy stage runs
    THEN git_commit is the merge commit, merge_pending is cleared, and it deploys and verifies."""
    iid = committed_on_a_branch(store, world, "branchmrg01")
    waiting = run_deploy(store, iid, world.deployer, actor="t@h")
    assert waiting.outcome == "skipped" and waiting.status == "committed"
    assert f"branch improvement/{iid} is not merged into main yet" in waiting.detail

    merge = person_merges(world, iid, "no-ff")
    t0 = utcnow()
    done = run_deploy(store, iid, world.deployer, actor="t@h", now=t0)
    assert done.outcome == "done", done.detail
    fields = store.raw_fields(iid)
    assert fields["git_commit"] == merge != fields["git_branch_commit"]
    assert fields["merge_pending"] == "false" and fields["merge_kind"] == "merge commit"
    assert fields["argocd_sync_revision"] == merge and fields["status"] == "deployed"
    assert fields["deploy_queued_at"]  # this run was the deploy: no sweep queues another
    assert notes(store, iid, "merge found") == [
        f"merge found: improvement/{iid} landed on main as {merge[:12]} (merge commit)"]

    early = run_verify(store, iid, world.deployer, actor="t@h", now=t0 + timedelta(seconds=40))
    assert early.outcome == "waiting" and "healthy so far" in early.detail
    verified = run_verify(store, iid, world.deployer, actor="t@h", now=t0 + timedelta(seconds=320))
    assert verified.outcome == "done", verified.detail
    assert store.get(iid).status is Status.VERIFIED
    timeline = [e.to_status for e in store.timeline(iid)]
    assert timeline[-4:] == ["committed", "committed", "deployed", "verified"]


@pytest.mark.parametrize("how,kind", [("ff", "fast-forward"), ("squash", "squash or rebase"),
                                      ("rebase", "squash or rebase")])
def test_fast_forward_squash_and_rebase_merges_are_found(store, world, how, kind):
    """GIVEN a branch-mode commit WHEN a person fast-forwards, squashes or rebases it onto main
    (and deletes the branch) THEN the sweep records main's new commit as the merge."""
    iid = committed_on_a_branch(store, world, f"branch{how[:5]}01")
    tip = person_merges(world, iid, how, delete_branch=True)
    queued: list[str] = []
    found = watch_merges(store, lambda: world.repo, on_merged=lambda i: queued.append(i) or True)
    assert found[iid].startswith("merged: ") and found[iid].endswith("deploy queued"), found
    fields = store.raw_fields(iid)
    assert fields["git_commit"] == tip and fields["merge_kind"] == kind
    assert fields["merge_pending"] == "false" and fields["status"] == "committed"
    if how == "ff":
        assert tip == fields["git_branch_commit"]
    else:
        assert tip != fields["git_branch_commit"]  # not reachable: found by its trailer
    assert queued == [iid]
    assert run_deploy(store, iid, world.deployer, actor="t@h").outcome == "done"


def test_the_sweep_queues_one_deploy_however_many_sweeps_run_at_once(store, world, monkeypatch):
    """GIVEN a merged branch WHEN four sweeps look at once, then again THEN the merge is noted
    once and exactly one deploy message is queued."""
    iid = committed_on_a_branch(store, world, "branchrace1")
    merge = person_merges(world, iid, "no-ff")
    clones = [world.repo_factory() for _ in range(4)]
    barrier = threading.Barrier(len(clones))
    errors: list[BaseException] = []

    def sweep(repo):
        try:
            barrier.wait(10)
            watch_merges(store, lambda: repo, on_merged=lambda i: after_commit(store, i))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=sweep, args=(c,)) for c in clones]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    # The real task, as beat runs it, afterwards: nothing more to do.
    from cortex_school.tasks import sweep as sweep_task

    monkeypatch.setattr(sweep_task, "get_gitops_repo", lambda: world.repo)
    assert sweep_task.sweep_stuck.run()["merges"] == {}
    for c in clones:
        c.close()
    assert store._redis.llen(DEPLOY_QUEUE) == 1
    assert len(notes(store, iid, "merge found")) == 1
    assert store.raw_fields(iid)["git_commit"] == merge


def test_a_watcher_killed_mid_way_loses_nothing(store, world):
    """GIVEN a watcher that died holding the lock, and one that died after recording the merge
    WHEN the next sweep runs THEN the lock expires, and the deploy is still queued once."""
    iid = committed_on_a_branch(store, world, "branchkill1")
    person_merges(world, iid, "no-ff")
    assert store.acquire_lock(iid, LOCK, "dead-worker", ttl=1)
    busy = settle_merge(store, iid, world.repo, actor="t")
    assert busy.outcome == "busy" and store.raw_fields(iid)["merge_pending"] == "true"
    time.sleep(1.2)  # the dead holder's lock expires
    # This one records the merge, then "dies" before queueing the deploy.
    assert settle_merge(store, iid, world.repo, actor="t").outcome == "merged"
    assert store._redis.llen(DEPLOY_QUEUE) == 0
    found = watch_merges(store, lambda: pytest.fail("nothing waits: no clone needed"),
                         on_merged=lambda i: after_commit(store, i))
    assert found == {iid: "merged; deploy queued"}
    assert store._redis.llen(DEPLOY_QUEUE) == 1
    assert watch_merges(store, lambda: world.repo, on_merged=lambda i: after_commit(store, i)) == {}
    assert store._redis.llen(DEPLOY_QUEUE) == 1 and len(notes(store, iid, "merge found")) == 1


# -- not merged: waiting, or deleted ------------------------------------------------------

def test_a_branch_deleted_without_being_merged_is_rejected(store, world):
    """GIVEN a branch-mode commit WHEN a person deletes the branch unmerged THEN the sweep
    rejects the improvement with that reason and nothing is deployed."""
    iid = committed_on_a_branch(store, world, "branchdel01")
    bare(world.remote, "branch", "-D", f"improvement/{iid}")
    found = watch_merges(store, lambda: world.repo, on_merged=lambda i: pytest.fail("not merged"))
    reason = f"branch improvement/{iid} was deleted without being merged"
    assert found == {iid: f"rejected: {reason}"}
    fields = store.raw_fields(iid)
    assert fields["status"] == "rejected" and fields["rejection_reason"] == reason
    last = store.timeline(iid)[-1]
    assert (last.from_status, last.to_status, last.reason) == ("committed", "rejected", reason)
    assert run_deploy(store, iid, world.deployer, actor="t@h").outcome == "skipped"
    assert pending_merges(store) == []


def test_an_unmerged_branch_keeps_waiting_with_a_clear_detail(store, world, monkeypatch):
    """GIVEN a pushed, unmerged branch WHEN the sweep, the deploy stage and `cortex-school
    deploy` look THEN each says it waits for a person, nothing changes and nothing is queued;
    once merged, `cortex-school deploy` queues the deploy."""
    iid = committed_on_a_branch(store, world, "branchwait1")
    found = watch_merges(store, lambda: world.repo, on_merged=lambda i: pytest.fail("not merged"))
    assert found[iid].startswith(f"waiting: branch improvement/{iid} is not merged into main yet: "
                                 "waiting for a person to merge it (pushed ")
    assert find_stuck(store, stuck_after=0, health_window=0) == []  # waiting is not stuck
    step = run_deploy(store, iid, world.deployer, actor="t@h")
    assert (step.outcome, step.status) == ("skipped", "committed") and "waiting for a person" in step.detail
    fields = store.raw_fields(iid)
    assert fields["merge_pending"] == "true" and "deploy_queued_at" not in fields

    monkeypatch.setattr("cortex_school.runtime.get_gitops_repo", lambda: world.repo)
    runner = CliRunner()
    out = runner.invoke(cli, ["deploy", iid], env={"COLUMNS": "200"})
    assert out.exit_code == 0, out.output
    assert "not merged into main yet" in out.output and "no deploy queued" in out.output
    assert store._redis.llen(DEPLOY_QUEUE) == 0
    merge = person_merges(world, iid, "no-ff")
    out = runner.invoke(cli, ["deploy", iid], env={"COLUMNS": "200"})
    assert out.exit_code == 0, out.output
    assert f"as {merge[:12]} (merge commit)" in out.output and "deploy queued" in out.output
    assert store._redis.llen(DEPLOY_QUEUE) == 1


def test_a_remote_that_cannot_be_reached_fails_neither_the_sweep_nor_the_deploy_stage(store, world,
                                                                                      monkeypatch):
    """GIVEN a waiting branch and a remote that is gone WHEN the sweep task and the deploy stage
    look THEN both report it without raising, and the improvement still waits."""
    from dataclasses import replace

    from cortex_school.tasks import sweep as sweep_task

    iid = committed_on_a_branch(store, world, "branchdown1")
    gone = GitOpsRepo(remote=str(world.tmp / "gone.git"), branch="main", workdir=world.tmp / "gone",
                      author=AUTHOR, mode="branch")
    monkeypatch.setattr(sweep_task, "get_gitops_repo", lambda: gone)
    result = sweep_task.sweep_stuck.run()
    assert "gone.git" in result["merges"]["error"] and result["stuck"] == 0
    step = run_deploy(store, iid, replace(world.deployer, repo=gone), actor="t@h")
    assert step.outcome == "skipped" and "could not check whether the branch is merged" in step.detail
    fields = store.raw_fields(iid)
    assert fields["status"] == "committed" and fields["merge_pending"] == "true"
    gone.close()


# -- visible: status, review list, metrics ------------------------------------------------

def test_status_review_list_and_metrics_show_merge_pending_with_its_age(store, world):
    """GIVEN a branch waiting for two hours WHEN status, review list and the metrics are read
    THEN each shows it, with a human-readable age."""
    iid = committed_on_a_branch(store, world, "branchage01")
    store.set_fields(iid, {"status_since": str(time.time() - 7530)})
    runner = CliRunner()
    for command in (["status"], ["review", "list"]):
        out = runner.invoke(cli, command, env={"COLUMNS": "200"})
        assert out.exit_code == 0, out.output
        assert "merge pending: 1 branch(es)" in out.output
        row = next(line for line in out.output.splitlines() if iid in line)
        assert f"improvement/{iid}" in row and "2h 05m" in row and "7530" not in row
    registry = registry_for(store, [])
    assert registry.get_sample_value("cortex_school_merge_pending") == 1
    assert 7525 < registry.get_sample_value("cortex_school_merge_pending_oldest_seconds") < 7600
    assert [human_duration(s) for s in (7, 65, 7530, 2 * 86400 + 4 * 3600)] == ["7s", "1m 05s", "2h 05m", "2d 4h"]


# -- the optional pull request ------------------------------------------------------------

def pulls_for(httpserver) -> GitHubPullRequests:
    return GitHubPullRequests(api_url=httpserver.url_for("/"), repository="acme/gitops", token=TOKEN)


def test_the_pull_request_is_opened_once_and_recorded(store, world, httpserver):
    """GIVEN GITOPS_OPEN_PULL_REQUEST WHEN the sweep sees a waiting branch THEN it opens the
    pull request (POST /repos/acme/gitops/pulls) once and records its URL."""
    iid = committed_on_a_branch(store, world, "branchpr001")
    url = "https://github.com/acme/gitops/pull/7"
    httpserver.expect_request("/repos/acme/gitops/pulls", method="POST").respond_with_json(
        {"number": 7, "html_url": url}, status=201)
    for _ in range(2):
        watch_merges(store, lambda: world.repo, on_merged=lambda i: True, pulls=pulls_for(httpserver))
    (request, _), = httpserver.log
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    body = json.loads(request.data)
    assert body["head"] == f"improvement/{iid}" and body["base"] == "main"
    assert body["title"].startswith("Implement: Run the steady API service")
    assert f"Improvement-Id: {iid}" in body["body"] and "Merging this pull request" in body["body"]
    assert store.raw_fields(iid)["pull_request_url"] == url
    assert notes(store, iid, "pull request") == [f"pull request opened: {url}"]
    assert pending_merges(store)[0].pull_request_url == url


def test_an_existing_pull_request_is_found_instead(store, world, httpserver):
    """GIVEN a pull request already open for the branch WHEN GitHub answers 422 THEN the open
    one is looked up and recorded."""
    iid = committed_on_a_branch(store, world, "branchpr002")
    url = "https://github.com/acme/gitops/pull/3"
    httpserver.expect_request("/repos/acme/gitops/pulls", method="POST").respond_with_json(
        {"message": "Validation Failed", "errors": [{"resource": "PullRequest", "code": "custom",
         "message": f"A pull request already exists for acme:improvement/{iid}."}]}, status=422)
    httpserver.expect_request("/repos/acme/gitops/pulls", method="GET",
                              query_string={"head": f"acme:improvement/{iid}", "base": "main",
                                            "state": "open"}).respond_with_json([{"html_url": url}])
    found = watch_merges(store, lambda: world.repo, on_merged=lambda i: True, pulls=pulls_for(httpserver))
    assert found[iid].startswith("waiting: ")
    fields = store.raw_fields(iid)
    assert fields["pull_request_url"] == url and "pull_request_error" not in fields
    assert notes(store, iid, "pull request") == [f"pull request already open: {url}"]


def test_a_refused_pull_request_is_recorded_and_fails_nothing(store, world, httpserver):
    """GIVEN a bad token WHEN GitHub answers 401 THEN the error is recorded (without the token),
    the improvement still waits, and GitHub is not asked again at the next sweep."""
    iid = committed_on_a_branch(store, world, "branchpr003")
    httpserver.expect_request("/repos/acme/gitops/pulls", method="POST").respond_with_json(
        {"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"}, status=401)
    for _ in range(2):
        found = watch_merges(store, lambda: world.repo, on_merged=lambda i: True,
                             pulls=pulls_for(httpserver))
        assert found[iid].startswith("waiting: ")
    assert len(httpserver.log) == 1
    fields = store.raw_fields(iid)
    assert fields["pull_request_error"] == "GitHub answered 401: Bad credentials"
    assert fields["pull_request_error_permanent"] == "true" and TOKEN not in json.dumps(fields)
    assert fields["status"] == "committed" and fields["merge_pending"] == "true"
    assert "not opened: GitHub answered 401" in next(
        line for line in CliRunner().invoke(cli, ["status"], env={"COLUMNS": "250"}).output.splitlines()
        if iid in line)


def test_the_pull_request_goes_to_the_github_repository_of_the_remote():
    """GIVEN remotes on github.com, a path with GITHUB_REPO, and neither WHEN the repository
    for pull requests is derived THEN it is owner/name, or None."""
    assert GitOpsSettings(remote_url="git@github.com:acme/gitops.git").github_repository == "acme/gitops"
    assert GitOpsSettings(github_repo="acme/gitops").github_repository == "acme/gitops"
    assert GitOpsSettings(remote_url="/srv/gitops.git", github_repo="acme/x").github_repository == "acme/x"
    assert GitOpsSettings(github_repo="/srv/gitops.git").github_repository is None
    refused = GitHubPullRequests(api_url="http://127.0.0.1:9", repository=None, token=None).open(
        head="improvement/x", base="main", title="t", body="b")
    assert refused.url is None and refused.permanent and "no GitHub repository" in refused.error
