"""Missing dependencies: components an improvement relies on that the platform does not
run (open vocabulary: the platform model and the component catalogue)."""

from __future__ import annotations

import re

from cortex_school.models import Finding, Improvement
from cortex_school.platform_model import Platform
from cortex_school.platform_model.mentions import mentions as component_mentions
from cortex_school.validation.base import PlatformCheck


class PlatformDependencyCheck(PlatformCheck):
    """Missing dependency, open vocabulary: every component the proposal relies on (named
    with a preposition of use, or as the target of a change) is looked up in the platform
    model; it is present when the repository runs it, when a custom resource in use implies
    it, or when a running component of the same kind already provides its main capability
    (Prometheus through kube-prometheus-stack). A component found nowhere is a conflict;
    what the proposal deploys itself is not a dependency."""

    name = "dependency"

    def run(self, improvement: Improvement) -> list[Finding]:
        platform = self.platform()
        if platform is None:
            return self.not_checked()
        text = self.text(improvement)
        found = component_mentions(text, platform)
        brought = {m.component for m in found if m.intent in ("deploys", "bundles")}
        findings: list[Finding] = []
        checked: set[str] = set()
        for m in found:
            if m.intent not in ("relies-on", "changes") or m.component in brought or m.component in checked:
                continue
            checked.add(m.component)
            if m.component in platform.components:
                continue
            substitute = _provided_by(platform, m.component)
            if substitute:
                continue
            entry = platform.catalogue.entries.get(m.component)
            title = entry.title if entry else m.component
            findings.append(Finding(
                check=self.name, conflict=True, related_id=m.component,
                reason=(f"missing dependency: {title} is not deployed (not in the GitOps repository, "
                        f"no custom resource implies it) and the proposal relies on it (\"{m.clause[:120]}\")")[:1000],
                evidence=[f"components present: {', '.join(sorted(platform.components)[:40])}"]))
        findings += self._operators(platform, text, brought | checked)
        return findings or [Finding(check=self.name, conflict=False,
                                    reason=f"every component it relies on is present ({', '.join(sorted(checked)) or 'none named'})")]


    def _operators(self, platform: Platform, text: str, handled: set[str]) -> list[Finding]:
        """Custom resources the proposal would create whose operator the platform lacks:
        a ``ClusterPolicy`` needs Kyverno, a ``RayCluster`` KubeRay (the catalogue's kinds)."""
        out: list[Finding] = []
        in_use = {f"{o.group}/{o.kind}".lower() for o in platform.inventory.objects}
        for group_kind, operator in created_kinds(text, platform):
            if operator in handled or operator in platform.components or group_kind.lower() in in_use:
                continue  # (no substitute by capability: only the operator reconciles its kinds)
            handled.add(operator)
            entry = platform.catalogue.entries.get(operator)
            title = entry.title if entry else operator
            kind = group_kind.rsplit("/", 1)[-1]
            out.append(Finding(
                check=self.name, conflict=True, related_id=operator,
                reason=(f"missing dependency: {title} is not deployed and the proposal creates {kind} "
                        f"({group_kind.rsplit('/', 1)[0]}) objects, which only {title} reconciles"),
                evidence=[f"no {kind} in the repository and no {title} installation"]))
        return out


_CAMEL = re.compile(r"[A-Z][a-z0-9]+(?:[A-Z][a-z0-9]+)+")


def created_kinds(text: str, platform: Platform) -> list[tuple[str, str]]:
    """(``<group>/<Kind>``, operator) for each custom resource kind the text names: a
    CamelCase kind of two words or more by itself ("ClusterPolicy", "RayCluster"), a
    one-word kind only with its API group ("jetstream.nats.io/v1beta2 Stream")."""
    by_kind: dict[str, list[str]] = {}
    for group_kind in platform.catalogue.by_kind:
        by_kind.setdefault(group_kind.rsplit("/", 1)[-1], []).append(group_kind)
    out: list[tuple[str, str]] = []
    lowered = text.lower()
    named = {m.component for m in component_mentions(text, platform)}
    for word in sorted(set(re.findall(r"\b[A-Za-z][A-Za-z0-9]{2,60}\b", text))):
        candidates = by_kind.get(word.lower(), [])
        with_group = [gk for gk in candidates if gk.rsplit("/", 1)[0] in lowered]
        by_operator = [gk for gk in candidates if platform.catalogue.by_kind[gk] in named]
        if with_group:
            chosen = with_group[:1]
        elif _CAMEL.fullmatch(word) and word.lower() not in CORE_KINDS:
            chosen = by_operator[:1] or (candidates if len(candidates) == 1 else [])
        else:
            chosen = []  # a one-word kind ("Stream") or a Kubernetes kind: only with its group
        out += [(gk, platform.catalogue.by_kind[gk]) for gk in chosen]
    return sorted(set(out))


# Kinds Kubernetes itself serves: an operator's kind of the same name needs its API group.
CORE_KINDS = frozenset(k.lower() for k in """Pod Deployment StatefulSet DaemonSet ReplicaSet Job CronJob Service
Ingress IngressClass ConfigMap Secret ServiceAccount Role RoleBinding ClusterRole ClusterRoleBinding
PersistentVolume PersistentVolumeClaim StorageClass NetworkPolicy PodDisruptionBudget HorizontalPodAutoscaler
Namespace Node LimitRange ResourceQuota PriorityClass CustomResourceDefinition Endpoints EndpointSlice
ValidatingWebhookConfiguration MutatingWebhookConfiguration Lease Event VolumeSnapshot Gateway HTTPRoute""".split())


def _provided_by(platform: Platform, name: str) -> str | None:
    """A running component that covers ``name``: its base ("nats" for "nats-jetstream"), or
    one of the same kind that already provides its main capability."""
    for present in platform.components:
        if name.startswith(present + "-"):
            return present
    entry = platform.catalogue.entries.get(name)
    if entry is None or not entry.provides:
        return None
    for component in platform.components.values():
        other = platform.catalogue.entries.get(component.name)
        if other is not None and other.category == entry.category and entry.provides[0] in other.provides:
            return component.name
    return None
