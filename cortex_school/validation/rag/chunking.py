"""Splitting the corpora into chunks that keep where they came from.

* Markdown (architecture docs, known issues): split on headings so each chunk keeps
  its document and section; long sections are split again with overlap.
* GitOps YAML: one chunk per Kubernetes resource, with kind, name, namespace,
  images, ports and labels as payload.
* Improvements: one chunk per improvement (the history corpus).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml
from langchain_text_splitters import (
    MarkdownHeaderTextSplitter,
    RecursiveCharacterTextSplitter,
)
from pydantic import BaseModel, Field

from cortex_school.models import Improvement

_NAMESPACE = uuid.UUID("6f1c7a52-3d7e-4c0b-9a51-2b8c4f1e9d30")
_HEADERS = [("#", "h1"), ("##", "h2"), ("###", "h3")]
_SECTION_SPLITTER = RecursiveCharacterTextSplitter(chunk_size=1200, chunk_overlap=150)


class Chunk(BaseModel):
    corpus: str
    source: str  # file path relative to the indexed root, or an improvement id
    key: str  # where inside the source (section, kind/namespace/name, ...)
    text: str
    payload: dict[str, Any] = Field(default_factory=dict)

    @property
    def id(self) -> str:
        return str(uuid.uuid5(_NAMESPACE, f"{self.corpus}|{self.source}|{self.key}"))

    @property
    def content_hash(self) -> str:
        material = self.text + "\x1f" + json.dumps(self.payload, sort_keys=True, default=str)
        return hashlib.sha256(material.encode()).hexdigest()[:24]


def chunk_markdown(text: str, source: str, corpus: str) -> list[Chunk]:
    splitter = MarkdownHeaderTextSplitter(headers_to_split_on=_HEADERS, strip_headers=False)
    chunks: list[Chunk] = []
    for section_doc in splitter.split_text(text):
        meta = section_doc.metadata
        section = " > ".join(meta[h] for h in ("h1", "h2", "h3") if h in meta) or "(top)"
        for i, piece in enumerate(_SECTION_SPLITTER.split_text(section_doc.page_content)):
            chunks.append(Chunk(
                corpus=corpus, source=source, key=f"{section}#{i}", text=piece,
                payload={"document": source, "section": section},
            ))
    return chunks


def _fields(node: Any) -> Iterator[tuple[str, Any]]:
    """Every (key, value) pair anywhere inside a manifest."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield str(key), value
            yield from _fields(value)
    elif isinstance(node, list):
        for value in node:
            yield from _fields(value)


def _images(node: Any) -> list[str]:
    return [v for k, v in _fields(node) if k == "image" and isinstance(v, str)]


def _ports(node: Any) -> list[int]:
    return sorted({v for k, v in _fields(node)
                   if k in ("containerPort", "port", "targetPort") and isinstance(v, int)})


def image_repository(image: str) -> str:
    """``quay.io/prometheus-operator/prometheus-operator:v0.77`` → ``prometheus-operator``."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[0].lower()


def chunk_manifests(text: str, source: str) -> tuple[list[Chunk], list[str]]:
    """(chunks, problems): a file that does not parse is reported, never half-indexed."""
    try:
        documents = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        return [], [f"{source}: not valid YAML: {str(exc)[:200]}"]
    chunks: list[Chunk] = []
    problems: list[str] = []
    for position, doc in enumerate(documents):
        if not isinstance(doc, dict) or "kind" not in doc:
            problems.append(f"{source}: document {position} is not a Kubernetes object")
            continue
        meta = doc.get("metadata") or {}
        kind, name = str(doc["kind"]), str(meta.get("name", f"unnamed-{position}"))
        namespace = str(meta.get("namespace", ""))
        images = _images(doc.get("spec", {}))
        ports = _ports(doc.get("spec", {}))
        labels = {str(k): str(v) for k, v in (meta.get("labels") or {}).items()}
        summary = (
            f"{kind} {name}" + (f" in namespace {namespace}" if namespace else "")
            + (f"; images {', '.join(images)}" if images else "")
            + (f"; ports {', '.join(map(str, ports))}" if ports else "")
            + (f"; labels {', '.join(f'{k}={v}' for k, v in labels.items())}" if labels else "")
        )
        body = yaml.safe_dump(doc, sort_keys=False)[:1500]
        chunks.append(Chunk(
            corpus="gitops", source=source, key=f"{kind}/{namespace}/{name}",
            text=f"{summary}\n{body}",
            payload={"kind": kind, "name": name, "namespace": namespace,
                     "api_version": str(doc.get("apiVersion", "")), "images": images,
                     "image_repositories": sorted({image_repository(i) for i in images}),
                     "ports": ports, "labels": labels, "file": source},
        ))
    return chunks, problems


def improvement_text(improvement: Improvement) -> str:
    """The one text an improvement is embedded as (for every check and for the history)."""
    notes = improvement.implementation_notes[:400]
    return f"{improvement.category}: {improvement.description}. {notes}".strip()


def improvement_chunk(improvement: Improvement) -> Chunk:
    return Chunk(
        corpus="improvements", source=improvement.id, key="proposal",
        text=improvement_text(improvement),
        payload={"improvement_id": improvement.id, "video_id": improvement.video_id,
                 "category": improvement.category, "description": improvement.description[:300]},
    )


def iter_files(root: Path, suffixes: Iterable[str]) -> list[Path]:
    wanted = tuple(suffixes)
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in wanted
                  and not any(part.startswith(".") for part in p.relative_to(root).parts))


def chunk_docs_dir(root: Path, corpus: str = "docs") -> list[Chunk]:
    return [c for f in iter_files(root, (".md", ".markdown"))
            for c in chunk_markdown(f.read_text(encoding="utf-8", errors="replace"),
                                    str(f.relative_to(root)), corpus)]


CHART_METADATA = ("Chart.yaml", "Chart.lock", "kustomization.yaml", "kustomization.yml", "Kustomization")


def chunk_gitops_dir(root: Path) -> tuple[list[Chunk], list[str]]:
    """Every object of a GitOps tree as chunks, and the files that could not be read.

    A Helm chart folder's templates are Go templates, not YAML, and its ``Chart.yaml`` and
    ``values*.yaml`` describe the chart, not objects: none of them is indexed as an object
    or reported as a problem (the platform model reads charts). Kustomization files are
    skipped the same way.
    """
    files = iter_files(root, (".yaml", ".yml"))
    charts = {f.parent for f in files if f.name == "Chart.yaml"}
    chunks: list[Chunk] = []
    problems: list[str] = []
    for f in files:
        if f.name in CHART_METADATA or f.name.startswith("values") or any(f.is_relative_to(c) for c in charts):
            continue
        text = f.read_text(encoding="utf-8", errors="replace")
        got, bad = chunk_manifests(text, str(f.relative_to(root)))
        chunks += got
        if "{{" in text and "}}" in text:
            bad = []  # a template outside a chart folder (helmfile, ApplicationSet values): not a problem
        problems += bad
    return chunks, problems
