"""What waits on a person, and the one current reason why.

An improvement's fields keep every reason it was ever given: the gate's decision
("Auto-approved (relevance 0.96 ...)") stays on the hash after the implement stage sent
it back to a person for a policy violation, ``stuck_reason`` stays after the sweep
helped, ``review_reason`` stays after a person approved. Reading any one of them shows a
stale reason. This module decides, from the status, the timeline entry that put the
improvement where it is and the few fields that stage wrote, which one is current:

* :func:`current_reason` for one improvement: the group it waits in (None when nothing
  waits on a person), the reason, and since when;
* :func:`needs_person` for everything that waits, grouped (:data:`GROUP_ORDER`), oldest
  first in each group.

The CLI (``review list``, ``list``) and the dashboard read only these; the metrics of
waiting work should too. Read-only: nothing here changes state.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from cortex_school.approval import GATE_ACTOR
from cortex_school.delivery.merge import human_duration
from cortex_school.models import Status, TimelineEntry, utcnow
from cortex_school.store.protocol import StateStore
from cortex_school.sweeper import BUSY, SWEEPER, stuck_age


class Group(StrEnum):
    """Why an improvement waits on a person."""

    ROLLBACK_FAILED = "rollback_failed"  # failed and not (cleanly) taken back out of the cluster
    DEAD_LETTER = "dead_letter"  # its task's worker died on every delivery
    STUCK = "stuck"  # a busy stage held too long (or the sweep gave up on it)
    STAGE_FAILED = "stage_failed"  # a stage before the gate failed for good (an expert, a task)
    IMPLEMENTATION = "implementation"  # implementing stopped: nothing to generate, no ArgoCD Application, a conflict
    POLICY = "policy"  # the policy/schema gate refused what was generated
    MERGE_PENDING = "merge_pending"  # branch mode: a branch waits for a person's merge
    REVIEW = "review"  # the approval gate asked for a person


# Most urgent first: something may be broken in the cluster, then work that stopped, then
# decisions that only wait.
GROUP_ORDER: tuple[Group, ...] = tuple(Group)

GROUP_TITLES: dict[Group, str] = {
    Group.ROLLBACK_FAILED: "Rollback failed or not made",
    Group.DEAD_LETTER: "Dead-lettered",
    Group.STUCK: "Stuck",
    Group.STAGE_FAILED: "A stage failed",
    Group.IMPLEMENTATION: "Implementation stopped",
    Group.POLICY: "Policy findings",
    Group.MERGE_PENDING: "Merge pending",
    Group.REVIEW: "Review after the gate",
}

# rollback_status values (delivery/rollback.py, tasks/base.py) that leave the change in
# the cluster or the cluster unhealthy.
_ROLLBACK_NOT_DONE = ("disabled", "revert failed", "failed:", "STILL UNHEALTHY")

# The hash fields the reason is read from (one HMGET per improvement).
_FIELDS = ("status", "status_since", "title", "description", "review_reason", "dead_lettered",
           "policy_violations", "failure_reason", "rollback_status", "rollback_healthy",
           "rejection_reason", "merge_pending", "git_branch", "pull_request_url", "pull_request_error",
           "merge_check_error", "last_swept_at")


@dataclass(frozen=True)
class StuckLimits:
    """When a busy stage counts as stuck (``STUCK_AFTER``, ``HEALTH_CHECK_DURATION``)."""

    stuck_after: float
    health_window: float


@dataclass(frozen=True)
class Waiting:
    """One improvement as a person sees it: where it is, whether it waits on them and why."""

    improvement_id: str
    status: str
    group: Group | None  # None: nothing waits on a person
    reason: str
    since: datetime | None  # when it entered its status (unknown: None)
    age_seconds: float
    title: str
    description: str
    actor: str | None = None  # who or what put it where it is

    @property
    def waits(self) -> bool:
        return self.group is not None


def current_reason(store: StateStore, improvement_id: str, *, limits: StuckLimits,
                   now: datetime | None = None) -> Waiting | None:
    """The group ``improvement_id`` waits in and its one current reason; None when there
    is no such improvement."""
    values = store.fields(improvement_id, *_FIELDS)
    if values[0] is None:
        return None
    return _classify(store, improvement_id, dict(zip(_FIELDS, values, strict=True)), limits,
                     (now or utcnow()).timestamp())


def current_reasons(store: StateStore, ids: list[str], *, limits: StuckLimits,
                    now: datetime | None = None) -> dict[str, Waiting]:
    """:func:`current_reason` of many improvements (missing ones left out)."""
    now_ts = (now or utcnow()).timestamp()
    rows = store.fields_many(ids, *_FIELDS)
    return {iid: _classify(store, iid, dict(zip(_FIELDS, values, strict=True)), limits, now_ts)
            for iid, values in rows.items() if values[0] is not None}


def needs_person(store: StateStore, *, limits: StuckLimits,
                 now: datetime | None = None) -> dict[Group, list[Waiting]]:
    """Everything that waits on a person, by group in :data:`GROUP_ORDER` (groups with
    nothing waiting left out), oldest first in each group."""
    now_ts = (now or utcnow()).timestamp()
    candidates: set[str] = set(store.ids_with_status(Status.PENDING_REVIEW))
    for status in (Status.COMMITTED, Status.FAILED, *BUSY):
        candidates |= store.ids_with_status(status)
    rows = store.fields_many(sorted(candidates), *_FIELDS)
    groups: dict[Group, list[Waiting]] = {}
    for iid, values in rows.items():
        fields = dict(zip(_FIELDS, values, strict=True))
        if fields["status"] is None or not _may_wait(fields, limits, now_ts):
            continue
        item = _classify(store, iid, fields, limits, now_ts)
        if item.group is not None:
            groups.setdefault(item.group, []).append(item)
    return {g: sorted(groups[g], key=lambda w: (-w.age_seconds, w.improvement_id))
            for g in GROUP_ORDER if g in groups}


def _may_wait(fields: dict[str, str | None], limits: StuckLimits, now_ts: float) -> bool:
    """A cheap filter before the timeline is read: most committed, failed and busy
    improvements wait on nobody."""
    status = fields["status"]
    if status == Status.PENDING_REVIEW.value:
        return True
    if status == Status.FAILED.value:
        return _rollback_not_done(fields)
    if status == Status.COMMITTED.value and fields["merge_pending"] == "true":
        return True
    return _stuck_for(fields, limits, now_ts) is not None


def _rollback_not_done(fields: dict[str, str | None]) -> bool:
    return fields["rollback_healthy"] == "false" or (fields["rollback_status"] or "").startswith(_ROLLBACK_NOT_DONE)


def _stuck_for(fields: dict[str, str | None], limits: StuckLimits, now_ts: float) -> float | None:
    try:
        status = Status(fields["status"] or "")
    except ValueError:
        return None
    return stuck_age(status, fields["status_since"], fields["merge_pending"], fields["last_swept_at"],
                     now_ts=now_ts, stuck_after=limits.stuck_after, health_window=limits.health_window)


def _entered(timeline: list[TimelineEntry], status: str) -> TimelineEntry | None:
    """The timeline entry that moved the improvement into ``status`` last (notes, whose
    from and to are the same status, do not count)."""
    for entry in reversed(timeline):
        if entry.to_status == status and entry.from_status != status:
            return entry
    return None


def _latest(timeline: list[TimelineEntry], status: str) -> TimelineEntry | None:
    """The newest entry about ``status`` (a transition into it or a note made in it)."""
    for entry in reversed(timeline):
        if entry.to_status == status:
            return entry
    return None


def _since(raw: str | None) -> float | None:
    try:
        return float(raw) if raw else None
    except ValueError:
        return None


def _has_violations(raw: str | None) -> bool:
    try:
        return bool(json.loads(raw)) if raw else False
    except ValueError:
        return False


def _classify(store: StateStore, iid: str, fields: dict[str, str | None], limits: StuckLimits,
              now_ts: float) -> Waiting:
    status = fields["status"] or ""
    since_ts = _since(fields["status_since"])
    age = max(0.0, now_ts - since_ts) if since_ts is not None else 0.0
    group: Group | None = None
    actor: str | None = None
    timeline = store.timeline(iid)
    if status == Status.PENDING_REVIEW.value:
        entry = _entered(timeline, status)
        actor = entry.actor if entry else None
        # Every move into pending_review writes review_reason with it (the gate, the task
        # policy, the implement stage, the sweep); the timeline's entry is the fallback.
        reason = fields["review_reason"] or (entry.reason if entry else "") or "no reason recorded"
        group = _review_group(entry, reason, fields)
    elif status == Status.FAILED.value:
        failure = fields["failure_reason"] or _reason_of(_entered(timeline, status))
        rollback = fields["rollback_status"] or ""
        if _rollback_not_done(fields):
            group = Group.ROLLBACK_FAILED
            what = ("not rolled back (ROLLBACK_ENABLED=false)" if rollback == "disabled"
                    else f"rollback: {rollback or 'system unhealthy after the rollback'}")
            reason = f"{what}; the change failed: {failure or 'no reason recorded'}"
        else:
            reason = failure or "no reason recorded"
            if rollback:
                reason += f" (rollback: {rollback})"
    elif status == Status.COMMITTED.value and fields["merge_pending"] == "true":
        group = Group.MERGE_PENDING
        branch = fields["git_branch"] or f"improvement/{iid}"
        reason = f"branch {branch} waits for a person to merge it"
        if fields["pull_request_url"]:
            reason += f"; pull request {fields['pull_request_url']}"
        elif fields["pull_request_error"]:
            reason += f"; pull request not opened: {fields['pull_request_error']}"
        if fields["merge_check_error"]:
            reason += f"; merge check failed: {fields['merge_check_error']}"
    elif (stuck := _stuck_for(fields, limits, now_ts)) is not None:
        group = Group.STUCK
        age = stuck
        resumes = store.field(iid, f"stuck_resumes:{status}")
        reason = f"stuck in {status} for {human_duration(stuck)}"
        if resumes and resumes != "0":
            reason += f"; the sweep re-enqueued it {resumes} time(s)"
        latest = _latest(timeline, status)
        if latest is not None and latest.from_status != status:
            reason += f" (entered: {latest.reason})"
    elif status == Status.REJECTED.value:
        reason = fields["rejection_reason"] or _reason_of(_entered(timeline, status))
    else:
        latest = _latest(timeline, status)
        actor = latest.actor if latest else None
        reason = _reason_of(latest)
    return Waiting(improvement_id=iid, status=status, group=group, reason=reason,
                   since=datetime.fromtimestamp(since_ts, tz=utcnow().tzinfo) if since_ts is not None else None,
                   age_seconds=age, title=fields["title"] or "", description=fields["description"] or "",
                   actor=actor)


def _review_group(entry: TimelineEntry | None, reason: str, fields: dict[str, str | None]) -> Group:
    """Which of the reasons to wait in pending_review applies, from who sent it there and
    from which status."""
    if fields["dead_lettered"] and reason == fields["dead_lettered"]:
        return Group.DEAD_LETTER
    if entry is None:
        return Group.REVIEW
    if entry.actor == SWEEPER:
        return Group.STUCK
    if entry.from_status in (Status.IMPLEMENTING.value, Status.APPROVED.value):
        return Group.POLICY if _has_violations(fields["policy_violations"]) else Group.IMPLEMENTATION
    if entry.from_status == Status.VALIDATED.value and entry.actor == GATE_ACTOR:
        return Group.REVIEW
    return Group.STAGE_FAILED


def _reason_of(entry: TimelineEntry | None) -> str:
    return entry.reason if entry is not None and entry.reason else "no reason recorded"
