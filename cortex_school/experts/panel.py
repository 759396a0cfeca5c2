"""Combining several experts' assessments: the most conservative verdict wins, the
highest risk wins, every concern is kept (named by its expert)."""

from __future__ import annotations

from cortex_school.models import Assessment, Usage, highest_risk, most_conservative


def combine(assessments: list[Assessment], *, primary: str) -> Assessment:
    if not assessments:
        raise ValueError("nothing to combine")
    if len(assessments) == 1:
        return assessments[0]
    ordered = sorted(assessments, key=lambda a: a.expert != primary)  # stable: primary first
    usage = Usage()
    for a in ordered:
        if a.usage and not a.cached:
            usage.input_tokens += a.usage.input_tokens
            usage.output_tokens += a.usage.output_tokens
            usage.requests += a.usage.requests
            usage.latency_ms = max(usage.latency_ms, a.usage.latency_ms)  # they ran in parallel
    return Assessment(
        expert=primary,
        backend="panel:" + "+".join(sorted({a.backend for a in ordered})),
        model="+".join(dict.fromkeys(a.model for a in ordered)),
        verdict=most_conservative([a.verdict for a in ordered]),
        risk=highest_risk([a.risk for a in ordered]),
        confidence=min(a.confidence for a in ordered),
        concerns=[f"{a.expert}: {c}" for a in ordered for c in a.concerns],
        rationale="\n".join(f"[{a.expert}] {a.rationale}" for a in ordered),
        usage=usage,
        cached=all(a.cached for a in ordered),
        consulted=[a.expert for a in ordered],
    )
