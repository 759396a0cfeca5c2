"""Routing lives in config: every routed queue is declared and consumed; the canvas is built in one place."""

import celeryconfig
from cortex_school.celery import app
from cortex_school.pipeline import APPROVE, EVALUATE, ROUTE, VALIDATE, build_pipeline
from cortex_school.settings import EXPERTS
from tests.factories import make_improvement


def routed_queue(name, kwargs=None):
    return app.amqp.router.route({}, name, (), kwargs or {})["queue"].name


def test_reliability_settings():
    conf = app.conf
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    assert conf.accept_content == ["json"] and conf.task_serializer == "json"
    limits = [a["time_limit"] for a in celeryconfig.task_annotations.values()]
    assert conf.broker_transport_options["visibility_timeout"] > max(limits)
    for annotation in celeryconfig.task_annotations.values():
        assert annotation["soft_time_limit"] < annotation["time_limit"]


def test_every_task_is_routed_to_a_declared_queue_and_every_queue_is_used():
    declared = {q.name for q in app.conf.task_queues}
    assert declared == set(celeryconfig.ALL_QUEUES)
    used = {routed_queue(ROUTE), routed_queue(VALIDATE), routed_queue(APPROVE)}
    used |= {routed_queue(EVALUATE, {"expert": e}) for e in EXPERTS}
    assert used == declared
    app.loader.import_default_modules()  # what a worker does with `imports`
    for task in (ROUTE, EVALUATE, VALIDATE, APPROVE):
        assert task in app.tasks


def test_evaluation_goes_to_the_experts_own_queue():
    assert routed_queue(EVALUATE, {"expert": "security"}) == "expert.security"
    assert routed_queue(EVALUATE, {"expert": "../x"}) == "expert.architecture"


def test_build_pipeline_is_a_chain_of_immutable_stage_signatures():
    imp = make_improvement("Encrypt the Qdrant snapshots", category="architecture")
    canvas = build_pipeline(imp)
    tasks = [(s.task, tuple(s.args), dict(s.kwargs), s.immutable) for s in canvas.tasks]
    assert tasks == [
        (ROUTE, (imp.id,), {}, True),
        (EVALUATE, (imp.id,), {"expert": "security"}, True),
        (VALIDATE, (imp.id,), {}, True),
        (APPROVE, (imp.id,), {}, True),
    ]
