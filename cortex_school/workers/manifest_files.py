"""What a GitOps repository already defines, as facts for the gate (the reading itself is
in :mod:`cortex_school.platform_model.files`; its names are re-exported here).

Reading Kubernetes manifests from files the way ``kubectl apply -f`` and ArgoCD do.

``.yaml``, ``.yml`` and ``.json``; multi-document YAML; a top-level list of objects and
``kind: List`` with ``items`` are flattened. A file that cannot be read (not UTF-8,
not YAML/JSON, nested deeper than :data:`MAX_DEPTH`, larger than the size cap, a
Helm template) is reported with its reason, never raised: the caller decides whether
that is fatal (``policy check``: exit 2) or tolerable (facts about a repository).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from cortex_school.platform_model.files import (
    MANIFEST_SUFFIXES,
    MAX_DEPTH,
    MAX_FILE_BYTES,
    MAX_NODES,
    ManifestSet,
    manifest_files,
    read_file,
    read_manifests,
)
from cortex_school.workers.policy import POD_PATHS, GateContext, autoscaler_floor


def _dig_dict(obj: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    for key in path:
        obj = _dict_at(obj, key)
    return obj


def _dict_at(obj: dict[str, Any], key: str) -> dict[str, Any]:
    """``obj[key]`` if it is a mapping, else an empty one."""
    value = obj.get(key)
    return value if isinstance(value, dict) else {}


def repo_context(root: Path | None, base: GateContext) -> GateContext:
    """``base`` with what a GitOps repository already defines: every object (so a change
    never takes one over), its Secrets (so an ExternalSecret never shadows one), its
    recorded series and alerts, Ingress hosts, Service selectors, pod labels and the claims
    its StatefulSets own. Files that cannot be read are skipped (Helm charts, templates)."""
    if root is None or not root.exists():
        return base
    found = read_manifests([root])
    existing: set[tuple[str, str, str]] = set(base.existing)
    secrets: set[tuple[str, str]] = set(base.existing_secrets)
    series: set[str] = set(base.existing_series)
    selectors = set(base.existing_selectors)
    alerts, hosts, pods = set(base.existing_alerts), set(base.existing_hosts), set(base.existing_pods)
    claims = set(base.existing_claim_prefixes)
    replicas = dict(base.existing_replicas)
    floors: list[tuple[str, str, str, int]] = []
    policies = set(base.existing_policies)
    accounts = dict(base.existing_accounts)
    users: dict[tuple[str, str], set[str]] = {k: set(v) for k, v in base.account_users.items()}
    for obj in found.objects:
        meta = _dict_at(obj, "metadata")
        kind, name = str(obj.get("kind", "")), str(meta.get("name", ""))
        ns = str(meta.get("namespace") or "")
        if not name:
            continue
        existing.add((kind, ns, name))
        spec = _dict_at(obj, "spec")
        template = _dict_at(spec, "template")
        tmeta = _dict_at(template, "metadata")
        # Everything that runs pods (operators' Rollouts and the like keep a pod template too).
        pod_path = POD_PATHS.get(kind) or (
            ("spec", "template", "spec") if isinstance(_dict_at(template, "spec").get("containers"), list) else None)
        if pod_path is not None:
            pod = _dig_dict(obj, pod_path)
            named = pod.get("serviceAccountName") or pod.get("serviceAccount")
            account = named if isinstance(named, str) and named else "default"
            accounts[(kind, ns, name)] = account
            users.setdefault((ns, account), set()).add(f"{kind} {name}")
        if isinstance(tmeta.get("labels"), dict) and tmeta["labels"]:
            pods.add((ns, f"{kind} {name}", frozenset((str(k), str(v)) for k, v in tmeta["labels"].items())))
        if kind in ("Deployment", "StatefulSet"):
            count = spec.get("replicas", 1)  # unset: one replica
            if isinstance(count, int) and not isinstance(count, bool):
                replicas[(kind, ns, name)] = count
        floor = autoscaler_floor(obj)
        if floor is not None:
            floors.append(floor)
        if kind == "StatefulSet":  # its claims exist as <template>-<name>-<ordinal>
            for t in spec["volumeClaimTemplates"] if isinstance(spec.get("volumeClaimTemplates"), list) else []:
                claim = (t.get("metadata") or {}).get("name") if isinstance(t, dict) else None
                if claim:
                    claims.add((ns, f"{claim}-{name}-"))
        if kind == "Ingress":
            for rule in spec["rules"] if isinstance(spec.get("rules"), list) else []:
                if isinstance(rule, dict) and isinstance(rule.get("host"), str):
                    hosts.add(rule["host"])
        if kind == "NetworkPolicy":
            listed = spec.get("policyTypes")
            types: list[Any] = listed if isinstance(listed, list) else ["Ingress"]
            selector = _dict_at(_dict_at(spec, "podSelector"), "matchLabels")
            if "Ingress" in types:
                policies.add((ns, frozenset((str(k), str(v)) for k, v in selector.items())))
        if kind == "Service" and isinstance(spec.get("selector"), dict):
            selectors.add((ns, name, frozenset((str(k), str(v)) for k, v in spec["selector"].items())))
        if kind in ("Secret", "SealedSecret"):
            secrets.add((ns, name))
        elif kind == "ExternalSecret":
            target = _dict_at(spec, "target")
            secrets.add((ns, str(target.get("name") or name)))
        elif kind in ("PrometheusRule", "VMRule"):
            for group in spec["groups"] if isinstance(spec.get("groups"), list) else []:
                for rule in (group.get("rules") or []) if isinstance(group, dict) else []:
                    if isinstance(rule, dict) and rule.get("record"):
                        series.add(str(rule["record"]))
                    elif isinstance(rule, dict) and rule.get("alert"):
                        alerts.add(str(rule["alert"]))
    for kind, ns, name, low in floors:  # an autoscaler may take its workload down to its floor
        key = (kind, ns, name)
        replicas[key] = min(replicas.get(key, low), low)
    return replace(
        base, existing=frozenset(existing), existing_secrets=frozenset(secrets),
        existing_series=frozenset(series), existing_selectors=frozenset(selectors),
        existing_alerts=frozenset(alerts), existing_hosts=frozenset(hosts),
        existing_pods=frozenset(pods), existing_claim_prefixes=frozenset(claims), existing_replicas=replicas,
        existing_accounts=accounts, existing_policies=frozenset(policies), account_users={k: frozenset(v) for k, v in users.items()})


__all__ = ["MANIFEST_SUFFIXES", "MAX_DEPTH", "MAX_FILE_BYTES", "MAX_NODES", "ManifestSet",
           "manifest_files", "read_file", "read_manifests", "repo_context"]
