"""Deploy, verify, roll back: the loop after a commit, as plain functions over the store.

Each function does one short step and says what should happen next: ``waiting``
(the task re-schedules itself with a countdown; no worker ever sleeps for minutes),
``done``, or ``failed`` (roll back). State lives on the improvement's hash, so any
step can be re-run or resumed by another worker.

committed → deployed (ArgoCD synced a revision containing the merge) → verified (all
five checks held for HEALTH_CHECK_DURATION) | failed (reverted, with the reason).

One module per step: :mod:`.deploy`, :mod:`.verify`, :mod:`.rollback`; what they share is
in :mod:`.steps`, how people are told in :mod:`.notify`, the health checks in :mod:`.health`. The
cluster and git clients are in :mod:`cortex_school.clients`, the namespace leases in
:mod:`cortex_school.store.leases`.
"""

from cortex_school.delivery.deploy import run_deploy
from cortex_school.delivery.notify import notify
from cortex_school.delivery.rollback import (
    ROLLBACK_DURATION_BUCKETS,
    rollback_reason_class,
    run_rollback,
)
from cortex_school.delivery.steps import (
    GUARD,
    Deployer,
    Step,
    argocd_apps_for,
    rollback_under_way,
)
from cortex_school.delivery.verify import health_of, run_verify

__all__ = ["Step", "Deployer", "GUARD", "argocd_apps_for", "rollback_under_way", "run_deploy", "run_verify", "health_of", "notify", "run_rollback", "rollback_reason_class", "ROLLBACK_DURATION_BUCKETS"]
