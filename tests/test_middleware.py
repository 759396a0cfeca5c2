"""Traefik Middlewares: one allowlisted type with the values the proposal writes, attached by
the router annotation only to an Ingress of the same change; an existing route is never
edited (the plan says so and is not committed); every other type is refused by the gate."""

from __future__ import annotations

import pytest
import yaml

from cortex_school.workers import render_resources
from cortex_school.workers.plan import ImplementationPlan, PlannedResource, Port, TraefikMiddleware
from cortex_school.workers.policy import check_plan
from cortex_school.workers.schema_check import SchemaChecker
from tests.test_companions import CTX, a_platform, gate, plan_for

ANNOTATION = "traefik.ingress.kubernetes.io/router.middlewares"


def test_a_rate_limit_for_an_existing_route_is_planned_with_its_values_and_the_attachment_named(tmp_path):
    root = a_platform(tmp_path)
    plan, _ = plan_for(root, "Add a Traefik rate-limit middleware to the reranker IngressRoute",
                       "Create a Middleware (traefik.io/v1alpha1) reranker-ratelimit in knowledge with rateLimit "
                       "average 50, burst 100 and sourceCriterion ipStrategy depth 1, and add it to the middlewares "
                       "of the reranker IngressRoute.")
    (mw,) = plan.resources
    assert (mw.kind, mw.name, mw.namespace) == ("Middleware", "reranker-ratelimit", "knowledge")
    (manifest,) = [m for _, ms in render_resources(plan, CTX) for m in ms]
    assert manifest["spec"] == {"rateLimit": {"average": 50, "burst": 100,
                                              "sourceCriterion": {"ipStrategy": {"depth": 1}}}}
    assert gate(root, [manifest]) == [] and SchemaChecker("1.31.0").check_all([manifest]) == []
    # Adding it to the route is an edit of an object the system does not own: named, so
    # the plan is not the whole change and is not committed.
    assert any(s.startswith("not planned: ") and "middlewares of the reranker IngressRoute" in s
               for s in plan.manual_steps), plan.manual_steps


def test_a_new_workload_with_an_ingress_gets_its_middleware_attached_by_annotation(tmp_path):
    root = a_platform(tmp_path)
    plan, _ = plan_for(root, "Deploy whoami behind a rate limit",
                       "Run traefik/whoami:v1.10.3 as a Deployment in tools on port 8080 with an Ingress for "
                       "whoami.cortex.local and a Traefik Middleware whoami-limit allowing average 20 per second "
                       "with burst 40.")
    assert not [s for s in plan.manual_steps if s.startswith("not planned: ")], plan.manual_steps
    manifests = {m["kind"]: m for _, ms in render_resources(plan, CTX) for m in ms}
    assert manifests["Middleware"]["spec"] == {"rateLimit": {"average": 20, "burst": 40, "period": "1s"}}
    assert manifests["Ingress"]["metadata"]["annotations"][ANNOTATION] == "tools-whoami-limit@kubernetescrd"
    assert gate(root, list(manifests.values())) == []
    # Without the Middleware in the same change the annotation attaches someone else's.
    alone = [m for k, m in manifests.items() if k != "Middleware"]
    assert any(v.rule == "ingress" and "only Middlewares this change creates" in v.detail for v in gate(root, alone))
    other = yaml.safe_load(yaml.safe_dump(manifests["Ingress"]))
    other["metadata"]["annotations"][ANNOTATION] = "traefik-oauth-strip@kubernetescrd"
    assert any(v.rule == "ingress" for v in gate(root, [*alone[:-1], other, manifests["Middleware"]]))


@pytest.mark.parametrize("spec", [
    {"forwardAuth": {"address": "http://evil.example/auth", "trustForwardHeader": True}},
    {"basicAuth": {"secret": "admin-users"}},
    {"chain": {"middlewares": [{"name": "strip-auth"}]}},
    {"plugin": {"evil": {}}},
    {"headers": {"customRequestHeaders": {"X-Forwarded-User": "admin"}}},
    {"headers": {"referrerPolicy": "no-referrer\r\nSet-Cookie: a=b"}},
    {"rateLimit": {"average": 5, "sourceCriterion": {"requestHeaderName": "X-Real-Ip"}}},
    {"redirectScheme": {"scheme": "http"}},
    {"rateLimit": {"average": 5, "sourceCriterion": {"ipStrategy": {"depth": 99}}}},
    {"rateLimit": {"average": 5, "period": "forever"}},
    {"rateLimit": {"average": 5}, "compress": {}},
    {},
])
def test_the_gate_allows_only_the_generated_middleware_shapes(tmp_path, spec):
    root = a_platform(tmp_path)
    plan = ImplementationPlan(summary="x", resources=[PlannedResource(
        kind="Middleware", name="m", namespace="tools", middleware=TraefikMiddleware(type="compress"))])
    (manifest,) = [m for _, ms in render_resources(plan, CTX) for m in ms]
    assert gate(root, [manifest]) == []
    manifest["spec"] = spec
    assert "middleware" in [v.rule for v in gate(root, [manifest])]


def test_a_plan_attaches_only_its_own_middlewares(tmp_path):
    from cortex_school.settings import PolicySettings
    from cortex_school.workers.policy import SystemIdentity

    plan = ImplementationPlan(summary="x", resources=[
        PlannedResource(kind="Deployment", name="web", namespace="tools", image="traefik/whoami:v1.10.3",
                        ports=[Port(number=80)]),
        PlannedResource(kind="Service", name="web", namespace="tools", ports=[Port(number=80)]),
        PlannedResource(kind="Ingress", name="web", namespace="tools", host="web.cortex.local",
                        ports=[Port(number=80)], middlewares=["someone-elses"])])
    policy = PolicySettings(allowed_namespaces=["tools"])
    found = check_plan(plan, policy, SystemIdentity.from_policy(policy))
    assert [(v.rule, v.path) for v in found] == [("plan-ref", "resources[2].middlewares")]
    with pytest.raises(ValueError):
        PlannedResource(kind="Ingress", name="web", namespace="tools", middlewares=["x@kubernetescrd"])
