"""The periodic sweep (Celery beat: ``celery -A cortex_school beat``): stuck improvements,
and branch-mode branches a person may have merged (or deleted) since the last sweep."""

from __future__ import annotations

from typing import Any

from celery.utils.log import get_task_logger

from celery import Task
from cortex_school.celery import app
from cortex_school.clients.gitops import GitHubPullRequests, GitOpsError
from cortex_school.delivery import rollback_under_way
from cortex_school.models import Improvement
from cortex_school.pipeline import after_commit, give_up, resume
from cortex_school.runtime import get_gitops_repo, get_settings, get_store
from cortex_school.store.protocol import StateStore
from cortex_school.sweeper import SWEEPER, find_stuck, sweep, watch_merges

logger = get_task_logger("cortex_school.tasks")


def _resume(improvement: Improvement) -> None:
    resume(improvement, rolling_back=rollback_under_way(improvement))


def _give_up(improvement: Improvement, reason: str) -> None:
    give_up(get_store(), improvement, reason, actor=SWEEPER)


def pull_requests() -> GitHubPullRequests | None:
    """GitHub's pull requests when GITOPS_OPEN_PULL_REQUEST is on, else None."""
    cfg = get_settings().gitops
    if not cfg.open_pull_request:
        return None
    return GitHubPullRequests(api_url=cfg.github_api_url, repository=cfg.github_repository,
                              token=cfg.secret)


def _watch_merges(store: StateStore) -> dict[str, str]:
    """A remote that cannot be fetched is logged and counted, not raised: the stuck sweep
    already ran, and the next sweep looks again."""
    try:
        return watch_merges(store, get_gitops_repo, on_merged=lambda iid: after_commit(store, iid),
                            pulls=pull_requests())
    except GitOpsError as exc:
        logger.warning("merge watch failed: %s", exc)
        store.count("merge_watch_failures")
        return {"error": str(exc)[:500]}


@app.task(bind=True, base=Task, name="cortex_school.tasks.sweep.sweep_stuck")
def sweep_stuck(self: Task) -> dict[str, Any]:
    settings = get_settings()
    store = get_store()
    stuck = find_stuck(store, stuck_after=settings.stuck_after_seconds,
                       health_window=settings.services.health_check_duration)
    done = sweep(store, stuck, resume=_resume, give_up=_give_up)
    return {"stuck": len(stuck), "done": done, "merges": _watch_merges(store)}
