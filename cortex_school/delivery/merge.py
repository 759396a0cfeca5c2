"""Branch mode's human merge: noticing it, and what follows.

With ``GITOPS_MODE=branch`` the implement stage pushes ``improvement/<id>`` and the
improvement rests in committed with ``merge_pending=true`` until a person merges the
branch into GITHUB_BRANCH. Nothing tells this system that a person did, so it looks: the
periodic sweep, ``cortex-school deploy <id>`` and the deploy stage call
:func:`settle_merge`, which fetches the remote and then

* finds where the branch landed (:meth:`GitOpsRepo.find_landing`: a merge commit, a
  fast-forward, or a squash or rebase by its ``Improvement-Id`` trailer), records that
  commit as ``git_commit``, clears ``merge_pending`` and notes it on the timeline; the
  caller then queues the deploy (``pipeline.after_commit``, exactly once);
* or, when the branch is gone from the remote unmerged, rejects the improvement: deleting
  the branch is how a person says no;
* or says it is still waiting (and, with GITOPS_OPEN_PULL_REQUEST, makes sure the pull
  request is open).

Safe to run from several processes at once and to kill at any point: one process at a time
settles an improvement (a lock that expires), every write is idempotent, the timeline note
is looked up before it is written, and the deploy is queued through ``after_commit``'s
first-writer-wins ``deploy_queued_at``. A process killed after clearing ``merge_pending``
but before queueing leaves ``merge_found_at`` without ``deploy_queued_at``:
:func:`merged_unqueued` finds it on the next sweep.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from cortex_school.clients.gitops import GitHubPullRequests, GitOpsError, GitOpsRepo, Landing
from cortex_school.delivery.steps import Step, step
from cortex_school.models import Delivery, Improvement, Status, TimelineEntry, utcnow
from cortex_school.store.leases import release
from cortex_school.store.protocol import StateStore

MERGE_WATCHER = "merge-watcher"
LOCK = "merge-watch"
# Longer than one fetch plus one GitHub request; a holder killed meanwhile blocks no longer.
LOCK_SECONDS = 120
MERGE_NOTE = "merge found"
PULL_REQUEST_NOTE = "pull request"
# A pull request GitHub refused (bad token, no such repository) is asked for again this late.
PULL_REQUEST_RETRY_SECONDS = 3600

Outcome = Literal["merged", "waiting", "rejected", "busy", "not_pending", "missing"]


@dataclass(frozen=True)
class MergeCheck:
    """What one look for a person's merge found."""

    improvement_id: str
    outcome: Outcome
    detail: str


@dataclass(frozen=True)
class PendingMerge:
    """A branch-mode commit waiting for a person, as status, review list and metrics show it."""

    improvement_id: str
    title: str
    branch: str
    age_seconds: float
    pull_request_url: str | None
    pull_request_error: str | None


def human_duration(seconds: float) -> str:
    """``45s``, ``12m 05s``, ``3h 07m``, ``2d 4h``: how long, for people (not epoch floats)."""
    total = max(0, int(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def _since(raw: str | None, now: datetime) -> float:
    """Seconds since an epoch field (``status_since``), 0 when unset or unreadable."""
    try:
        return max(0.0, now.timestamp() - float(raw or ""))
    except ValueError:
        return 0.0


def pending_merges(store: StateStore, now: datetime | None = None) -> list[PendingMerge]:
    """Every committed improvement whose branch waits for a person, oldest first (its age
    is the time since it was committed: the branch was pushed then)."""
    now = now or utcnow()
    ids = sorted(store.ids_with_status(Status.COMMITTED))
    rows = store.fields_many(ids, "merge_pending", "status_since", "title", "git_branch",
                             "pull_request_url", "pull_request_error")
    found = [PendingMerge(iid, title or "", branch or f"improvement/{iid}", _since(since, now), url, error)
             for iid, (pending, since, title, branch, url, error) in rows.items() if pending == "true"]
    return sorted(found, key=lambda p: (-p.age_seconds, p.improvement_id))


def merged_unqueued(store: StateStore) -> list[str]:
    """Committed improvements whose merge was found but whose deploy was never queued (the
    process that found it died in between)."""
    ids = sorted(store.ids_with_status(Status.COMMITTED))
    rows = store.fields_many(ids, "merge_pending", "merge_found_at", "deploy_queued_at")
    return [iid for iid, (pending, found, queued) in rows.items()
            if pending == "false" and found and not queued]


def settle_merge(store: StateStore, improvement_id: str, repo: GitOpsRepo, *, actor: str,
                 now: datetime | None = None, pulls: GitHubPullRequests | None = None,
                 fetch: bool = True) -> MergeCheck:
    """Look once whether a person merged the improvement's branch, and record what was
    found (see the module docstring). ``fetch=False`` when the caller fetched just now (the
    sweep fetches once for every branch). A remote that cannot be reached raises
    :class:`GitOpsError` with nothing recorded."""
    now = now or utcnow()
    token = uuid.uuid4().hex
    if not store.acquire_lock(improvement_id, LOCK, token, ttl=LOCK_SECONDS):
        return MergeCheck(improvement_id, "busy", "another process is checking this branch for a merge")
    try:
        improvement = store.get(improvement_id)
        if improvement is None:
            return MergeCheck(improvement_id, "missing", "no such improvement")
        if improvement.status is not Status.COMMITTED or not improvement.delivery.merge_pending:
            return MergeCheck(improvement_id, "not_pending", f"no merge to wait for: status is "
                              f"{improvement.status.value}, merge_pending is "
                              f"{str(improvement.delivery.merge_pending).lower()}")
        if fetch:
            repo.fetch()
        return _settle(store, improvement, repo, actor=actor, now=now, pulls=pulls)
    finally:
        store.release_lock(improvement_id, LOCK, token)


def _settle(store: StateStore, improvement: Improvement, repo: GitOpsRepo, *, actor: str,
            now: datetime, pulls: GitHubPullRequests | None) -> MergeCheck:
    delivery = improvement.delivery
    branch = delivery.git_branch or f"improvement/{improvement.id}"
    landing = repo.find_landing(improvement.id, delivery.git_branch_commit or "")
    if landing is not None:
        return _record_merge(store, improvement.id, branch, repo.branch, landing, actor=actor, now=now)
    if repo.remote_branch(branch) is None:
        return _reject_deleted(store, improvement.id, branch, actor=actor, now=now)
    if pulls is not None:
        ensure_pull_request(store, improvement, repo, pulls, actor=actor, now=now)
    age = human_duration(_since(store.field(improvement.id, "status_since"), now))
    return MergeCheck(improvement.id, "waiting", f"branch {branch} is not merged into {repo.branch} "
                      f"yet: waiting for a person to merge it (pushed {age} ago)")


def _noted(store: StateStore, improvement_id: str, prefix: str) -> bool:
    return any(entry.reason.startswith(prefix) for entry in store.timeline(improvement_id))


def _record_merge(store: StateStore, improvement_id: str, branch: str, base: str, landing: Landing,
                  *, actor: str, now: datetime) -> MergeCheck:
    """The merge as the improvement's commit: the note first (written once), then the
    fields in one write, so ``merge_pending`` is never cleared without ``git_commit``
    pointing at the merge."""
    reason = f"{MERGE_NOTE}: {branch} landed on {base} as {landing.commit[:12]} ({landing.kind})"
    if not _noted(store, improvement_id, MERGE_NOTE):
        status = Status.COMMITTED.value
        store.note(improvement_id, TimelineEntry(at=now, from_status=status, to_status=status,
                                                 actor=actor, reason=reason))
    store.set_fields(improvement_id, {"git_commit": landing.commit, "merge_kind": landing.kind,
                                      "merge_found_at": now.isoformat(), "merge_pending": "false"})
    store.count("merges_found")
    return MergeCheck(improvement_id, "merged", reason)


def _reject_deleted(store: StateStore, improvement_id: str, branch: str, *, actor: str,
                    now: datetime) -> MergeCheck:
    """The branch is gone and never landed: a person said no (committed → rejected)."""
    reason = f"branch {branch} was deleted without being merged"
    result = store.transition(improvement_id, Status.REJECTED, actor=actor, reason=reason, at=now,
                              fields={"rejection_reason": reason, "merge_pending": "false"})
    if not (result.applied or result.outcome == "noop"):
        return MergeCheck(improvement_id, "not_pending", f"{reason}, but it is {result.previous} "
                          f"now (transition {result.outcome})")
    release(store, improvement_id)
    return MergeCheck(improvement_id, "rejected", reason)


def _pull_request_due(tried_at: str | None, permanent: str | None, now: datetime) -> bool:
    """Ask again at once after a transient failure; after a refusal only an hour later."""
    if not tried_at or permanent != "true":
        return True
    try:
        return (now - datetime.fromisoformat(tried_at)).total_seconds() >= PULL_REQUEST_RETRY_SECONDS
    except ValueError:
        return True


def pull_request_body(commit_body: str, improvement_id: str) -> str:
    """What the reviewer reads: what merging does, then the commit's own text, whose last
    block keeps the ``Improvement-Id`` trailer, so a squash made from the pull request's
    description is still recognised as this improvement's merge."""
    return ("Opened by Cortex Online School (GITOPS_MODE=branch). Merging this pull request "
            "(merge commit, squash or rebase) deploys the change; deleting the branch without "
            "merging rejects it.\n\n" + (commit_body or f"Improvement-Id: {improvement_id}"))


def ensure_pull_request(store: StateStore, improvement: Improvement, repo: GitOpsRepo,
                        pulls: GitHubPullRequests, *, actor: str, now: datetime) -> str | None:
    """The branch's pull request URL, opening it if none is recorded yet; a failure is
    recorded on the improvement (``pull_request_error``) and never raised."""
    iid = improvement.id
    url, tried_at, permanent = store.fields(iid, "pull_request_url", "pull_request_tried_at",
                                            "pull_request_error_permanent")
    if url:
        return url
    if not _pull_request_due(tried_at, permanent, now):
        return None
    delivery = improvement.delivery
    message = repo.message_of(delivery.git_branch_commit) if delivery.git_branch_commit else ""
    title, _, body = message.strip().partition("\n")
    result = pulls.open(head=delivery.git_branch or f"improvement/{iid}", base=repo.branch,
                        title=title or f"Improvement {iid}", body=pull_request_body(body.strip(), iid))
    if result.url:
        store.set_fields(iid, {"pull_request_url": result.url, "pull_request_tried_at": now.isoformat()})
        store.clear_fields(iid, "pull_request_error", "pull_request_error_permanent")
        if not _noted(store, iid, PULL_REQUEST_NOTE):
            how = "already open" if result.existed else "opened"
            store.note(iid, TimelineEntry(at=now, from_status=Status.COMMITTED.value,
                                          to_status=Status.COMMITTED.value, actor=actor,
                                          reason=f"{PULL_REQUEST_NOTE} {how}: {result.url}"))
        return result.url
    store.set_fields(iid, {"pull_request_error": (result.error or "GitHub returned no html_url")[:500],
                           "pull_request_tried_at": now.isoformat(),
                           "pull_request_error_permanent": "true" if result.permanent else "false"})
    store.count("pull_request_failures")
    return None


def await_merge(store: StateStore, improvement_id: str, repo: GitOpsRepo, *, actor: str,
                now: datetime) -> Delivery | Step:
    """The deploy stage's look: the delivery to deploy when the branch was merged (its
    ``git_commit`` is the merge), else the step that says why there is nothing to deploy.

    A remote that cannot be reached is reported, not raised: the improvement is not
    delivered, so a failed deploy would roll back nothing, and the sweep looks again."""
    try:
        check = settle_merge(store, improvement_id, repo, actor=actor, now=now)
    except GitOpsError as exc:
        return step(improvement_id, "deploy", "skipped", Status.COMMITTED.value,
                    f"could not check whether the branch is merged ({exc}); the sweep looks again")
    if check.outcome == "busy":
        return step(improvement_id, "deploy", "waiting", Status.COMMITTED.value, check.detail)
    if check.outcome == "missing":
        return step(improvement_id, "deploy", "missing", None, check.detail)
    improvement = store.get(improvement_id)
    if improvement is None or improvement.status is not Status.COMMITTED or improvement.delivery.merge_pending:
        status = improvement.status.value if improvement else None
        return step(improvement_id, "deploy", "skipped", status, check.detail)
    # This run is the deploy: the sweep need not queue another one.
    store.set_once(improvement_id, "deploy_queued_at", now.isoformat())
    return improvement.delivery
