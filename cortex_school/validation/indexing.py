"""Building the RAG corpora from directories, git repositories and Redis."""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from cortex_school.models import Status
from cortex_school.store import RedisStore
from cortex_school.validation.rag.chunking import (
    chunk_docs_dir,
    chunk_gitops_dir,
    chunk_markdown,
    improvement_chunk,
)
from cortex_school.validation.rag.index import SyncReport, VectorIndex

if TYPE_CHECKING:
    from cortex_school.clients.gitops import GitOpsRepo

# Improvements worth remembering: what was implemented or is on its way, and what failed.
HISTORY_STATUSES: tuple[Status, ...] = (
    Status.APPROVED, Status.IMPLEMENTING, Status.COMMITTED, Status.DEPLOYED, Status.VERIFIED,
    Status.FAILED, Status.VALIDATED, Status.PENDING_REVIEW,
)


def is_git_source(source: str) -> bool:
    return "://" in source or source.startswith("git@") or source.endswith(".git") or (
        Path(source).is_dir() and (Path(source) / "HEAD").exists() and not (Path(source) / "apps").exists()
    )


def checkout(source: str, data_dir: Path, branch: str | None = None) -> Path:
    """Clone (or update) a git repository for indexing; the working copy lives in data_dir."""
    target = data_dir / "gitops-checkouts" / hashlib.sha256(source.encode()).hexdigest()[:12]
    if (target / ".git").exists():
        subprocess.run(["git", "-C", str(target), "fetch", "--depth", "1", "origin"] +
                       ([branch] if branch else []), check=True, capture_output=True)
        subprocess.run(["git", "-C", str(target), "reset", "--hard", "FETCH_HEAD"], check=True,
                       capture_output=True)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "clone", "--depth", "1", *(["--branch", branch] if branch else []),
                        source, str(target)], check=True, capture_output=True)
    return target


Progress = Callable[[int, int], None]


def index_docs(index: VectorIndex, root: Path, *, replace: bool = False, progress: Progress | None = None) -> SyncReport:
    """Index every document under ``root`` into the docs corpus. Each directory is its own
    set of sources (``<directory>::<file>``), so indexing a second directory adds to the
    corpus; ``replace`` makes the corpus hold this directory's documents only."""
    tag = f"{root.resolve().as_posix()}::"
    chunks = [c.model_copy(update={"source": tag + c.source}) for c in chunk_docs_dir(root)]
    return index.sync("docs", chunks, source_prefix=None if replace else tag, progress=progress)


def index_gitops(index: VectorIndex, root: Path, progress: Progress | None = None) -> SyncReport:
    chunks, problems = chunk_gitops_dir(root)
    report = index.sync("gitops", chunks, progress=progress)
    report.problems = problems
    return report


def index_known_issues(index: VectorIndex, path: Path, progress: Progress | None = None) -> SyncReport:
    files = [path] if path.is_file() else sorted(path.rglob("*.md"))
    chunks = [c for f in files for c in chunk_markdown(f.read_text(encoding="utf-8"), f.name, "known_issues")]
    return index.sync("known_issues", chunks, progress=progress)


def index_history(index: VectorIndex, store: RedisStore, progress: Progress | None = None) -> SyncReport:
    ids = set().union(*(store.ids_with_status(s) for s in HISTORY_STATUSES))
    return index.sync("improvements", [improvement_chunk(i) for i in store.many(sorted(ids))], progress=progress)


def reindex_gitops_repo(index: VectorIndex, repo: "GitOpsRepo") -> SyncReport:
    """Bring the gitops corpus to the GitOps repository's current tip (after a commit):
    new and changed objects are embedded, removed ones leave the index."""
    return index_gitops(index, repo.sync())
