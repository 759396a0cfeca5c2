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

import re

from cortex_school.models import Finding, Improvement
from cortex_school.platform_model import Platform, PlatformObject
from cortex_school.platform_model.components import Component, without_registry
from cortex_school.platform_model.files import settings_in
from cortex_school.platform_model.mentions import DEPLOY_VERBS, image_references, mentions
from cortex_school.platform_model.model import image_repository
from cortex_school.validation.base import PlatformCheck
from cortex_school.validation.normative import clean_text

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
        subject = mentions(clean_text(improvement.description), platform)
        found: list[Finding] = []
        seen: set[str] = set()
        for m in deploying:
            component = platform.components.get(m.component)
            if component is None:
                overlap = self._overlap(platform, m.component, m.text) if m.component not in seen else None
                if overlap:
                    seen.add(m.component)
                    found.append(overlap)
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
        for m in found_mentions:  # "convert the Qdrant Deployment to a StatefulSet" when it is one
            component = platform.components.get(m.component)
            if m.intent != "changes" or component is None or component.name in seen:
                continue
            existing = already_of_kind(component, m.clause)
            if existing:
                seen.add(component.name)
                found.append(Finding(
                    check=self.name, conflict=True, related_id=component.name,
                    reason=(f"already done: {component.title} already runs as {existing[0].describe()}; the "
                            f"proposal would convert it again (\"{m.clause[:120]}\")")[:1000],
                    evidence=[o.describe() for o in existing[:10]]))
        found += self._same_images(platform, text, seen)
        found += self._named_objects(platform, text, seen)
        found += self._flags_already_set(platform, text, {m.component for m in found_mentions}, seen)
        if not any(f.conflict for f in found):
            found.append(Finding(check=self.name, conflict=False,
                                 reason="nothing the proposal deploys is already running"))
        return found

    def _named_objects(self, platform: Platform, text: str, seen: set[str]) -> list[Finding]:
        """An object the proposal creates by kind and name ("create the Service
        postgres-primary", "a postgres-primary ClusterIP Service") that the repository
        already defines (any namespace: the proposal's namespace may well be wrong)."""
        out: list[Finding] = []
        index = {(o.kind.lower(), o.name): o for o in platform.inventory.objects if o.deployed is not False}
        for kind, name in created_objects(text):
            obj = index.get((kind.lower(), name))
            key = f"{kind}/{name}"
            if obj is None or key in seen:
                continue
            seen.add(key)
            out.append(Finding(check=self.name, conflict=True, related_id=key[:200],
                               reason=(f"already deployed: {obj.describe()} already exists; the proposal would "
                                       f"create {kind} {name}")[:1000],
                               evidence=[obj.describe()]))
        return out

    def _same_images(self, platform: Platform, text: str, seen: set[str]) -> list[Finding]:
        """An image the proposal would run that the repository already runs (a workload's
        container, or an image in a chart's values), whatever the component is called."""
        out: list[Finding] = []
        running = platform.image_index()
        for clause, image in image_references(text):
            repo = image_repository(image)
            where = running.get(repo) or running.get(without_registry(repo))
            if not where or repo in seen or not _deploys(clause) or _changing(clause, image):
                continue
            seen.add(repo)
            out.append(Finding(check=self.name, conflict=True, related_id=repo[:200],
                               reason=(f"already deployed: the image {repo} already runs ({where[0]}); the "
                                       f"proposal would run it again (\"{clause[:120]}\")")[:1000],
                               evidence=where[:10]))
        return out

    def _flags_already_set(self, platform: Platform, text: str, named: set[str], seen: set[str]) -> list[Finding]:
        """A command-line flag the proposal would add (``--enable-prefix-caching``) that the
        files of a component it names, or the repository's configuration files that are not
        Kubernetes objects (K3s server config), already set."""
        flags = [m.group(1) for m in _FLAG.finditer(text[:MAX_FLAG_TEXT])
                 if m.group(1) not in _GENERIC_FLAGS and not _unsetting(text, m.start())]
        flags = list(dict.fromkeys(flags))
        if not flags:
            return []
        files = {o.file for name in named if name in platform.components
                 for o in platform.components[name].objects if not o.file.startswith("live:")}
        files |= {f for f, _ in platform.inventory.not_objects}
        out: list[Finding] = []
        for flag in flags:
            where = next((f for f in sorted(files)[:MAX_FILES] if flag in platform.file_settings(f)), None)
            if where is None or flag in seen:
                continue
            seen.add(flag)
            out.append(Finding(check=self.name, conflict=True, related_id=flag,
                               reason=f"already configured: --{flag} is already set in {where}"[:1000],
                               evidence=[f"{where}: --{flag}"]))
        return out

    def _overlap(self, platform: Platform, name: str, said: str) -> Finding | None:
        """What the proposal deploys would do the main job (its first capability in the
        catalogue) of something already running:

        - a running component's own configuration does that job (Alloy's config has
          ``loki.source.kubernetes_events``: an event exporter would ship every event
          twice): a conflict of this check, citing the file and the setting;
        - that job is also the main job of a running component (Redis for a cache where
          Valkey is the cache): a conflict of :data:`OVERLAP` for a person to weigh
          (keeping both can be right), not counted as already deployed;
        - a running component can do it among other things: a note."""
        entry = platform.catalogue.entries.get(name)
        if entry is None or not entry.provides:
            return None
        job = entry.provides[0]
        configured = platform.configured(job)
        if configured:
            return Finding(check=self.name, conflict=True, related_id=name,
                           reason=(f"already provided: {configured[0]} already does {job}; the proposal would add "
                                   f"{entry.title} for the same job (\"{said}\")")[:1000],
                           evidence=configured[:10])
        providers = platform.has_capability(job)
        if not providers:
            return None
        main = [p for p in providers if _main_job(platform, p.split(" ", 1)[0]) == job]
        if main:
            return Finding(check=OVERLAP, conflict=True, related_id=name,
                           reason=(f"overlaps: {entry.title} would do {job}, the main job of {main[0]}; "
                                   f"a person decides whether both should run")[:1000],
                           evidence=main[:10])
        return Finding(check=self.name, conflict=False, related_id=name,
                       reason=(f"{entry.title} would provide {job}, which the platform already has: "
                               f"{providers[0]}")[:1000])


OVERLAP = "capability_overlap"


def _main_job(platform: Platform, name: str) -> str | None:
    entry = platform.catalogue.entries.get(name)
    return entry.provides[0] if entry is not None and entry.provides else None


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


MAX_COMPANION_PODS = 200  # distinct pod-label sets of one component compared


def existing_companions(platform: Platform, component: Component, clause: str) -> list[PlatformObject]:
    """The objects of the companion kind ``clause`` names that already serve ``component``."""
    words = {w.strip(".,;:()\"'").lower() for w in clause.split()}
    kinds = frozenset().union(*(k for nouns, k in COMPANIONS if nouns & words))
    if not kinds:
        return []
    pods = list({frozenset(o.pod_labels.items()) for o in component.objects if o.pod_labels})[:MAX_COMPANION_PODS]
    by_label: dict[tuple[str, str], set[int]] = {}
    for i, labels in enumerate(pods):
        for item in labels:
            by_label.setdefault(item, set()).add(i)

    def selects(selector: dict[str, str]) -> bool:
        """Whether the selector matches one of the component's pod-label sets (by index)."""
        if not selector:
            return False
        matching: set[int] | None = None
        for item in selector.items():
            hits = by_label.get(item)
            if not hits:
                return False
            matching = set(hits) if matching is None else matching & hits
            if not matching:
                return False
        return bool(matching)

    names = {o.name for o in component.objects} | {component.name}
    service_selectors = [o.selector for o in platform.inventory.by_kind("Service") if selects(o.selector)]
    services = list({frozenset(sel.items()) for sel in service_selectors})[:MAX_COMPANION_PODS]

    def selects_service(selector: dict[str, str]) -> bool:
        return bool(selector) and any(frozenset(selector.items()) <= sel for sel in services)

    out = []
    for o in platform.inventory.objects:
        if o.kind not in kinds or o.deployed is False:
            continue
        if o.kind in ("PodDisruptionBudget", "NetworkPolicy") and selects(o.selector):
            out.append(o)
        elif o.kind in ("HorizontalPodAutoscaler", "ScaledObject") and o.target in names:
            out.append(o)
        elif o.kind in ("ServiceMonitor", "PodMonitor") and (selects(o.selector) or selects_service(o.selector)):
            out.append(o)
        elif o.kind in ("CronJob", "ScheduledBackup", "Backup", "Schedule", "VolumeSnapshot") and \
                any(n in o.name for n in names) and (o.kind != "CronJob" or any(w in o.name for w in _JOB_WORDS)):
            out.append(o)
    return out



_FLAG = re.compile(r"(?<![\w-])--([a-z][a-z0-9]*(?:-[a-z0-9]+)+|[a-z]{4,})(?![\w-])")
# Flags of the tools a proposal runs, not settings of what it configures.
_GENERIC_FLAGS = frozenset({"install", "namespace", "create-namespace", "set", "values", "version", "wait",
                            "dry-run", "help", "force", "atomic", "debug", "output", "context", "kubeconfig"})


MAX_FLAG_TEXT = 50_000  # characters of a proposal read for flags (each lookup is one set membership)
MAX_FILES = 200  # files looked in
_UNSETTING = frozenset("remove removes removing drop drops dropping disable disables disabling unset unsets "
                       "delete deletes deleting without strip".split())


def _unsetting(text: str, at: int) -> bool:
    """"Remove --x from the args", "--x=false": the proposal takes the flag away."""
    if re.match(r"--[\w-]+=(?:false|0|no|off)\b", text[at:at + 200], re.IGNORECASE):
        return True
    before = re.findall(r"[A-Za-z]+", text[max(0, at - 60):at])[-3:]
    return any(w.lower() in _UNSETTING for w in before)


def _flag_set(text: str, flag: str) -> bool:
    """``--flag`` anywhere (not ``=false``), or ``flag: <scalar, not off>`` as a YAML key,
    outside comments (K3s config files, container args)."""
    return flag in settings_in(text)


_CHANGING = frozenset("upgrade upgrades upgrading update updates updating bump bumps bumping pin pins pinning "
                      "patch patches patching roll rolls rollback downgrade".split())


def _changing(clause: str, image: str) -> bool:
    """"Upgrade qdrant/qdrant to v1.13.0": a change word governs the image."""
    at = clause.lower().find(image)
    before = re.findall(r"[A-Za-z]+", clause[max(0, at - 60):max(0, at)])[-4:] if at >= 0 else []
    return any(w.lower() in _CHANGING for w in before)


_RUN_VERBS = DEPLOY_VERBS | {"run", "runs", "running", "start", "starts", "serve", "serves"}


def _deploys(clause: str) -> bool:
    """Whether the clause that names an image would run it."""
    return any(w.lower() in _RUN_VERBS for w in re.findall(r"[A-Za-z-]+", clause))


_CREATE = r"(?i:create|creates|creating|add|adds|adding|deploy|deploys|introduce|define)"
_KINDS = (r"(?P<k>Service|Deployment|StatefulSet|DaemonSet|CronJob|ConfigMap|Ingress|IngressRoute|Middleware|"
          r"ServiceMonitor|PodMonitor|PrometheusRule|NetworkPolicy|PodDisruptionBudget|HorizontalPodAutoscaler|"
          r"ScaledObject|ServiceAccount|Role|RoleBinding|ClusterRole|ClusterRoleBinding|Certificate|"
          r"PersistentVolumeClaim|Application|ApplicationSet)")
_NAME = r"(?P<n>[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)"
# "create the Service postgres-primary": a kind, then the name (a name before a kind is
# usually the target of a change: "a PDB for the label-renderer Deployment").
_CREATED = (re.compile(r"\b" + _CREATE + r"\s+(?i:a\s+|an\s+|the\s+)?(?i:new\s+)?" + _KINDS + r"\s+`?" + _NAME
                       + r"`?(?![\w-]|\.[\w-])"),)


def created_objects(text: str) -> list[tuple[str, str]]:
    """(kind, name) of the objects a text says it creates by name."""
    out: list[tuple[str, str]] = []
    for pattern in _CREATED:
        for m in pattern.finditer(text):
            name = m.group("n")
            if "-" in name or any(c.isdigit() for c in name) or len(name) > 3:
                out.append((m.group("k"), name))
    return list(dict.fromkeys(out))


_CONVERT = re.compile(r"\b(?i:convert|converting|move|moving|migrate|migrating|turn|turning|switch|switching|"
                      r"change|changing|run|running|as)\b[^.;]{0,80}?\b(?i:to|into|as)\s+(?i:a\s+|an\s+)?"
                      r"(?P<k>StatefulSet|DaemonSet|Deployment)s?\b")


def already_of_kind(component: Component, clause: str) -> list[PlatformObject]:
    """"Convert the Qdrant Deployment to a StatefulSet" when Qdrant already is one."""
    m = _CONVERT.search(clause)
    if not m:
        return []
    return [o for o in component.objects if o.kind == m.group("k") and o.deployed is not False][:3]
