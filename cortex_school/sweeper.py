"""Finding improvements stuck in a busy stage, and getting them moving again.

A message can be lost outside our control (a Redis restart without persistence, a purge,
a bug): the improvement then sits in a busy status with nothing queued for it. The
sweeper (a Celery beat task, also ``cortex-school sweep``) finds improvements that have
been in a busy stage longer than STUCK_AFTER (a deployed one: plus the health window),
records why, and re-enqueues the stage that moves them on (safe: every stage acts only
on its input status). After ``max_resumes`` tries it hands them to a person (or, once
deployed, rolls them back), so nothing loops forever.

A branch-mode commit waiting for a person to merge it is not stuck: :func:`watch_merges`
looks for the merge on every sweep instead (:mod:`cortex_school.delivery.merge`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from cortex_school.clients.gitops import GitHubPullRequests, GitOpsError, GitOpsRepo
from cortex_school.delivery.merge import MERGE_WATCHER, merged_unqueued, pending_merges, settle_merge
from cortex_school.models import Improvement, Status, TimelineEntry, utcnow
from cortex_school.store.protocol import StateStore

BUSY: tuple[Status, ...] = (Status.RAW, Status.CATEGORIZED, Status.ASSESSED, Status.VALIDATED,
                            Status.APPROVED, Status.IMPLEMENTING, Status.COMMITTED, Status.DEPLOYED)
SWEEPER = "stuck-sweeper"


@dataclass(frozen=True)
class Stuck:
    improvement_id: str
    status: Status
    age_seconds: float


def stuck_age(status: Status, since: str | None, merge_pending: str | None, swept: str | None, *,
              now_ts: float, stuck_after: float, health_window: float) -> float | None:
    """Seconds an improvement has been in ``status`` when it is stuck there, else None: a
    busy stage held longer than ``stuck_after`` (deployed: plus the health window) since it
    entered it or was last resumed. A branch waiting for a person to merge it is not stuck."""
    if status not in BUSY or (status is Status.COMMITTED and merge_pending == "true"):
        return None
    limit = stuck_after + (health_window if status is Status.DEPLOYED else 0)
    since_ts = _epoch(since)
    window_start = max(since_ts, _epoch(swept))  # resumed recently: give it a full window again
    if now_ts - window_start > limit:
        return now_ts - since_ts
    return None


def _epoch(raw: str | None) -> float:
    try:
        return float(raw or 0.0)
    except ValueError:
        return 0.0


def find_stuck(store: StateStore, *, stuck_after: float, health_window: float,
               now: datetime | None = None) -> list[Stuck]:
    now_ts = (now or utcnow()).timestamp()
    found: list[Stuck] = []
    for status in BUSY:
        ids = sorted(store.ids_with_status(status))
        if not ids:
            continue
        rows = store.fields_many(ids, "status_since", "merge_pending", "last_swept_at")
        for i, (since, merge_pending, swept) in rows.items():
            age = stuck_age(status, since, merge_pending, swept, now_ts=now_ts,
                            stuck_after=stuck_after, health_window=health_window)
            if age is not None:
                found.append(Stuck(i, status, age))
    return found


def sweep(store: StateStore, stuck: list[Stuck], *, resume: Callable[[Improvement], None],
          give_up: Callable[[Improvement, str], None], max_resumes: int = 3,
          now: datetime | None = None) -> dict[str, str]:
    """Resume or give up on each stuck improvement; returns id → what was done."""
    now = now or utcnow()
    done: dict[str, str] = {}
    for s in stuck:
        improvement = store.get(s.improvement_id)
        if improvement is None or improvement.status is not s.status:
            continue  # it moved meanwhile
        # Counted per stage: resumes that helped earlier in its life do not count here.
        resumes = store.increment_field(s.improvement_id, f"stuck_resumes:{s.status.value}")
        reason = f"stuck in {s.status.value} for {int(s.age_seconds)}s"
        store.set_fields(s.improvement_id, {"stuck_reason": reason,
                                            "last_swept_at": str(now.timestamp())})
        store.count("stuck_found")
        if resumes > max_resumes:
            give_up(improvement, f"{reason}; {max_resumes} resumes did not help")
            done[s.improvement_id] = "handed over"
        else:
            store.note(s.improvement_id, TimelineEntry(
                at=now, from_status=s.status.value, to_status=s.status.value, actor=SWEEPER,
                reason=f"{reason}: re-enqueued (resume {resumes}/{max_resumes})"))
            resume(improvement)
            done[s.improvement_id] = f"resumed {resumes}/{max_resumes}"
    return done


def watch_merges(store: StateStore, repo: Callable[[], GitOpsRepo], *,
                 on_merged: Callable[[str], bool], pulls: GitHubPullRequests | None = None,
                 now: datetime | None = None) -> dict[str, str]:
    """Look for a person's merge of every branch waiting for one (one fetch for all), then
    queue the deploy of each merged improvement with ``on_merged`` (True when it queued it),
    also of those whose merge an earlier, killed process recorded but never queued.

    ``repo`` is called only when some branch waits, so a sweep with none never clones. A
    remote that cannot be fetched raises :class:`GitOpsError`; one improvement's git
    failure is recorded on it (``merge_check_error``) and the others are still looked at.
    Returns id → what was found."""
    now = now or utcnow()
    waiting = [p.improvement_id for p in pending_merges(store, now)]
    done: dict[str, str] = {}
    if waiting:
        gitops = repo()
        gitops.fetch()
        for iid in waiting:
            try:
                check = settle_merge(store, iid, gitops, actor=MERGE_WATCHER, now=now, pulls=pulls,
                                     fetch=False)
            except GitOpsError as exc:
                store.set_fields(iid, {"merge_check_error": str(exc)[:500]})
                done[iid] = f"error: {exc}"[:300]
                continue
            store.clear_fields(iid, "merge_check_error")
            done[iid] = f"{check.outcome}: {check.detail}"
    for iid in merged_unqueued(store):
        queued = on_merged(iid)
        done[iid] = f"{done.get(iid, 'merged')}; deploy {'queued' if queued else 'already queued'}"
    return done
