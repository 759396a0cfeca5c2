"""Keeping the RAG corpora current: re-index the GitOps repository after a commit.

Runs on the ``validate`` queue, whose workers already hold the embedding model.
"""

from __future__ import annotations

from typing import Any

from cortex_school.celery import app
from cortex_school.runtime import get_gitops_repo, get_platform_source, get_rag, get_settings
from cortex_school.tasks.base import PipelineTask
from cortex_school.validation.indexing import reindex_gitops_repo


@app.task(bind=True, base=PipelineTask, name="cortex_school.tasks.index.reindex_gitops")
def reindex_gitops(self: PipelineTask, commit: str | None = None) -> dict[str, Any]:
    """Sync the gitops corpus with the repository's tip (``commit`` is informational)."""
    platform = get_platform_source().refresh()  # the platform model follows the commit at once
    if not get_settings().rag.enabled:
        return {"outcome": "skipped", "detail": "RAG_ENABLED is false",
                "platform_revision": platform.inventory.revision if platform else None}
    report = reindex_gitops_repo(get_rag().index, get_gitops_repo())
    return {"outcome": "applied", "commit": commit, "total": report.total,
            "embedded": report.embedded, "unchanged": report.unchanged, "deleted": report.deleted}
