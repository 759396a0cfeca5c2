"""The auto-approval gate: the only place in the system that approves.

The design's rules, in full:

* relevance must reach ``AUTO_APPROVE_THRESHOLD`` (0.90);
* the risk tier is the strongest signal available: an improvement whose declared
  category or routed expert is security or database needs ``HIGH_RISK_THRESHOLD``
  (0.95), or only the normal threshold while ``auto_approve_security`` is set; every
  consulted expert counts by the risk it rates (next rule);
* ``risk: high`` (or critical) or a block from *any* consulted expert is never
  auto-approved: the gate reads the combined assessment and every per-expert
  assessment stored for the improvement, so a smaller aggregate cannot hide one;
* integrations (type or category ``integration``) always go to a person unless
  ``auto_approve_integrations`` is set;
* any validation conflict blocks;
* ``auto_approve_none`` stops everything; ``auto_approve_all`` lifts the threshold,
  risk-tier, review-request and integration rules (never conflicts, expert blocks,
  high or critical risk, or knowledge-only items);
* the circuit breaker (more than 3 rollbacks within an hour) pauses auto-approval.

Besides those, an improvement with no usable expert assessment, an expert block or
review request, or of type ``concept`` (knowledge only) goes to a person. Every
rule that applies is listed in the decision, not just the first.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from cortex_school.models import Assessment, Decision, Improvement, ImprovementType, Risk, Verdict

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


def _these_or_combined(found: list[Assessment], combined: Assessment) -> list[Assessment]:
    """The per-expert assessments that match, or the combined one when none does."""
    return found or [combined]


def decide(
    improvement: Improvement,
    ctx: GateContext,
    assessments: Mapping[str, Assessment] | None = None,
) -> Decision:
    """Approve, or list every reason a person must look.

    ``assessments`` are the per-expert assessments stored for the improvement
    (``improvement:<id>:assessments``); each one is read besides the combined
    ``improvement.assessment``, so no consulted expert's block or risk goes unseen.
    """
    reasons: list[str] = []
    flags = ctx.flags
    emergency_all = flags.get("auto_approve_all", False)
    per_expert = list((assessments or {}).values())

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
    else:
        if assessments is not None:
            unseen = [e for e in assessment.consulted if e not in assessments]
            if unseen:
                reasons.append("assessment missing for consulted expert(s): " + ", ".join(unseen))
        blocks = [a for a in per_expert if a.verdict is Verdict.BLOCK]
        if blocks or assessment.verdict is Verdict.BLOCK:
            for a in _these_or_combined(blocks, assessment):
                reasons.append(
                    f"{a.expert} expert ({a.backend}) blocked it: "
                    + "; ".join(a.concerns or [a.rationale])
                )
        elif not emergency_all:
            asks = [a for a in per_expert if a.verdict is Verdict.REVIEW]
            if asks or assessment.verdict is Verdict.REVIEW:
                for a in _these_or_combined(asks, assessment):
                    reasons.append(f"{a.expert} expert ({a.backend}) asks for human review")
        risky = [a for a in per_expert if a.risk.rank >= Risk.HIGH.rank]
        if risky or assessment.risk.rank >= Risk.HIGH.rank:
            for a in _these_or_combined(risky, assessment):
                reasons.append(
                    f"{a.expert} expert ({a.backend}) rates the risk {a.risk.value}: "
                    "high-risk changes are never auto-approved"
                )

    if not emergency_all:
        relevance = improvement.relevance
        if relevance < ctx.auto_approve_threshold:
            reasons.append(
                f"Below {ctx.auto_approve_threshold:.0%} relevance threshold (relevance {relevance:.2f})"
            )
        tier = _high_risk_tier(improvement)
        if (
            tier is not None
            and not flags.get("auto_approve_security", False)
            and relevance < ctx.high_risk_threshold
        ):
            reasons.append(
                f"High-risk category {tier} requires "
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


def _high_risk_tier(improvement: Improvement) -> str | None:
    """Why the improvement is in the high-risk tier (declared category first), or None."""
    if improvement.category in HIGH_RISK_CATEGORIES:
        return repr(improvement.category)
    if improvement.expert in HIGH_RISK_CATEGORIES:
        return f"{improvement.expert!r} (routed to the {improvement.expert} expert)"
    # A consulted secondary expert counts by the risk it rates (above), not by its name:
    # asking the security expert's opinion must not by itself raise the bar.
    return None


def priority(improvement: Improvement) -> float:
    """Score in ``improvements:implementation``: higher relevance first."""
    return round(improvement.relevance * 100, 2)
