"""The lifecycle: every task name, every signature, every hand-off between stages.

Nothing else in the package sends a task. Each signature is immutable (``si``): every
stage takes only the improvement id (and the expert, the worker, or the reason) and
reads the rest from the store, so any stage can be re-run on its own with
``celery call``.

    route → evaluate ×N (a chord) → aggregate → validate → approve → implement   (build_pipeline)
    committed → deploy → deployed → verify → verified                           (next_step)
    a delivery step that failed, or gave up → rollback                          (compensate)

Who calls what: ingestion calls :func:`enqueue`; the implement task calls
:func:`after_commit`; the deploy task calls :func:`next_step`; a delivery step that
fails (its outcome, or its task's ``on_failure``) calls :func:`compensate`; the sweeper
calls :func:`resume` and :func:`compensate`; the CLI and the dashboard call
:func:`decide_review` (which calls :func:`after_review`), :func:`rerun_stage` (which calls
:func:`resume`), :func:`manual_rollback` (which calls :func:`request_rollback`),
:func:`set_override` and :func:`request_deploy`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from celery.canvas import Signature

from celery import chain, chord
from cortex_school.celery import app
from cortex_school.models import Improvement, Status, utcnow
from cortex_school.router import panel, route
from cortex_school.settings import get_settings

if TYPE_CHECKING:
    from cortex_school.outcome import StageOutcome
    from cortex_school.store.protocol import StateStore

ROUTE = "cortex_school.tasks.route.route"
EVALUATE = "cortex_school.tasks.evaluate.evaluate"
AGGREGATE = "cortex_school.tasks.evaluate.aggregate"
VALIDATE = "cortex_school.tasks.validate.validate"
APPROVE = "cortex_school.tasks.approve.approve"
IMPLEMENT = "cortex_school.tasks.implement.implement"
DEPLOY = "cortex_school.tasks.deploy.deploy"
VERIFY = "cortex_school.tasks.deploy.verify"
ROLLBACK = "cortex_school.tasks.deploy.rollback"
REINDEX_GITOPS = "cortex_school.tasks.index.reindex_gitops"
SWEEP = "cortex_school.tasks.sweep.sweep_stuck"

# Statuses in which something is (or may be) in the cluster: a failure is compensated by
# a rollback, never handed to a person as it stands.
DELIVERY: tuple[Status, ...] = (Status.COMMITTED, Status.DEPLOYED, Status.VERIFIED)


def _sig(name: str, improvement_id: str, **kwargs: object) -> Signature:
    return app.signature(name, args=(improvement_id,), kwargs=kwargs, immutable=True)


def build_pipeline(improvement: Improvement, *, fan_out: bool | None = None) -> Signature:
    """route → evaluate on each panel expert's queue, in parallel → aggregate → validate →
    approve → implement on the assigned worker's queue (a no-op unless approved).

    Routing is a pure function of the improvement, so the panel is known here; the
    route task applies the same function and records it.
    """
    if improvement.expert is None:
        routing = route(improvement.category, improvement.description, improvement.implementation_notes)
        expert, secondary = routing.expert, routing.secondary_experts
    else:
        expert, secondary = improvement.expert, improvement.secondary_experts
    if fan_out is None:
        fan_out = get_settings().experts.fan_out
    experts = panel(expert, secondary, fan_out=fan_out)
    iid = improvement.id
    return chain(
        _sig(ROUTE, iid),
        chord([_sig(EVALUATE, iid, expert=e) for e in experts], _sig(AGGREGATE, iid, experts=experts)),
        _sig(VALIDATE, iid),
        _sig(APPROVE, iid),
        implement_signature(improvement),
    )


def implement_signature(improvement: Improvement) -> Signature:
    from cortex_school.workers import worker_for

    return _sig(IMPLEMENT, improvement.id, worker=worker_for(improvement))


def enqueue(improvement: Improvement) -> None:
    """Start the pipeline for an improvement (every stage skips what is already done)."""
    build_pipeline(improvement).apply_async()


def next_step(status: Status | str, improvement_id: str) -> Signature | None:
    """The delivery stage that acts on ``status``: committed → deploy, deployed → verify;
    None when delivery has nothing to do there."""
    status = Status(status)
    if status is Status.COMMITTED:
        return _sig(DEPLOY, improvement_id)
    if status is Status.DEPLOYED:
        return _sig(VERIFY, improvement_id)
    return None


def advance(status: Status | str, improvement_id: str) -> bool:
    """Start the delivery stage that acts on ``status`` (after deploy: verify); False when
    there is none."""
    step = next_step(status, improvement_id)
    if step is None:
        return False
    step.apply_async()
    return True


def rollback_signature(improvement_id: str, reason: str) -> Signature:
    return _sig(ROLLBACK, improvement_id, reason=reason[:2000])


def compensate(improvement_id: str, reason: str) -> None:
    """Take a delivered change back out: the one place a rollback is started."""
    rollback_signature(improvement_id, reason).apply_async()


def reindex(commit: str | None) -> None:
    """Re-index the GitOps corpus (later proposals are compared with what is now there)."""
    app.signature(REINDEX_GITOPS, args=(commit,), immutable=True).apply_async()


def resume(improvement: Improvement, *, rolling_back: str | None) -> None:
    """Re-enqueue the stage that moves ``improvement`` on from where it sits (the sweeper's
    and a person's "go on"): a rollback under way is resumed, never a deploy."""
    status = improvement.status
    if status in DELIVERY and rolling_back:
        compensate(improvement.id, rolling_back)
    elif status in (Status.APPROVED, Status.IMPLEMENTING):
        implement_signature(improvement).apply_async()
    elif (step := next_step(status, improvement.id)) is not None:
        step.apply_async()
    else:
        enqueue(improvement)


def give_up(store: "StateStore", improvement: Improvement, reason: str, *, actor: str) -> None:
    """A stage that will not finish: a delivered change is rolled back, anything else goes
    to a person with the reason."""
    if improvement.status in (Status.COMMITTED, Status.DEPLOYED):
        compensate(improvement.id, reason)
        return
    store.transition(improvement.id, Status.PENDING_REVIEW, actor=actor, reason=reason,
                     fields={"review_reason": reason})


def after_commit(store: "StateStore", improvement_id: str) -> bool:
    """Queue the deploy stage for a merged commit exactly once, also when an earlier run
    died between the committed transition and queueing it (and re-index the repository)."""
    status, merge_pending, commit = store.fields(improvement_id, "status", "merge_pending", "git_commit")
    if status != Status.COMMITTED.value or merge_pending != "false":
        return False
    if not store.set_once(improvement_id, "deploy_queued_at", utcnow().isoformat()):
        return False
    advance(Status.COMMITTED, improvement_id)
    if get_settings().rag.enabled:
        reindex(commit)
    return True


def after_review(store: "StateStore", improvement_id: str) -> bool:
    """A person approved it: plan afresh (the stored plan is what they sent back) on the
    assigned worker's queue. False when there is no such improvement."""
    store.clear_fields(improvement_id, "plan", "policy_violations")
    improvement = store.get(improvement_id)
    if improvement is None:
        return False
    implement_signature(improvement).apply_async()
    return True


@dataclass(frozen=True)
class ReviewDone:
    """What a person's review did: the review stage's outcome, and whether an approval
    was sent on to its implementation worker."""

    outcome: "StageOutcome"
    queued: bool


def decide_review(store: "StateStore", improvement_id: str, *, approve: bool, reviewer: str,
                  reason: str) -> ReviewDone:
    """A person's approve or reject of an improvement waiting in pending_review, from the
    CLI or the dashboard: the review stage (the timeline's actor is ``human:<reviewer>``),
    then, for an approval that applied, a fresh plan on its worker's queue. Raises
    :class:`~cortex_school.store.TransitionRefused` when it is not waiting for review."""
    # Imported here: the stages pull in the validation stack, and celeryconfig (hence
    # every `cortex-school metrics` start) imports this module.
    from cortex_school.stages import review

    outcome = review(store, improvement_id, approve=approve, reviewer=reviewer, reason=reason)
    queued = False
    if outcome.outcome == "applied" and outcome.status == Status.APPROVED.value:
        queued = after_review(store, improvement_id)
    return ReviewDone(outcome, queued)


def request_rollback(store: "StateStore", improvement_id: str, why: str) -> None:
    """A person asks for a rollback: the flag first (the verify loop honours it, so the
    rollback races nothing), then the rollback itself."""
    store.set_fields(improvement_id, {"rollback_requested": why[:500]})
    compensate(improvement_id, why)


def request_deploy(improvement_id: str) -> None:
    """A person says a committed change may go (e.g. after merging its branch by hand)."""
    advance(Status.COMMITTED, improvement_id)


class NotNow(ValueError):
    """A person's request that does not apply to the improvement as it stands (nothing changed)."""


# Where "re-run the stage" means something: a stage acts on these (the rest wait on a
# person, or are done).
RERUNNABLE: tuple[Status, ...] = (Status.RAW, Status.CATEGORIZED, Status.ASSESSED, Status.VALIDATED,
                                  Status.APPROVED, Status.IMPLEMENTING, Status.COMMITTED, Status.DEPLOYED)


def _noted(store: "StateStore", improvement: Improvement, actor: str, reason: str) -> None:
    from cortex_school.models import TimelineEntry

    status = improvement.status.value
    store.note(improvement.id, TimelineEntry(at=utcnow(), from_status=status, to_status=status,
                                             actor=actor, reason=reason))


def rerun_stage(store: "StateStore", improvement_id: str, *, by: str) -> Improvement:
    """A person's "re-run the stage it sits in" (the CLI's ``implement``, the dashboard's
    button): the same :func:`resume` the sweeper uses, a rollback under way is resumed, and
    the timeline says who asked. Raises :class:`NotNow` where no stage acts."""
    from cortex_school.delivery import rollback_under_way

    improvement = store.get(improvement_id)
    if improvement is None:
        raise NotNow(f"no improvement {improvement_id}")
    if improvement.status not in RERUNNABLE:
        raise NotNow(f"{improvement_id} is {improvement.status.value}: no stage acts on it "
                     "(a person reviews it, or it is done)")
    _noted(store, improvement, f"human:{by}", f"re-run of the {improvement.status.value} stage requested")
    resume(improvement, rolling_back=rollback_under_way(improvement))
    return improvement


def manual_rollback(store: "StateStore", improvement_id: str, *, by: str, reason: str) -> str:
    """A person's rollback of a committed, deployed or verified change (the CLI's
    ``rollback``, the dashboard's button): noted on the timeline, then
    :func:`request_rollback`. Returns the recorded reason; raises :class:`NotNow` when
    nothing is delivered."""
    improvement = store.get(improvement_id)
    if improvement is None:
        raise NotNow(f"no improvement {improvement_id}")
    if improvement.status not in DELIVERY:
        raise NotNow(f"{improvement_id} is {improvement.status.value}: nothing to roll back")
    why = f"manual rollback by {by}: {reason}"
    _noted(store, improvement, f"human:{by}", f"rollback requested: {reason}"[:2000])
    request_rollback(store, improvement.id, why)
    return why


def set_override(store: "StateStore", name: str, value: bool, *, by: str, reason: str | None) -> None:
    """A person sets an override flag (``cortex-school flags set``, the dashboard's toggle);
    who and why are kept beside it. ``auto_approve_none`` is also what the circuit breaker
    sets when it opens. Raises KeyError for an unknown flag."""
    why = f"set to {'true' if value else 'false'} by {by}" + (f": {reason}" if reason else "")
    store.set_flag(name, value, reason=why)
