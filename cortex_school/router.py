"""The MoE router: which expert evaluates an improvement.

Primary routing is the design's, exactly: the category map, with keyword overrides
for security words and then database words in the description, and the
architecture expert for anything else. Secondary experts are every other domain
the text touches; they are recorded so a fan-out can consult them too.
"""

from __future__ import annotations

import re

from pydantic import BaseModel

from cortex_school.settings import EXPERTS

CATEGORY_TO_EXPERT: dict[str, str] = {name: name for name in EXPERTS}
DEFAULT_EXPERT = "architecture"

# The design's overrides: plain substring tests on the lower-cased description.
SECURITY_WORDS: tuple[str, ...] = ("security", "auth", "encrypt")
DATABASE_WORDS: tuple[str, ...] = ("database", "postgres", "redis")

# Word-prefix cues for secondary experts (title, description and notes).
DOMAIN_CUES: dict[str, tuple[str, ...]] = {
    "architecture": ("architecture", "statefulset", "daemonset", "storage", "tiering",
                     "scalab", "microservice", "replicas"),
    "integration": ("integrat", "mcp", "third-party", "sdk", "plugin", "webhook", "api"),
    "security": ("security", "auth", "encrypt", "rbac", "tls", "secret", "networkpolic",
                 "certificate", "vulnerab", "cve"),
    "database": ("database", "postgres", "redis", "sql", "migration", "backup",
                 "replication", "schema"),
    "networking": ("ingress", "traefik", "dns", "load balanc", "service mesh", "linkerd",
                   "bgp", "gateway", "egress"),
    "monitoring": ("monitor", "prometheus", "grafana", "alert", "dashboard", "metric",
                   "observab", "tracing", "servicemonitor"),
}
_CUE_PATTERNS: dict[str, re.Pattern[str]] = {
    expert: re.compile(r"\b(?:" + "|".join(re.escape(c) for c in cues) + ")", re.IGNORECASE)
    for expert, cues in DOMAIN_CUES.items()
}


class Routing(BaseModel):
    expert: str
    secondary_experts: list[str]
    reason: str


def route_to_expert(category: str, description: str) -> tuple[str, str]:
    """The design's ``route_to_expert``: (expert, why)."""
    description_lower = description.lower()
    for word in SECURITY_WORDS:
        if word in description_lower:
            return "security", f"description mentions {word!r} (security keyword override)"
    for word in DATABASE_WORDS:
        if word in description_lower:
            return "database", f"description mentions {word!r} (database keyword override)"
    if category in CATEGORY_TO_EXPERT:
        return CATEGORY_TO_EXPERT[category], f"category {category!r}"
    return DEFAULT_EXPERT, f"category {category!r} has no expert; architecture is the default"


def route(category: str, description: str, implementation_notes: str = "") -> Routing:
    expert, reason = route_to_expert(category, description)
    text = f"{description}\n{implementation_notes}"
    secondary = [
        name
        for name in EXPERTS
        if name != expert
        and (_CUE_PATTERNS[name].search(text) or CATEGORY_TO_EXPERT.get(category) == name)
    ]
    return Routing(expert=expert, secondary_experts=secondary, reason=reason)


def panel(expert: str, secondary_experts: list[str], *, fan_out: bool) -> list[str]:
    """Who evaluates: the routed expert, plus the secondaries when fan-out is on."""
    return [expert, *secondary_experts] if fan_out else [expert]
