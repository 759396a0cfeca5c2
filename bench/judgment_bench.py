"""Judgment benchmark: per-check precision and recall on labelled proposals.

    .venv/bin/python bench/judgment_bench.py [--fixture examples/platform-k3s] [--check already_deployed]

By default both fixtures: ``examples/platform-k3s`` (written with the checks) and
``examples/platform`` (the original sample; its labels were written by a separate
labeller who did not see the checks, so it is the held-out measurement).

A fixture is a folder with ``gitops/`` (the repository), ``proposals/*.json`` (video
service documents) and ``labels.yaml`` (per proposal: ``video_id``, a ``match`` substring
of its description, and ``expect``: the checks that should flag it, or ``clean``). The
labels were written before the checks. For each check: a proposal is a positive when its
label names the check; predicted positive when the check returns a conflict finding.
Every false positive and false negative is listed with the check's reason.

Without ``--check``, each fixture's clean proposals are also taken through implement,
deploy and verify on the simulated cluster (``bench/landing.py``) and the last line per
fixture reads ``clean proposals landed: N of M`` (``--no-landing`` skips it).

Checks measured: ``already_deployed``, ``dependency`` (both on the platform model),
``architectural`` (normative statements from the fixture's ``docs/``, indexed into an
embedded index of its own, and from the manifests' comments) and ``capacity`` (the
fixture's ``capacity.yaml``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from cortex_school.intake.ingest import parse_document  # noqa: E402
from cortex_school.models import Improvement  # noqa: E402
from cortex_school.platform_model import load_platform  # noqa: E402
from cortex_school.settings import IngestSettings  # noqa: E402
from cortex_school.validation.already_deployed import AlreadyDeployedCheck  # noqa: E402
from cortex_school.validation.dependencies import PlatformDependencyCheck  # noqa: E402


def labelled(fixture: Path) -> list[tuple[Improvement, dict[str, Any]]]:
    improvements: list[Improvement] = []
    folder = fixture / "proposals" if (fixture / "proposals").is_dir() else fixture.parent / "proposals"
    for path in sorted(folder.glob("[0-9]*.json")):  # the numbered documents (bad-*.json test intake)
        result = parse_document(path.read_bytes(), path.name, IngestSettings())
        improvements.extend(result.improvements)
    labels = yaml.safe_load((fixture / "labels.yaml").read_text())
    out = []
    for label in labels:
        matches = [i for i in improvements
                   if i.video_id == label["video_id"] and label["match"].lower() in i.description.lower()]
        if len(matches) != 1:
            raise SystemExit(f"label {label['video_id']} {label['match']!r} matches {len(matches)} proposals")
        out.append((matches[0], label))
    return out


_RAG: dict[str, Any] = {}


def rag_for(fixture: Path) -> Any:
    """The fixture's docs in an embedded index of their own (a bench prefix in Redis)."""
    if fixture.name not in _RAG:
        from cortex_school.runtime import get_embedder_from_settings
        from cortex_school.settings import get_settings
        from cortex_school.validation import RagContext
        from cortex_school.validation.indexing import index_docs
        from cortex_school.validation.rag.index import EmbeddedIndex

        embedder = get_embedder_from_settings()
        index = EmbeddedIndex(get_settings().redis.url, embedder, prefix=f"judgment-bench-{fixture.name}")
        index_docs(index, fixture / "docs", replace=True)
        _RAG[fixture.name] = RagContext(index, embedder)
    return _RAG[fixture.name]


def make_check(fixture: Path, check_name: str, platform: Any) -> Any:
    if check_name == "already_deployed":
        return AlreadyDeployedCheck(lambda: platform)
    if check_name == "dependency":
        return PlatformDependencyCheck(lambda: platform)
    if check_name == "architectural":
        from cortex_school.validation import ArchitecturalConflictCheck

        return ArchitecturalConflictCheck(rag_for(fixture), 5, 0.45, platform=lambda: platform)
    if check_name == "capacity":
        from cortex_school.validation import CapacityCheck

        return CapacityCheck(next((fixture / n for n in ("capacity.yaml", "cluster.yaml") if (fixture / n).exists()),
                                  fixture / "capacity.yaml"))
    raise SystemExit(f"unknown check {check_name}")


def measure(fixture: Path, check_name: str) -> dict[str, Any]:
    started = time.perf_counter()
    platform = load_platform(fixture / "gitops")
    model_s = time.perf_counter() - started
    check = make_check(fixture, check_name, platform)
    rows = labelled(fixture)
    tp, fp, fn, tn = [], [], [], []
    flagged: list[bool] = []
    others: list[tuple[str, str, str, list[str]]] = []  # conflicts the check reports under another name
    started = time.perf_counter()
    for imp, label in rows:
        expected = check_name in label["expect"]
        every = [f for f in check.run(imp) if f.conflict]
        conflicts = [f for f in every if f.check == check_name]  # not another check's (capability_overlap)
        flagged.append(bool(every))
        others.extend((imp.description[:90], f.check, f.reason[:200], label["expect"])
                      for f in every if f.check != check_name)
        row = (imp.description[:90], "; ".join(f.reason for f in conflicts)[:200], label.get("why", ""))
        (tp if expected and conflicts else fp if conflicts else fn if expected else tn).append(row)
    per = (time.perf_counter() - started) / max(1, len(rows)) * 1000
    precision = len(tp) / (len(tp) + len(fp)) if tp or fp else 1.0
    recall = len(tp) / (len(tp) + len(fn)) if tp or fn else 1.0
    return {"fixture": fixture.name, "check": check_name, "proposals": len(rows), "tp": len(tp),
            "fp": fp, "fn": fn, "tn": len(tn), "others": others, "precision": precision, "recall": recall, "flagged": flagged,
            "rows": [(imp.description, label) for imp, label in rows],
            "model_seconds": model_s, "ms_per_proposal": per,
            "objects": len(platform.inventory.objects), "components": len(platform.components)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fixture", action="append", default=None)
    parser.add_argument("--check", action="append", default=None)
    parser.add_argument("--no-landing", action="store_true", help="skip taking the clean proposals to verified")
    args = parser.parse_args()
    fixtures = [Path(f) for f in (args.fixture or [str(ROOT / "examples" / "platform-k3s"),
                                                   str(ROOT / "examples" / "platform"),
                                                   str(ROOT / "examples" / "platform-holdout")])]
    for fixture in fixtures:
        stopped: list[bool] = []
        rows: list[Any] = []
        for name in args.check or ["already_deployed", "dependency", "architectural", "capacity"]:
            r = measure(fixture, name)
            rows = r["rows"]
            stopped = [a or b for a, b in zip(stopped, r["flagged"], strict=True)] if stopped else r["flagged"]
            print(f"{r['fixture']} · {r['check']}: precision {r['precision']:.2f} ({r['tp']}/{r['tp'] + len(r['fp'])}), "
                  f"recall {r['recall']:.2f} ({r['tp']}/{r['tp'] + len(r['fn'])}) on {r['proposals']} proposals; "
                  f"model of {r['objects']} objects, {r['components']} components in {r['model_seconds']:.2f}s; "
                  f"{r['ms_per_proposal']:.1f} ms per proposal")
            for kind in ("fp", "fn"):
                for description, reason, why in r[kind]:
                    print(f"  {kind.upper()}: {description}")
                    print(f"      check: {reason or '(no conflict)'}")
                    print(f"      label: {why}")
            for description, name, reason, expect in r["others"]:
                print(f"  {name} (sent to a person, not counted as {r['check']}): {description}")
                print(f"      check: {reason}")
                print(f"      label: {', '.join(expect)}")
        if not args.check and rows:  # the whole of validation (duplicates need history: not here)
            conflicted = [(d, lab) for (d, lab), hit in zip(rows, stopped, strict=True)
                          if lab["expect"] not in (["clean"], ["duplicate"])]
            missed = [d for (d, lab), hit in zip(rows, stopped, strict=True)
                      if lab["expect"] not in (["clean"], ["duplicate"]) and not hit]
            clean = [hit for (d, lab), hit in zip(rows, stopped, strict=True) if lab["expect"] == ["clean"]]
            ad = [hit for (d, lab), hit in zip(rows, stopped, strict=True) if "already_deployed" in lab["expect"]]
            print(f"{fixture.name} · all checks: {len(conflicted) - len(missed)}/{len(conflicted)} labelled conflicts "
                  f"stopped for review (already deployed: {sum(ad)}/{len(ad)}), "
                  f"{len(clean) - sum(clean)}/{len(clean)} clean proposals pass")
            for d in missed:
                print(f"  would pass: {d[:90]}")
        if not args.check and not args.no_landing:  # the clean ones through to verified (bench/landing.py)
            from landing import land

            landed, total, results = land(fixture)
            for description, end, why in results:
                if end != "verified":
                    print(f"  not landed ({end}): {description[:80]}: {why[:160]}")
            print(f"{fixture.name} · clean proposals landed: {landed} of {total}")


if __name__ == "__main__":
    main()
