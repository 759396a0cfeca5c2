"""Turning ingestion documents into improvements, refusing bad input loudly.

One document is one video as the video-learning service emits it. The video
header is checked first (a bad header rejects every proposal in it, each with the
reason); then each proposal on its own, so valid proposals in a file with a bad
one still go through. Every refusal becomes a :class:`Rejection` naming the
source and the field.

No document can make ingestion raise: its size (MAX_FILE_BYTES) is checked before
it is decoded, its nesting depth (MAX_JSON_DEPTH) in one linear scan before it is
parsed, and any parser error (including RecursionError and MemoryError) is a
rejection of the whole document, noted in :attr:`ParseResult.unreadable`.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from cortex_school.bounds import max_json_depth
from cortex_school.models import (
    Improvement,
    ProposalItem,
    Rejection,
    VideoHeader,
    fingerprint,
    improvement_id,
)
from cortex_school.settings import IngestSettings
from cortex_school.states import RESTING
from cortex_school.store.protocol import StateStore

LIST_KINDS: tuple[str, ...] = ("passive", "active")
# C0/C1 controls (but tab, newline, carriage return) and bidi overrides that can
# disguise text in terminals and reviews.
_HOSTILE_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


@dataclass(frozen=True)
class Unreadable:
    """Why a document was refused before anything in it was looked at."""

    kind: str  # too_large, not_utf8, too_deep, malformed_json, or the parser's exception type
    reason: str


@dataclass
class ParseResult:
    improvements: list[Improvement] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    unreadable: Unreadable | None = None


@dataclass
class IngestReport:
    source: str
    created: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    unreadable: Unreadable | None = None

    @property
    def accepted(self) -> int:
        return len(self.created) + len(self.existing)


def _excerpt(value: Any, limit: int = 120) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    text = _HOSTILE_CHARS.sub("?", text).replace("\r", "\\r").replace("\n", "\\n")
    return text if len(text) <= limit else text[:limit] + "…"


def _describe_errors(prefix: str, error: ValidationError) -> list[tuple[str, str]]:
    """(field path, message) per pydantic error, with the offending value shortened."""
    out = []
    for err in error.errors():
        loc = ".".join(str(p) for p in err["loc"])
        path = f"{prefix}.{loc}" if prefix and loc else (prefix or loc or "document")
        message = err["msg"]
        if err["type"] != "missing":
            message += f" (got {_excerpt(err.get('input'), 60)})"
        out.append((path, message))
    return out


def _text_problems(prefix: str, values: dict[str, Any], caps: dict[str, int]) -> list[tuple[str, str]]:
    problems = []
    for name, value in values.items():
        if not isinstance(value, str):
            continue
        if _HOSTILE_CHARS.search(value):
            problems.append((f"{prefix}{name}", "contains control or bidi-override characters"))
        cap = caps.get(name)
        if cap is not None and len(value) > cap:
            problems.append(
                (f"{prefix}{name}", f"is {len(value)} characters; the cap is {cap}")
            )
    return problems


def _byte_size_over(raw: bytes | str, cap: int) -> bool:
    if len(raw) > cap:  # a str has at least as many UTF-8 bytes as characters
        return True
    return isinstance(raw, str) and len(raw.encode("utf-8", "surrogatepass")) > cap


def _load_json(raw: bytes | str, caps: IngestSettings) -> tuple[Any, Unreadable | None]:
    """The parsed document, or why it cannot be parsed; never raises."""
    if _byte_size_over(raw, caps.max_file_bytes):
        cap = caps.max_file_bytes
        return None, Unreadable("too_large", f"document is over {cap} bytes; the cap is {cap}")
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError as exc:
        return None, Unreadable("not_utf8", f"not UTF-8: {exc.reason} at byte {exc.start}")
    try:
        depth = max_json_depth(text)
    except MemoryError:
        return None, Unreadable("MemoryError", "out of memory while scanning the document")
    if depth > caps.max_json_depth:
        return None, Unreadable(
            "too_deep",
            f"arrays/objects nest {depth} levels deep; the cap is {caps.max_json_depth}",
        )
    try:
        return json.loads(text, parse_constant=_refuse_constant), None
    except RecursionError:
        return None, Unreadable("RecursionError", "nested too deeply for the JSON parser")
    except ValueError as exc:  # JSONDecodeError, refused NaN/Infinity, ...
        return None, Unreadable("malformed_json", f"malformed JSON: {exc}")
    except Exception as exc:  # noqa: BLE001 - MemoryError and whatever else a parser may raise: a rejection
        return None, Unreadable(
            type(exc).__name__, f"the JSON parser failed: {type(exc).__name__}: {str(exc)[:300]}"
        )


def parse_document(raw: bytes | str, source: str, caps: IngestSettings) -> ParseResult:
    """Validate one ingestion document; never raises for bad input."""
    result = ParseResult()

    def reject(location: str, reason: str, excerpt: Any = "") -> None:
        result.rejections.append(
            Rejection(source=source, location=location, reason=reason, excerpt=_excerpt(excerpt))
        )

    doc, unreadable = _load_json(raw, caps)
    if unreadable is not None:
        head = raw[:200]
        reject("document", unreadable.reason,
               head.decode("utf-8", "replace") if isinstance(head, bytes) else head)
        result.unreadable = unreadable
        return result
    if not isinstance(doc, dict):
        reject("document", f"expected a JSON object (one video), got {type(doc).__name__}", doc)
        return result

    header_problems: list[tuple[str, str]] = []
    header: VideoHeader | None = None
    try:
        header = VideoHeader.model_validate({k: v for k, v in doc.items() if k != "improvements"})
    except ValidationError as exc:
        header_problems += _describe_errors("", exc)
    header_problems += _text_problems(
        "", {k: doc.get(k) for k in ("title", "description")},
        {"title": caps.max_title_chars, "description": caps.max_description_chars},
    )

    improvements = doc.get("improvements")
    items: list[tuple[str, str, Any]] = []  # (list kind, path, raw item)
    if not isinstance(improvements, dict):
        header_problems.append(
            ("improvements", "missing or not an object with 'passive'/'active' lists")
        )
    else:
        for kind in LIST_KINDS:
            entries = improvements.get(kind, [])
            if not isinstance(entries, list):
                header_problems.append((f"improvements.{kind}", "must be a list"))
                continue
            items += [(kind, f"improvements.{kind}[{i}]", e) for i, e in enumerate(entries)]
        unknown = sorted(set(improvements) - set(LIST_KINDS))
        if unknown:
            header_problems.append(
                (f"improvements.{unknown[0]}", f"unknown proposal list(s) {unknown}; expected passive/active")
            )
        if not items and not header_problems:
            header_problems.append(("improvements", "no proposals in passive[] or active[]"))

    for location, reason in header_problems:
        reject(location, reason)
    header_ok = not header_problems and header is not None

    # Items are checked even under a bad header, so one run shows every problem.
    seen: set[str] = set()
    for kind, path, entry in items:
        if not isinstance(entry, dict):
            reject(path, f"expected an object, got {type(entry).__name__}", entry)
            continue
        problems: list[tuple[str, str]] = []
        item: ProposalItem | None = None
        normalized = dict(entry)
        if isinstance(normalized.get("category"), str):
            normalized["category"] = normalized["category"].strip().lower()
        try:
            item = ProposalItem.model_validate(normalized)
        except ValidationError as exc:
            problems += _describe_errors(path, exc)
        problems += _text_problems(
            f"{path}.", {k: entry.get(k) for k in ("description", "implementation_notes", "category")},
            {"description": caps.max_description_chars, "implementation_notes": caps.max_notes_chars},
        )
        if problems or item is None:
            for location, reason in problems:
                reject(location, reason, entry.get("description", ""))
            continue
        if not header_ok or header is None:
            reject(path, "not ingested because the video header is invalid", item.description)
            continue
        imp_id = improvement_id(header.video_id, item.description)
        if imp_id in seen:
            reject(path, f"same proposal as an earlier entry of this video (id {imp_id})", item.description)
            continue
        seen.add(imp_id)
        result.improvements.append(
            Improvement(
                id=imp_id,
                video_id=header.video_id,
                title=header.title,
                video_description=header.description,
                analyzed_at=header.analyzed_at,
                category=item.category,
                type=item.type,
                description=item.description,
                implementation_notes=item.implementation_notes,
                relevance=item.relevance if item.relevance is not None else header.relevance,
                relevance_source="item" if item.relevance is not None else "video",
                list_kind=kind,
                source_status=item.status,
                auto_approve_hint=item.auto_approve,
                proposed_at=item.proposed_at,
                fingerprint=fingerprint(item.description),
            )
        )
    return result


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a valid JSON number")


Enqueue = Callable[[Improvement], None]


def ingest_document(
    store: StateStore,
    raw: bytes | str,
    source: str,
    *,
    caps: IngestSettings,
    enqueue: Enqueue,
    actor: str = "ingest",
) -> IngestReport:
    """Store every valid proposal once, record every rejection, start the pipeline for new ones.

    An improvement that already exists is not stored again; if it is still in
    flight (not resting) its pipeline is enqueued again, which is safe because
    every stage is idempotent and recovers work whose messages were lost.
    """
    parsed = parse_document(raw, source, caps)
    report = IngestReport(source=source, rejections=parsed.rejections, unreadable=parsed.unreadable)
    for rejection in parsed.rejections:
        store.record_rejection(rejection)
    for improvement in parsed.improvements:
        if store.create(improvement, actor=actor, reason=f"ingested from {source}"):
            report.created.append(improvement.id)
            enqueue(improvement)
            continue
        report.existing.append(improvement.id)
        current = store.get(improvement.id)
        if current is not None and current.status not in RESTING:
            report.resumed.append(improvement.id)
            enqueue(current)
    return report


def _read(stream: Any, max_bytes: int | None) -> bytes:
    """All of ``stream``, or its first ``max_bytes + 1`` bytes: enough to know it is over the cap."""
    return stream.read() if max_bytes is None else stream.read(max_bytes + 1)


def iter_sources(
    paths: Iterable[str], max_bytes: int | None = None
) -> Iterable[tuple[str, bytes | None, str | None]]:
    """(source name, bytes or None, error) for files, directories (*.json) and '-' (stdin).

    With ``max_bytes`` no source is read past ``max_bytes + 1`` bytes, so a huge file or
    stream costs no memory before :func:`parse_document` refuses it as over the cap. A
    file that cannot be read is an error of its own; the other sources still follow.
    """
    for raw_path in paths:
        if raw_path == "-":
            yield "<stdin>", _read(sys.stdin.buffer, max_bytes), None
            continue
        path = Path(raw_path)
        try:
            if path.is_dir():
                files = sorted(p for p in path.iterdir() if p.suffix == ".json" and p.is_file())
            elif path.is_file():
                files = [path]
            else:
                yield str(path), None, "no such file or directory"
                continue
        except OSError as exc:
            yield str(path), None, f"unreadable: {exc.strerror or exc}"
            continue
        if not files:
            yield str(path), None, "directory holds no *.json files"
        for file in files:
            try:
                with file.open("rb") as stream:
                    data = _read(stream, max_bytes)
            except OSError as exc:
                yield str(file), None, f"unreadable: {exc.strerror or exc}"
                continue
            yield str(file), data, None
