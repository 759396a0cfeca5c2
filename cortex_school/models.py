"""Records at the system's edges: what ingestion accepts, what stages add.

Ingestion models mirror what the video-learning service really emits; everything
after ingestion is an :class:`Improvement` plus the records stages attach to it
(:class:`Assessment`, :class:`ValidationReport`, :class:`Decision`). All times are
timezone-aware UTC and serialised as ISO-8601.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar, Literal, NewType

from pydantic import BaseModel, ConfigDict, Field, ValidationError

ImprovementId = NewType("ImprovementId", str)

# Characters allowed in anything that ends up in a Redis key or a file path.
VIDEO_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
CATEGORY_PATTERN = r"^[a-z][a-z0-9_-]{0,31}$"
IMPROVEMENT_ID_PATTERN = re.compile(r"^[0-9a-f]{16}$")


def utcnow() -> datetime:
    return datetime.now(UTC)


class Status(StrEnum):
    """Where an improvement is. The allowed moves live in :mod:`cortex_school.states`."""

    RAW = "raw"
    CATEGORIZED = "categorized"
    ASSESSED = "assessed"
    VALIDATED = "validated"
    PENDING_REVIEW = "pending_review"
    APPROVED = "approved"
    REJECTED = "rejected"
    ACKNOWLEDGED = "acknowledged"  # knowledge-only item reviewed by a person; never implemented
    IMPLEMENTING = "implementing"
    COMMITTED = "committed"
    DEPLOYED = "deployed"
    VERIFIED = "verified"
    FAILED = "failed"


class ImprovementType(StrEnum):
    CONCEPT = "concept"  # knowledge only: recorded and reviewed, never implemented
    PATTERN = "pattern"
    IMPLEMENTATION = "implementation"
    ENHANCEMENT = "enhancement"
    TOOL = "tool"
    INTEGRATION = "integration"


class Verdict(StrEnum):
    APPROVE = "approve"  # the expert sees no reason to stop it; the gate still decides
    REVIEW = "review"  # a person should look
    BLOCK = "block"  # must not be implemented as proposed


class Risk(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return list(Risk).index(self)


# ---------------------------------------------------------------------------
# Ingestion format (what the video-learning service emits)
# ---------------------------------------------------------------------------

Relevance = float  # 0..1, validated where used


class ProposalItem(BaseModel):
    """One entry of ``improvements.passive[]`` / ``improvements.active[]``.

    Length caps are applied by the ingester (they come from settings), so this
    model only checks shape and characters.
    """

    model_config = ConfigDict(extra="allow", str_strip_whitespace=True)

    category: str = Field(pattern=CATEGORY_PATTERN)
    type: ImprovementType
    description: str = Field(min_length=1)
    implementation_notes: str = ""
    status: str = Field("pending", max_length=32)
    relevance: float | None = Field(None, ge=0, le=1, strict=True, allow_inf_nan=False)
    auto_approve: bool | None = Field(None, strict=True)
    proposed_at: datetime | None = None


class VideoHeader(BaseModel):
    """The video-level fields of one ingestion document."""

    model_config = ConfigDict(extra="allow", str_strip_whitespace=True)

    video_id: str = Field(pattern=VIDEO_ID_PATTERN)
    title: str = Field(min_length=1)
    relevance: float = Field(ge=0, le=1, strict=True, allow_inf_nan=False)
    description: str | None = None
    analyzed_at: datetime | None = None


# ---------------------------------------------------------------------------
# Records stages add
# ---------------------------------------------------------------------------


class Usage(BaseModel):
    """What one evaluation cost: tokens, wall time, requests (a validation retry is two)."""

    input_tokens: int = 0
    output_tokens: int = 0
    latency_ms: float = 0.0
    requests: int = 0


class Assessment(BaseModel):
    """An expert's verdict on one improvement. Advisory: only the gate approves."""

    model_config = ConfigDict(extra="forbid")

    expert: str
    backend: str  # "offline-rules" (no LLM), "anthropic", "llmd", or "panel" (aggregated)
    model: str
    verdict: Verdict
    risk: Risk
    confidence: float = Field(ge=0, le=1)
    concerns: list[str] = Field(default_factory=list)
    rationale: str
    evaluated_at: datetime = Field(default_factory=utcnow)
    usage: Usage | None = None
    cached: bool = False
    consulted: list[str] = Field(default_factory=list)  # experts behind an aggregated verdict


VERDICT_ORDER: tuple[Verdict, ...] = (Verdict.APPROVE, Verdict.REVIEW, Verdict.BLOCK)


def most_conservative(verdicts: "list[Verdict]") -> Verdict:
    return max(verdicts, key=VERDICT_ORDER.index)


def highest_risk(risks: "list[Risk]") -> Risk:
    return max(risks, key=lambda r: r.rank)


class Finding(BaseModel):
    """One validation check's result."""

    check: str
    conflict: bool
    reason: str
    related_id: str | None = None
    # What the finding rests on: "<object> (<file>)", "<document> § <section>: <sentence>".
    evidence: list[str] = Field(default_factory=list)


class ValidationReport(BaseModel):
    passed: bool
    findings: list[Finding] = Field(default_factory=list)
    validated_at: datetime = Field(default_factory=utcnow)

    @property
    def conflicts(self) -> list[Finding]:
        return [f for f in self.findings if f.conflict]


class Decision(BaseModel):
    """The approval gate's (or a person's) decision, with every reason that applied."""

    approved: bool
    reasons: list[str]
    decided_by: str  # "auto-approval-gate" or "human:<name>"
    decided_at: datetime = Field(default_factory=utcnow)

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)


class TimelineEntry(BaseModel):
    at: datetime
    from_status: str | None
    to_status: str
    actor: str
    reason: str


class Rejection(BaseModel):
    """Input that was refused, as recorded in ``improvements:rejected``."""

    source: str
    location: str
    reason: str
    excerpt: str = ""
    at: datetime = Field(default_factory=utcnow)


# ---------------------------------------------------------------------------
# The improvement itself
# ---------------------------------------------------------------------------


def normalize_text(text: str) -> str:
    """Case-, width- and whitespace-insensitive form used for ids and duplicate checks."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(re.sub(r"[^\w\s]", " ", folded).split())


def fingerprint(description: str) -> str:
    return hashlib.sha256(normalize_text(description).encode()).hexdigest()[:16]


def improvement_id(video_id: str, description: str) -> ImprovementId:
    """Deterministic: the same proposal from the same video is always the same improvement."""
    digest = hashlib.sha256(f"{video_id}\n{normalize_text(description)}".encode()).hexdigest()
    return ImprovementId(digest[:16])


class Delivery(BaseModel):
    """Everything after approval, as the implement, deploy, verify and rollback stages
    record it on the improvement: the commit, where it went, what ArgoCD did, the health
    window, and the revert. Times are ISO-8601; unset means "not reached yet"."""

    model_config = ConfigDict(extra="ignore")

    plan: dict[str, Any] | None = None
    policy_violations: list[Any] = Field(default_factory=list)
    git_commit: str | None = None  # the merge commit on the target branch (or the branch tip)
    git_branch: str | None = None
    git_branch_commit: str | None = None
    git_files: list[str] = Field(default_factory=list)
    merge_pending: bool = False  # a branch that waits for a person to merge it
    # Branch mode, once the merge watch found the person's merge (git_commit is then where
    # it landed): when, and how ("merge commit", "fast-forward", "squash or rebase").
    merge_found_at: datetime | None = None
    merge_kind: str | None = None
    pull_request_url: str | None = None  # GITOPS_OPEN_PULL_REQUEST: the branch's pull request
    pull_request_error: str | None = None  # why it could not be opened (last try)
    leased_namespaces: list[str] = Field(default_factory=list)
    deploy_queued_at: datetime | None = None
    deploy_requested_at: datetime | None = None
    argocd_apps: list[str] = Field(default_factory=list)
    argocd_sync_revision: str | None = None
    deployed_at: datetime | None = None
    health_baseline: dict[str, float] = Field(default_factory=dict)  # "<ns>/<svc>" → p95 seconds
    health_report: dict[str, Any] | None = None
    health_checked_at: datetime | None = None
    verified_at: datetime | None = None
    rollback_requested: str | None = None  # a person's reason
    rollback_commit: str | None = None
    rollback_started_at: datetime | None = None
    rollback_status: str | None = None
    rollback_healthy: bool | None = None
    failure_reason: str | None = None
    failed_at: datetime | None = None

    JSON_FIELDS: ClassVar[tuple[str, ...]] = ("plan", "policy_violations", "git_files", "argocd_apps",
                                              "health_baseline", "health_report")
    BOOL_FIELDS: ClassVar[tuple[str, ...]] = ("merge_pending", "rollback_healthy")
    TIME_FIELDS: ClassVar[tuple[str, ...]] = ("deploy_queued_at", "deploy_requested_at", "deployed_at",
                                              "health_checked_at", "verified_at", "rollback_started_at",
                                              "failed_at", "merge_found_at")

    @classmethod
    def from_hash(cls, data: dict[str, str]) -> "Delivery":
        """The delivery record from the improvement's flat hash fields (a field that does
        not parse is left unset rather than failing the whole improvement)."""
        parsed: dict[str, Any] = {}
        for name in cls.model_fields:
            raw = data.get(name)
            if raw in (None, ""):
                continue
            if name in cls.JSON_FIELDS:
                try:
                    parsed[name] = json.loads(raw)
                except ValueError:
                    continue
            elif name in cls.BOOL_FIELDS:
                parsed[name] = raw == "true"
            elif name == "leased_namespaces":
                parsed[name] = [n for n in raw.split(",") if n]
            else:
                parsed[name] = raw
        try:
            return cls.model_validate(parsed)
        except ValidationError:
            kept = {}
            for name, value in parsed.items():
                try:
                    cls.model_validate({name: value})
                except ValidationError:
                    continue
                kept[name] = value
            return cls.model_validate(kept)

    @property
    def rolling_back(self) -> str | None:
        """Why it is being rolled back (a revert was made or a person asked), else None."""
        if not (self.rollback_commit or self.rollback_requested):
            return None
        return self.failure_reason or self.rollback_requested or "rollback under way"


class Improvement(BaseModel):
    """One proposal on its way through the pipeline."""

    model_config = ConfigDict(extra="ignore")

    id: ImprovementId
    video_id: str
    title: str
    video_description: str | None = None
    analyzed_at: datetime | None = None
    category: str
    type: ImprovementType
    description: str
    implementation_notes: str = ""
    relevance: float = Field(ge=0, le=1)
    relevance_source: Literal["item", "video"] = "video"
    list_kind: Literal["passive", "active"] = "passive"
    source_status: str = "pending"
    auto_approve_hint: bool | None = None  # the service's own flag: recorded, never trusted
    proposed_at: datetime | None = None
    fingerprint: str
    status: Status = Status.RAW
    expert: str | None = None
    secondary_experts: list[str] = Field(default_factory=list)
    routing_reason: str | None = None
    assessment: Assessment | None = None
    validation: ValidationReport | None = None
    decision: Decision | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    # Written by the stages after approval, field by field (never by to_hash).
    delivery: Delivery = Field(default_factory=Delivery)

    @property
    def knowledge_only(self) -> bool:
        return self.type is ImprovementType.CONCEPT

    # -- Redis hash form: flat strings; nested records as JSON ----------------
    def to_hash(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for name, value in self.model_dump(mode="json", exclude={"delivery"}).items():
            if value is None:
                continue
            if isinstance(value, (dict, list)):
                out[name] = json.dumps(value, ensure_ascii=False, sort_keys=True)
            elif isinstance(value, bool):
                out[name] = "true" if value else "false"
            else:
                out[name] = str(value)
        return out

    @classmethod
    def from_hash(cls, data: dict[str, str]) -> "Improvement":
        parsed: dict[str, Any] = dict(data)
        for name in ("secondary_experts", "assessment", "validation", "decision"):
            if parsed.get(name):
                parsed[name] = json.loads(parsed[name])
        if "auto_approve_hint" in parsed:
            parsed["auto_approve_hint"] = parsed["auto_approve_hint"] == "true"
        parsed["delivery"] = Delivery.from_hash(data)
        return cls.model_validate(parsed)
