"""Committing an improvement's manifests to the GitOps repository (GitPython).

The design's strategy: branch ``improvement/<id>`` from the target branch, add
``apps/<namespace>/...``, commit with the detailed message, push the branch, merge it
``--no-ff`` into the target branch and push. A push rejected because the branch moved
is retried after fetching and merging again (bounded). ``branch`` mode stops after
pushing the branch and leaves the merge to a person.

Re-running for an improvement that is already committed finds its commit (by the
``Improvement-Id`` trailer on the branch commit and the merge message on the target
branch) and reuses it: never a second commit.

In ``branch`` mode a person merges; :meth:`GitOpsRepo.find_landing` finds where the branch
landed on the target branch (a merge commit, a fast-forward, or a squash or rebase found by
its ``Improvement-Id`` trailer), and :class:`GitHubPullRequests` may open the pull request
for them.

Each worker process works in its own clone (a locked slot directory), so workers
never share an index. Credentials reach git through ``GIT_ASKPASS`` from the
environment; they are never in a URL, and every error message is redacted.
"""

from __future__ import annotations

import fcntl
import os
import random
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal, TypeVar, cast

import git
import httpx
import yaml
from git.exc import GitCommandError

from cortex_school.errors import PermanentError, TransientError

_T = TypeVar("_T")

TRAILER = "Improvement-Id"
REVERT_TRAILER = "Reverts-Improvement"
_ASKPASS = """#!/bin/sh
case "$1" in
  Username*) printf '%s' "$CORTEX_GIT_USERNAME" ;;
  *) printf '%s' "$CORTEX_GIT_PASSWORD" ;;
esac
"""
_REJECTED = re.compile(r"rejected|non-fast-forward|fetch first|failed to (update|lock)|"
                       r"cannot lock ref|stale info|remote ref updated since", re.I)


class GitOpsError(TransientError):
    """A git operation failed (a remote that is down, the network, a push raced by
    another writer): worth another try. The message is already redacted; causes are
    dropped on purpose (``from None``): git's own exception carries the remote URL with
    its credentials."""


KUSTOMIZATION_NAMES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
_SAFE_ENTRY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_./-]{0,250}\.ya?ml")


class GitOpsConflict(GitOpsError, PermanentError):
    """The change cannot be committed as generated (overwrites, merge conflicts): the
    same commit fails again, so a person looks at it."""


@dataclass
class CommitResult:
    branch: str
    commit: str  # the improvement's own commit (on its branch)
    merge_commit: str | None  # on the target branch; None in branch mode
    files: list[str] = field(default_factory=list)
    reused: bool = False
    push_attempts: int = 0

    @property
    def deployable_revision(self) -> str | None:
        """What ArgoCD will sync: the merge commit on the target branch."""
        return self.merge_commit


MergeKind = Literal["merge commit", "fast-forward", "squash or rebase"]


@dataclass(frozen=True)
class Landing:
    """Where a branch a person merged landed on the target branch: the commit ArgoCD must
    sync past (``commit``) and how it got there."""

    commit: str
    kind: MergeKind


def _message(commit: git.Commit) -> str:
    """A commit's message. GitPython types it ``str | bytes`` (bytes only when it cannot be
    decoded); the messages read here are improvement commits this class wrote as UTF-8."""
    return cast(str, commit.message)


def redact(text: str, secret: str | None) -> str:
    if secret:
        text = text.replace(secret, "***")
    return re.sub(r"(://)[^/@\s]+@", r"\1***@", text)


class GitOpsRepo:
    def __init__(self, *, remote: str, branch: str, workdir: Path, author: str,
                 mode: str = "merge", push_attempts: int = 5, username: str = "x-access-token",
                 secret: str | None = None) -> None:
        self.remote = remote
        self.branch = branch
        self.workdir = Path(workdir)
        self.author = git.Actor._from_string(author)
        self.mode = mode
        self.push_attempts = push_attempts
        self.username = username
        self.secret = secret
        self._lock: IO[str] | None = None
        self.path = self._claim_slot()
        self._repo: git.Repo | None = None

    # -- setup ----------------------------------------------------------------
    def _claim_slot(self) -> Path:
        """A clone directory no other live process uses (flock held for our lifetime)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        for n in range(256):
            handle = open(self.workdir / f"slot-{n}.lock", "w")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.close()
                continue
            self._lock = handle
            slot = self.workdir / f"slot-{n}"
            # We hold the slot exclusively: lock files left by a killed process are stale.
            if (slot / ".git").is_dir():
                for stale in (slot / ".git").rglob("*.lock"):
                    stale.unlink(missing_ok=True)
            return slot
        raise GitOpsError(f"no free clone slot under {self.workdir}")

    def _env(self) -> dict[str, str]:
        env = {"GIT_TERMINAL_PROMPT": "0"}
        if self.secret:
            askpass = self.workdir / "askpass.sh"
            if not askpass.exists():
                askpass.write_text(_ASKPASS)
                askpass.chmod(0o700)
            env.update(GIT_ASKPASS=str(askpass), CORTEX_GIT_USERNAME=self.username,
                       CORTEX_GIT_PASSWORD=self.secret)
        return env

    def _git(self) -> git.Repo:
        if self._repo is None:
            if (self.path / ".git").is_dir():
                repo = git.Repo(self.path)
                if repo.remotes.origin.url != self.remote:
                    repo.remotes.origin.set_url(self.remote)
            else:
                if self.path.exists():
                    shutil.rmtree(self.path)
                repo = self._run(lambda: git.Repo.clone_from(self.remote, self.path, env=self._env()))
            with repo.config_writer() as cfg:
                cfg.set_value("user", "name", self.author.name)
                cfg.set_value("user", "email", self.author.email)
                cfg.set_value("core", "hooksPath", "/dev/null")  # a repo's hooks never run here
            self._repo = repo
        return self._repo

    def _run(self, action: Callable[[], _T]) -> _T:
        try:
            return action()
        except GitCommandError as exc:
            raise GitOpsError(redact(f"git {exc.command[1] if len(exc.command) > 1 else ''} "
                                     f"failed ({exc.status}): {exc.stderr.strip()[:500]}",
                                     self.secret)) from None

    def fetch(self) -> None:
        """Fetch every branch of the remote; ``--prune`` drops branches deleted there, so a
        missing remote-tracking branch means the remote no longer has it."""
        repo = self._git()
        with repo.git.custom_environment(**self._env()):
            self._run(lambda: repo.git.fetch("origin", "--prune"))

    def sync(self) -> Path:
        """Fetch and check out the target branch's tip (clean); returns the work tree."""
        repo = self._git()
        self.fetch()
        self._run(lambda: repo.git.checkout("-B", self.branch, f"origin/{self.branch}", "--force"))
        self._run(lambda: repo.git.clean("-fdx"))
        return self.path

    # -- finding what is already there ----------------------------------------
    def find_existing(self, improvement_id: str) -> CommitResult | None:
        """The improvement's commit if it already landed (or, in branch mode, was pushed)."""
        repo = self._git()
        branch = f"improvement/{improvement_id}"
        merged = repo.git.log(f"origin/{self.branch}", "--merges", "--format=%H",
                              f"--grep=^Merge {branch}$", "-n", "1").strip()
        if merged:
            commit = repo.commit(merged).parents[1].hexsha
            return CommitResult(branch=branch, commit=commit, merge_commit=merged,
                                files=self._files_of(commit), reused=True)
        remote_ref = f"origin/{branch}"
        if remote_ref in [r.name for r in repo.remotes.origin.refs]:
            tip = repo.commit(remote_ref)
            if self._trailer(_message(tip)) == improvement_id:
                if self.mode == "branch":
                    return CommitResult(branch=branch, commit=tip.hexsha, merge_commit=None,
                                        files=self._files_of(tip.hexsha), reused=True)
        return None

    @staticmethod
    def _trailer(message: str) -> str | None:
        """The Improvement-Id trailer of the message's last paragraph (where git puts
        trailers); a look-alike line anywhere else does not count."""
        last = message.strip().split("\n\n")[-1]
        found = re.findall(rf"^{TRAILER}: ([0-9a-f]{{16}})$", last, re.M)
        return found[-1] if len(set(found)) == 1 else None

    def _files_of(self, sha: str) -> list[str]:
        out = self._git().git.diff_tree("--no-commit-id", "--name-only", "-r", f"{sha}^", sha)
        return sorted(line for line in out.splitlines() if line)

    # -- committing -------------------------------------------------------------
    def commit_improvement(self, improvement_id: str, files: dict[str, str],
                           message: str, listed: dict[str, list[str]] | None = None) -> CommitResult:
        """Land ``files`` (path → content) for one improvement; idempotent. ``listed``:
        entries to add to the ``resources`` of existing kustomization files (the one edit a
        change makes to a file it did not write: a line each, made on the tip it commits to)."""
        self.sync()
        existing = self.find_existing(improvement_id)
        if existing is not None:
            return existing
        repo = self._git()
        branch = f"improvement/{improvement_id}"
        branch_commit = self._branch_commit(repo, branch, improvement_id, files, message, listed or {})
        if self.mode == "branch":
            return CommitResult(branch=branch, commit=branch_commit, merge_commit=None,
                                files=sorted(files))
        return self._merge_and_push(repo, branch, branch_commit, improvement_id, files)

    def _branch_commit(self, repo: git.Repo, branch: str, improvement_id: str,
                       files: dict[str, str], message: str, listed: dict[str, list[str]]) -> str:
        remote_ref = f"origin/{branch}"
        if remote_ref in [r.name for r in repo.remotes.origin.refs]:
            tip = repo.commit(remote_ref)
            if self._trailer(_message(tip)) == improvement_id:
                return tip.hexsha  # pushed by an earlier run that died before merging
        self._run(lambda: repo.git.checkout("-B", branch, f"origin/{self.branch}", "--force"))
        for rel, content in files.items():
            target = self._inside(rel)
            if target.exists() and target.read_text(errors="replace") != content:
                existing = target.read_text(errors="replace")
                if f"improvement-id: {improvement_id}" not in existing:
                    raise GitOpsConflict(f"{rel} already exists on {self.branch} and was not "
                                         "written by this improvement; not overwriting it")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
        for rel, entries in sorted(listed.items()):
            target = self.path / rel
            bad = [e for e in entries if not _SAFE_ENTRY.fullmatch(e) or ".." in e.split("/")]
            if bad:
                raise GitOpsConflict(f"not a path below {rel}'s folder: {bad[0][:100]!r}")
            if rel in files or rel.rsplit("/", 1)[-1] not in KUSTOMIZATION_NAMES or not target.is_file() \
                    or target.is_symlink() or not target.resolve().is_relative_to(self.path.resolve()):
                raise GitOpsConflict(f"{rel} is not a kustomization file of {self.branch}; not listing in it")
            text = target.read_text(errors="replace")
            for entry in entries:
                text = list_kustomization_resource(text, entry)
            target.write_text(text)
        self._run(lambda: repo.git.add("--", *sorted(files), *sorted(listed)))
        if not repo.index.diff("HEAD"):
            raise GitOpsConflict(f"every file is already on {self.branch} as generated; "
                                 "nothing to commit")
        self._run(lambda: repo.git.commit("-m", message, f"--author={self.author.name} "
                                          f"<{self.author.email}>"))
        sha = repo.head.commit.hexsha
        with repo.git.custom_environment(**self._env()):
            try:
                self._run(lambda: repo.git.push("origin", f"{branch}:refs/heads/{branch}"))
            except GitOpsError as exc:
                if not _REJECTED.search(str(exc)):
                    raise
                # Another run of this improvement pushed the branch first: use theirs.
                self._run(lambda: repo.git.fetch("origin", branch))
                tip = repo.commit(f"origin/{branch}")
                if self._trailer(_message(tip)) != improvement_id:
                    raise
                return tip.hexsha
        return sha

    def _inside(self, rel: str) -> Path:
        """``rel``'s path in the checkout, refused unless it is a plain relative path that
        stays inside the repository through no symbolic link (a plan names where it writes;
        a hostile one must not write beside or outside the tree)."""
        parts = rel.split("/")
        if not rel or rel.startswith("/") or "\\" in rel or any(p in ("", ".", "..") for p in parts) \
                or ".git" in parts:
            raise GitOpsConflict(f"not a plain path inside the repository: {rel[:100]!r}")
        root = self.path.resolve()
        target = self.path / rel
        probe = self.path
        for part in parts:
            probe = probe / part
            if probe.is_symlink():
                raise GitOpsConflict(f"{rel[:100]} passes through a symbolic link; not writing it")
        if not target.resolve().is_relative_to(root):
            raise GitOpsConflict(f"{rel[:100]} resolves outside the repository; not writing it")
        return target

    def _merge_and_push(self, repo: git.Repo, branch: str, branch_commit: str,
                        improvement_id: str, files: dict[str, str]) -> CommitResult:
        for attempt in range(1, self.push_attempts + 1):
            self._run(lambda: repo.git.checkout("-B", self.branch, f"origin/{self.branch}", "--force"))
            try:
                repo.git.merge("--no-ff", branch_commit, "-m", f"Merge {branch}")
            except GitCommandError as exc:
                repo.git.merge("--abort")
                raise GitOpsConflict(redact(f"merging {branch} into {self.branch} conflicts: "
                                            f"{exc.stderr.strip()[:300]}", self.secret)) from None
            merge_sha = repo.head.commit.hexsha
            with repo.git.custom_environment(**self._env()):
                try:
                    self._run(lambda: repo.git.push("origin", f"{self.branch}:refs/heads/{self.branch}"))
                    return CommitResult(branch=branch, commit=branch_commit, merge_commit=merge_sha,
                                        files=sorted(files), push_attempts=attempt)
                except GitOpsError as exc:
                    if not _REJECTED.search(str(exc)) or attempt == self.push_attempts:
                        raise GitOpsError(f"push to {self.branch} failed after {attempt} "
                                          f"attempt(s): {exc}") from None
                    self._run(lambda: repo.git.fetch("origin", "--prune"))
            landed = self.find_existing(improvement_id)
            if landed is not None:  # a concurrent re-run merged it meanwhile
                return landed
            time.sleep(random.uniform(0.05, 0.3) * attempt)  # de-synchronise racing workers
        raise GitOpsError("unreachable")

    # -- reading and reverting ------------------------------------------------------
    def head(self) -> str:
        """The target branch's tip as last fetched."""
        return self._git().commit(f"origin/{self.branch}").hexsha

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        """Whether ``descendant`` contains ``ancestor`` (fetch first)."""
        try:
            self._git().git.merge_base("--is-ancestor", ancestor, descendant)
            return True
        except GitCommandError:
            return False

    def read_files(self, revision: str, paths: list[str]) -> dict[str, str]:
        repo = self._git()
        out = {}
        for path in paths:
            try:
                out[path] = repo.git.show(f"{revision}:{path}")
            except GitCommandError:
                continue  # not in that revision
        return out

    def show_change(self, sha: str, *, limit: int = 400_000) -> str:
        """``git show`` of a commit, without colour (a merge: its change against the first
        parent, i.e. what it brought to the target branch); fetches once if the clone does not
        have it yet. At most ``limit`` characters. Raises GitOpsError."""
        if not re.fullmatch(r"[0-9a-f]{7,40}", sha):
            raise GitOpsError(f"not a commit id: {sha[:50]!r}")
        repo = self._git()
        try:
            repo.git.cat_file("-e", f"{sha}^{{commit}}")
        except GitCommandError:
            self.fetch()
        text = cast(str, self._run(lambda: repo.git.show("--no-color", "--no-ext-diff", "-m",
                                                         "--first-parent", "--stat", "--patch", sha)))
        return text if len(text) <= limit else text[:limit] + "\n… (cut)"

    def find_revert(self, improvement_id: str) -> str | None:
        found = self._git().git.log(f"origin/{self.branch}", "--format=%H", "-n", "1",
                                    f"--grep=^{REVERT_TRAILER}: {improvement_id}$").strip()
        return found or None

    def revert_improvement(self, improvement_id: str, merge_commit: str, reason: str,
                           co_author: str) -> tuple[str, bool]:
        """Revert the improvement's merge on the target branch and push (retrying a rejected
        push); (revert commit, reused). A second call finds the first revert."""
        self.sync()
        existing = self.find_revert(improvement_id)
        if existing:
            return existing, True
        repo = self._git()
        message = (f"Revert improvement {improvement_id}: {reason.splitlines()[0][:150]}\n\n"
                   f"This reverts merge commit {merge_commit}.\n\n"
                   f"{REVERT_TRAILER}: {improvement_id}\nCo-Authored-By: {co_author}\n")
        for attempt in range(1, self.push_attempts + 1):
            self._run(lambda: repo.git.checkout("-B", self.branch, f"origin/{self.branch}", "--force"))
            if not self.is_ancestor(merge_commit, "HEAD"):
                raise GitOpsConflict(f"{merge_commit[:12]} is not on {self.branch}; nothing to revert")
            parents = len(repo.commit(merge_commit).parents)
            try:
                repo.git.revert(*(["-m", "1"] if parents > 1 else []), "--no-commit", merge_commit)
            except GitCommandError as exc:
                repo.git.revert("--abort")
                raise GitOpsConflict(redact(f"reverting {merge_commit[:12]} conflicts: "
                                            f"{exc.stderr.strip()[:300]}", self.secret)) from None
            self._run(lambda: repo.git.commit("-m", message, f"--author={self.author.name} "
                                              f"<{self.author.email}>"))
            sha = repo.head.commit.hexsha
            with repo.git.custom_environment(**self._env()):
                try:
                    self._run(lambda: repo.git.push("origin", f"{self.branch}:refs/heads/{self.branch}"))
                    return sha, False
                except GitOpsError as exc:
                    if not _REJECTED.search(str(exc)) or attempt == self.push_attempts:
                        raise
                    self._run(lambda: repo.git.fetch("origin", "--prune"))
            existing = self.find_revert(improvement_id)
            if existing:
                return existing, True
            time.sleep(random.uniform(0.05, 0.3) * attempt)
        raise GitOpsError("unreachable")

    # -- a person's merge (branch mode) -------------------------------------------
    def remote_branch(self, branch: str) -> str | None:
        """The remote branch's tip as last fetched; None when the remote has no such branch."""
        try:
            out = self._git().git.rev_parse("--verify", "--quiet", f"refs/remotes/origin/{branch}^{{commit}}")
        except GitCommandError:
            return None
        return out.strip() or None

    def message_of(self, sha: str) -> str:
        """A commit's full message (fetch first)."""
        return cast(str, self._run(lambda: self._git().git.log("-1", "--format=%B", sha)))

    def find_landing(self, improvement_id: str, branch_commit: str) -> Landing | None:
        """Where the improvement's branch commit landed on the target branch (fetch first);
        None while it has not.

        Reachable from the target branch: the first commit of its first-parent history that
        contains it (a ``--no-ff`` merge commit, or the commit itself after a fast-forward).
        Not reachable (squash, or a rebase that rewrote it): the oldest commit on the target
        branch whose trailer block says ``Improvement-Id: <id>``, and where that landed."""
        tip = f"origin/{self.branch}"
        if branch_commit and self.is_ancestor(branch_commit, tip):
            landed = self._first_containing(branch_commit)
            if landed is not None:
                kind: MergeKind = "fast-forward" if landed == branch_commit else "merge commit"
                return Landing(landed, kind)
        carrier = self._trailer_commit(improvement_id)
        if carrier is None:
            return None
        landed = self._first_containing(carrier)
        return Landing(landed or carrier, "squash or rebase")

    def _first_containing(self, sha: str) -> str | None:
        """The oldest commit of the target branch's first-parent history that contains
        ``sha``. Containment only grows along that history (each commit contains its first
        parent), so a binary search needs log2(n) ancestry checks."""
        chain = self._git().git.rev_list("--first-parent", f"origin/{self.branch}").split()
        if not chain or not self.is_ancestor(sha, chain[0]):
            return None
        newest, oldest = 0, len(chain) - 1  # chain[newest] contains sha; is chain[oldest]?
        while newest < oldest:
            middle = (newest + oldest + 1) // 2
            if self.is_ancestor(sha, chain[middle]):
                newest = middle
            else:
                oldest = middle - 1
        return chain[newest]

    def _trailer_commit(self, improvement_id: str) -> str | None:
        """The oldest commit on the target branch carrying the improvement's trailer in a
        trailer block (GitHub's squash message keeps the branch commit's trailers, then may
        add a block of its own)."""
        found = self._git().git.log(f"origin/{self.branch}", "--format=%H", "--reverse",
                                    f"--grep=^{TRAILER}: {improvement_id}$").split()
        for sha in found:
            if improvement_id in self._trailer_blocks(self.message_of(sha)):
                return sha
        return None

    @staticmethod
    def _trailer_blocks(message: str) -> set[str]:
        """Every Improvement-Id named in a paragraph made only of ``Key: value`` lines, after
        the subject. A commit message quotes the proposal only on one line or indented, so a
        look-alike line in its text is never a block of its own."""
        ids: set[str] = set()
        for paragraph in message.strip().split("\n\n")[1:]:
            lines = [line for line in paragraph.splitlines() if line.strip()]
            if lines and all(re.match(r"^[A-Za-z][A-Za-z0-9-]*: \S", line) for line in lines):
                ids.update(re.findall(rf"^{TRAILER}: ([0-9a-f]{{16}})$", paragraph, re.M))
        return ids

    def close(self) -> None:
        if self._repo is not None:
            self._repo.close()
        if self._lock is not None:
            self._lock.close()
            self._lock = None


@dataclass(frozen=True)
class PullRequestResult:
    """What asking GitHub for a pull request gave: its page (``url``), or why not
    (``error``, redacted); ``permanent`` when the same request would fail again (a 4xx)."""

    url: str | None = None
    error: str | None = None
    permanent: bool = False
    existed: bool = False


def _json_field(response: httpx.Response, name: str) -> str:
    """One string field of a JSON object answer ('' when the answer is not one)."""
    try:
        data = response.json()
    except ValueError:
        return ""
    return str(data.get(name) or "") if isinstance(data, dict) else ""


class GitHubPullRequests:
    """Opens the pull request for a pushed ``improvement/<id>`` branch through GitHub's REST
    API (``POST /repos/{owner}/{repo}/pulls``), so the person who merges finds it waiting.

    Idempotent: when GitHub answers 422 "A pull request already exists", the open one is
    looked up and returned. Never raises for what GitHub or the network does: every failure
    comes back as a :class:`PullRequestResult` with the (redacted) reason, because a pull
    request is a convenience and must never undo or fail a commit that was pushed."""

    def __init__(self, *, api_url: str, repository: str | None, token: str | None,
                 timeout: float = 10.0) -> None:
        self.api_url = api_url.rstrip("/")
        self.repository = repository
        self.token = token
        self.timeout = timeout

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def open(self, *, head: str, base: str, title: str, body: str) -> PullRequestResult:
        """The pull request of ``head`` into ``base``: created, or the one already open."""
        if not self.repository:
            return PullRequestResult(error="no GitHub repository: GITOPS_REMOTE is not a github.com "
                                     "URL and GITHUB_REPO is not owner/name", permanent=True)
        url = f"{self.api_url}/repos/{self.repository}/pulls"
        try:
            response = httpx.post(url, headers=self._headers(), timeout=self.timeout,
                                  json={"title": title[:250], "head": head, "base": base, "body": body})
            if response.status_code == 201:
                return PullRequestResult(url=_json_field(response, "html_url"))
            if response.status_code == 422 and "already exists" in response.text:
                return self._existing(head, base)
            return self._refused(response)
        except (httpx.HTTPError, ValueError) as exc:
            return PullRequestResult(error=redact(f"GitHub API {self.api_url} not reachable: "
                                                  f"{type(exc).__name__}: {exc}"[:500], self.token))

    def _existing(self, head: str, base: str) -> PullRequestResult:
        """The open pull request of ``head`` (GET /pulls?head=owner:branch)."""
        owner = (self.repository or "").split("/", 1)[0]
        response = httpx.get(f"{self.api_url}/repos/{self.repository}/pulls", headers=self._headers(),
                             params={"head": f"{owner}:{head}", "base": base, "state": "open"},
                             timeout=self.timeout)
        if response.status_code != 200:
            return self._refused(response)
        pulls = response.json()
        if not isinstance(pulls, list) or not pulls:
            return PullRequestResult(error=f"GitHub says a pull request for {head} already exists, "
                                     "but lists none open")
        first = pulls[0] if isinstance(pulls[0], dict) else {}
        return PullRequestResult(url=str(first.get("html_url") or ""), existed=True)

    def _refused(self, response: httpx.Response) -> PullRequestResult:
        message = _json_field(response, "message") or response.text[:200]
        permanent = 400 <= response.status_code < 500 and response.status_code not in (408, 429)
        return PullRequestResult(error=redact(f"GitHub answered {response.status_code}: "
                                              f"{message}"[:500], self.token), permanent=permanent)


def ensure_bare_remote(path: Path, branch: str, seed: Path | None = None) -> Path:
    """A local bare repository usable as the GitOps remote (demo and tests), seeded once
    with ``seed``'s files in an initial commit."""
    if (path / "HEAD").exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    git.Repo.init(path, bare=True, initial_branch=branch)
    staging = path.with_name(path.name + ".seed")
    if staging.exists():
        shutil.rmtree(staging)
    repo = git.Repo.init(staging, initial_branch=branch)
    if seed is not None:
        shutil.copytree(seed, staging, dirs_exist_ok=True, symlinks=True)
    else:
        (staging / "README.md").write_text("GitOps repository\n")
    repo.git.add("-A")
    with repo.config_writer() as cfg:
        cfg.set_value("user", "name", "Platform Team")
        cfg.set_value("user", "email", "platform@example.invalid")
    repo.git.commit("-m", "Initial platform manifests")
    repo.git.push(str(path), f"{branch}:refs/heads/{branch}")
    repo.close()
    shutil.rmtree(staging)
    os.sync()
    return path


def list_kustomization_resource(text: str, entry: str) -> str:
    """``text`` of a kustomization with ``entry`` added to ``resources`` (kept as it was
    when it is listed already). Comments and order of the other keys are kept: the entry
    is inserted as a line, not by re-dumping the YAML."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise GitOpsConflict(f"the kustomization is not YAML; not listing {entry} in it: {exc}"[:300]) from None
    listed = doc.get("resources") if isinstance(doc, dict) else None
    if isinstance(listed, list) and entry in listed:
        return text
    if doc is not None and not isinstance(doc, dict) or listed is not None and not isinstance(listed, list):
        raise GitOpsConflict(f"the kustomization's resources are not a list; not listing {entry} in it")
    edited = _insert_resource(text, entry)
    # The edit is made on lines (to keep comments): check it did what it says, nothing else.
    after = yaml.safe_load(edited)
    if not isinstance(after, dict) or after.get("resources") != [*(listed or []), entry] or \
            {k: v for k, v in after.items() if k != "resources"} != \
            {k: v for k, v in (doc or {}).items() if k != "resources"}:
        raise GitOpsConflict(f"could not add {entry} to the kustomization's resources as a line "
                             "(a flow-style or unusual list): a person lists it")
    return edited


def _insert_resource(text: str, entry: str) -> str:
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^resources:\s*(#.*)?$", line):
            j = i + 1
            indent = "  "
            while j < len(lines) and (lines[j].startswith((" ", "-", "#")) or not lines[j].strip()):
                m = re.match(r"^(\s*)-\s", lines[j])
                if m:
                    indent = m.group(1)
                j += 1
            while j > i + 1 and not lines[j - 1].strip():
                j -= 1
            lines.insert(j, f"{indent}- {entry}")
            return "\n".join(lines) + "\n"
        if re.match(r"^resources:\s*\[\s*\]\s*$", line):
            lines[i] = f"resources:\n  - {entry}"
            return "\n".join(lines) + "\n"
    return text.rstrip("\n") + f"\nresources:\n  - {entry}\n"
