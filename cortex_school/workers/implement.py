"""The implement stage: approved improvement → plan → manifests → checks → GitOps commit.

approved → implementing (assigned to a worker) → committed, or → pending_review with
every reason (no resources to generate, a plan that cannot be rendered, schema or
policy violations, a change that would overwrite what this system does not own).
Nothing is committed unless every generated object passed every check.

Re-runs are safe at every point: the plan is stored before anything else happens
and reused; the commit step finds a commit that already landed; the final
transition is atomic.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cortex_school.clients.gitops import CommitResult, GitOpsConflict, GitOpsRepo, list_kustomization_resource
from cortex_school.models import Improvement, Status, utcnow
from cortex_school.outcome import StageOutcome, apply_transition, load
from cortex_school.platform_model import Platform, load_platform
from cortex_school.settings import PolicySettings
from cortex_school.store.leases import release
from cortex_school.store.protocol import StateStore
from cortex_school.validation.rag.chunking import chunk_gitops_dir
from cortex_school.workers import render_resources
from cortex_school.workers.manifest_files import repo_context
from cortex_school.workers.manifests import PlanError, RenderContext
from cortex_school.workers.placement import place
from cortex_school.workers.plan import ImplementationPlan
from cortex_school.workers.planning import Inventory, Planner
from cortex_school.workers.planning.offline import NOT_PLANNED
from cortex_school.workers.policy import (
    GateContext,
    SystemIdentity,
    Violation,
    check_change,
    check_plan,
    health_series,
)
from cortex_school.workers.schema_check import SchemaChecker

STAGE = "implement"
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\u202a-\u202e\u2066-\u2069]")


@dataclass
class Implementer:
    """Everything the stage needs, built once per worker process."""

    planner: Planner
    repo: GitOpsRepo
    schemas: SchemaChecker
    policy: PolicySettings
    co_author: str
    # (checkout, files, the files as the change leaves them) → (the ArgoCD Applications that
    # will apply them, why some file would not be applied). None: no cluster to ask.
    sync_check: Callable[[Path, list[str], dict[str, str]], tuple[list[str], list[str]]] | None = None
    # One change in flight per namespace: returns the improvement that holds one of them.
    lease: Callable[[str, list[str]], str | None] | None = None
    # The health checks' queries: a generated recording rule may not write what they read.
    health_queries: tuple[str, ...] = ()
    # The live cluster (object_exists, system_pod_labels), when one is configured.
    cluster: Any = None
    distribution: str | None = "k3s"  # what the platform model counts as built in

    def platform_at(self, workdir: Path) -> Platform | None:
        """The platform model of the checkout being changed (the planner resolves targets
        in it, placement follows its layout); None when it cannot be read."""
        try:
            return load_platform(workdir, revision=self.repo.head(), distribution=self.distribution)
        except (OSError, ValueError):
            return None

    def gate(self, workdir: Path) -> GateContext:
        """The gate's context: settings, the system's identity (from the chart and the live
        cluster), and what the repository at this revision and the cluster already hold."""
        pods: list[dict[str, str]] = []
        cluster_has = None
        if self.cluster is not None and hasattr(self.cluster, "object_exists"):
            pods = self.cluster.system_pod_labels(self.policy.system_namespace,
                                                  self.policy.system_name)
            cluster_has = lambda kind, ns, name: bool(  # noqa: E731
                self.cluster.object_exists(kind, ns, name))
        base = GateContext(policy=self.policy,
                           system=SystemIdentity.from_policy(self.policy, pods),
                           health_series=health_series(self.health_queries),
                           cluster_has=cluster_has)
        return repo_context(workdir, base)


def _clean(text: str) -> str:
    return _CONTROL.sub("", text)


def _line(text: str, limit: int) -> str:
    """One line of free text: newlines would let it pose as a header or a trailer."""
    return " ".join(_clean(text).split())[:limit]


def commit_message(improvement: Improvement, plan: ImplementationPlan,
                   manifests: list[dict[str, Any]], co_author: str,
                   listed: dict[str, list[str]] | None = None) -> str:
    """The design's commit message. Free text from the video is indented, so no line of
    it can pose as a trailer or a header."""
    decision = improvement.decision
    if decision is not None and decision.decided_by == "auto-approval-gate":
        approval = f"Yes, by the auto-approval gate: {decision.reason[:200]}"
    elif decision is not None:
        approval = f"No (approved by {decision.decided_by})"
    else:
        approval = "No (approved outside the gate)"
    changes = [f"- Added {m['kind']} {m['metadata'].get('namespace', '-')}/{m['metadata']['name']}"
               for m in manifests]
    changes += [f"- Listed {', '.join(entries)} in {rel}" for rel, entries in sorted((listed or {}).items())]
    notes = "\n".join(f"  {line}" for line in _clean(improvement.implementation_notes).splitlines()) \
        or "  (none)"
    lines = [
        f"Implement: {_line(improvement.description, 200)}",
        "",
        f"Source: YouTube video {improvement.video_id} - {_line(improvement.title, 200)}",
        f"Relevance: {improvement.relevance:.2f}",
        f"Category: {improvement.category}",
        f"Auto-approved: {approval}",
        f"Planner: {plan.planner}",
        "",
        "Changes:",
        *changes,
    ]
    if plan.manual_steps:
        lines += ["", "Manual follow-up (not automated):",
                  *(f"- {_line(s, 300)}" for s in plan.manual_steps)]
    lines += ["", "Implementation notes:", notes, "",
              f"{'Improvement-Id'}: {improvement.id}", f"Co-Authored-By: {co_author}"]
    return "\n".join(lines) + "\n"


def _wait_for_lease(store: StateStore, improvement: Improvement, implementer: Implementer,
                    namespaces: list[str]) -> StageOutcome | None:
    """The waiting outcome while another change holds one of ``namespaces`` (None: the
    leases are this improvement's now)."""
    assert implementer.lease is not None
    holder = implementer.lease(improvement.id, namespaces)
    if holder is None:
        return None
    # Waiting its turn is progress, not a stall: the stuck sweep leaves it alone.
    store.set_fields(improvement.id, {"last_swept_at": str(utcnow().timestamp())})
    store.count("implement_lease_waits")
    return StageOutcome(improvement_id=improvement.id, stage=STAGE, outcome="waiting",
                        status=improvement.status.value,
                        detail=f"waiting: {holder} is in flight in {', '.join(namespaces)} (one change per namespace)")


def _listed_texts(workdir: Path, listed: dict[str, list[str]]) -> dict[str, str]:
    """The kustomization files as the change will leave them (to check what ArgoCD will
    apply before anything is committed)."""
    out = {}
    for rel, entries in listed.items():
        path = workdir / rel
        if path.is_file() and not path.is_symlink():
            text = path.read_text(errors="replace")
            for entry in entries:
                try:
                    text = list_kustomization_resource(text, entry)
                except GitOpsConflict:
                    break
            out[rel] = text
    return out


def _to_review(store: StateStore, improvement: Improvement, reason: str, actor: str,
               extra: dict[str, str] | None = None) -> StageOutcome:
    release(store, improvement.id)
    return apply_transition(store, improvement, STAGE, Status.PENDING_REVIEW, actor=actor,
                  reason=reason[:2000], fields={"review_reason": reason[:2000], **(extra or {})})


def _violations_reason(violations: list[Violation]) -> str:
    listed = "; ".join(str(v) for v in violations[:20])
    more = f" (+{len(violations) - 20} more)" if len(violations) > 20 else ""
    return f"{len(violations)} policy/schema violation(s), nothing committed: {listed}{more}"


def render_context(improvement: Improvement, policy: PolicySettings) -> RenderContext:
    """What the renderers need besides the plan (the same for the stage and a preview)."""
    return RenderContext(improvement.id, improvement.video_id, improvement.title,
                         secret_store=policy.secret_store,
                         ingress_class=(policy.allowed_ingress_classes or ["traefik"])[0],
                         cert_issuer=(policy.allowed_cert_issuers or ["cortex-ca"])[0])


def planned_files(improvement: Improvement, plan: ImplementationPlan, policy: PolicySettings,
                  workdir: Path, platform: Platform | None) -> dict[str, str]:
    """The files (path → text) the stage would commit for ``plan`` on the checkout at
    ``workdir``: rendered and placed as :func:`run_implement` does, with the Kustomizations
    that would list them; read-only (no gate, nothing written). Raises PlanError."""
    if not plan.resources or not plan.namespaces:
        return {}
    rendered = render_resources(plan, render_context(improvement, policy))
    placement = place(rendered, platform, plan.namespaces[0])
    return {**placement.files, **_listed_texts(workdir, placement.listed)}


def run_implement(store: StateStore, improvement_id: str, *, implementer: Implementer,
                  worker: str, actor: str) -> tuple[StageOutcome, CommitResult | None]:
    loaded = load(store, improvement_id, STAGE)
    if isinstance(loaded, StageOutcome):
        return loaded, None
    if loaded.status is Status.APPROVED:
        started = store.transition(
            loaded.id, Status.IMPLEMENTING, actor=actor,
            reason=f"assigned to the {worker} worker",
            fields={"assigned_worker": f"{worker}@{actor.split('@', 1)[-1]}",
                    "implementation_started_at": utcnow().isoformat()},
            priority=float(store.field(loaded.id, "priority") or 0),
        )
        if not started.applied and started.outcome != "noop":
            return StageOutcome(improvement_id=loaded.id, stage=STAGE, outcome="skipped",
                                status=started.previous,
                                detail=f"transition to implementing {started.outcome}"), None
        loaded = store.get(loaded.id) or loaded
    if loaded.status is not Status.IMPLEMENTING:
        return StageOutcome(
            improvement_id=loaded.id, stage=STAGE, outcome="skipped", status=loaded.status.value,
            detail=f"nothing to do: status is {loaded.status.value}, this stage acts on approved",
        ), None

    stored = store.field(loaded.id, "plan")
    if stored and implementer.lease is not None and implementer.repo.mode == "merge":
        # Waiting for a namespace's turn costs one Redis call: no fetch, no plan, no gate.
        waiting = _wait_for_lease(store, loaded, implementer,
                                  ImplementationPlan.model_validate_json(stored).namespaces)
        if waiting is not None:
            return waiting, None
    workdir = implementer.repo.sync()
    landed = implementer.repo.find_existing(loaded.id)
    if landed is not None:  # an earlier run committed it and died before recording that
        return _committed(store, loaded, landed, implementer, actor, []), landed
    chunks, _problems = chunk_gitops_dir(workdir / "apps") if (workdir / "apps").is_dir() \
        else chunk_gitops_dir(workdir)
    inventory = Inventory.from_payloads([c.payload for c in chunks])

    platform = implementer.platform_at(workdir)
    if not store.field(loaded.id, "plan"):
        plan = implementer.planner.plan(loaded, inventory, platform)
        # Kept before anything else happens (first writer wins): every run and a person
        # see the same plan.
        store.set_once(loaded.id, "plan", plan.model_dump_json())
    plan = ImplementationPlan.model_validate_json(store.field(loaded.id, "plan") or "{}")

    if not plan.resources:
        steps = "; ".join(plan.manual_steps) or "none"
        return _to_review(store, loaded, f"no Kubernetes resources to generate ({plan.planner}); "
                          f"manual steps: {steps}", actor), None
    missing = [s for s in plan.manual_steps if s.startswith(NOT_PLANNED)]
    decision = loaded.decision
    if missing and not (decision is not None and decision.decided_by.startswith("human:")):
        # Half of what was asked is not the change that was approved: a person decides.
        return _to_review(store, loaded, "the plan leaves out part of the proposal, nothing committed: "
                          + "; ".join(s[len(NOT_PLANNED):] for s in missing), actor), None
    ctx = render_context(loaded, implementer.policy)
    gate = implementer.gate(workdir)
    violations = check_plan(plan, implementer.policy, gate.system)
    if any(v.rule == "size" for v in violations):
        return _blocked(store, loaded, worker, violations, actor)
    try:
        rendered = render_resources(plan, ctx)
    except PlanError as exc:
        return _to_review(store, loaded, f"the plan cannot be rendered: {exc}", actor), None
    manifests = [m for _, ms in rendered for m in ms]
    violations += implementer.schemas.check_all(manifests) + check_change(manifests, gate)
    # A person who approved after reading the findings may accept what is only "to
    # review" (a StorageClass, a disruption budget); what is refused stays refused.
    decision = loaded.decision
    if decision is not None and decision.decided_by.startswith("human:"):
        violations = [v for v in violations if v.action != "review"]
    if violations:
        return _blocked(store, loaded, worker, violations, actor)

    placement = place(rendered, platform, plan.namespaces[0])
    files = placement.files
    apps: list[str] = []
    if implementer.sync_check is not None:
        edited = {**files, **_listed_texts(workdir, placement.listed)}
        apps, unsynced = implementer.sync_check(workdir, sorted(files), edited)
        if unsynced:
            return _to_review(store, loaded, "not committed: " + "; ".join(unsynced), actor), None
    if implementer.lease is not None and implementer.repo.mode == "merge":
        waiting = _wait_for_lease(store, loaded, implementer, plan.namespaces)
        if waiting is not None:
            return waiting, None
    message = commit_message(loaded, plan, manifests, implementer.co_author, placement.listed)
    try:
        result = implementer.repo.commit_improvement(loaded.id, files, message, placement.listed)
    except GitOpsConflict as exc:
        store.count(f"implementations:{worker}:conflict")
        return _to_review(store, loaded, f"not committed: {exc}", actor), None
    if not result.reused:
        store.count("git_commits")
        store.count(f"implementations:{worker}:committed")
    if result.push_attempts > 1:
        store.count("git_push_failures", result.push_attempts - 1)  # rejected, then retried

    return _committed(store, loaded, result, implementer, actor, apps), result


def _blocked(store: StateStore, improvement: Improvement, worker: str,
             violations: list[Violation], actor: str) -> tuple[StageOutcome, None]:
    """Nothing is committed: the improvement goes to a person with every finding."""
    store.count("implement_policy_blocked")
    store.count(f"implementations:{worker}:blocked")
    return _to_review(store, improvement, _violations_reason(violations), actor, {
        "policy_violations": json.dumps([v.model_dump() for v in violations], ensure_ascii=False),
    }), None


def _committed(store: StateStore, loaded: Improvement, result: CommitResult,
               implementer: Implementer, actor: str, apps: list[str]) -> StageOutcome:
    merged = result.merge_commit is not None
    fields = {
        "argocd_apps": json.dumps(apps),  # empty: the deploy stage discovers them
        "git_commit": result.merge_commit or result.commit,
        "git_branch": result.branch,
        "git_branch_commit": result.commit,
        "git_files": json.dumps(result.files),
        "merge_pending": "false" if merged else "true",
        "committed_at": utcnow().isoformat(),
    }
    where = (f"merged into {implementer.repo.branch} as {result.merge_commit[:12]}"
             if result.merge_commit is not None
             else f"pushed branch {result.branch} ({result.commit[:12]}); merge left to a person")
    outcome = apply_transition(store, loaded, STAGE, Status.COMMITTED, actor=actor,
                     reason=f"{len(result.files)} file(s) {where}"
                     + (" (existing commit reused)" if result.reused else ""), fields=fields)
    store.count("implement_committed")
    return outcome
