"""Reading Kubernetes manifests from files the way ``kubectl apply -f`` and ArgoCD do.

``.yaml``, ``.yml`` and ``.json``; multi-document YAML; a top-level list of objects and
``kind: List`` with ``items`` are flattened. A file that cannot be read (not UTF-8,
not YAML/JSON, nested deeper than :data:`MAX_DEPTH`, larger than the size cap, a
Helm template) is reported with its reason, never raised: the caller decides whether
that is fatal (``policy check``: exit 2) or tolerable (facts about a repository).
"""

from __future__ import annotations

import os
import re
import stat
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
MAX_PATH_BYTES = 4000  # below PATH_MAX: longer paths cannot even be stat'ed (ENAMETOOLONG)
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass
class ManifestSet:
    """Objects read from files, with where each came from, and what could not be read."""

    objects: list[dict[str, Any]] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)  # file of each object
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)
    not_objects: list[tuple[str, str]] = field(default_factory=list)  # (file, what)
    comments: list[tuple[str, int, str, str]] = field(default_factory=list)  # (file, line, setting, comment)


MAX_COMMENTS_PER_FILE = 200
MAX_COMMENT_CHARS = 500


def yaml_comments(text: str) -> list[tuple[int, str, str]]:
    """``(line, setting, comment)`` for each comment of a YAML file: a ``#`` at the start of
    a line or after whitespace, outside quotes (YAML's rule). Consecutive full-line comments
    are one comment; ``setting`` is the code on the comment's line, or on the first line
    after a full-line block (what the comment is about). At most
    :data:`MAX_COMMENTS_PER_FILE` per file, each cut at :data:`MAX_COMMENT_CHARS`."""
    lines = text.splitlines()
    out: list[tuple[int, str, str]] = []
    block: list[str] = []
    start = 0
    for number, line in enumerate(lines, start=1):
        code, comment = _split_comment(line)
        if comment is not None and not code.strip():
            if not block:
                start = number
            block.append(comment)
            continue
        if block:
            out.append((start, code.strip()[:200], " ".join(block)[:MAX_COMMENT_CHARS]))
            block = []
        if comment is not None:
            out.append((number, code.strip()[:200], comment[:MAX_COMMENT_CHARS]))
        if len(out) >= MAX_COMMENTS_PER_FILE:
            return out
    if block:
        out.append((start, "", " ".join(block)[:MAX_COMMENT_CHARS]))
    return out[:MAX_COMMENTS_PER_FILE]


def _split_comment(line: str) -> tuple[str, str | None]:
    quote: str | None = None
    for i, ch in enumerate(line[:4000]):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"" and (i == 0 or line[i - 1] in " \t:-[{,"):
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1] in " \t"):
            text = line[i + 1:].strip()
            return line[:i], text if text and set(text) - set("#-=* ") else None
    return line, None


def walk(root: Path) -> list[Path]:
    """Every file and folder under ``root``: symlinks listed, never followed; folders that
    cannot be listed and paths too long to use are left out (``rglob`` raises on them)."""
    out: list[Path] = []
    for folder, dirs, files in os.walk(root):
        out += (p for p in (Path(folder, name) for name in dirs + files) if len(os.fsencode(p)) <= MAX_PATH_BYTES)
    return out


def manifest_files(paths: Iterable[Path]) -> list[Path]:
    """Every manifest file under ``paths`` (files as given), sorted; hidden folders skipped."""
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            out += sorted(p for p in walk(path) if p.is_file() and
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


def _measure(value: Any, budget: int) -> tuple[int, int]:
    """(nodes with aliases expanded, nesting depth) of ``value``, walking no more than
    ``budget`` nodes. Block-style YAML nests without brackets, so depth is measured on
    the parsed documents (recursive code downstream, ``repr`` included, must not see
    a thousand levels)."""
    seen, deepest, stack = 0, 0, [(value, 0)]
    while stack and seen <= budget:
        node, depth = stack.pop()
        seen += 1
        deepest = max(deepest, depth)
        if isinstance(node, dict):
            stack += ((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack += ((v, depth + 1) for v in node)
    return seen, deepest


def load_text(text: str) -> tuple[list[Any], str | None]:
    """The YAML/JSON documents of ``text``, or why it cannot be read (too deep, not valid,
    an alias bomb): the bounded parse :func:`read_file` uses, for text from elsewhere."""
    if max_json_depth(text) > MAX_DEPTH:  # brackets; YAML block nesting is bounded below
        return [], f"nested deeper than {MAX_DEPTH} levels"
    try:
        docs = list(yaml.load_all(text, Loader=_Loader))  # JSON is YAML, too
    except (yaml.YAMLError, RecursionError, ValueError, OverflowError) as exc:
        return [], (f"not valid YAML/JSON: {type(exc).__name__}: "
                    f"{str(exc).splitlines()[0][:200] if str(exc) else ''}")
    nodes, depth = _measure(docs, MAX_NODES)
    if nodes > MAX_NODES:
        return [], f"expands to more than {MAX_NODES} nodes (YAML aliases: a billion-laughs document)"
    if depth > MAX_DEPTH + 1:  # + 1: the list of documents
        return [], f"nested deeper than {MAX_DEPTH} levels"
    return docs, None


def read_file(path: Path, into: ManifestSet) -> None:
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):  # a FIFO blocks, /dev/zero never ends
            into.unreadable.append((str(path), "not a regular file"))
            return
        if info.st_size > MAX_FILE_BYTES:
            into.unreadable.append((str(path), f"larger than {MAX_FILE_BYTES} bytes"))
            return
        with path.open("rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)  # a file may report less than it has (/proc)
        if len(data) > MAX_FILE_BYTES:
            into.unreadable.append((str(path), f"larger than {MAX_FILE_BYTES} bytes"))
            return
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        into.unreadable.append((str(path), f"cannot be read: {type(exc).__name__}: {str(exc)[:200]}"))
        return
    if "{{" in text and "}}" in text and path.suffix.lower() != ".json" and "templates" in path.parts:
        into.unreadable.append((str(path), "a Helm template (render it with helm template first)"))
        return
    docs, problem = load_text(text)
    if problem is not None:
        into.unreadable.append((str(path), problem))
        return
    if path.suffix.lower() != ".json" and "#" in text:
        into.comments.extend((str(path), line, setting, comment) for line, setting, comment in yaml_comments(text))
    for doc in docs:
        for obj in _flatten(doc):
            if isinstance(obj, dict):
                into.objects.append(obj)
                into.sources.append(str(path))
            else:
                into.not_objects.append((str(path), f"a {type(obj).__name__}, not an object"))


_FLAG_SET = re.compile(r"(?<![\w-])--([a-z][a-z0-9]*(?:-[a-z0-9]+)*)(?:=([^\s'\",\]]*))?")
_KEY_SET = re.compile(r"^[ \t-]*([A-Za-z0-9][\w.-]*)[ \t]*:[ \t]*(\S[^\n]*)?$")
_OFF = frozenset({"false", "no", "off", "0", "disabled", "null", "~"})


def settings_in(text: str) -> frozenset[str]:
    """What a configuration file turns on: every ``--flag`` (not ``--flag=false``) and every
    YAML key with a scalar value that is not off, outside comments. One pass, line by line."""
    found: set[str] = set()
    for line in text.splitlines():
        code, _ = _split_comment(line)
        for m in _FLAG_SET.finditer(code):
            if (m.group(2) or "").strip("'\"").lower() not in _OFF or m.group(2) is None:
                found.add(m.group(1))
        key = _KEY_SET.match(code)
        if key and key.group(2) is not None:
            value = key.group(2).strip().strip("'\"").lower()
            if value and value not in _OFF and not value.startswith(("|", ">", "&", "*", "{}", "[]")):
                found.add(key.group(1).lower())
    return frozenset(found)


def read_text(root: Path, rel: str) -> str | None:
    """The text of ``root/rel`` when it is a regular UTF-8 file inside ``root`` of at most
    :data:`MAX_FILE_BYTES`; None otherwise."""
    try:
        base = root.resolve(strict=True)
        path = (root / rel).resolve(strict=True)
        if not path.is_relative_to(base) or len(os.fsencode(path)) > MAX_PATH_BYTES:
            return None
        info = path.stat()
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_FILE_BYTES:
            return None
        with path.open("rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
        return data.decode("utf-8") if len(data) <= MAX_FILE_BYTES else None
    except (OSError, UnicodeDecodeError, RuntimeError, ValueError):
        return None


def read_manifests(paths: Iterable[Path]) -> ManifestSet:
    found = ManifestSet()
    for path in manifest_files(paths):
        read_file(path, found)
    return found
