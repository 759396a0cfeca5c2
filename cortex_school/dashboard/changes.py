"""The change an improvement makes to the GitOps repository, for a person to read before
deciding: a unified diff.

* committed (or committed and since rolled back): ``git show`` of its merge (or branch)
  commit from this process's own clone (:meth:`GitOpsRepo.show_change`);
* planned, not committed: the stored plan rendered and placed exactly as the implement
  stage would (:func:`cortex_school.workers.implement.planned_files`) on a fresh checkout
  of the target branch, each new or changed file diffed (``difflib``) against the
  repository's current file. Nothing is gated, written or committed.

How it fails: a repository that cannot be reached, a plan that cannot be rendered, or no
plan yet is said in words (``Change.note``), never an error page. The clone is not
thread-safe, so one lock serialises every read, and a preview is kept ``ttl`` seconds
per (improvement, plan) so a page refresh does not fetch again.
"""

from __future__ import annotations

import difflib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from cortex_school.models import Improvement, Status

if TYPE_CHECKING:
    from cortex_school.clients.gitops import GitOpsRepo
    from cortex_school.settings import PolicySettings

MAX_LINES = 4000  # of a diff shown on the page
Kind = Literal["committed", "planned", "none", "unavailable"]


@dataclass(frozen=True)
class DiffLine:
    kind: Literal["add", "del", "hunk", "file", "meta", "ctx"]
    text: str


@dataclass(frozen=True)
class Change:
    """What the page shows under "Manifests"."""

    kind: Kind
    title: str
    lines: list[DiffLine] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    note: str | None = None

    @property
    def text(self) -> str:
        return "\n".join(line.text for line in self.lines)


def classify(text: str) -> list[DiffLine]:
    """A unified diff's lines, each with what it is (for colour and a +/- the page keeps)."""
    out: list[DiffLine] = []
    for line in text.splitlines()[:MAX_LINES]:
        if line.startswith(("+++", "---", "diff --git")):
            kind: Literal["add", "del", "hunk", "file", "meta", "ctx"] = "file"
        elif line.startswith("@@"):
            kind = "hunk"
        elif line.startswith("+"):
            kind = "add"
        elif line.startswith("-"):
            kind = "del"
        elif line.startswith(("commit ", "Author:", "Date:", "Merge:", "index ", "new file", "deleted file")):
            kind = "meta"
        else:
            kind = "ctx"
        out.append(DiffLine(kind, line))
    if len(text.splitlines()) > MAX_LINES:
        out.append(DiffLine("meta", f"… cut at {MAX_LINES} lines"))
    return out


def unified(path: str, before: str | None, after: str) -> str:
    """One file's unified diff (``/dev/null`` for a new file)."""
    old = (before or "").splitlines(keepends=True)
    new = after.splitlines(keepends=True)
    lines = difflib.unified_diff(old, new, fromfile=f"a/{path}" if before is not None else "/dev/null",
                                 tofile=f"b/{path}", n=3)
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


class ChangeViewer:
    """Diffs for the improvement page, over this process's own clone (made on first use)."""

    def __init__(self, repo: Callable[[], "GitOpsRepo"], policy: "PolicySettings", *,
                 distribution: str | None = "k3s", ttl: float = 30.0) -> None:
        self._make_repo = repo
        self._repo: GitOpsRepo | None = None
        self._policy = policy
        self._distribution = distribution
        self._ttl = ttl
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str], tuple[float, Change]] = {}

    def change(self, improvement: Improvement, fields: dict[str, str]) -> Change:
        commit = fields.get("git_commit") or fields.get("git_branch_commit")
        if commit and improvement.status in (Status.COMMITTED, Status.DEPLOYED, Status.VERIFIED, Status.FAILED):
            return self._cached(improvement.id, f"commit:{commit}", lambda: self._committed(commit, fields))
        plan = fields.get("plan")
        if not plan:
            return Change("none", "Manifests", note="No plan yet: the implement stage plans once the "
                          "improvement is approved.")
        return self._cached(improvement.id, f"plan:{improvement.status.value}:{plan}",
                            lambda: self._planned(improvement, plan))

    def _cached(self, improvement_id: str, key: str, make: Callable[[], Change]) -> Change:
        with self._lock:
            now = time.monotonic()
            hit = self._cache.get((improvement_id, key))
            if hit is not None and now - hit[0] < self._ttl:
                return hit[1]
            made = make()
            if len(self._cache) > 256:
                self._cache.clear()
            self._cache[(improvement_id, key)] = (now, made)
            return made

    def _clone(self) -> "GitOpsRepo":
        if self._repo is None:
            self._repo = self._make_repo()
        return self._repo

    def _committed(self, commit: str, fields: dict[str, str]) -> Change:
        from cortex_school.clients.gitops import GitOpsError

        title = f"Committed: git show {commit[:12]}"
        try:
            text = self._clone().show_change(commit)
        except (GitOpsError, OSError) as exc:
            return Change("unavailable", title, note=f"The commit cannot be read from the GitOps repository: {exc}")
        try:
            files = [str(f) for f in json.loads(fields.get("git_files") or "[]")]
        except ValueError:
            files = []
        return Change("committed", title, classify(text), files)

    def _planned(self, improvement: Improvement, raw_plan: str) -> Change:
        from pydantic import ValidationError

        from cortex_school.clients.gitops import GitOpsError
        from cortex_school.platform_model import load_platform
        from cortex_school.workers.implement import planned_files
        from cortex_school.workers.manifests import PlanError
        from cortex_school.workers.plan import ImplementationPlan

        title = ("Would be committed (the stored plan rendered now; not committed)"
                 if improvement.status not in (Status.REJECTED, Status.ACKNOWLEDGED) else
                 f"The stored plan rendered now ({improvement.status.value}: never committed)")
        try:
            plan = ImplementationPlan.model_validate_json(raw_plan)
        except ValidationError:
            return Change("unavailable", title, note="The stored plan cannot be read.")
        if not plan.resources:
            return Change("none", title, note="The plan has no Kubernetes resources to generate.")
        try:
            repo = self._clone()
            workdir = repo.sync()
            head = repo.head()
        except (GitOpsError, OSError) as exc:
            return Change("unavailable", title, note=f"The GitOps repository cannot be read: {exc}")
        try:
            platform = load_platform(workdir, revision=head, distribution=self._distribution)
        except (OSError, ValueError):
            platform = None
        try:
            files = planned_files(improvement, plan, self._policy, workdir, platform)
        except PlanError as exc:
            return Change("unavailable", title, note=f"The plan cannot be rendered: {exc}")
        parts = []
        for path in sorted(files):
            target = workdir / path
            before = target.read_text(errors="replace") if target.is_file() and not target.is_symlink() else None
            if before == files[path]:
                continue
            parts.append(f"diff --git a/{path} b/{path}\n" + unified(path, before, files[path]))
        if not parts:
            return Change("planned", title, files=sorted(files), note="Every file is already as the plan would leave it.")
        return Change("planned", f"{title}, against {repo.branch} at {head[:12]}",
                      classify("".join(parts)), sorted(files))
