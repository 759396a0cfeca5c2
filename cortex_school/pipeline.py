"""The one place that wires stages together.

``build_pipeline`` returns the canvas; nothing else chains stage tasks. Each
signature is immutable (``si``): every stage takes only the improvement id (and the
expert, for evaluations) and reads the rest from Redis, so any stage can be re-run
on its own.
"""

from __future__ import annotations

from celery import chain, chord
from celery.canvas import Signature

from cortex_school.celery import app
from cortex_school.models import Improvement
from cortex_school.router import panel, route
from cortex_school.settings import get_settings

ROUTE = "cortex_school.tasks.route.route"
EVALUATE = "cortex_school.tasks.evaluate.evaluate"
AGGREGATE = "cortex_school.tasks.evaluate.aggregate"
VALIDATE = "cortex_school.tasks.validate.validate"
APPROVE = "cortex_school.tasks.approve.approve"
IMPLEMENT = "cortex_school.tasks.implement.implement"


def build_pipeline(improvement: Improvement, *, fan_out: bool | None = None) -> Signature:
    """route → evaluate on each panel expert's queue, in parallel → aggregate → validate →
    approve → implement on the assigned worker's queue (a no-op unless approved).

    Routing is a pure function of the improvement, so the panel is known here; the
    route task applies the same function and records it.
    """
    if improvement.expert is None:
        routing = route(improvement.category, improvement.description, improvement.implementation_notes)
        expert, secondary = routing.expert, routing.secondary_experts
    else:
        expert, secondary = improvement.expert, improvement.secondary_experts
    if fan_out is None:
        fan_out = get_settings().experts.fan_out
    experts = panel(expert, secondary, fan_out=fan_out)
    iid = improvement.id
    evaluations = [
        app.signature(EVALUATE, args=(iid,), kwargs={"expert": e}, immutable=True) for e in experts
    ]
    return chain(
        app.signature(ROUTE, args=(iid,), immutable=True),
        chord(evaluations, app.signature(AGGREGATE, args=(iid,), kwargs={"experts": experts},
                                         immutable=True)),
        app.signature(VALIDATE, args=(iid,), immutable=True),
        app.signature(APPROVE, args=(iid,), immutable=True),
        implement_signature(improvement),
    )


def implement_signature(improvement: Improvement) -> Signature:
    from cortex_school.workers import worker_for

    return app.signature(IMPLEMENT, args=(improvement.id,),
                         kwargs={"worker": worker_for(improvement)}, immutable=True)


def enqueue(improvement: Improvement) -> None:
    build_pipeline(improvement).apply_async()
