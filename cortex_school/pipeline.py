"""The one place that wires stages together.

``build_pipeline`` returns the canvas; nothing else chains stage tasks. Each
signature is immutable (``si``): every stage takes only the improvement id and
reads the rest from Redis, so any stage can be re-run on its own.
"""

from __future__ import annotations

from celery import chain
from celery.canvas import Signature

from cortex_school.celery import app
from cortex_school.models import Improvement
from cortex_school.router import route

ROUTE = "cortex_school.tasks.route.route"
EVALUATE = "cortex_school.tasks.evaluate.evaluate"
VALIDATE = "cortex_school.tasks.validate.validate"
APPROVE = "cortex_school.tasks.approve.approve"


def build_pipeline(improvement: Improvement) -> Signature:
    """route → evaluate (on the routed expert's queue) → validate → approve.

    Routing is a pure function of the improvement, so the expert queue is known
    here; the route task applies the same function and records it.
    """
    expert = improvement.expert or route(
        improvement.category, improvement.description, improvement.implementation_notes
    ).expert
    return chain(
        app.signature(ROUTE, args=(improvement.id,), immutable=True),
        app.signature(EVALUATE, args=(improvement.id,), kwargs={"expert": expert}, immutable=True),
        app.signature(VALIDATE, args=(improvement.id,), immutable=True),
        app.signature(APPROVE, args=(improvement.id,), immutable=True),
    )


def enqueue(improvement: Improvement) -> None:
    build_pipeline(improvement).apply_async()
