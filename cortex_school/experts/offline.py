"""The deterministic offline expert: explicit rules, no LLM.

It exists so the whole pipeline runs and is tested with no API key. Every
assessment it writes says ``backend="offline-rules"``; nobody should mistake it
for a model's judgement. The rules are deliberately conservative: anything that
looks like it widens privileges or destroys data is blocked, and its concerns say
which words triggered what.
"""

from __future__ import annotations

import re

from cortex_school.experts.base import Expert
from cortex_school.experts.profiles import PROFILES
from cortex_school.models import Assessment, Improvement, ImprovementType, Risk, Verdict

OFFLINE_BACKEND = "offline-rules"
OFFLINE_MODEL = "offline-rules-v1"

# (pattern, concern) pairs that block: the change must not be made as proposed.
BLOCKING_RULES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(p, re.IGNORECASE), concern)
    for p, concern in (
        (r"\bprivileged\b", "asks for a privileged container"),
        (r"\bhost ?network\b|\bhostNetwork\b", "asks for the host network namespace"),
        (r"\bhost ?path\b|\bhostPath\b", "mounts a host path into a pod"),
        (r"\bhostPID\b|\bhost pid\b", "shares the host PID namespace"),
        (r"cluster-admin", "binds cluster-admin"),
        (r"\b(disable|turn off|skip)\b[^.]{0,40}\b(tls|auth\w*|rbac|verification)\b",
         "disables TLS, authentication or RBAC"),
        (r"\bdrop (table|database|schema)\b|\btruncate table\b", "destroys data"),
        (r"\brm -rf\b|\bdelete (the )?namespace\b", "deletes resources wholesale"),
        (r"curl [^|\n]*\|\s*(ba)?sh\b", "pipes a download into a shell"),
        (r"0\.0\.0\.0/0", "opens traffic to the whole internet"),
        (r"chmod 777", "makes files world-writable"),
        (r"\b(ignore|disregard) (all |any )?(previous|prior|above) (instructions|rules)\b",
         "contains text that tries to instruct the evaluator"),
    )
)

# (pattern, concern, risk floor) pairs that raise risk without blocking.
RISK_RULES: tuple[tuple[re.Pattern[str], str, Risk], ...] = tuple(
    (re.compile(p, re.IGNORECASE), concern, risk)
    for p, concern, risk in (
        (r"\bmigrat\w*|\bschema change", "changes a data schema: needs a tested backup first",
         Risk.HIGH),
        (r"\bsecret|\bcredential|\bapi[ _-]?key|\btoken\b",
         "handles credentials: must use sealed or external secrets, never values", Risk.HIGH),
        (r":latest\b", "uses a floating :latest image tag", Risk.MEDIUM),
        (r"\bcluster ?role\b|\bClusterRole\b", "asks for cluster-wide permissions", Risk.HIGH),
        (r"\bexternal\b|\bthird[- ]party\b|\bsaas\b", "depends on an external service",
         Risk.MEDIUM),
        (r"\bcrd\b|\bcustom resource\b|\boperator\b", "installs cluster-wide machinery",
         Risk.MEDIUM),
    )
)


class OfflineExpert(Expert):
    """Rule-based stand-in for an LLM expert (named as offline in every record)."""

    backend = OFFLINE_BACKEND

    def __init__(self, name: str) -> None:
        super().__init__(name, OFFLINE_MODEL)
        self.profile = PROFILES[name]

    def evaluate(self, improvement: Improvement) -> Assessment:
        text = f"{improvement.description}\n{improvement.implementation_notes}"
        risk = self.profile.baseline_risk
        concerns: list[str] = []
        blocked = False

        for pattern, concern in BLOCKING_RULES:
            if match := pattern.search(text):
                concerns.append(f"{concern} ({match.group(0)!r})")
                blocked = True
        for pattern, concern, floor in RISK_RULES:
            if match := pattern.search(text):
                concerns.append(f"{concern} ({match.group(0)!r})")
                risk = max(risk, floor, key=lambda r: r.rank)
        if blocked:
            risk = Risk.CRITICAL
        if improvement.knowledge_only:
            concerns.append("knowledge-only (type concept): nothing to implement")
        if len(improvement.implementation_notes) < 20 and not improvement.knowledge_only:
            concerns.append("implementation notes too thin to act on safely")

        if blocked:
            verdict = Verdict.BLOCK
        elif risk is Risk.CRITICAL:
            verdict = Verdict.REVIEW
        else:
            verdict = Verdict.APPROVE

        # Fewer matched rules and richer notes make the rules' reading more reliable.
        confidence = 0.75 - 0.05 * len(concerns) + min(len(improvement.implementation_notes), 400) / 2000
        confidence = round(min(0.95, max(0.3, confidence)), 2)
        criteria = ", ".join(self.profile.evaluates)
        rationale = (
            f"Offline rules ({OFFLINE_MODEL}) for the {self.name} expert, judging {criteria}: "
            f"{improvement.type.value} proposal in category {improvement.category!r}; "
            f"{len(concerns)} concern(s); baseline risk {self.profile.baseline_risk.value}, "
            f"assessed {risk.value}."
        )
        if improvement.type is ImprovementType.INTEGRATION and verdict is Verdict.APPROVE:
            rationale += " Integrations still go to a person at the approval gate."
        return Assessment(
            expert=self.name,
            backend=self.backend,
            model=self.model,
            verdict=verdict,
            risk=risk,
            confidence=confidence,
            concerns=concerns,
            rationale=rationale,
        )
