"""Architectural conflicts: the platform's documents and known issues that forbid or
warn against what an improvement proposes."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from cortex_school.experts.base import ExpertFailure
from cortex_school.experts.llm import ExpertUnavailable
from cortex_school.models import Finding, Improvement
from cortex_school.validation.base import (
    Check,
)
from cortex_school.validation.rag.chunking import improvement_text
from cortex_school.validation.rag.context import RagContext
from cortex_school.validation.rag.index import Hit
from cortex_school.validation.rag.judge import LLMJudge

# -- 2. architectural conflicts -----------------------------------------------------------

_SUBJECT = r"(?P<term>[A-Za-z][\w.-]*(?:[ -][A-Z][\w.-]*)?)"
PROHIBITIONS: tuple[re.Pattern[str], ...] = (
    re.compile(_SUBJECT + r"\s+(?:is|are)\s+(?:now\s+)?(?:deprecated|forbidden|banned|prohibited|"
               r"not allowed|not permitted|replaced|superseded)\b"),
    re.compile(r"\b(?:do not|don't|never|must not|will not|shall not|may not)\s+(?:use|deploy|install|"
               r"run|add|introduce|adopt)\s+" + _SUBJECT),
)
_NOT_A_COMPONENT = {"it", "this", "that", "which", "there", "what", "these", "those", "anything",
                    "something", "everything", "nothing", "access", "traffic", "root", "the", "a", "an"}


@dataclass(frozen=True)
class Prohibition:
    term: str
    sentence: str


def prohibitions(text: str) -> list[Prohibition]:
    found = []
    for sentence in re.split(r"(?<=[.!?])\s+|\n+", text):
        for pattern in PROHIBITIONS:
            for match in pattern.finditer(sentence):
                term = match.group("term").strip(" .-")
                if term.lower() not in _NOT_A_COMPONENT and len(term) >= 3:
                    found.append(Prohibition(term=term, sentence=sentence.strip()))
    return found


def mentions(text: str, term: str) -> bool:
    return re.search(r"(?<![\w-])" + re.escape(term) + r"(?![\w-])", text, re.IGNORECASE) is not None


class ArchitecturalConflictCheck(Check):
    """Top-k architecture chunks; the offline judge flags a proposal that uses a component
    a document declares deprecated, replaced, forbidden or not allowed. Related known
    issues are reported alongside (not as conflicts)."""

    name = "architectural"

    def __init__(self, ctx: RagContext, top_k: int, known_issue_threshold: float,
                 reranker: Any | None = None, judge: LLMJudge | None = None) -> None:
        self.ctx, self.top_k = ctx, top_k
        self.known_issue_threshold = known_issue_threshold
        self.reranker = reranker
        self.judge = judge

    def run(self, improvement: Improvement) -> list[Finding]:
        findings: list[Finding] = []
        vector = self.ctx.vector(improvement)
        text = f"{improvement.description}\n{improvement.implementation_notes}"
        hits = self.ctx.index.search("docs", vector, self.top_k * (2 if self.reranker else 1))
        if self.reranker is not None and hits:
            scores = self.reranker.predict([(improvement_text(improvement), h.text) for h in hits])
            hits = [h for _, h in sorted(zip(scores, hits, strict=True), key=lambda p: -p[0])]
        hits = hits[: self.top_k]
        if not hits:
            findings.append(Finding(check=self.name, conflict=False,
                                    reason="no architecture docs indexed; nothing to compare against"))
        for hit in hits:
            for rule in prohibitions(hit.text):
                if mentions(text, rule.term):
                    doc, section = hit.payload.get("document", "?"), hit.payload.get("section", "?")
                    findings.append(Finding(
                        check=self.name, conflict=True, related_id=f"{doc}#{section}",
                        reason=f"architectural conflict: {doc} § {section} says: \"{rule.sentence}\"",
                    ))
        if self.judge is not None and hits:
            findings += self._ask_judge(improvement, hits, findings)
        if not any(f.conflict for f in findings) and hits:
            findings.append(Finding(check=self.name, conflict=False,
                                    reason=f"no contradiction in the top {len(hits)} architecture sections"))
        for issue in self.ctx.index.search("known_issues", vector, 1):
            if issue.score >= self.known_issue_threshold:
                findings.append(Finding(check="known_issue", conflict=False,
                                        reason=f"related known issue: {issue.payload.get('section')} "
                                               f"(similarity {issue.score:.2f})"))
        return findings


    def _ask_judge(self, improvement: Improvement, hits: list[Hit], so_far: list[Finding]) -> list[Finding]:
        assert self.judge is not None
        try:
            verdicts = self.judge.contradictions(improvement, hits)
        except (ExpertUnavailable, ExpertFailure) as exc:
            # The rules above still decided; say that the model could not be asked.
            return [Finding(check=self.name, conflict=False,
                            reason=f"LLM contradiction judge unavailable ({exc}); offline rules applied")]
        seen = {f.related_id for f in so_far if f.conflict}
        out = []
        for hit, reason in verdicts:
            doc, section = hit.payload.get("document", "?"), hit.payload.get("section", "?")
            if f"{doc}#{section}" in seen:
                continue
            seen.add(f"{doc}#{section}")
            out.append(Finding(check=self.name, conflict=True, related_id=f"{doc}#{section}",
                               reason=f"architectural conflict: {doc} § {section} ({self.judge.name}): {reason}"))
        return out
