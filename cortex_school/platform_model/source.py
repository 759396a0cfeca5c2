"""The current platform model of the GitOps repository, for the validate workers.

Read at the repository's head and rebuilt only when the head moves; the clone is synced
at most every ``refresh_seconds`` (a validation must not wait for a fetch each time), and
after every commit the re-index task refreshes it (:meth:`PlatformSource.refresh`). If the
remote cannot be reached the last model is kept and says which revision it is of.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from cortex_school.clients.gitops import GitOpsError, GitOpsRepo
from cortex_school.platform_model.components import Platform, build_platform
from cortex_school.platform_model.model import read_inventory


class PlatformSource:
    def __init__(self, repo: Callable[[], GitOpsRepo], *, refresh_seconds: float = 60.0,
                 distribution: str | None = "k3s") -> None:
        self._repo = repo
        self.refresh_seconds = refresh_seconds
        self.distribution = distribution
        self._platform: Platform | None = None
        self._synced_at = float("-inf")
        self._lock = threading.Lock()
        self.last_error: str | None = None

    def refresh(self) -> Platform | None:
        """Sync the clone now and rebuild the model if the head moved."""
        with self._lock:
            return self._refresh()

    def _refresh(self) -> Platform | None:
        try:
            repo = self._repo()
            root = repo.sync()
            head = repo.head()
        except GitOpsError as exc:
            self.last_error = str(exc)
            return self._platform
        self._synced_at = time.monotonic()
        self.last_error = None
        if self._platform is None or self._platform.inventory.revision != head:
            self._platform = build_platform(read_inventory(root, revision=head), distribution=self.distribution)
        return self._platform

    def __call__(self) -> Platform | None:
        with self._lock:
            if self._platform is None or time.monotonic() - self._synced_at > self.refresh_seconds:
                return self._refresh()
            return self._platform
