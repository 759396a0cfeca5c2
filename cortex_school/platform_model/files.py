"""Reading Kubernetes manifests from files the way ``kubectl apply -f`` and ArgoCD do.

``.yaml``, ``.yml`` and ``.json``; multi-document YAML; a top-level list of objects and
``kind: List`` with ``items`` are flattened. A file that cannot be read (not UTF-8,
not YAML/JSON, nested deeper than :data:`MAX_DEPTH`, larger than the size cap, a
Helm template) is reported with its reason, never raised: the caller decides whether
that is fatal (``policy check``: exit 2) or tolerable (facts about a repository).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cortex_school.bounds import max_json_depth

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
MAX_DEPTH = 64
MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_NODES = 200_000  # mappings, lists and scalars of a file, with YAML aliases expanded
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass
class ManifestSet:
    """Objects read from files, with where each came from, and what could not be read."""

    objects: list[dict[str, Any]] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)  # file of each object
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)
    not_objects: list[tuple[str, str]] = field(default_factory=list)  # (file, what)


def manifest_files(paths: Iterable[Path]) -> list[Path]:
    """Every manifest file under ``paths`` (files as given), sorted; hidden folders skipped."""
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            out += sorted(p for p in path.rglob("*") if p.is_file() and
                          p.suffix.lower() in MANIFEST_SUFFIXES and
                          not any(part.startswith(".") for part in p.relative_to(path).parts))
        else:
            out.append(path)
    return out


def _flatten(doc: Any) -> Iterable[Any]:
    if isinstance(doc, list):
        for item in doc:
            yield from _flatten(item)
    elif isinstance(doc, dict) and doc.get("kind") == "List" and isinstance(doc.get("items"), list):
        yield from doc["items"]
    elif doc is not None:
        yield doc


def _expanded_size(value: Any, budget: int) -> int:
    """How many nodes ``value`` has with aliases expanded, counting no further than
    ``budget`` (so an alias bomb costs ``budget`` steps, not its exponential size)."""
    seen, stack = 0, [value]
    while stack and seen <= budget:
        node = stack.pop()
        seen += 1
        if isinstance(node, dict):
            stack += node.values()
        elif isinstance(node, list):
            stack += node
    return seen


def read_file(path: Path, into: ManifestSet) -> None:
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            into.unreadable.append((str(path), f"larger than {MAX_FILE_BYTES} bytes"))
            return
        text = path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        into.unreadable.append((str(path), f"cannot be read: {type(exc).__name__}: {str(exc)[:200]}"))
        return
    if "{{" in text and "}}" in text and path.suffix.lower() != ".json" and "templates" in path.parts:
        into.unreadable.append((str(path), "a Helm template (render it with helm template first)"))
        return
    if max_json_depth(text) > MAX_DEPTH:  # brackets; YAML block nesting is bounded below
        into.unreadable.append((str(path), f"nested deeper than {MAX_DEPTH} levels"))
        return
    try:
        docs = list(yaml.load_all(text, Loader=_Loader))  # JSON is YAML, too
    except (yaml.YAMLError, RecursionError, ValueError, OverflowError) as exc:
        into.unreadable.append((str(path), f"not valid YAML/JSON: {type(exc).__name__}: "
                                f"{str(exc).splitlines()[0][:200] if str(exc) else ''}"))
        return
    if _expanded_size(docs, MAX_NODES) > MAX_NODES:
        into.unreadable.append((str(path), f"expands to more than {MAX_NODES} nodes (YAML "
                                "aliases: a billion-laughs document)"))
        return
    for doc in docs:
        for obj in _flatten(doc):
            if isinstance(obj, dict):
                into.objects.append(obj)
                into.sources.append(str(path))
            else:
                into.not_objects.append((str(path), f"a {type(obj).__name__}, not an object"))


def read_manifests(paths: Iterable[Path]) -> ManifestSet:
    found = ManifestSet()
    for path in manifest_files(paths):
        read_file(path, found)
    return found
