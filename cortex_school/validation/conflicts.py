"""Architectural conflicts: the platform's written decisions (documents and manifest
comments) that rule out what an improvement proposes, and related known issues."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from functools import lru_cache
from typing import Any

from cortex_school.experts.base import ExpertFailure
from cortex_school.experts.llm import ExpertUnavailable
from cortex_school.models import Finding, Improvement
from cortex_school.platform_model import Platform
from cortex_school.platform_model.components import build_platform
from cortex_school.platform_model.mentions import mentions as component_mentions
from cortex_school.platform_model.model import Inventory
from cortex_school.validation.base import Check, PlatformCheck
from cortex_school.validation.limits import exceeded, limits
from cortex_school.validation.normative import (
    Proposal,
    Statement,
    against,
    components_named,
    concerns,
    read_proposal,
    statements,
    tokenize,
)
from cortex_school.validation.rag.chunking import improvement_text
from cortex_school.validation.rag.context import RagContext
from cortex_school.validation.rag.judge import LLMJudge


class ArchitecturalConflictCheck(Check):
    """The platform's written decisions against the proposal.

    Statements (:mod:`.normative`) come from three places: the sections retrieval ranks
    nearest the proposal (``statement_k`` of them), any document statement that rules out
    a component the proposal names (found by name, whatever its rank), and the comments in
    the manifests of the components the proposal names (``# Never scale to zero``). Each
    statement the proposal goes against is a conflict citing document, section and
    sentence: fail closed, a person decides. With an LLM backend the judge is shown the
    statements that concern the proposal and answers per statement; it can add conflicts,
    never remove one the rules found (the proposal and the model are both untrusted).
    Related known issues are reported alongside (not as conflicts)."""

    name = "architectural"

    def __init__(self, ctx: RagContext, top_k: int, known_issue_threshold: float,
                 reranker: Any | None = None, judge: LLMJudge | None = None, *,
                 platform: Callable[[], Platform | None] | None = None, statement_k: int | None = None) -> None:
        self.ctx, self.top_k = ctx, top_k
        self.statement_k = statement_k or max(2 * top_k, 10)
        self.known_issue_threshold = known_issue_threshold
        self.reranker = reranker
        self.judge = judge
        self.platform = platform or (lambda: None)
        self._named: tuple[tuple[str, int], list[Statement]] | None = None
        self._per_chunk: tuple[str, dict[str, list[Statement]]] = ("", {})

    def run(self, improvement: Improvement) -> list[Finding]:
        findings: list[Finding] = []
        platform = self.platform() or bare_platform()
        vector = self.ctx.vector(improvement)
        text = PlatformCheck.text(improvement)
        proposal = read_proposal(text, component_mentions(text, platform))
        hits = self.ctx.index.search("docs", vector, self.statement_k * (2 if self.reranker else 1))
        if self.reranker is not None and hits:
            scores = self.reranker.predict([(improvement_text(improvement), h.text) for h in hits])
            hits = [h for _, h in sorted(zip(scores, hits, strict=True), key=lambda p: -p[0])]
        hits = hits[: self.statement_k]
        if not hits:
            findings.append(Finding(check=self.name, conflict=False,
                                    reason="no architecture docs indexed; nothing to compare against"))
        candidates: list[tuple[Statement, str]] = []
        for rank, hit in enumerate(hits, start=1):
            doc, section = str(hit.payload.get("document", "?")), str(hit.payload.get("section", "?"))
            for stmt in statements(hit.text, doc, section, platform, context=heading_components(section, platform)):
                candidates.append((stmt, f"retrieved: section ranked {rank} (similarity {hit.score:.2f})"))
        for stmt in self._named_statements(platform):
            if stmt.names & proposal.used or any(not b.component and b.name in text.lower() for b in stmt.banned):
                candidates.append((stmt, "found by name: it names a component the proposal names"))
        candidates += comment_statements(platform, proposal)
        seen: set[Statement] = set()
        unique: list[tuple[Statement, str]] = []
        for stmt, how in candidates:
            if stmt not in seen:
                seen.add(stmt)
                unique.append((stmt, how))
        flagged: set[tuple[str, str, str]] = set()
        for stmt, how in unique:
            why = against(stmt, proposal, platform)
            if why is None:
                continue
            if (stmt.document, stmt.section, stmt.sentence) in flagged:
                continue  # one finding per sentence
            flagged.add((stmt.document, stmt.section, stmt.sentence))
            findings.append(self._conflict(stmt, f"the proposal {why}", how))
        for rank, hit in enumerate(hits, start=1):  # numeric limits: "below 1Gi per replica"
            doc, section = str(hit.payload.get("document", "?")), str(hit.payload.get("section", "?"))
            for limit in limits(hit.text, doc, section):
                over = exceeded(limit, improvement)
                if over is None or (doc, section, limit.sentence) in flagged:
                    continue
                flagged.add((doc, section, limit.sentence))
                findings.append(self._conflict(
                    Statement(document=doc, section=section, sentence=limit.sentence, kind="limit"),
                    f"the proposal asks for {over}, above its limit of {limit.describe()}",
                    f"retrieved: section ranked {rank} (similarity {hit.score:.2f})"))
        if self.judge is not None:
            shown = [(s, h) for s, h in unique if concerns(s, proposal)][:12]
            if shown:
                for finding in self._ask_judge(improvement, [s for s, _ in shown], [h for _, h in shown]):
                    key = tuple(e.split(": ", 1)[-1] for e in finding.evidence[:3])
                    if not finding.conflict or key not in flagged:
                        findings.append(finding)
        if not any(f.conflict for f in findings) and hits:
            findings.append(Finding(check=self.name, conflict=False,
                                    reason=f"no decision rules it out ({len(unique)} statements read in the top "
                                           f"{len(hits)} sections, by name and in the components' manifests)"))
        for issue in self.ctx.index.search("known_issues", vector, 1):
            if issue.score >= self.known_issue_threshold:
                findings.append(Finding(check="known_issue", conflict=False,
                                        reason=f"related known issue: {issue.payload.get('section')} "
                                               f"(similarity {issue.score:.2f})"))
        return findings

    def _conflict(self, stmt: Statement, why: str, how: str) -> Finding:
        return Finding(check=self.name, conflict=True, related_id=f"{stmt.document}#{stmt.section}"[:200],
                       reason=(f"architectural conflict: {stmt.document} § {stmt.section} says: "
                               f"\"{stmt.sentence[:300]}\"; {why}")[:1000],
                       evidence=[f"document: {stmt.document}", f"section: {stmt.section}",
                                 f"sentence: {stmt.sentence}", how])

    def _named_statements(self, platform: Platform) -> list[Statement]:
        """Every statement of the docs corpus that names a component or bans something,
        cached per corpus content; each chunk is parsed once per platform revision (a docs
        re-index re-parses only the chunks that changed)."""
        payloads = self.ctx.index.inventory("docs")
        revision = platform.inventory.revision or platform.inventory.root
        key = (revision, hash(tuple(sorted(str(p.get("content_hash", "")) for p in payloads))))
        if self._named is None or self._named[0] != key:
            if self._per_chunk[0] != revision:
                self._per_chunk = (revision, {})
            cache = self._per_chunk[1]
            found: list[Statement] = []
            for p in payloads:
                chunk_key = f"{p.get('source', '')}\x00{p.get('content_hash', '')}"
                if chunk_key not in cache:
                    cache[chunk_key] = [
                        stmt for stmt in statements(str(p.get("text", "")), str(p.get("document", "?")),
                                                    str(p.get("section", "?")), platform,
                                                    context=heading_components(str(p.get("section", "")), platform))
                        if stmt.names or stmt.banned]
                found += cache[chunk_key]
            if len(cache) > 4 * max(1, len(payloads)):  # chunks that left the corpus
                live = {f"{p.get('source', '')}\x00{p.get('content_hash', '')}" for p in payloads}
                self._per_chunk = (revision, {k: v for k, v in cache.items() if k in live})
            self._named = (key, found)
        return self._named[1]

    def _ask_judge(self, improvement: Improvement, shown: list[Statement], how: list[str]) -> list[Finding]:
        assert self.judge is not None
        try:
            verdicts = self.judge.verdicts(improvement, shown)
        except (ExpertUnavailable, ExpertFailure) as exc:
            # The rules above still decided; say that the model could not be asked.
            return [Finding(check=self.name, conflict=False,
                            reason=f"LLM contradiction judge unavailable ({exc}); offline rules applied")]
        out = []
        for number, reason in verdicts:
            stmt = shown[number - 1]
            out.append(self._conflict(stmt, f"{self.judge.name}: {reason}", how[number - 1]))
        return out


MAX_COMMENTS = 500  # comments read per validation, over all the components a proposal names
_comment_cache: dict[tuple[str, str, int, str], list[Statement]] = {}


def comment_statements(platform: Platform, proposal: Proposal) -> list[tuple[Statement, str]]:
    """Statements in the comments of the files that define the components the proposal
    names (the component is what each one is about). At most :data:`MAX_COMMENTS` per
    validation; each comment is parsed once per revision."""
    out: list[tuple[Statement, str]] = []
    revision = f"{platform.inventory.root}@{platform.inventory.revision}"
    if _comment_cache and (next(iter(_comment_cache))[0] != revision or len(_comment_cache) > 50_000):
        _comment_cache.clear()
    budget = MAX_COMMENTS
    for name in sorted(proposal.used):
        component = platform.components.get(name)
        if component is None or budget <= 0:
            continue
        files = {o.file for o in component.objects if not o.file.startswith("live:")}
        for comment in platform.inventory.comments_in(files)[:budget]:
            budget -= 1
            key = (revision, comment.file, comment.line, name)
            if key not in _comment_cache:
                found = []
                for stmt in statements(comment.text, comment.file, f"line {comment.line}", platform, context=[name]):
                    if comment.setting:  # cite the setting it is written on
                        stmt = replace(stmt, sentence=f"{comment.setting}  # {stmt.sentence}"[:600])
                    found.append(stmt)
                _comment_cache[key] = found
            out += [(stmt, f"comment in {comment.describe()}, a file of {component.title}")
                    for stmt in _comment_cache[key]]
    return out


def heading_components(section: str, platform: Platform) -> list[str]:
    tokens, _ = tokenize(section)
    return [n for _, _, n in components_named(tokens, platform)]


@lru_cache(maxsize=1)
def bare_platform() -> Platform:
    """No repository: the catalogue alone names components."""
    return build_platform(Inventory(root=""), distribution=None)
