"""Builders for test improvements."""

from __future__ import annotations

from typing import Any

from cortex_school.models import (
    Assessment,
    Finding,
    Improvement,
    ImprovementType,
    Risk,
    ValidationReport,
    Verdict,
    fingerprint,
    improvement_id,
)


def make_improvement(
    description: str = "Add readiness probes to every Deployment in cortex-system",
    *,
    video_id: str = "vid00000001",
    category: str = "architecture",
    type: ImprovementType | str = ImprovementType.PATTERN,
    relevance: float = 0.92,
    notes: str = "Add httpGet readiness probes on /healthz with periodSeconds 10.",
    **extra: Any,
) -> Improvement:
    return Improvement(
        id=improvement_id(video_id, description),
        video_id=video_id,
        title="A video",
        category=category,
        type=ImprovementType(type),
        description=description,
        implementation_notes=notes,
        relevance=relevance,
        fingerprint=fingerprint(description),
        **extra,
    )


def assessed(
    improvement: Improvement,
    *,
    verdict: Verdict = Verdict.APPROVE,
    risk: Risk = Risk.LOW,
    conflicts: list[str] | None = None,
) -> Improvement:
    """The improvement as the gate sees it: assessed and validated."""
    findings = [Finding(check="duplicate", conflict=True, reason=r) for r in conflicts or []]
    return improvement.model_copy(
        update={
            "expert": improvement.expert or "architecture",
            "assessment": Assessment(
                expert=improvement.expert or "architecture", backend="test", model="test",
                verdict=verdict, risk=risk, confidence=0.8, rationale="test",
            ),
            "validation": ValidationReport(passed=not findings, findings=findings),
        }
    )


def document(items: list[dict[str, Any]] | None = None, **header: Any) -> dict[str, Any]:
    """An ingestion document (one video)."""
    base: dict[str, Any] = {
        "video_id": "rrQHnibpXX8",
        "title": "Unlock Better RAG & AI Agents with Docling",
        "relevance": 0.95,
        "improvements": {
            "passive": items
            if items is not None
            else [
                {
                    "category": "integration",
                    "type": "tool",
                    "description": "Integrate Docling for document processing",
                    "implementation_notes": "Deploy Docling MCP server in cortex-system on port 3000.",
                    "status": "pending",
                }
            ]
        },
    }
    base.update(header)
    return base
