"""Which components a proposal's text names, and whether it would deploy them or change
something that already exists.

Names are recognised against the catalogue (names, aliases, chart names, image
repositories) and against what the platform already runs (so a component the catalogue
does not know, e.g. an in-house service, is still recognised by its own name). Image
references in the text count too.

The intent of each mention is read from its clause, not guessed from the whole text:

* *deploys*: an installing verb governs it ("deploy Qdrant", "set up a Trivy server",
  "add Falco for runtime security", "introduce NATS", "run vLLM");
* *changes*: it is the object of a companion ("a PodDisruptionBudget for the Qdrant
  StatefulSet", "an HPA for the api Deployment", "scrape Redis", "harden", "upgrade",
  "tune", "back up", "monitor", "alert on", "restrict"), or a change verb governs it;
* *relies on*: it is named as something used ("store vectors in Qdrant", "publish to NATS",
  "behind Traefik", "via KEDA", "with cert-manager");
* *bundles*: it comes inside something the proposal installs ("the chart's bundled
  ClickHouse"): neither a second installation nor a dependency.

Anything else is a plain mention. A mention may be several of these in a long text; a
check decides what each means for it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cortex_school.platform_model.components import Catalogue, Platform, normalise
from cortex_school.platform_model.model import image_repository

_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9./+_=:-]*[A-Za-z0-9]|[A-Za-z0-9]")
# An image reference has none of these characters, so the text is cut at them first; a
# piece longer than any reference is skipped (the pattern is quadratic in a piece's length).
_NOT_IMAGE = re.compile(r"[^\w.:/-]+")
_MAX_IMAGE_PIECE = 512
_IMAGE = re.compile(r"\b((?:[a-z0-9.-]+(?::\d+)?/)?[a-z0-9][a-z0-9._-]*(?:/[a-z0-9][a-z0-9._-]*)+(?::[\w.-]+)?)\b")
# (?<!\s): a run of whitespace is tried from its start only (else a long run not followed
# by "then" is re-scanned from every position in it: quadratic).
_CLAUSE = re.compile(r"[.;:!?](?=\s|$)|\n|,\s+(?:and|but|then|so|while)\b|(?<!\s)\s+(?:and then|then)\s+", re.I)
DEPLOY_VERBS = frozenset("""deploy deploys deploying install installs installing setup add adds adding
introduce introduces introducing roll stand spin bring adopt adopting provision
provisioning host self-host selfhost launch create bootstrap onboard""".split())
CHANGE_WORDS = frozenset("""for upgrade upgrades upgrading update updates tune tunes tuning harden hardens
hardening restrict restricts scale scales scaling patch patches pin pins protect protects back backup
backups snapshot snapshots monitor monitors monitoring scrape scrapes scraping alert alerts alerting
limit limits resize expose exposes rotate rotates replicate replicas pdb poddisruptionbudget hpa
networkpolicy servicemonitor podmonitor prometheusrule dashboard configure configures tighten
secure secures lock reconfigure migrate retention""".split())
# A companion named after its target ("a Qdrant PodDisruptionBudget", "a Traefik rate-limit
# middleware", "the Redis exporter"): the words that follow a component name and make it
# the target of a change, not something deployed. Kubernetes kinds count too.
COMPANION_NOUNS = frozenset("""middleware middlewares ingressroute ingressroutes route routes rule rules
policy policies exporter dashboard dashboards alert alerts backup backups snapshot snapshots config
configuration configmap settings plugin plugins sidecar probe probes limit limits quota quotas job jobs
cronjob monitor servicemonitor podmonitor prometheusrule pdb poddisruptionbudget hpa autoscaler
horizontalpodautoscaler networkpolicy networkpolicies scaledobject scaledjob certificate certificates
volume volumes pvc persistentvolumeclaim storage retention replicas replica flag flags metrics logs
traces tracing upgrade version chart values secret secrets credentials role rolebinding serviceaccount
statefulset deployment daemonset service ingress namespace collection collections index indexes
cluster-issuer clusterissuer issuer pattern patterns approach datasource source sources integration
plugin""".split())
RELY_WORDS = frozenset("""in into to from via through behind with using use uses on atop backed by
publish publishes subscribe consume consumes store stores query queries send sends push pushes""".split())
_STOP = frozenset("""a an the our its their this that new existing current dedicated small single
self hosted managed open source cluster-wide cluster local""".split())


@dataclass(frozen=True)
class Mention:
    component: str  # canonical name (catalogue) or the platform's own component name
    text: str  # the words as written
    intent: str  # deploys | changes | relies-on | bundles | mentions
    clause: str


def _clauses(text: str) -> list[str]:
    return [c.strip() for c in _CLAUSE.split(text) if c and c.strip()]


def _ngrams(words: list[str], n: int) -> list[tuple[int, str]]:
    return [(i, " ".join(words[i:i + n])) for i in range(len(words) - n + 1)]


def _intent(words: list[str], start: int, lowered: list[str] | None = None) -> str:
    """What the clause does to the name at ``start``: look back to the nearest verb-like
    word (skipping articles and adjectives), at most six words (``lowered``: the words
    in lower case, computed once per clause by the caller)."""
    if lowered is None:
        lowered = [w.lower() for w in words]
    for j in range(start - 1, max(-1, start - 7), -1):
        if "/" in words[j]:
            continue
        w = lowered[j]
        if w in ("bundled", "bundles", "bundling", "embedded", "built-in"):
            return "bundles"  # comes inside something else the proposal installs
        if w in CHANGE_WORDS or w in COMPANION_NOUNS:  # "create the Service <name>": an object for it
            return "changes"
        if w in RELY_WORDS:
            return "relies-on"
        if w in DEPLOY_VERBS or (w == "set" and j + 1 < len(lowered) and lowered[j + 1] == "up"):
            return "deploys"
    return "mentions"


_USE_ROLES = frozenset("source sources datasource datasources backend backends sink sinks target targets "
                       "destination upstream exporter endpoint store".split())


_ADDING = frozenset("add adds adding".split())  # "add X as a data source"; "deploy X as a store" installs X


def _verb_of(lowered: list[str], start: int) -> str:
    """The installing verb that governs the name at ``start`` (as :func:`_intent` finds it)."""
    for j in range(start - 1, max(-1, start - 7), -1):
        if lowered[j] in DEPLOY_VERBS:
            return lowered[j]
    return ""


def _used_as(lowered: list[str], end: int) -> bool:
    """"<name> as a (Grafana) data source": what follows "as" is a role it plays for something else."""
    return end < len(lowered) and lowered[end] == "as" and any(w in _USE_ROLES for w in lowered[end + 1:end + 5])


def _own_kind_after(cat: Catalogue, name: str, words: list[str], end: int) -> bool:
    """"a Kyverno ClusterPolicy": the next word is a custom resource kind the component
    itself serves, so the clause creates an object for it, not the component."""
    if end >= len(words):
        return False
    word = words[end]
    return word[:1].isupper() and word.lower() in cat.kinds_of(name)  # a kind is written as one: "ClusterPolicy"


# Nouns that say how a component is packaged or placed, not an object added to it: under
# an installing verb "deploy the Qdrant Helm chart" still deploys Qdrant.
PACKAGING = frozenset("""chart charts helm service services namespace namespaces storage cluster clusters
deployment deployments statefulset statefulsets daemonset version values instance instances server
operator image images container containers release""".split())
# "the Velero backup tool": the companion noun describes the thing installed.
_WHAT_IT_IS = frozenset("tool tools system solution server service operator controller platform stack engine "
                        "agent suite framework".split())


def _companion_after(words: list[str], end: int, installing: bool = False) -> bool:
    """"Qdrant PodDisruptionBudget", "Traefik rate-limit middleware": a companion noun
    among the two words after the name (the second only after a modifier, never across a
    preposition or an article). Under an installing verb, a packaging noun ("the Qdrant Helm
    chart") or a description ("the Velero backup tool") is not a companion."""
    for k in range(end, min(end + 2, len(words))):
        w = words[k].lower()
        if w in COMPANION_NOUNS:
            if installing and (w in PACKAGING or (k + 1 < len(words) and words[k + 1].lower() in _WHAT_IT_IS)):
                return False
            return True
        if w in RELY_WORDS or w in ("a", "an", "the", "and", "or"):
            return False
    return False


def mentions(text: str, platform: Platform | None = None, catalogue: Catalogue | None = None) -> list[Mention]:
    """Every component ``text`` names, with the intent of its clause; names matched
    longest first (so "cert manager" is one mention, not two)."""
    cat = catalogue or (platform.catalogue if platform else None)
    if cat is None:
        raise ValueError("a catalogue or a platform is needed")
    own = {name for name in (platform.components if platform else {})}
    found: list[Mention] = []
    seen: set[tuple[str, str]] = set()
    for clause in _clauses(text):
        words = _WORD.findall(clause)
        lowered = [w.lower() for w in words]
        taken: set[int] = set()
        for n in (4, 3, 2, 1):
            for i, gram in _ngrams(words, n):
                if any(k in taken for k in range(i, i + n)) or gram.lower() in _STOP or \
                        any("/" in w or w.lower().endswith((".yaml", ".yml", ".json")) for w in words[i:i + n]):
                    continue  # a path or a file names where something lives, not what is deployed
                key = normalise(gram)
                if "=" in gram or ":" in gram:
                    continue  # a setting's value (KEY=value, a port), not a name
                if len(key) < 3 and n == 1:
                    continue
                name = cat.name_for(key) or (key if key in own else None)
                if name is None:
                    continue
                if n == 1 and key in cat.common and not words[i][:1].isupper():
                    continue  # "every vector in RAM", "a temporal gap": the word, not the product
                if n == 1 and i + 1 < len(words) and cat.name_for(words[i + 1]) and \
                        cat.name_for(words[i + 1]) != name:
                    continue  # a vendor's prefix ("Grafana Tempo", "Grafana Loki"): the next word is the name
                taken.update(range(i, i + n))
                intent = _intent(words, i, lowered)
                if intent in ("deploys", "mentions") and _companion_after(words, i + n, intent == "deploys"):
                    intent = "changes"
                elif intent == "deploys" and ((_used_as(lowered, i + n) and _verb_of(lowered, i) in _ADDING)
                                              or _own_kind_after(cat, name, words, i + n)):
                    intent = "relies-on"  # "add Tempo as a data source", "create a Kyverno ClusterPolicy"
                mention = Mention(component=name, text=gram, intent=intent, clause=clause)
                if (name, mention.intent) not in seen:
                    seen.add((name, mention.intent))
                    found.append(mention)
        for image in _images_in(clause):
            name = cat.image_for(image)
            looks_like_image = ":" in image.rsplit("/", 1)[-1] or "." in image.split("/", 1)[0]
            if name is None and platform is not None and looks_like_image:
                repo = image_repository(image)  # its last segment, if that is a component's name
                last = repo.rsplit("/", 1)[-1]
                name = last if "/" in repo and last in own else None
            if not name:
                continue
            at = next((k for k, w in enumerate(lowered) if image in w), None)
            intent = _intent(words, at, lowered) if at is not None else "mentions"
            intent = "changes" if intent == "changes" else "deploys"  # "upgrade qdrant/qdrant": a change
            if (name, intent) not in seen:
                seen.add((name, intent))
                found.append(Mention(component=name, text=image, intent=intent, clause=clause))
    return found


def _images_in(clause: str) -> list[str]:
    """Image references in a clause: each piece between characters no reference has is one
    reference at most (matched whole: linear, a piece is never re-scanned from every dot)."""
    out = []
    for piece in _NOT_IMAGE.split(clause.lower()):
        if "/" not in piece or len(piece) > _MAX_IMAGE_PIECE:
            continue
        m = _IMAGE.fullmatch(piece.strip(".:-,"))
        if m:
            out.append(m.group(1))
    return out


def image_references(text: str) -> list[tuple[str, str]]:
    """(clause, image) for every image reference in ``text`` (``org/app[:tag]``, with or
    without a registry)."""
    return [(clause, image) for clause in _clauses(text) for image in _images_in(clause)
            if not image.startswith(("http", "/")) and "." not in image.rsplit("/", 1)[-1].split(":")[0]]
