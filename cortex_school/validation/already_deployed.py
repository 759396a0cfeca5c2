"""Already deployed: a proposal to deploy something the platform already runs.

The design asks the duplicate check to search the GitOps repository ("not already
implemented"); comparing with past improvements alone missed every component a real
platform already had. This check reads the platform model (the GitOps repository at its
current revision: objects, Helm charts, Kustomizations, ArgoCD Applications, and the
catalogue's names, aliases, images and charts) and flags each component the proposal
would *deploy* that is already there, citing the objects and files. A change *to* an
existing component (a PDB, an HPA, a ServiceMonitor, hardening, an upgrade) is not a
duplicate and is not flagged.

Without a readable repository the check says it could not look (a non-conflict finding);
it never passes silently.
"""

from __future__ import annotations

from cortex_school.models import Finding, Improvement
from cortex_school.platform_model import Platform, PlatformObject
from cortex_school.platform_model.components import Component
from cortex_school.platform_model.mentions import mentions
from cortex_school.validation.base import PlatformCheck

NAME = "already_deployed"


class AlreadyDeployedCheck(PlatformCheck):
    name = NAME

    def run(self, improvement: Improvement) -> list[Finding]:
        platform = self.platform()
        if platform is None:
            return self.not_checked()
        text = self.text(improvement)
        found_mentions = mentions(text, platform)
        deploying = [m for m in found_mentions if m.intent == "deploys"]
        subject = mentions(improvement.description, platform)
        found: list[Finding] = []
        seen: set[str] = set()
        for m in deploying:
            component = platform.components.get(m.component)
            if component is None:
                overlap = self._overlap(platform, m.component)
                if overlap and m.component not in seen:
                    seen.add(m.component)
                    found.append(Finding(check=self.name, conflict=False, related_id=m.component,
                                         reason=overlap[:1000]))
                continue
            if component.name in seen:
                continue
            seen.add(component.name)
            where = ", ".join(sorted(component.namespaces)) or "the cluster"
            found.append(Finding(
                check=self.name, conflict=True, related_id=component.name,
                reason=(f"already deployed: {component.title} runs in {where} "
                        f"({component.evidence[0] if component.evidence else 'see the platform model'}); "
                        f"the proposal would deploy it again (\"{m.text}\")")[:1000],
                evidence=component.evidence[:10]))
        for m in subject:  # a companion the proposal adds that the component already has
            component = platform.components.get(m.component)
            if m.intent != "changes" or component is None or component.name in seen:
                continue
            existing = existing_companions(platform, component, m.clause)
            if existing:
                seen.add(component.name)
                found.append(Finding(
                    check=self.name, conflict=True, related_id=component.name,
                    reason=(f"already deployed: {component.title} already has "
                            f"{', '.join(o.describe() for o in existing[:3])}; the proposal would add it "
                            f"again (\"{m.clause[:120]}\")")[:1000],
                    evidence=[o.describe() for o in existing[:10]]))
        if not any(f.conflict for f in found):
            found.append(Finding(check=self.name, conflict=False,
                                 reason="nothing the proposal deploys is already running"))
        return found

    @staticmethod
    def _overlap(platform: Platform, name: str) -> str | None:
        """A note (not a conflict) when what the proposal deploys would do the main job of
        something already running (its first capability in the catalogue)."""
        entry = platform.catalogue.entries.get(name)
        if entry is None or not entry.provides:
            return None
        providers = platform.has_capability(entry.provides[0])
        if not providers:
            return None
        return (f"{entry.title} would provide {entry.provides[0]}, which the platform already has: "
                f"{providers[0]}")


# A companion a proposal may add to an existing component: the words that name it, and the
# kinds that are it. Each is related to the component by what Kubernetes itself uses: a
# selector that matches its pods, a scale target that is its workload, or (for scheduled
# jobs) a name that carries both the component's and the companion's name.
COMPANIONS: tuple[tuple[frozenset[str], frozenset[str]], ...] = (
    (frozenset({"pdb", "poddisruptionbudget", "disruption"}), frozenset({"PodDisruptionBudget"})),
    (frozenset({"hpa", "horizontalpodautoscaler", "autoscaler", "autoscale", "autoscaling"}),
     frozenset({"HorizontalPodAutoscaler", "ScaledObject"})),
    (frozenset({"servicemonitor", "podmonitor", "scrape", "scraping"}), frozenset({"ServiceMonitor", "PodMonitor"})),
    (frozenset({"networkpolicy", "networkpolicies"}), frozenset({"NetworkPolicy"})),
    (frozenset({"snapshot", "snapshots", "backup", "backups"}),
     frozenset({"CronJob", "ScheduledBackup", "Backup", "Schedule", "VolumeSnapshot"})),
)
_JOB_WORDS = ("snapshot", "backup", "dump")


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def existing_companions(platform: Platform, component: Component, clause: str) -> list[PlatformObject]:
    """The objects of the companion kind ``clause`` names that already serve ``component``."""
    words = {w.strip(".,;:()\"'").lower() for w in clause.split()}
    kinds = frozenset().union(*(k for nouns, k in COMPANIONS if nouns & words))
    if not kinds:
        return []
    pods = [{**o.pod_labels} for o in component.objects if o.pod_labels]
    names = {o.name for o in component.objects} | {component.name}
    services = [o.selector for o in platform.inventory.by_kind("Service")
                if o.selector and any(_matches(o.selector, p) for p in pods)]
    out = []
    for o in platform.inventory.objects:
        if o.kind not in kinds or o.deployed is False:
            continue
        if o.kind in ("PodDisruptionBudget", "NetworkPolicy") and any(_matches(o.selector, p) for p in pods):
            out.append(o)
        elif o.kind in ("HorizontalPodAutoscaler", "ScaledObject") and o.target in names:
            out.append(o)
        elif o.kind in ("ServiceMonitor", "PodMonitor") and (
                any(_matches(o.selector, p) for p in pods) or any(_matches(o.selector, s) for s in services)):
            out.append(o)
        elif o.kind in ("CronJob", "ScheduledBackup", "Backup", "Schedule", "VolumeSnapshot") and \
                any(n in o.name for n in names) and (o.kind != "CronJob" or any(w in o.name for w in _JOB_WORDS)):
            out.append(o)
    return out

