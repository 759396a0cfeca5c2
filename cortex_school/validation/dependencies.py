"""Missing dependencies: components an improvement relies on that the platform does not
run (open vocabulary: the platform model and the component catalogue)."""

from __future__ import annotations

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
        return findings or [Finding(check=self.name, conflict=False,
                                    reason=f"every component it relies on is present ({', '.join(sorted(checked)) or 'none named'})")]


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
