"""The approval gate: every rule, every flag, the circuit breaker."""

import pytest

from cortex_school.approval import GateContext, decide
from cortex_school.models import ImprovementType, Verdict
from tests.factories import assessed, make_improvement


def ctx(flags=None, rollbacks=0) -> GateContext:
    return GateContext(
        auto_approve_threshold=0.90,
        high_risk_threshold=0.95,
        flags={"auto_approve_integrations": False, "auto_approve_security": False,
               "auto_approve_all": False, "auto_approve_none": False, **(flags or {})},
        recent_rollbacks=rollbacks,
        rollback_limit=3,
    )


def gate(flags=None, rollbacks=0, verdict=Verdict.APPROVE, conflicts=None, **kw):
    return decide(assessed(make_improvement(**kw), verdict=verdict, conflicts=conflicts),
                  ctx(flags, rollbacks))


@pytest.mark.parametrize(
    "category,type_,relevance,approved,reason",
    [
        ("architecture", "pattern", 0.90, True, "Auto-approved"),
        ("architecture", "pattern", 0.8999, False, "Below 90% relevance threshold"),
        ("monitoring", "enhancement", 0.99, True, "Auto-approved"),
        ("knowledge", "implementation", 0.93, True, "Auto-approved"),
        ("security", "pattern", 0.94, False, "High-risk category 'security' requires 95%"),
        ("security", "pattern", 0.95, True, "Auto-approved"),
        ("database", "enhancement", 0.949, False, "High-risk category 'database' requires 95%"),
        ("database", "enhancement", 0.96, True, "Auto-approved"),
        ("architecture", "integration", 0.99, False, "Integrations require manual review"),
        ("integration", "tool", 0.99, False, "Integrations require manual review"),
        ("networking", "concept", 0.99, False, "knowledge-only"),
    ],
)
def test_design_rules(category, type_, relevance, approved, reason):
    decision = gate(category=category, type=type_, relevance=relevance)
    assert decision.approved is approved
    assert reason in decision.reason


def test_every_applicable_reason_is_listed():
    decision = gate(category="security", type="integration", relevance=0.5)
    assert len(decision.reasons) == 3


def test_validation_conflicts_block():
    decision = gate(conflicts=["duplicate: identical to abc"], relevance=0.99)
    assert not decision.approved
    assert "RAG validation found conflicts: duplicate: identical to abc" in decision.reason


@pytest.mark.parametrize("verdict,text", [(Verdict.BLOCK, "blocked it"),
                                          (Verdict.REVIEW, "asks for human review")])
def test_expert_block_or_review_sends_to_a_person(verdict, text):
    decision = gate(verdict=verdict, relevance=0.99)
    assert not decision.approved and text in decision.reason


def test_missing_assessment_or_validation_never_approves():
    bare = make_improvement(relevance=0.99)
    decision = decide(bare, ctx())
    assert not decision.approved
    assert "no usable expert assessment" in decision.reason and "not validated" in decision.reason


def test_flag_auto_approve_integrations():
    assert gate({"auto_approve_integrations": True}, category="integration", type="tool").approved
    # still needs the threshold
    assert not gate({"auto_approve_integrations": True}, category="integration", type="tool",
                    relevance=0.8).approved


def test_flag_auto_approve_security_lowers_high_risk_bar_to_the_normal_threshold():
    assert gate({"auto_approve_security": True}, category="security", relevance=0.91).approved
    assert gate({"auto_approve_security": True}, category="database", relevance=0.91).approved
    assert not gate({"auto_approve_security": True}, category="security", relevance=0.85).approved


def test_flag_auto_approve_all_lifts_thresholds_but_not_safety():
    assert gate({"auto_approve_all": True}, category="security", relevance=0.3).approved
    assert gate({"auto_approve_all": True}, type="integration", relevance=0.3).approved
    assert gate({"auto_approve_all": True}, verdict=Verdict.REVIEW).approved
    assert not gate({"auto_approve_all": True}, conflicts=["duplicate"]).approved
    assert not gate({"auto_approve_all": True}, verdict=Verdict.BLOCK).approved
    assert not gate({"auto_approve_all": True}, type=ImprovementType.CONCEPT).approved


def test_flag_auto_approve_none_wins_over_everything():
    decision = gate({"auto_approve_none": True, "auto_approve_all": True}, relevance=0.99)
    assert not decision.approved
    assert "auto_approve_none" in decision.reason


@pytest.mark.parametrize("rollbacks,open_", [(0, False), (3, False), (4, True), (10, True)])
def test_circuit_breaker_opens_above_three_rollbacks(rollbacks, open_):
    decision = gate(rollbacks=rollbacks, relevance=0.99)
    assert decision.approved is not open_
    if open_:
        assert "circuit breaker open" in decision.reason
