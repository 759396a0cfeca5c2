"""The current platform model of the GitOps repository, for the validate workers.

Read at the repository's head and rebuilt only when the head moves; the clone is synced
at most every ``refresh_seconds`` (a validation must not wait for a fetch each time), and
after every commit the re-index task refreshes it (:meth:`PlatformSource.refresh`). If the
remote cannot be reached the last model is kept and says which revision it is of.

With a cluster (``live``), the workloads it runs are merged in at each sync: what runs
there but in no manifest (installed by hand, by another tool) counts too, cited as
``live:<namespace>/<kind>/<name>``. A cluster that cannot be read leaves the model of the
repository alone, with ``last_error`` saying why.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from cortex_school.clients.gitops import GitOpsError, GitOpsRepo
from cortex_school.errors import PermanentError, TransientError
from cortex_school.platform_model.components import Platform, build_platform
from cortex_school.platform_model.model import Inventory, live_key, merge_live, read_inventory


class PlatformSource:
    def __init__(self, repo: Callable[[], GitOpsRepo], *, refresh_seconds: float = 60.0,
                 distribution: str | None = "k3s", live: Callable[[], list[dict[str, Any]]] | None = None) -> None:
        self._repo = repo
        self._live = live
        self._inventory: Inventory | None = None  # the repository's, at its head
        self._live_key: int | None = None
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
        changed = self._inventory is None or self._inventory.revision != head
        if changed:
            self._inventory = read_inventory(root, revision=head)
        live: list[dict[str, Any]] | None = None
        if self._live is not None:
            try:
                live = self._live()
            except (TransientError, PermanentError) as exc:
                self.last_error = f"live cluster not read: {exc}"[:500]
        if live is not None and not isinstance(live, list):
            self.last_error, live = "live cluster not read: the API did not answer a list", None
        key = live_key(live) if live is not None else None
        if changed or key != self._live_key or self._platform is None:
            assert self._inventory is not None
            inventory = merge_live(self._inventory, live) if live else self._inventory
            self._platform = build_platform(inventory, distribution=self.distribution)
            self._live_key = key
        return self._platform

    def __call__(self) -> Platform | None:
        with self._lock:
            if self._platform is None or time.monotonic() - self._synced_at > self.refresh_seconds:
                return self._refresh()
            return self._platform
