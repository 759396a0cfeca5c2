"""Implementation workers: architecture, integration, security, database, monitoring.

Each module renders the resource kinds it owns (``KINDS``/``RENDERERS``). An
improvement is assigned to one worker (its queue is ``implement.<worker>``); that
worker renders the whole plan, asking the owner of each kind for its manifests, so
e.g. the monitoring worker's exporter gets the architecture worker's Deployment.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from cortex_school.models import Improvement
from cortex_school.workers import architecture, database, integration, monitoring, security
from cortex_school.workers.manifests import Manifest, PlanError, RenderContext
from cortex_school.workers.plan import KIND_OWNERS, WORKERS, ImplementationPlan, PlannedResource

Renderer = Callable[[PlannedResource, RenderContext], list[Manifest]]

RENDERERS: dict[str, Renderer] = {
    **architecture.RENDERERS,
    **integration.RENDERERS,
    **security.RENDERERS,
    **database.RENDERERS,
    **monitoring.RENDERERS,
}
assert set(RENDERERS) == set(KIND_OWNERS), "every plannable kind has exactly one renderer"

_CATEGORY_WORKER = {w: w for w in WORKERS}
# Networking changes go to whoever owns what they touch: policies to security,
# Services/Ingress routes to integration.
_POLICY_WORDS = re.compile(
    r"network ?polic|default[- ]deny|isolat|firewall|mtls|zero[- ]trust|egress", re.I)


def worker_for(improvement: Improvement) -> str:
    """The worker (and queue ``implement.<worker>``) an approved improvement goes to.

    A pure function of the improvement, so the pipeline knows the queue when it is built.
    """
    if improvement.category in _CATEGORY_WORKER:
        return improvement.category
    if improvement.category == "networking":
        text = f"{improvement.description}\n{improvement.implementation_notes}"
        return "security" if _POLICY_WORDS.search(text) else "integration"
    return "architecture"  # unknown categories, as the router does


def render_plan(plan: ImplementationPlan, ctx: RenderContext) -> list[Manifest]:
    """Every manifest of the plan, in plan order. Raises :class:`PlanError`."""
    return [m for _, manifests in render_resources(plan, ctx) for m in manifests]


def render_resources(plan: ImplementationPlan, ctx: RenderContext) -> list[tuple[PlannedResource, list[Manifest]]]:
    """Each planned resource with the manifests rendered for it (where a file goes depends
    on the resource: a companion sits next to what it serves). Raises :class:`PlanError`."""
    out: list[tuple[PlannedResource, list[Manifest]]] = []
    for resource in _owned_secret_refs(plan, ctx).resources:
        renderer = RENDERERS.get(resource.kind)
        if renderer is None:
            raise PlanError(f"no worker renders {resource.kind}")
        out.append((resource, renderer(resource, ctx)))
    return out


def _owned_secret_refs(plan: ImplementationPlan, ctx: RenderContext) -> ImplementationPlan:
    """A plan names its secrets by their base name; what pods read is the Secret the change
    itself writes (``<base>-<improvement id>``), so a plan cannot point a pod at an
    existing Secret by declaring an ExternalSecret of the same name."""
    resources = [r.model_copy(update={"env": [
        e.model_copy(update={"secret_name": ctx.secret_name(e.secret_name)}) if e.secret_name else e
        for e in r.env]}) if any(e.secret_name for e in r.env) else r for r in plan.resources]
    return plan.model_copy(update={"resources": resources})


__all__ = ["RENDERERS", "WORKERS", "PlanError", "RenderContext", "render_plan", "render_resources", "worker_for"]
