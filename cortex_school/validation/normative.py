"""Normative statements: the sentences in which a platform writes down its decisions, and
whether a proposal goes against one.

Architecture documents state decisions in many words: "we do not run a service mesh
(Istio, Linkerd)", "Alloy replaced Promtail", "Weaviate is deprecated and must not be
redeployed", "Applications always go through LiteLLM; they do not call vLLM directly",
"Traefik is the only ingress controller", a migrations table whose row reads
``| Promtail | Grafana Alloy | ✅ Done |``, a YAML comment ``minReplicaCount: 1  # Never
scale to zero``. A rule that only knows "X is forbidden" finds none of them.

A statement is a sentence (or table row, or comment) with a normative marker: a negation
(never, must not, do not, nobody, no longer, not to be, …), a retirement (deprecated,
replaced, removed, rejected, decommissioned, out of the question, off on purpose, instead
of, rather than), or an exclusive choice (only, always). From it this module reads:

* **banned**: what must not exist: the object of a negated *existence* verb ("we do not
  run Kafka"), the subject of a retirement ("Weaviate is deprecated"), what was replaced
  ("Alloy replaced Promtail", "instead of Langfuse", a migration table's *from* column).
  Each is a component (the catalogue's or the platform's) or a proper name, with the
  words that narrow it ("the Bitnami postgresql charts": only the Bitnami charts);
* **predicate** and **anchors**: for any other negation ("never scale to zero", "do not
  call vLLM directly", "are never placed on local-path"), the words of the forbidden
  action and what it is about (the sentence's subject, the section heading, the object a
  comment sits on);
* **chosen**: for an exclusive choice ("Qdrant is the only vector database"), the
  components chosen.

A proposal goes against a statement (offline, fail closed) when it uses something banned
(not in a clause that removes or replaces it); when it does the forbidden action on what
the statement is about; or when it deploys or relies on a component whose main capability
is the chosen one's. Each conflict cites the document, section and sentence, so a person
can judge it. These are general rules about how decisions are phrased, not a list of
components: they were written against one labelled fixture and are measured on others
(``bench/judgment_bench.py``).
"""

from __future__ import annotations

import bisect
import itertools
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field

from cortex_school.platform_model import Platform
from cortex_school.platform_model.components import normalise
from cortex_school.platform_model.mentions import Mention

_TOKEN = re.compile(r"`[^`\n]{1,80}`|[A-Za-z0-9][A-Za-z0-9._+/-]*[A-Za-z0-9]|[A-Za-z0-9]|[,()+&]")
_SENTENCE = re.compile(r"(?<!e\.g\.)(?<!i\.e\.)(?<!etc\.)(?<!vs\.)(?<=[.!?])\s+(?=\S)|\n\s*\n|"
                       r"\n(?=\s*(?:[-*+]|\d+\.)\s)|\n(?=#)")
_FENCE = re.compile(r"```.*?(?:```|$)", re.DOTALL)
_HEADING = re.compile(r"^(#{1,6}\s.*)$", re.MULTILINE)
_CLAUSE = re.compile(r";\s+|:\s+")
_MAX_TEXT = 20_000  # a section (docs are chunked at 1,200 characters)
_MAX_MATCHES = 16  # markers of one kind read per clause
_PUNCT = frozenset(",()+&")
_MAX_STATEMENTS = 400

# A negation before a verb: what follows is forbidden.
_NEGATION = re.compile(
    r"\b(?:(?:is|are|was|were)\s+not\s+to\s+be|never|must\s+not|mustn't|do\s+not|don't|does\s+not|doesn't|will\s+not|won't|shall\s+not|"
    r"should\s+not|shouldn't|may\s+not|is\s+not|are\s+not|was\s+not|were\s+not|"
    r"not\s+to\s+be|no\s+longer|nobody|no\s+one|not\s+allowed\s+to|is\s+forbidden\s+to|"
    r"no\s+(?:[\w-]+\s+){1,3}?(?:may|can|should|must|shall|will|is\s+allowed\s+to))\b", re.IGNORECASE)
# A retirement after a subject: the subject is banned.
_RETIRED = re.compile(
    r"\b(?:(?:is|are|was|were|has\s+been|have\s+been|got|gets)\s+(?:now\s+|also\s+|officially\s+)?)?"
    r"(?P<word>deprecated|forbidden|banned|prohibited|disallowed|not\s+allowed|not\s+permitted|"
    r"replaced|superseded|removed|decommissioned|retired|rejected|dropped|out\s+of\s+the\s+question|"
    r"off[\s-]limits|not\s+supported|unsupported|no\s+longer\s+supported|not\s+an\s+option|"
    r"(?:off|disabled|turned\s+off|switched\s+off)\s+(?:on\s+purpose|deliberately|by\s+design)|"
    r"on\s+purpose|deliberately|by\s+design|intentionally)\b", re.IGNORECASE)
# "We decided against X", "X was ruled out", "neither Istio nor Linkerd will be installed".
_AGAINST = re.compile(r"\b(?:decided|opted|chose|voted|went)\s+against\b|\bruled\s+out\b|\bsteer\s+clear\s+of\b|"
                      r"\bmoved\s+(?:away\s+)?(?:off|from)\b|\bgot\s+rid\s+of\b|\bunder\s+no\s+circumstances\b",
                      re.IGNORECASE)
_NEITHER = re.compile(r"\bneither\b", re.IGNORECASE)
_INSTEAD = re.compile(r"\b(?:instead\s+of|rather\s+than|in\s+place\s+of|no\s+more)\b", re.IGNORECASE)
_REPLACED_BY = re.compile(r"\b(?:replaced|superseded)\s+by\b", re.IGNORECASE)
_REPLACED_ACTIVE = re.compile(r"\b(?:replaced|replaces|supersedes|superseded)\b(?!\s+by)", re.IGNORECASE)
_ONLY = re.compile(r"\b(?:the\s+only|only|always|exclusively|solely)\b", re.IGNORECASE)
_NO = re.compile(r"(?:^|[\s(])no\s+(?=\S)", re.IGNORECASE)
_TABLE_DONE = re.compile(r"\b(?:replaced|rejected|removed|deprecated|retired|decommissioned|superseded|"
                         r"dropped|done|completed|migrated|finished)\b", re.IGNORECASE)
_TABLE_FROM = {"from", "old", "before", "previous", "legacy", "replaced", "was", "component", "option"}

# Verbs whose negation forbids that something exists: "we do not run X".
EXISTENCE_VERBS = frozenset("""run runs ran running install installs installed installing reinstall reinstalled
deploy deploys deployed deploying redeploy redeployed redeploying use uses used using add adds added adding adopt
adopts adopted introduce introduces introduced host hosts hosted operate operates operated keep keeps kept bring
brings brought depend depends rely relies maintain maintains offer offers ship ships
support supports enable enables enabled""".split())
# Words that end the object of a verb: what follows is a circumstance, not what is forbidden.
_OBJECT_END = frozenset("""to next alongside besides beside with on in for from against by at into through behind
via as because since so which that when where unless until after before if than again any anymore any-more
more here there outside inside between except""".split())
# A proposal's words that remove or replace what follows them.
_REMOVING = frozenset("""instead rather without not no never remove removes removing replace replaces replacing
drop drops dropping retire retires retiring decommission decommissions decommissioning stop stops stopping
disable disables disabling uninstall uninstalls uninstalling avoid avoids avoiding deprecate deprecating
delete deletes deleting off away migrate migrating""".split())
_REMOVING_STOP = frozenset("with by to for and using via into onto toward towards".split())

# Words too common to carry a decision's meaning.
GENERIC = frozenset("""a an the and or of to in on at for by with from as is are was were be been being it its
this that these those there here we our us you your they their them i he she his her not no nor never only
always all any each every some such other than then so if when while which who whom whose what where why how
can could may might must shall should will would do does did done doing has have had having get gets got make
makes made also too very more most less least much many few one two three first new old same own just still
yet already now again ever even about into onto over under up down out off per via etc e.g i.e cluster
clusters namespace namespaces service services workload workloads pod pods application applications app apps
platform platforms data thing things way ways time times team teams use used uses using run runs running ran
need needs want wants part parts set sets setting settings default defaults case cases kind kinds type types
system systems thing someone something anything everything nothing nobody one's people person use-case main
server servers model models instance instances component components tool tools purpose design support
supported work works working able instead rather reason reasons because since upstream here today currently
production prod staging environment environments change changes changed changing yes true false
go goes going went through until unless back still
""".split())
_GENERIC_ACRONYMS = frozenset("API APIS CI CD UI HTTP HTTPS TLS CPU GPU RAM DNS URL URLS SQL JSON YAML CRD CRDS PR PRS "
                              "ADR ADRS SLO SLOS TTL ID IDS IP OS VM VMS K8S K3S MB GB GIB MIB TB OK TODO NB".split())


def stem(word: str) -> str:
    """A light stemmer: enough for "traces"/"tracing"/"trace" and "placed"/"place" to meet."""
    w = word.lower().strip("`'\".,;:()[]{}*")
    if len(w) > 4 and not any(c.isdigit() for c in w):
        for suffix in ("ing", "ed", "es", "s"):
            if w.endswith(suffix) and len(w) - len(suffix) >= 3:
                w = w[: -len(suffix)]
                break
        if len(w) > 3 and w[-1] == w[-2] and w[-1] not in "aeiouls":
            w = w[:-1]
        if len(w) > 3 and w.endswith("e"):
            w = w[:-1]
    return w


def content_stems(words: Iterable[str]) -> set[str]:
    out: set[str] = set()
    for word in words:
        bare = word.strip("`").lower()
        if not bare or bare in GENERIC or len(bare) < 2:
            continue
        out.add(stem(bare))
        if "-" in bare:  # "cortex-worker" also says "worker"
            out.update(stem(p) for p in bare.split("-") if len(p) > 2 and p not in GENERIC)
    return out


@dataclass(frozen=True)
class Banned:
    name: str  # a component's canonical name, or a proper name as written (lower case)
    component: bool
    qualifiers: frozenset[str] = frozenset()  # stems that narrow it; one must be in the proposal


@dataclass(frozen=True)
class Statement:
    document: str
    section: str
    sentence: str
    banned: tuple[Banned, ...] = ()
    predicate: frozenset[str] = frozenset()  # stems of a forbidden action
    anchors: frozenset[str] = frozenset()  # stems of what the action is about
    anchor_components: frozenset[str] = frozenset()
    chosen: frozenset[str] = frozenset()  # components an exclusive choice names
    kind: str = "negation"  # negation | retirement | replacement | exclusive | table | obligation
    only_for: frozenset[str] = frozenset()  # what an exclusive choice is the only one of ("ingres", "controller")
    names: frozenset[str] = frozenset()  # every component the statement names
    objects: frozenset[str] = frozenset()  # components a forbidden action names ("call vLLM")
    anchored: bool = False  # its subject names what it is about (not only its heading or file)

    def cite(self) -> str:
        return f"{self.document} § {self.section}: \"{self.sentence[:300]}\""


@dataclass
class _Words:
    tokens: list[str]
    starts: list[int]
    components: list[tuple[int, int, str]] = field(default_factory=list)  # (first, end, name)


def tokenize(text: str) -> tuple[list[str], list[int]]:
    found = list(_TOKEN.finditer(text))
    return [m.group(0) for m in found], [m.start() for m in found]


def components_named(tokens: list[str], platform: Platform) -> list[tuple[int, int, str]]:
    """(first token, end token, name) of each component named, longest names first."""
    cat = platform.catalogue
    own = set(platform.components)
    taken: set[int] = set()
    out: list[tuple[int, int, str]] = []
    for n in (3, 2, 1):
        for i in range(len(tokens) - n + 1):
            if any(k in taken for k in range(i, i + n)) or any(t in _PUNCT for t in tokens[i:i + n]):
                continue
            gram = " ".join(t.strip("`") for t in tokens[i:i + n])
            key = normalise(gram)
            if len(key) < 3 or gram.lower() in GENERIC:
                continue
            name = cat.name_for(key) or (key if key in own else None)
            if name is None:
                continue
            if n == 1 and key in cat.common and not tokens[i][:1].isupper() and not tokens[i].startswith("`"):
                continue
            taken.update(range(i, i + n))
            out.append((i, i + n, name))
    return sorted(out)


def _proper(token: str, first: bool) -> bool:
    """A name a decision may ban though no catalogue knows it: a code span, an acronym, a
    CamelCase or capitalised word (not at the sentence's start)."""
    bare = token.strip("`")
    if len(bare) < 2 or bare.lower() in GENERIC or bare.upper() in _GENERIC_ACRONYMS:
        return False
    if token.startswith("`"):
        return True
    if bare.isupper() and bare.isalpha():
        return True
    if any(c.isupper() for c in bare[1:]) and any(c.islower() for c in bare):
        return True
    return bare[0].isupper() and not first


def _banned_in(tokens: list[str], comps: list[tuple[int, int, str]], lo: int, hi: int,
               sentence_start: int, platform: Platform) -> list[Banned]:
    """What tokens[lo:hi] name: components, else proper names; each with the content words
    next to it in its list item (split at commas, parentheses, "or", "and", "+").

    A component the platform runs is banned only with the words that narrow it ("Redis
    streams", "the Bitnami postgresql chart"): a decision cannot rule out what the platform
    runs, so the bare name there is a comparison ("one database instead of Postgres")."""
    out: list[Banned] = []
    segments: list[tuple[int, int]] = []
    start = lo
    for i in range(lo, hi):
        if tokens[i].lower() in ("or", "and", "nor", "+", "&", ",", "(", ")"):
            segments.append((start, i))
            start = i + 1
    segments.append((start, hi))
    for a, b in segments:
        if a >= b:
            continue
        inside = [(f, e, n) for f, e, n in comps if f >= a and e <= b]
        if inside:
            used = {k for f, e, _ in inside for k in range(f, e)}
            qualifiers = frozenset(_qualifiers(tokens[k] for k in range(a, b) if k not in used))
            out += [Banned(n, True, qualifiers) for _, _, n in inside
                    if qualifiers or n not in platform.components]
            continue
        names = [k for k in range(a, b) if _proper(tokens[k], k == sentence_start)]
        if names:
            rest = frozenset(_qualifiers(tokens[k] for k in range(a, b) if k not in names))
            out += [Banned(tokens[k].strip("`").lower(), False, rest) for k in names
                    if rest or normalise(tokens[k]) not in platform.components]
    return out


def _qualifiers(words: Iterable[str]) -> set[str]:
    return {w for w in content_stems(x for x in words if not _version(x) and x.lower() not in EXISTENCE_VERBS)
            if w not in _WEAK_QUALIFIERS}


_WEAK_QUALIFIERS = frozenset({"second", "another", "extra", "separat", "separately", "dedicat", "own", "chart",
                              "helm", "operator", "instanc", "deploy", "deployment", "cluster", "setup"})


def _version(token: str) -> bool:
    return bool(re.fullmatch(r"v?\d+(?:\.\d+)*[a-z]?|\d{4}(?:-\d\d){0,2}|×\d+", token.strip("`").lower()))


def _object_end(tokens: list[str], start: int, hi: int) -> int:
    for i in range(start, hi):
        if tokens[i].lower() in _OBJECT_END:
            return i
    return hi


def _index_at(starts: list[int], offset: int) -> int:
    return bisect.bisect_left(starts, offset)


def statements(text: str, document: str, section: str, platform: Platform, *,
               context: Iterable[str] = ()) -> list[Statement]:
    """Every normative statement in ``text`` (a section of a document, or a comment).
    ``context``: components the text is about (a section's heading, the object a comment
    is on), the anchors of a statement that names none itself."""
    out: list[Statement] = []
    context_names = frozenset(context)
    text = _HEADING.sub(lambda m: m.group(1) + "\n", clean_text(text[:_MAX_TEXT]))
    text = _FENCE.sub("\n\n", text)  # code blocks are examples, not sentences
    lines = text.splitlines()
    if any(ln.strip().startswith("|") for ln in lines):
        out += _table_statements([ln for ln in lines if ln.strip().startswith("|")], document, section, platform)
        text = "\n".join(ln for ln in lines if not ln.strip().startswith("|"))
    previous: frozenset[str] = frozenset()
    for sentence in _SENTENCE.split(text.replace("**", "")):
        sentence = " ".join(sentence.split()).strip(" #>-*")
        named_before, previous = previous, frozenset(
            n for _, _, n in components_named(tokenize(sentence[:2000])[0], platform)) if len(sentence) >= 3 else previous
        if len(sentence) < 8 or not _marked(sentence):
            continue
        clauses = _CLAUSE.split(sentence)
        around = context_names
        if len(clauses) > 1:  # "CoreDNS runs with defaults; its Corefile is never edited": about CoreDNS
            around = frozenset(n for _, _, n in components_named(tokenize(sentence)[0], platform)) or context_names
        for clause in clauses:
            if not _marked(clause):
                continue
            stmt = _clause_statement(clause, sentence, document, section, platform, around, named_before)
            if stmt is not None:
                out.append(stmt)
            if len(out) >= _MAX_STATEMENTS:
                return out
    return out


def _marked(text: str) -> bool:
    return bool(_NEGATION.search(text) or _RETIRED.search(text) or _INSTEAD.search(text)
                or _ONLY.search(text) or _NO.search(text) or _AGAINST.search(text) or _NEITHER.search(text)
                or _OBLIGATION.search(text))


# A positive rule: offline it decides nothing (what would break it is open-ended), but an
# LLM judge is shown it when it concerns the proposal.
_OBLIGATION = re.compile(r"\b(?:must|shall|should|has\s+to|have\s+to|needs?\s+to|is\s+required|are\s+required|"
                         r"mandatory|every|each)\b", re.IGNORECASE)


# Words by which a sentence refers back to what the previous one named.
_ANAPHORA = frozenset("it this that these those they option options alternative alternatives approach choice "
                      "candidate one tool setup idea".split())
_CHOICE_VERBS = frozenset("chose choose chosen picked pick prefer prefers preferred went standardised standardized "
                          "settled replaced selected select".split())
_PARTICIPLES = frozenset("used run kept put brought held shown done given set built made written".split())
_SKIP_AFTER_NEGATION = frozenset("be been ever yet even again once directly themselves itself get".split())
_RELY_PREPOSITIONS = frozenset("on upon".split())


def _clause_statement(clause: str, sentence: str, document: str, section: str, platform: Platform,
                      context: frozenset[str], previous: frozenset[str] = frozenset()) -> Statement | None:
    tokens, starts = tokenize(clause)
    if not tokens:
        return None
    comps = components_named(tokens, platform)
    lower = [t.lower() for t in tokens]
    banned: list[Banned] = []
    predicate: set[str] = set()
    anchor_hi = len(tokens)
    kinds: list[str] = []

    in_components = {k for f, e, _ in comps for k in range(f, e)}
    objects: set[str] = set()

    def action(lo: int) -> set[str]:
        """The stems of a forbidden action from ``lo`` on, without the components it names
        (those are its objects)."""
        objects.update(n for f, _, n in comps if f >= lo)
        return content_stems(tokens[k] for k in range(lo, len(tokens)) if k not in in_components)

    def ban(lo: int, hi: int, kind: str) -> list[Banned]:
        found = _banned_in(tokens, comps, lo, hi, 0, platform)
        banned.extend(found)
        if found:
            kinds.append(kind)
        return found

    for m in itertools.islice(_REPLACED_BY.finditer(clause), _MAX_MATCHES):  # "X was replaced by Y": X
        ban(_subject_start(lower, _index_at(starts, m.start())), _index_at(starts, m.start()), "replacement")
    for m in itertools.islice(_REPLACED_ACTIVE.finditer(clause), _MAX_MATCHES):  # "Y replaced X", "we replaced X with Y"
        after = _index_at(starts, m.end())
        end = next((i for i in range(after, len(tokens)) if lower[i] in ("with", "by", "for", "in", "on", "at")),
                   len(tokens))
        ban(after, end, "replacement")
    for m in itertools.islice(_INSTEAD.finditer(clause), _MAX_MATCHES):  # "we run Phoenix instead of Langfuse"
        here = _index_at(starts, m.start())
        if not any(w in EXISTENCE_VERBS or w in _CHOICE_VERBS for w in lower[_subject_start(lower, here):here]):
            continue  # "it needs one database instead of four": a comparison, not a choice
        lo = _index_at(starts, m.end())
        while lo < len(tokens) and lower[lo] in EXISTENCE_VERBS:
            lo += 1
        ban(lo, _object_end(tokens, lo, len(tokens)), "replacement")
    for m in itertools.islice(_AGAINST.finditer(clause), _MAX_MATCHES):
        lo = _index_at(starts, m.end())
        while lo < len(tokens) and (lower[lo] in EXISTENCE_VERBS or lower[lo] in ("a", "an", "the")):
            lo += 1
        if "ruled" in m.group(0).lower() and lo >= len(tokens):  # "X was ruled out": its subject
            ban(_subject_start(lower, _index_at(starts, m.start())), _index_at(starts, m.start()), "retirement")
        else:
            ban(lo, _object_end(tokens, lo, len(tokens)), "replacement")
    for m in itertools.islice(_NEITHER.finditer(clause), _MAX_MATCHES):  # "neither X nor Y will be installed"
        lo = _index_at(starts, m.end())
        nor = next((i for i in range(lo, min(len(tokens), lo + 30)) if lower[i] == "nor"), None)
        if nor is None:
            continue
        end = nor + 1
        while end < len(tokens) and end < nor + 4 and lower[end] not in _OBJECT_END and lower[end] not in (
                "will", "is", "are", "was", "were", "gets", "get", "should", "may", "can", ","):
            end += 1
        rest = lower[end:]
        if any(w in EXISTENCE_VERBS or w.rstrip("ed") in _EXISTENCE_STEMS for w in rest[:4]) or any(
                w in EXISTENCE_VERBS for w in lower[:_index_at(starts, m.start())]):
            found = _banned_in(tokens, comps, lo, nor, 0, platform) + _banned_in(tokens, comps, nor + 1, end, 0, platform)
            banned.extend(found)
            if found:
                kinds.append("negation")
    for m in itertools.islice(_RETIRED.finditer(clause), _MAX_MATCHES):
        if m.group("word").lower() in ("replaced", "superseded"):
            continue  # handled above
        hi = _index_at(starts, m.start())
        lo = _subject_start(lower, hi)
        if not ban(lo, hi, "retirement"):
            if previous and not components_named(tokens[lo:hi], platform) and \
                    any(w in _ANAPHORA for w in lower[lo:hi]):
                # "Apache Kafka with Strimzi. The better-known option, and not an option for us."
                found = [Banned(n, True) for n in sorted(previous) if n not in platform.components]
                banned.extend(found)
                kinds.append("retirement")
                if found:
                    continue
            predicate |= content_stems(tokens[lo:hi])
            kinds.append("retirement")
    for m in itertools.islice(_NEGATION.finditer(clause), _MAX_MATCHES):
        if clause[m.end():].lstrip()[:1] in (":", ".", ";", ",", ")", ""):
            continue  # "longhorn-single volumes do not: ...": an elliptic negation, no action named
        at = _index_at(starts, m.end())
        verb_at = at
        while verb_at < len(tokens) and lower[verb_at] in _SKIP_AFTER_NEGATION:
            verb_at += 1
        verb = lower[verb_at] if verb_at < len(tokens) else ""
        marker = " ".join(m.group(0).lower().split())
        before = lower[_index_at(starts, m.start()) - 1] if _index_at(starts, m.start()) > 0 else ""
        passive = (at < len(tokens) and lower[at] in ("be", "been")) or (
            (marker.split()[0] in ("is", "are", "was", "were") or before in ("is", "are", "was", "were"))
            and (verb.endswith(("ed", "en")) or verb in _PARTICIPLES))
        subject_hi = _index_at(starts, m.start())
        obj_lo = verb_at + 1
        if verb in ("depend", "depends", "rely", "relies") and obj_lo < len(tokens) and lower[obj_lo] in _RELY_PREPOSITIONS:
            obj_lo += 1
        obj_hi = _object_end(tokens, obj_lo, len(tokens))
        existence = verb in EXISTENCE_VERBS or verb.rstrip("ed") in _EXISTENCE_STEMS
        if existence and not passive:  # "we do not run Kafka"
            if not ban(obj_lo, obj_hi, "negation"):
                predicate |= action(verb_at)
                anchor_hi = min(anchor_hi, subject_hi)
                kinds.append("negation")
        elif existence and passive:  # "X is not to be reinstalled", "NodePort is not used"
            if not ban(_subject_start(lower, subject_hi), subject_hi, "retirement"):
                predicate |= action(verb_at)
                anchor_hi = min(anchor_hi, subject_hi)
                kinds.append("negation")
        else:  # "never scale to zero", "do not call vLLM directly"
            predicate |= action(verb_at)
            anchor_hi = min(anchor_hi, subject_hi)
            kinds.append("negation")
    chosen = _chosen(clause, tokens, starts, comps) if not kinds else frozenset()
    only_for: frozenset[str] = frozenset()
    if chosen:
        kinds.append("exclusive")
        only = re.search(r"\bthe\s+only\b", clause, re.IGNORECASE)
        if only:  # "the only ingress controller", "the only Service of type LoadBalancer"
            lo = _index_at(starts, only.end())
            hi = next((i for i in range(lo, len(tokens)) if lower[i] in _OBJECT_END - {"of"}
                       or tokens[i] in _PUNCT), len(tokens))
            only_for = frozenset(content_stems(tokens[lo:min(hi, lo + 6)]))
    if not kinds and _OBLIGATION.search(clause):
        kinds.append("obligation")  # "alerts must live next to their service": for the LLM judge only
    if not kinds:
        return None
    subject_components = frozenset(n for f, e, n in comps if f < anchor_hi)
    anchor_components = subject_components or context
    banned_names = {b.name for b in banned}
    anchors = frozenset(content_stems(tokens[:anchor_hi])) - predicate
    return Statement(document=document, section=section, sentence=sentence[:600],
                     banned=tuple(dict.fromkeys(b for b in banned if b.name not in ("it", "them"))),
                     predicate=frozenset(predicate), anchors=anchors,
                     anchor_components=anchor_components - banned_names,
                     chosen=chosen, kind=kinds[0], names=frozenset(n for _, _, n in comps), only_for=only_for,
                     objects=frozenset(objects) - banned_names,
                     anchored=bool(subject_components or anchors))


_EXISTENCE_STEMS = frozenset(v.rstrip("ed") for v in EXISTENCE_VERBS) | {"reinstall", "redeploy", "us"}


def _subject_start(lower: list[str], hi: int) -> int:
    """Where the subject ending at ``hi`` begins: after the last relative pronoun or
    conjunction that opens a new clause ("and" only before a pronoun: "and it needs"),
    outside parentheses."""
    depth = 0
    for i in range(hi - 1, -1, -1):
        w = lower[i]
        if w == ")":
            depth += 1
        elif w == "(":
            depth = max(0, depth - 1)
        elif depth == 0 and (w in _OPENS_CLAUSE or (w == "and" and i + 1 < hi and lower[i + 1] in _PRONOUNS)):
            return i + 1
    return 0


_OPENS_CLAUSE = frozenset("that which where when so because while but since".split())
_PRONOUNS = frozenset("it we they this that there these those he she you i".split())


_EXCLUSIVE = re.compile(r"\b(?:is|are)\s+(?:the\s+)?only\b|\bthe\s+only\b|\balways\s+(?:go(?:es)?\s+through|"
                        r"uses?|runs?\s+on|through|via)\b|\bonly\s+(?:through|via|uses?|runs?)\b|\s+only\s*(?:[.;]|$)",
                        re.IGNORECASE)


def _chosen(clause: str, tokens: list[str], starts: list[int], comps: list[tuple[int, int, str]]) -> frozenset[str]:
    """The components an exclusive choice names: "Traefik is the only ingress controller",
    "SealedSecrets only", "always go through LiteLLM"."""
    m = _EXCLUSIVE.search(clause)
    if not m:
        return frozenset()
    here = _index_at(starts, m.start())
    end = _index_at(starts, m.end())
    text = m.group(0).lower()
    if "through" in text or "via" in text or "use" in text or "run" in text:
        after = [n for f, _, n in comps if end <= f <= end + 3]
        if after:
            return frozenset(after[:1])
    before = [n for f, e, n in comps if e <= here]
    return frozenset(before[-2:])


def _table_statements(rows: list[str], document: str, section: str, platform: Platform) -> list[Statement]:
    """A table of decisions: a row whose status says replaced/rejected/done bans its first
    (or *from*/*old*) column."""
    cells = [[c.strip() for c in r.strip().strip("|").split("|")] for r in rows]
    header = cells[0] if cells else []
    col = 0
    for i, name in enumerate(header):
        if name.strip("*` ").lower() in _TABLE_FROM:
            col = i
            break
    out: list[Statement] = []
    for row in cells[1:]:
        if len(row) <= col or all(set(c) <= set("-: ") for c in row):
            continue
        status = [c for i, c in enumerate(row) if i != col and _TABLE_DONE.search(c) and len(c) < 40]
        if not status:
            continue
        tokens, _ = tokenize(row[col])
        comps = components_named(tokens, platform)
        banned = _banned_in(tokens, comps, 0, len(tokens), 0, platform)
        if banned:
            out.append(Statement(document=document, section=section,
                                 sentence=" | ".join(row)[:600], banned=tuple(banned), kind="table",
                                 names=frozenset(n for _, _, n in comps)))
    return out


# -- a proposal against a statement -----------------------------------------------------------


@dataclass(frozen=True)
class Proposal:
    """What the checks need of a proposal's text, read once."""

    text: str
    tokens: tuple[str, ...]
    stems: frozenset[str]
    mentions: tuple[Mention, ...]
    used: frozenset[str]  # components it names, not in a removing clause
    uses_or_deploys: frozenset[str]  # components it deploys or relies on
    named: frozenset[str] = frozenset()  # every component it names (also those it removes)
    sorted_stems: tuple[str, ...] = ()  # the stems in order (prefix lookups)


_COMPLYING = frozenset("instead rather without not no never avoid avoiding stop stopping".split())


def _kept(tokens: list[str]) -> list[str]:
    """The tokens outside a scope the proposal itself rules out ("instead of pod IPs",
    "without a sidecar"): that scope complies with a rule, it does not break it."""
    out: list[str] = []
    off = False
    for t in tokens:
        w = t.lower()
        if w in _COMPLYING:
            off = True
            continue
        if off and (w in _REMOVING_STOP or w in (",", "(", ")") or w in _VERBS):
            off = False
        if not off:
            out.append(t)
    return out


def read_proposal(text: str, found: list[Mention]) -> Proposal:
    text = clean_text(text)
    tokens, _ = tokenize(text)
    used = frozenset(m.component for m in found if _occurs_unremoved(text, m.text))
    deploys = frozenset(m.component for m in found if m.intent in ("deploys", "relies-on")
                        and _occurs_unremoved(text, m.text))
    sentences = [tokenize(part)[0] for part in re.split(r"(?<=[.;!?])\s+|\n", text)]
    kept = [t for part in sentences for t in _kept(part)]
    stems = frozenset(content_stems(kept))
    return Proposal(text=text, tokens=tuple(tokens), stems=stems,
                    mentions=tuple(found), used=used, uses_or_deploys=deploys,
                    named=frozenset(m.component for m in found), sorted_stems=tuple(sorted(stems)))


# Unicode format characters (category Cf): soft hyphen, zero-width spaces and joiners,
# directional marks and isolates, the BOM, interlinear annotations, tag characters.
_INVISIBLE = re.compile("[\u00ad\u0600-\u0605\u061c\u06dd\u070f\u180e\u200b-\u200f\u202a-\u202e"
                        "\u0890\u0891\u08e2\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb\U000110bd\U000110cd"
                        "\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a"
                        "\U000e0001\U000e0020-\U000e007f]")


def clean_text(text: str) -> str:
    """NFKC, without format characters (zero-width space, soft hyphen, word joiner): what a
    reviewer reads is what the rules read ("Link\u200berd" is Linkerd)."""
    return _INVISIBLE.sub("", unicodedata.normalize("NFKC", text))


_NEGATORS = frozenset("not never no without avoid avoiding stop won't don't doesn't cannot".split())
_VERBS = EXISTENCE_VERBS | frozenset("deploy deploys install installs set setup roll introduce launch create".split())


def _occurs_unremoved(text: str, name: str) -> bool:
    """Whether some whole-word occurrence of ``name`` is not removed where it stands (each
    occurrence is judged: "not Linkerd this week; next week deploy Linkerd" uses it)."""
    if not name:
        return False
    for m in re.finditer(r"(?<![\w-])" + re.escape(name) + r"(?![\w-])", text, re.IGNORECASE):
        if not _removed_at(text, m.start()):
            return True
    return False


def _removed_at(text: str, at: int) -> bool:
    """Whether the name at ``at`` follows, in its clause, a word that removes it ("replace
    X", "instead of X", "without X", "will not deploy X"), with no "with"/"by"/"to" and no
    comma in between ("replace A with X", "without downtime, deploy X")."""
    window = text[max(0, at - 200):at]
    window = re.split(r"[.;:!?\n]", window)[-1]
    before, _ = tokenize(window)
    recent = [w.lower() for w in before[-7:]]
    for i in range(len(recent) - 1, -1, -1):
        w = recent[i]
        if w in _REMOVING_STOP or w in (",", "(", ")"):
            return False
        if w in _VERBS:  # the verb that governs it: removed only when negated ("will not deploy X")
            return i > 0 and recent[i - 1] in _NEGATORS
        if w in _REMOVING:
            return True
    return False


def _term_used(proposal: Proposal, term: str) -> bool:
    return _occurs_unremoved(proposal.text, term)


def against(statement: Statement, proposal: Proposal, platform: Platform) -> str | None:
    """Why ``proposal`` goes against ``statement``, or None."""
    for b in statement.banned:
        hit = b.name in proposal.used if b.component else _term_used(proposal, b.name)
        if hit and (not b.qualifiers or b.qualifiers & proposal.stems):
            return f"uses {b.name}, which it rules out"
    if statement.predicate or statement.objects:
        act = _meet(statement.predicate, proposal.stems, proposal.sorted_stems)
        objects = statement.objects & proposal.used
        subject = (statement.anchor_components & proposal.used) | _meet(_specific(statement.anchors), proposal.stems, proposal.sorted_stems)
        distinct = subject - objects  # what the action is done by or to, other than its objects
        strong = len(act) >= 2 or bool(_specific(frozenset(act)))
        if (act or objects) and subject and len(act | objects | subject) >= 2 and (act or statement.anchored) \
                and (distinct or (objects and strong)):
            return (f"does what it rules out ({', '.join(sorted(act | objects))}) to "
                    f"{', '.join(sorted(subject - objects) or sorted(subject))}")
        if not statement.anchors and not statement.anchor_components and \
                len(act) >= 3 and len(_specific(frozenset(act))) >= 2:
            return f"does what it rules out ({', '.join(sorted(act))})"
    if statement.chosen:
        for name in proposal.uses_or_deploys - statement.chosen:
            entry = platform.catalogue.entries.get(name)
            if entry is None or not entry.provides:
                continue
            for chosen in statement.chosen:
                other = platform.catalogue.entries.get(chosen)
                if other is not None and other.provides and other.provides[0] == entry.provides[0]:
                    return f"brings {entry.title} for {entry.provides[0]}, where it chose {other.title}"
        wanted = statement.only_for
        if wanted and len(wanted) <= 4 and wanted <= proposal.stems and not statement.chosen & proposal.named:
            return f"adds another {' '.join(sorted(wanted))}, where it chose {', '.join(sorted(statement.chosen))}"
    return None


def _meet(words: Iterable[str], stems: frozenset[str], ordered: tuple[str, ...] = ()) -> set[str]:
    """The words that the proposal's stems contain, equal or (from five letters) as a
    prefix either way ("orchestrat" meets "orchestrator"). ``ordered``: the stems sorted,
    for lookups in logarithmic time."""
    ordered = ordered or tuple(sorted(stems))
    out = set()
    for w in words:
        if w in stems:
            out.add(w)
        elif len(w) >= 5:
            i = bisect.bisect_left(ordered, w)
            if (i < len(ordered) and ordered[i].startswith(w)) or any(w[:k] in stems for k in range(5, len(w))):
                out.add(w)
    return out


def _specific(stems: frozenset[str]) -> frozenset[str]:
    """Anchor words specific enough to say what a statement is about: with a digit, a
    hyphen or a dot, or longer than a short common word."""
    return frozenset(s for s in stems if any(c.isalpha() for c in s) and (
        any(c.isdigit() for c in s) or "-" in s or "." in s or len(s) >= 6))


def concerns(statement: Statement, proposal: Proposal) -> bool:
    """Whether a statement is about something the proposal touches (what an LLM judge is
    shown): a component it names, or two of its words."""
    names = {b.name for b in statement.banned if b.component}
    return bool((names | statement.names | statement.anchor_components | statement.chosen) & proposal.named) or \
        len(_meet(statement.predicate | statement.anchors, proposal.stems, proposal.sorted_stems)) >= 2
