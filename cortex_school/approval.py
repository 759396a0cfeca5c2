"""The auto-approval gate: the only place in the system that approves.

The design's rules, in full:

* relevance must reach ``AUTO_APPROVE_THRESHOLD`` (0.90);
* security and database changes (by category) need ``HIGH_RISK_THRESHOLD`` (0.95),
  or only the normal threshold while ``auto_approve_security`` is set;
* integrations (type or category ``integration``) always go to a person unless
  ``auto_approve_integrations`` is set;
* any validation conflict blocks;
* ``auto_approve_none`` stops everything; ``auto_approve_all`` lifts the threshold,
  risk and integration rules (never conflicts, expert blocks or knowledge-only items);
* the circuit breaker (more than 3 rollbacks within an hour) pauses auto-approval.

Besides those, an improvement with no usable expert assessment, an expert block or
review request, or of type ``concept`` (knowledge only) goes to a person. Every
rule that applies is listed in the decision, not just the first.
"""

from __future__ import annotations

from dataclasses import dataclass

from cortex_school.models import Decision, Improvement, ImprovementType, Verdict

GATE_ACTOR = "auto-approval-gate"
HIGH_RISK_CATEGORIES: frozenset[str] = frozenset({"security", "database"})


@dataclass(frozen=True)
class GateContext:
    """Everything the gate reads besides the improvement itself."""

    auto_approve_threshold: float
    high_risk_threshold: float
    flags: dict[str, bool]
    recent_rollbacks: int
    rollback_limit: int

    @property
    def circuit_open(self) -> bool:
        return self.recent_rollbacks > self.rollback_limit


def decide(improvement: Improvement, ctx: GateContext) -> Decision:
    reasons: list[str] = []
    flags = ctx.flags
    emergency_all = flags.get("auto_approve_all", False)

    if improvement.knowledge_only:
        reasons.append("knowledge-only (type concept): recorded for review, never implemented")
    if flags.get("auto_approve_none", False):
        reasons.append("auto-approval disabled by flag auto_approve_none")
    if ctx.circuit_open:
        reasons.append(
            f"circuit breaker open: {ctx.recent_rollbacks} rollbacks within the window "
            f"(more than {ctx.rollback_limit} pauses auto-approval)"
        )

    validation = improvement.validation
    if validation is None:
        reasons.append("not validated")
    elif validation.conflicts:
        reasons.append(
            "RAG validation found conflicts: " + "; ".join(f.reason for f in validation.conflicts)
        )

    assessment = improvement.assessment
    if assessment is None:
        reasons.append("no usable expert assessment")
    elif assessment.verdict is Verdict.BLOCK:
        reasons.append(
            f"{assessment.expert} expert ({assessment.backend}) blocked it: "
            + "; ".join(assessment.concerns or [assessment.rationale])
        )
    elif assessment.verdict is Verdict.REVIEW and not emergency_all:
        reasons.append(f"{assessment.expert} expert ({assessment.backend}) asks for human review")

    if not emergency_all:
        relevance = improvement.relevance
        if relevance < ctx.auto_approve_threshold:
            reasons.append(
                f"Below {ctx.auto_approve_threshold:.0%} relevance threshold (relevance {relevance:.2f})"
            )
        if (
            improvement.category in HIGH_RISK_CATEGORIES
            and not flags.get("auto_approve_security", False)
            and relevance < ctx.high_risk_threshold
        ):
            reasons.append(
                f"High-risk category {improvement.category!r} requires "
                f"{ctx.high_risk_threshold:.0%} relevance (relevance {relevance:.2f})"
            )
        is_integration = (
            improvement.type is ImprovementType.INTEGRATION or improvement.category == "integration"
        )
        if is_integration and not flags.get("auto_approve_integrations", False):
            reasons.append("Integrations require manual review")

    if reasons:
        return Decision(approved=False, reasons=reasons, decided_by=GATE_ACTOR)
    why = "auto-approved by flag auto_approve_all" if emergency_all else (
        f"Auto-approved (relevance {improvement.relevance:.2f}, no conflicts)"
    )
    return Decision(approved=True, reasons=[why], decided_by=GATE_ACTOR)


def priority(improvement: Improvement) -> float:
    """Score in ``improvements:implementation``: higher relevance first."""
    return round(improvement.relevance * 100, 2)
