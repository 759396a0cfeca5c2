"""GitOps commits against a real local bare repository as the remote."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import pytest

from cortex_school.clients.gitops import GitOpsConflict, GitOpsError, GitOpsRepo, ensure_bare_remote, redact

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "examples" / "platform" / "gitops"
AUTHOR = "Cortex Online School <school@cortex.ai>"


def git(remote: Path, *args: str) -> str:
    return subprocess.run(["git", "--git-dir", str(remote), *args], capture_output=True, text=True,
                          check=True).stdout


@pytest.fixture
def remote(tmp_path) -> Path:
    return ensure_bare_remote(tmp_path / "remote.git", "main", SEED)


def repo_for(remote: Path, workdir: Path, **kw) -> GitOpsRepo:
    return GitOpsRepo(remote=str(remote), branch="main", workdir=workdir, author=AUTHOR, **kw)


def files_for(iid: str, name: str) -> dict[str, str]:
    return {f"apps/cortex-system/{name}-configmap.yaml":
            f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  annotations:\n"
            f"    cortex-school.io/improvement-id: {iid}\n"}


def message(iid: str) -> str:
    return f"Implement: {iid}\n\nImplementation notes:\n  Improvement-Id: ffffffffffffffff\n\nImprovement-Id: {iid}\n"


def test_commit_lands_on_main_as_a_merge_with_files_and_message(remote, tmp_path):
    repo = repo_for(remote, tmp_path / "w")
    result = repo.commit_improvement("0123456789abcdef", files_for("0123456789abcdef", "a"), message("0123456789abcdef"))
    assert result.merge_commit and not result.reused
    assert git(remote, "rev-parse", "main").strip() == result.merge_commit
    assert git(remote, "log", "-1", "--format=%P", "main").split()[1] == result.commit
    assert git(remote, "log", "-1", "--format=%s", "main").strip() == "Merge improvement/0123456789abcdef"
    assert "Improvement-Id: 0123456789abcdef" in git(remote, "log", "-1", "--format=%B", result.commit)
    assert git(remote, "log", "-1", "--format=%an <%ae>", result.commit).strip() == AUTHOR
    assert result.files == ["apps/cortex-system/a-configmap.yaml"]
    assert "name: a" in git(remote, "show", "main:apps/cortex-system/a-configmap.yaml")
    assert git(remote, "rev-parse", "improvement/0123456789abcdef").strip() == result.commit


def test_rerun_reuses_the_commit_even_from_a_fresh_clone(remote, tmp_path):
    iid = "00000000000000aa"
    first = repo_for(remote, tmp_path / "w1").commit_improvement(iid, files_for(iid, "b"), message(iid))
    again = repo_for(remote, tmp_path / "w2").commit_improvement(iid, files_for(iid, "b"), message(iid))
    assert again.reused and (again.commit, again.merge_commit) == (first.commit, first.merge_commit)
    assert git(remote, "rev-list", "--count", "main").strip() == "3"  # seed, commit, merge


def test_only_the_last_paragraphs_trailer_names_the_improvement():
    trailer = GitOpsRepo._trailer
    assert trailer(message("00000000000000bb")) == "00000000000000bb"
    # A title smuggling a trailer line into the message body does not count...
    spoofed = "Implement: x\n\nSource: video - A video\nImprovement-Id: ffffffffffffffff\n\nImprovement-Id: 00000000000000bb\n"
    assert trailer(spoofed) == "00000000000000bb"
    # ...and two different ids in the trailer block name none.
    assert trailer("x\n\nImprovement-Id: 00000000000000bb\nImprovement-Id: ffffffffffffffff\n") is None


def test_newlines_in_a_title_cannot_forge_a_trailer():
    from cortex_school.workers.implement import commit_message
    from cortex_school.workers.plan import ImplementationPlan
    from tests.factories import make_improvement

    imp = make_improvement("Alert on x\nImprovement-Id: ffffffffffffffff").model_copy(
        update={"title": "A video\n\nImprovement-Id: eeeeeeeeeeeeeeee"})
    plan = ImplementationPlan(summary="x", manual_steps=["do it\n\nImprovement-Id: dddddddddddddddd"])
    msg = commit_message(imp, plan, [], "Cortex Online School <school@cortex.ai>")
    assert GitOpsRepo._trailer(msg) == imp.id
    assert all(not line.startswith("Improvement-Id: ") or line.endswith(imp.id) for line in msg.splitlines())


def test_two_workers_pushing_at_once_both_land(remote, tmp_path):
    ids = ["000000000000c001", "000000000000c002", "000000000000c003"]
    barrier = threading.Barrier(len(ids))
    results, errors = {}, []

    def work(n: int, iid: str) -> None:
        repo = repo_for(remote, tmp_path / f"w{n}", push_attempts=8)
        repo.sync()
        barrier.wait()
        try:
            results[iid] = repo.commit_improvement(iid, files_for(iid, f"n{n}"), message(iid))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n, iid)) for n, iid in enumerate(ids)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    merges = git(remote, "log", "--merges", "--format=%s", "main").splitlines()
    assert sorted(merges) == sorted(f"Merge improvement/{i}" for i in ids)
    tree = git(remote, "ls-tree", "-r", "--name-only", "main")
    assert all(f"apps/cortex-system/n{n}-configmap.yaml" in tree for n in range(len(ids)))


def test_a_rejected_push_is_retried_after_main_moved(remote, tmp_path):
    slow = repo_for(remote, tmp_path / "slow")
    slow.sync()
    # Someone else lands a commit on main after our clone fetched.
    other = repo_for(remote, tmp_path / "other")
    other.commit_improvement("000000000000d001", files_for("000000000000d001", "o"), message("000000000000d001"))
    original_sync = slow.sync
    slow.sync = lambda: slow.path  # keep the stale view: the first push must be rejected
    try:
        result = slow.commit_improvement("000000000000d002", files_for("000000000000d002", "s"),
                                         message("000000000000d002"))
    finally:
        slow.sync = original_sync
    assert result.push_attempts == 2
    assert "apps/cortex-system/o-configmap.yaml" in git(remote, "ls-tree", "-r", "--name-only", "main")


def test_branch_mode_pushes_the_branch_and_leaves_main_alone(remote, tmp_path):
    before = git(remote, "rev-parse", "main").strip()
    repo = repo_for(remote, tmp_path / "w", mode="branch")
    iid = "000000000000e001"
    result = repo.commit_improvement(iid, files_for(iid, "e"), message(iid))
    assert result.merge_commit is None
    assert git(remote, "rev-parse", "main").strip() == before
    assert git(remote, "rev-parse", f"improvement/{iid}").strip() == result.commit
    assert repo.commit_improvement(iid, files_for(iid, "e"), message(iid)).reused


def test_never_overwrites_a_file_this_improvement_did_not_write(remote, tmp_path):
    repo = repo_for(remote, tmp_path / "w")
    before = git(remote, "rev-parse", "main").strip()
    with pytest.raises(GitOpsConflict, match="not overwriting"):
        repo.commit_improvement("000000000000f001", {"apps/cortex/redis.yaml": "kind: ConfigMap\n"},
                                message("000000000000f001"))
    assert git(remote, "rev-parse", "main").strip() == before


def test_credentials_never_appear_in_errors(tmp_path):
    secret = "ghp_" + "s3cr3t" * 6
    repo = GitOpsRepo(remote=f"http://x-access-token:{secret}@127.0.0.1:9/none.git", branch="main",
                      workdir=tmp_path / "w", author=AUTHOR, secret=secret)
    with pytest.raises(GitOpsError) as info:
        repo.sync()
    assert secret not in str(info.value) and "127.0.0.1:9" in str(info.value)
    assert redact(f"https://u:{secret}@h/x {secret}", secret) == "https://***@h/x ***"


def test_a_stale_lock_left_by_a_killed_process_is_cleared(remote, tmp_path):
    repo = repo_for(remote, tmp_path / "w")
    repo.sync()
    (repo.path / ".git" / "index.lock").write_text("")
    repo.close()
    again = repo_for(remote, tmp_path / "w")
    assert again.path == repo.path
    iid = "000000000000a0a0"
    assert again.commit_improvement(iid, files_for(iid, "z"), message(iid)).merge_commit


def test_each_process_repo_gets_its_own_clone_slot(remote, tmp_path):
    a, b = repo_for(remote, tmp_path / "w"), repo_for(remote, tmp_path / "w")
    assert a.path != b.path
    a.close()
    assert repo_for(remote, tmp_path / "w").path == a.path  # a freed slot is reused
