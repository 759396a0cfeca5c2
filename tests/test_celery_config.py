"""Routing lives in config: every routed queue is declared and consumed; the canvas is built in one place."""

import celeryconfig
from cortex_school.celery import app
from cortex_school.pipeline import (
    AGGREGATE,
    APPROVE,
    EVALUATE,
    IMPLEMENT,
    ROUTE,
    VALIDATE,
    build_pipeline,
)
from cortex_school.settings import EXPERTS
from cortex_school.workers.plan import WORKERS
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
    used = {routed_queue(ROUTE), routed_queue(AGGREGATE), routed_queue(VALIDATE), routed_queue(APPROVE)}
    used |= {routed_queue(EVALUATE, {"expert": e}) for e in EXPERTS}
    used |= {routed_queue(IMPLEMENT, {"worker": w}) for w in WORKERS}
    used |= {routed_queue(f"cortex_school.tasks.deploy.{t}") for t in ("deploy", "verify", "rollback")}
    assert used == set(celeryconfig.ALL_QUEUES)
    app.loader.import_default_modules()  # what a worker does with `imports`
    for task in (ROUTE, EVALUATE, AGGREGATE, VALIDATE, APPROVE, IMPLEMENT):
        assert task in app.tasks


def test_implementation_goes_to_the_workers_own_queue():
    assert routed_queue(IMPLEMENT, {"worker": "monitoring"}) == "implement.monitoring"
    assert routed_queue(IMPLEMENT, {"worker": "../../x"}) == "implement.architecture"


def test_evaluation_goes_to_the_experts_own_queue():
    assert routed_queue(EVALUATE, {"expert": "security"}) == "expert.security"
    assert routed_queue(EVALUATE, {"expert": "../x"}) == "expert.architecture"


def sig(s):
    return (s.task, tuple(s.args), dict(s.kwargs), s.immutable)


def test_build_pipeline_is_route_then_a_chord_of_the_panel_then_validate_and_approve():
    imp = make_improvement("Encrypt the Qdrant snapshots", category="architecture",
                           notes="Use a Kubernetes CronJob to snapshot and encrypt.")
    canvas = build_pipeline(imp, fan_out=True)
    # Celery folds the stages after a chord into its body: route | chord(panel, aggregate | validate | approve)
    route_sig, panel_chord = canvas.tasks
    assert sig(route_sig) == (ROUTE, (imp.id,), {}, True)
    assert [sig(s) for s in panel_chord.tasks] == [
        (EVALUATE, (imp.id,), {"expert": "security"}, True),
        (EVALUATE, (imp.id,), {"expert": "architecture"}, True),
    ]
    assert [sig(s) for s in panel_chord.body.tasks] == [
        (AGGREGATE, (imp.id,), {"experts": ["security", "architecture"]}, True),
        (VALIDATE, (imp.id,), {}, True),
        (APPROVE, (imp.id,), {}, True),
        (IMPLEMENT, (imp.id,), {"worker": "architecture"}, True),
    ]


def test_without_fan_out_only_the_routed_expert_is_consulted():
    imp = make_improvement("Encrypt the Qdrant snapshots", category="architecture")
    panel_chord = build_pipeline(imp, fan_out=False).tasks[1]
    assert [s.kwargs["expert"] for s in panel_chord.tasks] == ["security"]


def test_every_setting_says_what_it_is_where_it_is_declared():
    """GIVEN every settings group WHEN inspected THEN each field has a description (its unit
    and meaning), so `Field(...)` is the documentation."""
    from cortex_school.settings import Settings

    groups = [f.annotation for f in Settings.model_fields.values()
              if isinstance(f.annotation, type) and hasattr(f.annotation, "model_fields")]
    undocumented = [f"{cls.__name__}.{name}" for cls in (Settings, *groups)
                    for name, field in cls.model_fields.items()
                    if field.annotation not in groups and not field.description]
    assert undocumented == []


def test_time_limits_come_from_settings_and_locks_expire_with_them():
    """GIVEN TASK_TIME_LIMITS WHEN the Celery config is read THEN every stage task has a soft
    limit below its hard limit, both from settings."""
    import celeryconfig

    from cortex_school.settings import get_settings

    tasks = get_settings().tasks
    for name, limits in celeryconfig.task_annotations.items():
        stage = name.rsplit(".", 1)[-1]
        assert limits["time_limit"] == tasks.hard_limit(stage)
        assert 0 < limits["soft_time_limit"] < limits["time_limit"]


def test_task_time_limits_parse_and_refuse_unknown_stages(monkeypatch):
    """GIVEN TASK_TIME_LIMITS as 'stage=seconds' or JSON WHEN read THEN named stages change,
    the rest keep their default; an unknown stage or a tiny limit is refused."""
    import pydantic
    import pytest as _pytest

    from cortex_school.settings import DEFAULT_TIME_LIMITS, TaskSettings

    monkeypatch.setenv("TASK_TIME_LIMITS", "implement=400, verify=90")
    tasks = TaskSettings()
    assert tasks.hard_limit("implement") == 400 and tasks.soft_limit("implement") == 340
    assert tasks.hard_limit("route") == DEFAULT_TIME_LIMITS["route"]
    monkeypatch.setenv("TASK_TIME_LIMITS", '{"deploy": 240}')
    assert TaskSettings().hard_limit("deploy") == 240
    for bad in ("implemnt=400", "route=1", "route"):
        monkeypatch.setenv("TASK_TIME_LIMITS", bad)
        with _pytest.raises(pydantic.ValidationError):
            TaskSettings()
