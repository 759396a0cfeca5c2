"""Which ArgoCD Applications apply a file of the GitOps repository: discovered, not guessed.

Deploying used to assume one Application per namespace named ``<namespace>-apps``; a real
platform keeps its Applications in a folder of its own (``argocd-apps/``, ``bootstrap/``),
generates many with ApplicationSets, and names them after anything. Here every
Application is read where it is (the live cluster's, or the repository's own objects
anywhere in it), ApplicationSet git directory and list generators are expanded into the
Applications they create, and a file is applied by an Application when ArgoCD would apply
it:

- same repository (the repo URL normalised: scheme, credentials, ``.git`` and case of
  the host dropped; ``git@host:org/repo`` is ``host/org/repo``);
- a **directory** source applies the manifests in its path, below it only with
  ``directory.recurse``, filtered by ``include``/``exclude`` globs;
- a **Kustomize** source (its path holds a ``kustomization.yaml``) applies only what the
  kustomization lists (``resources``, transitively through the folders it lists): a new
  file beside it is applied only once it is listed;
- a **Helm** source (a ``Chart.yaml`` in its path, or a chart from a chart repository)
  renders its templates; no plain file of the repository is applied by it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from fnmatch import fnmatchcase
from itertools import islice
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from cortex_school.clients.cluster.argo import AppSource, from_application, normalise_repo_url
from cortex_school.clients.gitops import list_kustomization_resource
from cortex_school.platform_model.files import MANIFEST_SUFFIXES, read_text

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
MAX_GENERATED = 5000  # Applications an ApplicationSet may generate here
MAX_SOURCES = 20_000  # Application sources of one repository, generated ones included
# Git directory generators: path patterns × folders matched, for the whole repository (a
# real one needs a few thousand; thousands of ApplicationSets × thousands of folders, hours).
MAX_GENERATOR_MATCHES = 1_000_000
MAX_KUSTOMIZE_DEPTH = 20  # folders a kustomization may chain through (base of a base …)
Reader = Callable[[str], str | None]  # repository-relative path → text (None: no such file)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


__all__ = ["AppSource", "Coverage", "discover", "from_application", "from_application_set",
           "kustomize_files", "list_kustomization_resource", "normalise_repo_url", "simulated_applications"]


_PARAM = re.compile(r"\{\{-?\s*(?:index\s+\.path\.segments\s+(\d+)|\.?([\w.\[\]]+))\s*-?\}\}")


def _render(template: str, params: dict[str, str]) -> str | None:
    """``{{path.basename}}`` / ``{{ .path.basename }}`` / ``{{path[1]}}`` / ``{{ index
    .path.segments 1 }}`` / ``{{name}}`` filled in; None when a parameter is unknown."""
    missing = False

    def one(m: re.Match[str]) -> str:
        nonlocal missing
        key = f"path[{m.group(1)}]" if m.group(1) is not None else m.group(2)
        key = re.sub(r"^path\.segments\[(\d+)\]$", r"path[\1]", key)
        if key not in params:
            missing = True
            return ""
        return params[key]

    out = _PARAM.sub(one, template)
    return None if missing else out


def _path_params(folder: str) -> dict[str, str]:
    p = PurePosixPath(folder)
    params = {"path": folder, "path.path": folder, "path.basename": p.name,
              "path.basenameNormalized": re.sub(r"[^a-z0-9-]", "-", p.name.lower())}
    params.update({f"path[{i}]": seg for i, seg in enumerate(p.parts)})
    return params


def _segments_match(pattern: str, path: str) -> bool:
    """Go's path.Match, as ArgoCD's git directory generator uses it: ``*`` stays within
    one path segment."""
    pp, xp = pattern.strip("/").split("/"), path.strip("/").split("/")
    return len(pp) == len(xp) and all(fnmatchcase(x, p) for p, x in zip(pp, xp, strict=True))


def _generator_params(gen: dict[str, Any], folders: list[str]) -> list[dict[str, str]]:
    """Parameter sets of one generator: git directories (matched against the repository's
    folders), list elements, and matrix/merge generators of those (matrix: the product)."""
    git = _dict(gen.get("git"))
    if git:
        include = [str(_dict(d).get("path")) for d in _list(git.get("directories"))
                   if isinstance(_dict(d).get("path"), str) and _dict(d).get("exclude") is not True]
        exclude = [str(_dict(d).get("path")) for d in _list(git.get("directories"))
                   if isinstance(_dict(d).get("path"), str) and _dict(d).get("exclude") is True]
        return [_path_params(f) for f in folders
                if any(_segments_match(p, f) for p in include) and not any(_segments_match(p, f) for p in exclude)]
    if isinstance(_dict(gen.get("list")).get("elements"), list):
        return [{str(k): str(v) for k, v in _dict(e).items() if isinstance(v, (str, int, float, bool))}
                for e in _dict(gen["list"])["elements"][:MAX_GENERATED]]
    matrix = _list(_dict(gen.get("matrix")).get("generators"))
    if len(matrix) == 2:
        left = _generator_params(_dict(matrix[0]), folders)
        right = _generator_params(_dict(matrix[1]), folders)
        # The product, cut at the cap while it is built (5000 × 5000 would be 25 million).
        return list(islice(({**a, **b} for a in left for b in right), MAX_GENERATED))
    merged = _list(_dict(gen.get("merge")).get("generators"))
    return list(islice((p for g in merged[:MAX_GENERATED] for p in _generator_params(_dict(g), folders)),
                       MAX_GENERATED))


def from_application_set(obj: dict[str, Any], folders: list[str], origin: str = "") -> list[AppSource]:
    """The Applications an ``ApplicationSet`` generates from the repository's folders."""
    meta, spec = _dict(obj.get("metadata")), _dict(obj.get("spec"))
    template = _dict(spec.get("template"))
    raw = yaml.safe_dump(template, sort_keys=True)  # rendered as text, as ArgoCD does
    out: list[AppSource] = []
    for gen in _list(spec.get("generators")):
        for params in _generator_params(_dict(gen), folders)[:MAX_GENERATED]:
            rendered = _render(raw, {k: _yaml_scalar(v) for k, v in params.items()})
            if rendered is None:
                continue
            app = yaml.safe_load(rendered)
            if not isinstance(app, dict):
                continue
            app.setdefault("metadata", {}).setdefault("namespace", meta.get("namespace") or "argocd")
            out += [replace(s, generated_by=str(meta.get("name") or "")) for s in from_application(app, origin)]
            if len(out) >= MAX_GENERATED:
                return out
    return out


def _yaml_scalar(value: str) -> str:
    """A parameter as it may stand inside the YAML text (no quote or newline breaks it)."""
    return re.sub(r"[\"'\n\r\\:#{}\[\],&*!|>%@`]", "-", value)


def discover(docs: Iterable[tuple[str, dict[str, Any]]], folders: list[str],
             problems: list[tuple[str, str]] | None = None) -> list[AppSource]:
    """Every Application source in ``docs`` ((file, object) pairs), ApplicationSets
    expanded. What is not expanded (over the match budget, over :data:`MAX_SOURCES`) is
    reported in ``problems`` as (file, why), never dropped silently."""
    out: list[AppSource] = []
    budget = MAX_GENERATOR_MATCHES
    for origin, obj in docs:
        if not str(obj.get("apiVersion", "")).startswith("argoproj.io/"):
            continue
        name = str(_dict(obj.get("metadata")).get("name") or "")
        if obj.get("kind") == "Application":
            out += from_application(obj, origin)
        elif obj.get("kind") == "ApplicationSet":
            cost = len(folders) * max(1, _patterns(obj))
            budget -= cost
            if budget < 0:
                if problems is not None:
                    problems.append((origin, f"ApplicationSet {name}: its directory generators not matched "
                                             f"(more than {MAX_GENERATOR_MATCHES} pattern × folder matches)"))
                continue
            out += from_application_set(obj, folders, origin)
        if len(out) > MAX_SOURCES:
            if problems is not None:
                problems.append((origin, f"more than {MAX_SOURCES} Application sources: the rest not read"))
            return out[:MAX_SOURCES]
    return out


def _patterns(obj: dict[str, Any]) -> int:
    """How many git directory patterns an ApplicationSet's generators hold (nested too)."""
    text = str(_dict(obj.get("spec")).get("generators"))[:1_000_000]
    return text.count("'path':")


def _kustomization_in(folder: str, read: Reader) -> tuple[str, dict[str, Any]] | None:
    for name in KUSTOMIZATION_FILES:
        rel = f"{folder}/{name}" if folder else name
        text = read(rel)
        if text is not None:
            try:
                doc = yaml.safe_load(text)
            except yaml.YAMLError:
                return rel, {}
            return rel, _dict(doc)
    return None


def _norm(rel: str) -> str | None:
    """A repository-relative path with ``..`` resolved; None when it leaves the repository."""
    parts: list[str] = []
    for part in rel.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                return None
            parts.pop()
        else:
            parts.append(part)
    return "/".join(parts)


def kustomize_files(folder: str, read: Reader, *, is_dir: Callable[[str], bool]) -> set[str] | None:
    """The files a Kustomize build of ``folder`` applies (its kustomization file included),
    following listed folders; None when ``folder`` holds no kustomization."""
    found: set[str] = set()
    seen: set[str] = set()

    def walk(f: str, depth: int) -> bool:
        k = _kustomization_in(f, read)
        if k is None or f in seen or depth > MAX_KUSTOMIZE_DEPTH:
            return k is not None
        seen.add(f)
        rel, doc = k
        found.add(rel)
        for entry in _list(doc.get("resources")) + _list(doc.get("bases")) + _list(doc.get("components")):
            if not isinstance(entry, str) or "://" in entry or entry.startswith("github.com/"):
                continue
            target = _norm(f"{f}/{entry}" if f else entry)
            if target is None:
                continue
            if is_dir(target) or _kustomization_in(target, read) is not None:
                walk(target, depth + 1)
            else:
                found.add(target)
        return True

    return found if walk(folder, 0) else None


@dataclass
class Coverage:
    """Which Applications apply which files, for one repository checkout."""

    sources: list[AppSource]
    root: Path
    repo_urls: frozenset[str] = frozenset()  # normalised URLs that are this repository
    overrides: dict[str, str] = field(default_factory=dict)  # files as a change would leave them
    _kustomize: dict[str, set[str] | None] = field(default_factory=dict, repr=False)
    _tools: dict[str, str] = field(default_factory=dict, repr=False)

    def read(self, rel: str) -> str | None:
        if rel in self.overrides:
            return self.overrides[rel]
        return read_text(self.root, rel)

    def is_dir(self, rel: str) -> bool:
        return (self.root / rel).is_dir() or any(o.startswith(rel.rstrip("/") + "/") for o in self.overrides)

    def ours(self, source: AppSource) -> bool:
        """Whether ``source`` reads this repository (a chart repository's never does)."""
        if source.chart:
            return False
        return not self.repo_urls or normalise_repo_url(source.repo_url) in self.repo_urls

    def tool(self, source: AppSource) -> str:
        """directory | kustomize | helm, as ArgoCD detects it in the source's path."""
        base = source.path.strip("/")
        if base not in self._tools:
            self._tools[base] = (
                "kustomize" if _kustomization_in(base, self.read) is not None else
                "helm" if self.read(f"{base}/Chart.yaml" if base else "Chart.yaml") is not None else "directory")
        return self._tools[base]

    def applies(self, source: AppSource, rel: str) -> bool:
        if not self.ours(source) or not rel.endswith(MANIFEST_SUFFIXES):
            return False
        tool = self.tool(source)
        base = source.path.strip("/")
        if tool == "kustomize":
            if base not in self._kustomize:
                self._kustomize[base] = kustomize_files(base, self.read, is_dir=self.is_dir)
            return rel in (self._kustomize[base] or set())
        if tool == "helm":
            return False  # its templates are rendered; no plain file of the repository is applied
        return directory_covers(source, rel)

    def covering(self, rel: str) -> list[AppSource]:
        return [s for s in self.sources if self.applies(s, rel)]

    def built(self) -> set[str]:
        """Every file a Kustomize source of ours builds (kustomization files included)."""
        out: set[str] = set()
        for s in self.sources:
            base = s.path.strip("/")
            if self.ours(s) and self.tool(s) == "kustomize":
                if base not in self._kustomize:
                    self._kustomize[base] = kustomize_files(base, self.read, is_dir=self.is_dir)
                out |= self._kustomize[base] or set()
        return out

    def kustomization_for(self, rel: str) -> str | None:
        """The kustomization a new file ``rel`` must be listed in to be applied: the one in
        its folder, or else the nearest ancestor's, when an Application of ours builds it."""
        folder = rel.rsplit("/", 1)[0] if "/" in rel else ""
        built = self.built()
        for f in [folder, *_parents(folder)]:
            k = _kustomization_in(f, self.read)
            if k is not None:
                return k[0] if k[0] in built else None
        return None


def _parents(folder: str) -> list[str]:
    parts = folder.split("/") if folder else []
    return ["/".join(parts[:i]) for i in range(len(parts) - 1, -1, -1)]


def directory_covers(source: AppSource, rel: str) -> bool:
    """A directory source's rule: in its path, below it only with recurse, include and
    exclude globs matched against the path inside the source (or the file name)."""
    base = source.path.strip("/")
    if base in ("", "."):
        inner = rel
    elif rel.startswith(base + "/"):
        inner = rel[len(base) + 1:]
    else:
        return False
    if "/" in inner and not source.recurse:
        return False

    def match(patterns: tuple[str, ...]) -> bool:
        return any(fnmatchcase(inner, p) or fnmatchcase(inner.rsplit("/", 1)[-1], p) for p in patterns)

    if source.include and not match(source.include):
        return False
    return not match(source.exclude)


def simulated_applications(root: Path) -> dict[str, dict[str, Any]]:
    """What the simulated ArgoCD holds for a checkout: each Application of the repository
    (ApplicationSets expanded) with the files it applies, by the rules above."""
    from cortex_school.platform_model.model import read_inventory

    inventory = read_inventory(root)
    sources = inventory.app_sources()
    coverage = Coverage(sources, root)
    files = sorted({o.file for o in inventory.objects})
    apps: dict[str, dict[str, Any]] = {}
    for src in sources:
        app = apps.setdefault(src.name, {"path": src.path, "recurse": src.recurse, "repo_url": src.repo_url,
                                         "files": []})
        app["files"] = sorted(set(app["files"]) | {f for f in files if coverage.applies(src, f)})
    return apps
