"""Numeric limits a platform writes down, and a proposal's figures against them.

"New workloads should stay below 1Gi per replica", "models of at most ~32B parameters",
"no more than 2 CPU per pod": a decision as a number. A limit is a sentence with an
upper-bound phrase (below, under, at most, no more than, less than, up to, maximum, not
exceed, ≤) and a quantity of memory, CPU or model parameters, in a sentence that reads as
a rule (must, should, keep, stay, limit, cap, rule, only, never, at most, no more than,
maximum). The proposal's figures are the capacity estimate's per-replica requests and the
parameter counts it names ("Llama-3.1-70B"). A figure above a limit is a conflict citing
the sentence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cortex_school.models import Improvement
from cortex_school.validation.capacity_model import estimate_resources, gib, parse_memory

_BOUND = r"(?:below|under|at\s+most|no\s+more\s+than|not\s+more\s+than|less\s+than|up\s+to|a\s+maximum\s+of|" \
         r"maximum\s+of|max\.?|not\s+exceed(?:ing)?|≤|<=|<)"
_LIMIT = re.compile(
    _BOUND + r"\s*(?:~\s*)?(?P<n>\d+(?:\.\d+)?)[ \t]?(?P<u>(?:KiB|MiB|GiB|Ki|Mi|Gi|Ti|KB|MB|GB|TB)\b|"
    r"B\s+param(?:eter)?s\b|B\b|cpus?\b|cores?\b|vcpus?\b|m\b)(?P<per>[^.;]{0,30})", re.IGNORECASE)
_RULE = re.compile(r"\b(?:must|should|shall|keep|kept|stay|stays|limit|limited|cap|capped|rule|only|never|"
                   r"at\s+most|no\s+more\s+than|maximum|not\s+exceed)\b", re.IGNORECASE)
# A model's size: in a model-shaped name ("Llama-3.1-70B", "Qwen2.5-14B") or stated as
# parameters ("a 70B model", "14B parameters"); "100B events" is a count, not a model.
_PARAMS = re.compile(r"(?<![\w.])[A-Za-z][\w.-]{0,40}-(?P<n>\d+(?:\.\d+)?)[Bb](?![\w])|"
                     r"(?<![\w.])(?P<m>\d+(?:\.\d+)?)\s?[Bb]\s+(?:[\w-]+\s+)?(?:param|model|LLM|llm)")
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n\s*\n|\n(?=\s*[-*#|])")


@dataclass(frozen=True)
class Limit:
    what: str  # memory | cpu | parameters
    value: float  # bytes, cores, billions of parameters
    per_replica: bool
    document: str
    section: str
    sentence: str

    def describe(self) -> str:
        if self.what == "memory":
            return f"{gib(self.value)}" + (" per replica" if self.per_replica else "")
        if self.what == "cpu":
            return f"{self.value:g} CPU" + (" per replica" if self.per_replica else "")
        return f"{self.value:g}B parameters"


def limits(text: str, document: str, section: str) -> list[Limit]:
    out: list[Limit] = []
    for sentence in _SENTENCE.split(text[:50_000]):
        if len(sentence) > 2000 or not _RULE.search(sentence):
            continue
        for m in _LIMIT.finditer(sentence):
            unit = m.group("u").lower().replace(" ", "")
            n = float(m.group("n"))
            per = bool(re.search(r"\bper\s+(?:replica|pod|container|instance)|\beach\b", m.group("per") or "",
                                 re.IGNORECASE))
            clean = " ".join(sentence.split())[:600]
            if unit.startswith("bparam") or unit == "b":
                if unit == "b" and not re.search(r"param|model", sentence, re.IGNORECASE):
                    continue  # "under 5B rows": not a model size
                out.append(Limit("parameters", n, False, document, section, clean))
            elif unit in ("cpu", "cpus", "core", "cores", "vcpu", "vcpus", "m"):
                out.append(Limit("cpu", n / 1000 if unit == "m" else n, per, document, section, clean))
            else:
                try:
                    value = parse_memory(f"{m.group('n')}{unit.replace('ib', 'i')}")
                except ValueError:
                    continue
                out.append(Limit("memory", value, per, document, section, clean))
    return out


def exceeded(limit: Limit, improvement: Improvement) -> str | None:
    """What of the proposal's figures goes above ``limit``, or None."""
    text = f"{improvement.description}\n{improvement.implementation_notes}"
    if limit.what == "parameters":
        sizes = [float(m.group("n") or m.group("m")) for m in _PARAMS.finditer(text)]
        biggest = max(sizes, default=0.0)
        return f"a {biggest:g}B-parameter model" if biggest > limit.value else None
    need = estimate_resources(improvement)
    if not need.replicas or (need.cpu == 0 and need.memory == 0) or need.basis.startswith("default"):
        return None  # only explicit figures are compared
    if limit.what == "memory":
        have = need.per_replica_memory if limit.per_replica else need.memory
        return f"{gib(have)} of memory" + (" per replica" if limit.per_replica else "") if have > limit.value else None
    have = need.per_replica_cpu if limit.per_replica else need.cpu
    return f"{have:g} CPU" + (" per replica" if limit.per_replica else "") if have > limit.value else None
