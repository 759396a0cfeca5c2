"""Plans for what the system does not own: companions of an existing workload, built from
its real record in the platform model.

A proposal such as "a PodDisruptionBudget for the Qdrant StatefulSet in knowledge,
maxUnavailable: 1" is about an object that already runs. Re-creating it is refused (the
ownership rule), guessing its labels selects nothing. So the target is resolved in the
platform model (by an explicit label in the text, by an object's name, or by a component's
name or alias) and the companion is planned from its record: its namespace, its pods'
labels, its Service's labels and ports. Explicit values in the text (``maxUnavailable``,
``minReplicas``/``maxReplicas``, utilisation, a stabilisation window, a port name, a path,
an interval) are honoured; a value the companion cannot carry is named in a manual step.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cortex_school.models import Improvement
from cortex_school.platform_model import Platform, PlatformObject
from cortex_school.platform_model.mentions import mentions
from cortex_school.workers.naming import with_suffix
from cortex_school.workers.plan import Panel, PlannedResource, Port

TARGET_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Service", "CronJob")
SCALABLE = ("Deployment", "StatefulSet")
MAX_TARGET_OBJECTS = 20_000  # objects of the model looked at per plan


@dataclass(frozen=True)
class Target:
    """An existing object a change is about, and how the text named it."""

    obj: PlatformObject
    how: str
    at: int  # where in the text it was named first

    @property
    def ref(self) -> str:
        return f"{self.obj.kind}/{self.obj.namespace}/{self.obj.name}"

    def describe(self) -> str:
        return f"{self.obj.kind} {self.obj.namespace}/{self.obj.name} ({self.obj.file}; {self.how})"


_LABEL = re.compile(r"\b(?:label(?:l?ed|s)?|selecting|selector)\s*\(?\s*`?([a-z0-9][a-z0-9./-]{0,252}[a-z0-9]|[a-z])"
                    r"\s*[:=]\s*[\"']?([A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)", re.I)
_KIND_WORD = {"deployment": "Deployment", "statefulset": "StatefulSet", "daemonset": "DaemonSet",
              "service": "Service", "cronjob": "CronJob"}


def _candidates(platform: Platform) -> list[PlatformObject]:
    """Objects a companion may serve: defined in the repository (a companion of something
    only the live cluster has could never be reviewed in git) and applied by ArgoCD."""
    return [o for o in platform.inventory.objects[:MAX_TARGET_OBJECTS]
            if o.kind in TARGET_KINDS and o.deployed is not False and not o.file.startswith("live:")
            and o.namespace]


def resolve_targets(text: str, platform: Platform) -> list[Target]:
    """The existing objects ``text`` is about, in the order it names them: by an explicit
    label ("label app: qdrant", "selecting app.kubernetes.io/name: vllm"), by an object's
    name as a word, or by a component's name or alias (its workloads). A kind word next to
    the name ("the Qdrant StatefulSet", "Deployment embeddings") picks that kind."""
    objects = _candidates(platform)
    found: dict[str, Target] = {}

    def add(obj: PlatformObject, how: str, at: int) -> None:
        key = f"{obj.kind}/{obj.namespace}/{obj.name}"
        if key not in found or at < found[key].at:
            found[key] = Target(obj, how, at)

    for m in _LABEL.finditer(text):
        pair = (m.group(1), m.group(2))
        for o in objects:
            labels = o.selector if o.kind == "Service" else {**o.pod_labels, **o.selector}
            if labels.get(pair[0]) == pair[1] or (o.kind == "Service" and o.labels.get(pair[0]) == pair[1]):
                add(o, f"label {pair[0]}={pair[1]}", m.start())
    lowered = text.lower()
    by_name: dict[str, list[PlatformObject]] = {}
    for o in objects:
        by_name.setdefault(o.name, []).append(o)
    for name, objs in by_name.items():
        if len(name) < 3:
            continue
        hit = re.search(rf"(?<![\w./-]){re.escape(name)}(?![\w/-]|\.\w)", lowered)
        if hit:
            for o in objs:
                add(o, f"named {name!r}", hit.start())
    for mention in mentions(text, platform):
        component = platform.components.get(mention.component)
        if component is None:
            continue
        at = lowered.find(mention.text.lower()) if mention.text else len(text)
        for o in component.objects:
            if o in objects:
                add(o, f"component {component.name}", at if at >= 0 else len(text))
    return sorted(found.values(), key=lambda t: (t.at, _kind_rank(text, t)))


def _kind_rank(text: str, target: Target) -> int:
    """0 when a kind word for the target's kind stands within a few words of where it was
    named ("the Qdrant StatefulSet"), else 1."""
    window = text[max(0, target.at - 30):target.at + len(target.obj.name) + 30].lower()
    words = set(re.findall(r"[a-z]+", window))
    return 0 if any(_KIND_WORD.get(w) == target.obj.kind for w in words) else 1


def _first(targets: list[Target], kinds: tuple[str, ...], text: str) -> Target | None:
    """The first target of ``kinds``, preferring one whose kind the text says next to it."""
    of_kind = [t for t in targets if t.obj.kind in kinds]
    if not of_kind:
        return None
    first_at = of_kind[0].at
    tied = [t for t in of_kind if t.at == first_at]
    return min(tied, key=lambda t: _kind_rank(text, t))


def _int(pattern: str, text: str) -> int | None:
    m = re.search(pattern, text, re.I)
    return int(m.group(1)) if m else None


def _pods(target: PlatformObject) -> dict[str, str]:
    """The labels that select the target's pods: its own selector (a workload's
    matchLabels), else its pod template's labels."""
    return dict(target.selector or target.pod_labels)


def _service_for(platform: Platform, workload: PlatformObject) -> PlatformObject | None:
    pods = {**workload.pod_labels}
    for o in platform.inventory.by_kind("Service"):
        if o.namespace == workload.namespace and o.selector and o.selector.items() <= pods.items() \
                and o.deployed is not False:
            return o
    return None


_WORDS = {"one": 1, "two": 2, "three": 3, "five": 5, "ten": 10, "fifteen": 15}
PDB_WORDS = re.compile(r"poddisruptionbudget|\bpdb\b|disruption budget", re.I)
HPA_WORDS = re.compile(r"horizontalpodautoscaler|\bhpa\b", re.I)
KEDA_WORDS = re.compile(r"scaledobject|\bkeda\b", re.I)
SM_WORDS = re.compile(r"servicemonitor|\bscrape\b", re.I)
DASHBOARD_WORDS = re.compile(r"dashboard", re.I)


def companions(improvement: Improvement, text: str, platform: Platform,
               manual: list[str]) -> tuple[list[PlannedResource], list[Target]]:
    """The companions ``text`` asks for, for the existing objects it names; and the targets
    they serve (so the other recipes do not plan those objects again)."""
    targets = resolve_targets(text, platform)
    out: list[PlannedResource] = []
    used: list[Target] = []
    purpose = improvement.description[:200]
    for words, kinds, build in WORKLOAD_COMPANIONS:
        target = _first(targets, kinds, text) if words.search(text) else None
        planned = build(target, text, purpose, manual) if target is not None else None
        if target is not None and planned is not None:
            out.append(planned)
            used.append(target)
    if RBAC_WORDS.search(text):
        workload = _first(targets, ("Deployment", "StatefulSet", "DaemonSet", "CronJob"), text)
        rbac = _rbac(workload, text, purpose, manual) if workload is not None else []
        if rbac and workload is not None:
            out.extend(rbac)
            used.append(workload)
    if SM_WORDS.search(text) and not re.search(r"\bexporter\b", text, re.I):
        service = _first(targets, ("Service",), text)
        workload = _first(targets, ("Deployment", "StatefulSet", "DaemonSet"), text)
        if service is None and workload is not None:
            found = _service_for(platform, workload.obj)
            service = Target(found, f"the Service selecting {workload.obj.name}'s pods", workload.at) \
                if found else None
        if service is not None:
            sm = _service_monitor(service, text, purpose, manual)
            if sm is not None:
                out.append(sm)
                used.append(service)
    return out, used


RBAC_WORDS = re.compile(r"\b(?:role|rolebinding|rbac|permissions?|access to|allowed to|may)\b", re.I)
# Built-in namespaced resources a Role may name, and their API group (the gate judges the
# rules; this only spells them as Kubernetes does).
_RESOURCE_GROUPS = {
    "pods": "", "pods/log": "", "configmaps": "", "services": "", "endpoints": "", "events": "",
    "persistentvolumeclaims": "", "secrets": "", "serviceaccounts": "",
    "deployments": "apps", "statefulsets": "apps", "daemonsets": "apps", "replicasets": "apps",
    "jobs": "batch", "cronjobs": "batch", "ingresses": "networking.k8s.io",
    "networkpolicies": "networking.k8s.io", "leases": "coordination.k8s.io",
    "endpointslices": "discovery.k8s.io", "horizontalpodautoscalers": "autoscaling",
    "poddisruptionbudgets": "policy",
}
_VERBS = ("get", "list", "watch", "create", "update", "patch", "delete")


def rbac_rules_in(text: str) -> list[Any]:
    """The rules a sentence grants ("get, list and watch pods and pod logs", "read-only
    access to configmaps and jobs"): the verbs it names (read/view: get, list, watch) over
    the built-in resources it names in the plural, one rule per API group."""
    from cortex_school.workers.plan import RbacRule

    lowered = text.lower()
    verbs = [v for v in _VERBS if re.search(rf"\b{v}s?\b", lowered)]
    if not verbs and re.search(r"\bread(?:[- ]only)?\b|\bview\b", lowered):
        verbs = ["get", "list", "watch"]
    found = [r for r in _RESOURCE_GROUPS if "/" not in r and re.search(rf"\b{r}\b", lowered)]
    if re.search(r"\bpods?(?:'s)? logs?\b|\bpods/log\b", lowered):
        found.append("pods/log")
    if not verbs or not found:
        return []
    by_group: dict[str, list[str]] = {}
    for r in found:
        by_group.setdefault(_RESOURCE_GROUPS[r], []).append(r)
    return [RbacRule(api_groups=[g], resources=rs, verbs=verbs) for g, rs in sorted(by_group.items())]


def _rbac(target: Target, text: str, purpose: str, manual: list[str]) -> list[PlannedResource]:
    """A Role and its RoleBinding to the ServiceAccount the existing workload already runs
    as (never a new one: giving the workload another would be an edit of it)."""
    rules = rbac_rules_in(text)
    if not rules:
        return []
    account = target.obj.service_account
    if not account or account == "default":
        manual.append(f"not planned: a Role for {target.obj.kind} {target.obj.namespace}/{target.obj.name}: it runs "
                      "as the namespace's default ServiceAccount, and a Role bound to that reaches every pod that "
                      "runs as default; a person gives the workload its own ServiceAccount first (an edit of it)")
        return []
    name = with_suffix(target.obj.name, "access")
    why = f"{purpose} (for {target.describe()}, ServiceAccount {account})"[:500]
    return [PlannedResource(kind="Role", name=name, namespace=target.obj.namespace, rbac_rules=rules,
                            companion_of=target.ref, purpose=why),
            PlannedResource(kind="RoleBinding", name=name, namespace=target.obj.namespace, target=name,
                            subject=account, companion_of=target.ref, purpose=why)]


def _pdb(target: Target, text: str, purpose: str, manual: list[str]) -> PlannedResource:
    max_unavailable = _int(r"maxUnavailable:?\s*(\d+)", text)
    min_available = _int(r"minAvailable:?\s*(\d+)", text)
    if max_unavailable is None and min_available is None:
        max_unavailable = 1  # never blocks a drain on its own
    if max_unavailable is not None and min_available is not None:
        manual.append(f"both maxUnavailable and minAvailable named; the budget uses maxUnavailable {max_unavailable}")
        min_available = None
    _namespace_note(target, text, manual)
    return PlannedResource(
        kind="PodDisruptionBudget", name=target.obj.name, namespace=target.obj.namespace,
        selector=_pods(target.obj), max_unavailable=max_unavailable, min_available=min_available,
        companion_of=target.ref, purpose=f"{purpose} (for {target.describe()})"[:500])


def _hpa(target: Target, text: str, purpose: str, manual: list[str]) -> PlannedResource | None:
    between = re.search(r"\bbetween\s+(\d+)\s+and\s+(\d+)\s+replicas\b", text, re.I)
    low = _int(r"minReplicas:?\s*(\d+)", text) or _int(r"\bmin(?:imum)?\s+(?:of\s+)?(\d+)\s+replicas", text) \
        or (int(between.group(1)) if between else None)
    high = _int(r"maxReplicas:?\s*(\d+)", text) or _int(r"\bmax(?:imum)?\s+(?:of\s+)?(\d+)\s+replicas", text) \
        or (int(between.group(2)) if between else None)
    if high is None:
        manual.append(f"HorizontalPodAutoscaler for {target.obj.name}: the proposal names no maxReplicas; "
                      "a person chooses one")
        return None
    cpu = _int(r"(\d{1,3})\s*%?\s*(?:average\s*utili[sz]ation\s*)?(?:on|of|for)\s+cpu", text) or \
        _int(r"(\d{1,3})\s*%\s*cpu", text) or \
        _int(r"averageUtilization:?\s*(\d{1,3})\s*(?:%\s*)?(?:on\s+)?cpu", text) or \
        _int(r"cpu\s+(?:utili[sz]ation\s+)?(?:of|at|above)?\s*(\d{1,3})\s*%", text)
    memory = _int(r"(\d{1,3})\s*%?\s*(?:average\s*utili[sz]ation\s*)?(?:on|of|for)\s+memory", text)
    text = re.sub(r"\b(one|two|three|five|ten|fifteen)([- ]minute)", lambda m: str(_WORDS[m.group(1).lower()])
                  + m.group(2), text, flags=re.I)
    window = re.search(r"(\d+)[- ]?(s|sec|seconds?|m|min|minutes?)\b[^.]{0,20}scale[- ]?down", text, re.I) or \
        re.search(r"scale[- ]?down\s+stabili[sz]ation(?:\s+window)?(?:\s+of)?\s+(\d+)\s*(s|seconds?|m|minutes?)",
                  text, re.I)
    seconds = None
    if window:
        seconds = int(window.group(1)) * (60 if window.group(2).lower().startswith("m") else 1)
    _namespace_note(target, text, manual)
    return PlannedResource(
        kind="HorizontalPodAutoscaler", name=target.obj.name, namespace=target.obj.namespace,
        target=target.obj.name, companion_of=target.ref, min_replicas=low, max_replicas=high,
        cpu_utilization=cpu, memory_utilization=memory, scale_down_seconds=seconds,
        purpose=f"{purpose} (for {target.describe()})"[:500])


def _scaled_object(target: Target, text: str, purpose: str, manual: list[str]) -> PlannedResource | None:
    """A KEDA ScaledObject for an existing workload: min/max replica counts and a Prometheus
    trigger (query, threshold, serverAddress) as the text writes them."""
    low = _int(r"minReplicaCount:?\s*(\d+)", text)
    high = _int(r"maxReplicaCount:?\s*(\d+)", text)
    query = re.search(r"\b(?:trigger|query)\s+(?:on\s+)?`?(.{3,1000}?)`?\s+(?:with\s+(?:a\s+)?)?threshold\b", text, re.I)
    threshold = re.search(r"\bthreshold\s+(?:of\s+)?(\d+(?:\.\d+)?)", text, re.I)
    address = re.search(r"\bserverAddress\s+`?(https?://[^\s`,;]+?)`?(?=[\s,;]|\.?$|\.\s)", text)
    missing = [name for name, value in (("maxReplicaCount", high), ("a trigger query", query),
                                        ("threshold", threshold), ("serverAddress", address)) if value is None]
    if missing:
        manual.append(f"ScaledObject for {target.obj.name}: the proposal names no {', '.join(missing)}; "
                      "a person completes it")
        return None
    assert query is not None and threshold is not None and address is not None
    from cortex_school.workers.plan import ScaleTrigger

    trigger = ScaleTrigger(type="prometheus", server_address=address.group(1).rstrip("."),
                           query=query.group(1).strip(), threshold=threshold.group(1))
    return PlannedResource(
        kind="ScaledObject", name=target.obj.name, namespace=target.obj.namespace, target=target.obj.name,
        companion_of=target.ref, min_replicas=low if low else None, max_replicas=high, triggers=[trigger],
        purpose=f"{purpose} (for {target.describe()})"[:500])


# The companions of a workload: the words that ask for one, the kinds it may serve, its recipe.
WORKLOAD_COMPANIONS: tuple[tuple[re.Pattern[str], tuple[str, ...],
                                 Callable[[Target, str, str, list[str]], PlannedResource | None]], ...] = (
    (PDB_WORDS, ("Deployment", "StatefulSet", "DaemonSet"), _pdb),
    (HPA_WORDS, SCALABLE, _hpa),
    (KEDA_WORDS, SCALABLE, _scaled_object),
)


def _service_monitor(service: Target, text: str, purpose: str, manual: list[str]) -> PlannedResource | None:
    labels = dict(service.obj.labels)
    if not labels:
        manual.append(f"ServiceMonitor for {service.describe()}: the Service has no labels to select it by; "
                      "label it first")
        return None
    port = re.search(r"\bon (?:the )?port\s+[`'\"]?([a-z][-a-z0-9]{0,14})\b", text)
    if port is None:
        manual.append(f"ServiceMonitor for {service.describe()}: the proposal names no port name to scrape")
        return None
    path = re.search(r"\bpath\s+[`'\"]?(/[-A-Za-z0-9_./]*)", text)
    interval = re.search(r"\binterval\s+(\d+[smh])\b", text)
    if re.search(r"bearer|token|basic ?auth|api key", text, re.I):
        manual.append(f"ServiceMonitor for {service.obj.name}: credentials for the scrape are not generated "
                      "(the gate allows port, path and interval only); a person adds them")
    return PlannedResource(
        kind="ServiceMonitor", name=service.obj.name, namespace=service.obj.namespace, selector=labels,
        companion_of=service.ref,
        ports=[Port(number=1, name=port.group(1))], path=path.group(1) if path else "/metrics",
        interval=interval.group(1) if interval else None, target_namespace=service.obj.namespace,
        purpose=f"{purpose} (for {service.describe()})"[:500])


def _namespace_note(target: Target, text: str, manual: list[str]) -> None:
    m = re.search(r"\bin (?:the )?([a-z0-9][-a-z0-9]{0,61}[a-z0-9]) namespace\b", text)
    if m and m.group(1) != target.obj.namespace:
        manual.append(f"the text names namespace {m.group(1)}; {target.obj.name} runs in "
                      f"{target.obj.namespace}, where its companion goes")


_METRIC = re.compile(r"\b([a-zA-Z_][a-zA-Z0-9_]*:[a-zA-Z0-9_:]+|[a-z][a-z0-9]*(?:_[a-z0-9]+){2,})\b")


def dashboard_panels(text: str) -> list[Panel]:
    """Panels for the metrics a proposal lists ("panels on vllm:time_to_first_token_seconds,
    vllm:gpu_cache_usage_perc"): a histogram's p95, a counter's rate, a gauge as it is."""
    m = re.search(r"\bpanels?\s+(?:on|for|of|showing)\s+(.{0,1500})", text, re.I | re.S)
    if not m:
        return []
    panels: list[Panel] = []
    for metric in dict.fromkeys(_METRIC.findall(m.group(1))):
        if metric.endswith(("_seconds", "_bytes")) and "usage" not in metric:
            expr = f"histogram_quantile(0.95, sum by (le) (rate({metric}_bucket[5m])))"
            title = f"{metric} p95"
        elif metric.endswith("_total"):
            expr, title = f"sum(rate({metric}[5m]))", f"{metric} per second"
        else:
            expr, title = f"sum({metric})", metric
        panels.append(Panel(title=title[:200], expr=expr))
    return panels[:30]


def dashboard(improvement: Improvement, text: str, namespace: str) -> list[PlannedResource]:
    panels = dashboard_panels(text) if DASHBOARD_WORDS.search(text) else []
    if not panels:
        return []
    from cortex_school.workers.planning.extraction import base_name

    return [PlannedResource(kind="GrafanaDashboard", name=with_suffix(base_name(improvement.description), "dashboard"),
                            namespace=namespace, panels=panels, purpose=improvement.description[:100])]
