"""What each expert specialises in and judges, as the design describes them."""

from __future__ import annotations

from pydantic import BaseModel

from cortex_school.models import Risk


class ExpertProfile(BaseModel):
    name: str
    specialization: str
    evaluates: tuple[str, ...]
    examples: str
    # The risk the offline rules start from. Never HIGH: a category's tier is the approval
    # gate's (security and database need 0.95); "high" is what an assessment says of one
    # change, and the gate never auto-approves it.
    baseline_risk: Risk


PROFILES: dict[str, ExpertProfile] = {
    p.name: p
    for p in (
        ExpertProfile(
            name="architecture",
            specialization="Patterns, designs, system organization",
            evaluates=("scalability", "maintainability", "compatibility"),
            examples="MoE routing, storage tiering, MLOps frameworks",
            baseline_risk=Risk.LOW,
        ),
        ExpertProfile(
            name="integration",
            specialization="Third-party tools, APIs, external services",
            evaluates=("compatibility", "security", "licensing", "maintenance"),
            examples="Docling, LLM-D, Prometheus exporters",
            baseline_risk=Risk.MEDIUM,
        ),
        ExpertProfile(
            name="security",
            specialization="Authentication, authorization, encryption, compliance",
            evaluates=("attack surface", "compliance", "secrets management"),
            examples="RBAC policies, NetworkPolicies, TLS configs",
            baseline_risk=Risk.MEDIUM,
        ),
        ExpertProfile(
            name="database",
            specialization="Data storage, migrations, backups, replication",
            evaluates=("data safety", "performance", "recovery"),
            examples="Schema changes, index optimizations, backup strategies",
            baseline_risk=Risk.MEDIUM,
        ),
        ExpertProfile(
            name="networking",
            specialization="Ingress, service mesh, load balancing, DNS",
            evaluates=("reliability", "performance", "security"),
            examples="Traefik configs, Linkerd policies, BGP routing",
            baseline_risk=Risk.MEDIUM,
        ),
        ExpertProfile(
            name="monitoring",
            specialization="Observability, alerting, dashboards",
            evaluates=("coverage", "alert fatigue", "actionability"),
            examples="Grafana dashboards, Prometheus rules, log parsing",
            baseline_risk=Risk.LOW,
        ),
    )
}
