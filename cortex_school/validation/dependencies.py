"""Missing dependencies: components an improvement relies on that the platform does not
run (open vocabulary: the platform model and the component catalogue)."""

from __future__ import annotations

import re

from cortex_school.models import Finding, Improvement
from cortex_school.platform_model import Platform
from cortex_school.platform_model.mentions import Mention
from cortex_school.platform_model.mentions import mentions as component_mentions
from cortex_school.validation.base import PlatformCheck
from cortex_school.validation.normative import _occurs_unremoved


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
        installs = {m.component for m in found if m.intent == "deploys" and _occurs_unremoved(text, m.text)}
        findings += self._operators(platform, text, installs | checked, found)
        return findings or [Finding(check=self.name, conflict=False,
                                    reason=f"every component it relies on is present ({', '.join(sorted(checked)) or 'none named'})")]


    def _operators(self, platform: Platform, text: str, handled: set[str], found: list[Mention]) -> list[Finding]:
        """Custom resources the proposal would create whose operator the platform lacks:
        a ``ClusterPolicy`` needs Kyverno, a ``RayCluster`` KubeRay (the catalogue's kinds).
        A kind several operators serve is satisfied by any of them."""
        out: list[Finding] = []
        in_use = {f"{o.group}/{o.kind}".lower() for o in platform.inventory.objects if o.deployed is not False}
        by_kind: dict[str, list[tuple[str, str]]] = {}
        for group_kind, operator in created_kinds(text, platform, found):
            by_kind.setdefault(group_kind.rsplit("/", 1)[-1], []).append((group_kind, operator))
        for kind, options in sorted(by_kind.items()):
            operators = sorted({op for _, op in options})
            if any(op in handled or op in platform.components for op in operators) or \
                    any(gk.lower() in in_use for gk, _ in options):
                continue  # (no substitute by capability: only an operator reconciles its kinds)
            handled.update(operators)
            titles = [platform.catalogue.entries[op].title if op in platform.catalogue.entries else op
                      for op in operators]
            groups = ", ".join(sorted({gk.rsplit("/", 1)[0] for gk, _ in options}))
            shown = next((w for w in re.findall(r"[A-Za-z][A-Za-z0-9]*", text) if w.lower() == kind), kind)
            who = titles[0] if len(titles) == 1 else " or ".join(titles)
            out.append(Finding(
                check=self.name, conflict=True, related_id=operators[0],
                reason=(f"missing dependency: {who} is not deployed and the proposal creates {shown} ({groups}) "
                        f"objects, which only {who} reconciles")[:1000],
                evidence=[f"no {shown} in the repository and no {who} installation"]))
        return out


_CAMEL = re.compile(r"[A-Z][a-z0-9]+(?:[A-Z][a-z0-9]+)+")


def created_kinds(text: str, platform: Platform, found: list[Mention] | None = None) -> list[tuple[str, str]]:
    """(``<group>/<Kind>``, operator) for each custom resource kind the text names: a
    CamelCase kind of two words or more by itself ("ClusterPolicy", "RayCluster"), a
    one-word kind only with its API group ("jetstream.nats.io/v1beta2 Stream")."""
    by_kind = platform.catalogue.by_kind_name
    out: list[tuple[str, str]] = []
    lowered = text.lower()
    named = {m.component for m in (component_mentions(text, platform) if found is None else found)}
    for word in sorted({m.group(0) for m in re.finditer(r"\b[A-Za-z][A-Za-z0-9]{2,60}\b", text)
                        if m.group(0).lower() in by_kind}):
        candidates = by_kind.get(word.lower(), [])
        with_group = [gk for gk in candidates if gk.rsplit("/", 1)[0] in lowered]
        if not with_group and not any(_creates(text, m.start()) for m in re.finditer(
                r"\b" + re.escape(word) + r"\b", text)):
            continue  # named, not created ("unlike an Istio VirtualService")
        by_operator = [gk for gk in candidates if platform.catalogue.by_kind[gk] in named]
        if with_group:
            chosen = with_group[:1]
        elif _CAMEL.fullmatch(word) and word.lower() not in CORE_KINDS:
            chosen = by_operator[:1] or candidates  # ambiguous: any of its operators will do
        else:
            chosen = []  # a one-word kind ("Stream") or a Kubernetes kind: only with its group
        out += [(gk, platform.catalogue.by_kind[gk]) for gk in chosen]
    return sorted(set(out))


_CREATING = frozenset("""create creates creating add adds adding define defines defining write writes apply
applies deploy deploys use uses using with manage manages managing declare declares replace reconcile
reconciled via through as""".split())
_COMPARING = frozenset("unlike instead rather than not never without versus vs compared like".split())


def _creates(text: str, at: int) -> bool:
    """Whether the kind at ``at`` is one the text would create: a creating word (or "kind:")
    within the six words before it, and no comparison ("unlike an Istio VirtualService")."""
    before = [w.lower() for w in re.findall(r"[A-Za-z]+:?", text[max(0, at - 80):at])[-6:]]
    if any(w in _COMPARING for w in before):
        return False
    return any(w in _CREATING or w == "kind:" for w in before)


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
