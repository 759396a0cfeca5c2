"""The deterministic offline expert: explicit rules, no LLM.

It exists so the whole pipeline runs and is tested with no API key. Every
assessment it writes says ``backend="offline-rules"``; nobody should mistake it
for a model's judgement. The rules are deliberately conservative: anything that
looks like it widens privileges or destroys data is blocked, and its concerns say
which words triggered what.

The rules read the video title, the description and the implementation notes,
each first brought to one canonical form by :func:`normalise` (NFKC, invisible
characters removed, combining marks stripped, look-alike letters folded to Latin,
whitespace collapsed), so zero-width characters, soft hyphens, fullwidth letters
and Cyrillic or Greek homoglyphs cannot hide a word from them. They are also the
guardrail over every other expert's answer (:func:`guard`), fresh or cached.

Every pattern is linear-time: no nested unbounded quantifiers, bounded gaps.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

from confusable_homoglyphs.confusables import confusables_data

from cortex_school.experts.base import Expert
from cortex_school.experts.profiles import PROFILES
from cortex_school.models import (
    Assessment,
    Improvement,
    ImprovementType,
    Risk,
    Verdict,
    highest_risk,
    most_conservative,
)

OFFLINE_BACKEND = "offline-rules"
OFFLINE_MODEL = "offline-rules-v2"
GUARDRAIL_PREFIX = "guardrail: "

# ---------------------------------------------------------------------------
# Normalisation
# ---------------------------------------------------------------------------

# Zero-width and joiner characters, word joiner and invisible operators, BOM, soft
# hyphen, Mongolian vowel separator, bidi embeddings/overrides and isolates.
_INVISIBLE = (
    [*range(0x200B, 0x2010), *range(0x2060, 0x2065), 0xFEFF, 0x00AD, 0x180E,
     *range(0x202A, 0x202F), *range(0x2066, 0x206A)]
)
# Unicode tag characters (U+E0020..U+E007E) mirror ASCII and are used to smuggle
# invisible text: reveal it so the rules read what a model might.
_TAGS = {cp: chr(cp - 0xE0000) for cp in range(0xE0020, 0xE007F)}
_WHITESPACE = re.compile(r"\s+")


@lru_cache(maxsize=1)
def _fold_table() -> dict[int, str]:
    """Non-ASCII character → the ASCII text it is confusable with (Unicode TR39 data
    shipped by ``confusable-homoglyphs``).

    TR39's prototype for capital I is ``l`` (they look alike); where a capital's
    prototype disagrees with its lowercase form's, the lowercase one wins, so Cyrillic
    ``І`` becomes ``i`` (via ``і``) and matches the rules as a reader sees it.
    """

    def ascii_prototype(char: str) -> str | None:
        for glyph in confusables_data.get(char, ()):
            target = glyph["c"]
            if target.isascii() and target.strip():
                return target
        return None

    table: dict[int, str] = {}
    for char in confusables_data:
        if len(char) != 1 or char.isascii():
            continue
        target = ascii_prototype(char)
        lower = char.lower()
        if len(lower) == 1 and lower != char:
            via_lower = ascii_prototype(lower)
            if via_lower is not None and (target is None or target.lower() != via_lower.lower()):
                target = via_lower
        if target is not None:
            table[ord(char)] = target
    for cp in _INVISIBLE:
        table[cp] = ""
    table.update(_TAGS)
    return table


def normalise(text: str) -> str:
    """The canonical form the rules read. Linear in the length of ``text``."""
    text = unicodedata.normalize("NFKC", text).translate(_fold_table())
    # Strip combining marks (accent stuffing) and any remaining format characters.
    decomposed = unicodedata.normalize("NFKD", text)
    if not decomposed.isascii():
        decomposed = "".join(
            c for c in decomposed if unicodedata.category(c) not in ("Mn", "Me", "Cf")
        )
        # Letters that only look Latin once their marks are gone (e.g. Cyrillic й → и).
        decomposed = decomposed.translate(_fold_table())
    return _WHITESPACE.sub(" ", decomposed).strip()


def guarded_text(improvement: Improvement) -> str:
    """Everything the rules read: title, description and notes, each normalised."""
    return "\n".join(
        normalise(part)
        for part in (improvement.title, improvement.description, improvement.implementation_notes)
    )


# ---------------------------------------------------------------------------
# Rules (applied to normalised text: single spaces, fields on separate lines)
# ---------------------------------------------------------------------------

_SHELL_NAMES = r"(?:ba|z|k|da|fi|tc|c)?sh|python[0-9.]{0,4}|perl|ruby|node|php"
_SHELL = r"(?:" + _SHELL_NAMES + r")\b"
_SHELL_PATH = r"(?:sudo (?:-[\w-]{1,12} ){0,3})?(?:/usr)?(?:/local)?(?:/s?bin/)?(?:env )?"
_FETCH = r"\b(?:curl|wget)\b"
_OVERRIDE_VERB = r"\b(?:ignore|disregard|forget|override|overrule|bypass)"
_FILLER = r"(?:(?:the|all|any|of|these|those|my|your|its|earlier|preceding|previous|prior|above|system|safety|given|existing) ){0,4}"
_QUALIFIER = r"(?:previous|prior|above|your|all|earlier|preceding|system|safety)"
_DIRECTIVE = r"(?:instructions?|rules|guidelines|guardrails?|prompts?|directives|policies|constraints)\b"

BLOCKING_RULES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(p, re.IGNORECASE), concern)
    for p, concern in (
        (r"\bprivileged\b", "asks for a privileged container"),
        (r"\bhost ?network\b", "asks for the host network namespace"),
        (r"\bhost ?path\b", "mounts a host path into a pod"),
        (r"\bhost ?pid\b", "shares the host PID namespace"),
        (r"cluster-admin", "binds cluster-admin"),
        (r"\b(?:disable|turn off|skip)\b[^.]{0,40}\b(?:tls|auth\w{0,20}|rbac|verification)\b",
         "disables TLS, authentication or RBAC"),
        (r"\bdrop (?:table|database|schema)\b|\btruncate table\b", "destroys data"),
        (r"\brm -rf\b|\bdelete (?:the )?namespace\b", "deletes resources wholesale"),
        (_FETCH + r"[^|\n]{0,300}\|(?:[^|\n]{0,100}\|){0,2} ?" + _SHELL_PATH + _SHELL,
         "pipes a download into a shell or interpreter"),
        (r"\b(?:" + _SHELL_NAMES + r"|eval|source) (?:-[\w-]{1,12} ){0,3}[\"']{0,2}[<$]\( ?"
         r"(?:sudo )?(?:curl|wget)\b",
         "runs a download in a shell or interpreter"),
        (r"0\.0\.0\.0/0", "opens traffic to the whole internet"),
        (r"chmod 777", "makes files world-writable"),
        (_OVERRIDE_VERB + r" " + _FILLER + _QUALIFIER + r" " + _FILLER + _DIRECTIVE,
         "contains text that tries to instruct the evaluator"),
        (_OVERRIDE_VERB + r" (?:everything|anything|all) (?:above|before|previously|prior|said)\b",
         "contains text that tries to instruct the evaluator"),
        (r"\byou are now\b|\bnew (?:system )?instructions\b|\bfrom now on,? you\b",
         "contains text that tries to instruct the evaluator"),
    )
)

# (pattern, concern, risk floor) pairs that raise risk without blocking.
RISK_RULES: tuple[tuple[re.Pattern[str], str, Risk], ...] = tuple(
    (re.compile(p, re.IGNORECASE), concern, risk)
    for p, concern, risk in (
        (r"\bmigrat\w{0,20}|\bschema change", "changes a data schema: needs a tested backup first",
         Risk.HIGH),
        (r"\bsecret|\bcredential|\bapi[ _-]?key|\btoken\b",
         "handles credentials: must use sealed or external secrets, never values", Risk.HIGH),
        (r":latest\b", "uses a floating :latest image tag", Risk.MEDIUM),
        (r"\bcluster ?role\b", "asks for cluster-wide permissions", Risk.HIGH),
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
        text = guarded_text(improvement)
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


def guard(improvement: Improvement, assessment: Assessment, *, expert: str | None = None) -> Assessment:
    """Another expert's assessment with the offline rules applied on top of it.

    The verdict becomes the more conservative of the two and the risk the higher, and
    the rules' concerns are added (prefixed ``guardrail:``, once each), so an answer
    talked into leniency by the proposal's own text, or replayed from the evaluation
    cache, cannot lower what the rules see. ``expert`` names the profile whose
    baseline risk applies (default: the assessment's expert).
    """
    rules = OfflineExpert(expert or assessment.expert).evaluate(improvement)
    concerns = list(assessment.concerns)
    concerns += [f"{GUARDRAIL_PREFIX}{c}" for c in rules.concerns
                 if f"{GUARDRAIL_PREFIX}{c}" not in assessment.concerns]
    verdict = most_conservative([assessment.verdict, rules.verdict])
    risk = highest_risk([assessment.risk, rules.risk])
    rationale = assessment.rationale
    if verdict != assessment.verdict or risk != assessment.risk:
        rationale += (
            f" [guardrail {rules.model}: model said {assessment.verdict.value}/"
            f"{assessment.risk.value}, recorded {verdict.value}/{risk.value}]"
        )
    return assessment.model_copy(
        update={"verdict": verdict, "risk": risk, "concerns": concerns, "rationale": rationale}
    )
