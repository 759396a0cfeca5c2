"""Where improvements run: the cluster target interface and its two implementations.

``kubernetes`` talks to the real API server with the official client (ArgoCD's
Application custom objects, pods, logs, workloads, endpoints). ``simulated`` is an
in-memory model for the demo and tests only, driven by the same interface, with
injectable faults. Both are read by the same deploy, verify and rollback code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from cortex_school.clients.cluster.argo import AppSource

from cortex_school.errors import (
    PermanentError,
    PipelineError,
    TransientError,
    is_transient_status,
    retry_after_seconds,
)


@dataclass(frozen=True)
class AppState:
    """What ArgoCD says about one Application."""

    name: str
    sync_status: str  # Synced, OutOfSync, Unknown
    revision: str | None  # status.sync.revision
    health: str  # Healthy, Progressing, Degraded, Missing, Unknown
    path: str  # spec.source.path
    recurse: bool  # spec.source.directory.recurse
    repo_url: str = ""


@dataclass(frozen=True)
class PodState:
    name: str
    phase: str
    ready: bool
    waiting_reason: str | None = None  # e.g. CrashLoopBackOff
    terminated_reason: str | None = None  # last termination, e.g. OOMKilled
    restarts: int = 0
    labels: dict[str, str] = field(default_factory=dict)
    containers: tuple[str, ...] = ()


class ClusterError(PipelineError):
    """The cluster could not be asked; one of the two kinds below."""


class ClusterUnreachable(ClusterError, TransientError):
    """Connection trouble, a timeout, 429 or 5xx: ask again later."""


class ClusterRefused(ClusterError, PermanentError):
    """401, 403, or an answer that will not change by asking again (an object that must
    exist and does not): a person has to fix permissions or configuration."""


def cluster_error(where: str, status: int | None, reason: str, headers: object = None) -> ClusterError:
    """An API answer (``status``; None: no answer at all) as the error kind it means."""
    if status is None:
        return ClusterUnreachable(f"{where} unreachable: {reason}"[:500])
    if is_transient_status(status):
        return ClusterUnreachable(f"{where} {status}: {reason}"[:500],
                                  delay=retry_after_seconds(headers))
    return ClusterRefused(f"{where} {status}: {reason}"[:500])


class ClusterTarget(Protocol):
    name: str

    def application(self, app: str) -> AppState | None: ...

    def applications(self) -> list[AppSource]:
        """Every Application ArgoCD has (each source), to find which apply a file."""

    def hard_refresh(self, app: str) -> None: ...

    def pods(self, namespace: str, selector: dict[str, str]) -> list[PodState]: ...

    def logs(self, namespace: str, pod: str, since_seconds: int,
             containers: tuple[str, ...] = ()) -> str: ...

    def workload(self, kind: str, namespace: str, name: str) -> tuple[int, int] | None:
        """(desired, ready) replicas; None when it does not exist."""

    def endpoints(self, namespace: str, service: str) -> int | None:
        """Ready endpoint addresses of a Service; None when the Service does not exist."""


def path_covers(app: AppState, folder: str) -> bool:
    """Whether ArgoCD applies files in ``folder`` for this Application: the folder itself,
    or a subfolder only with ``directory.recurse``."""
    source = app.path.strip("/")
    target = folder.strip("/")
    if target == source:
        return True
    return app.recurse and (source in ("", ".") or target.startswith(source + "/"))
