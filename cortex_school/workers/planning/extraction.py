"""Reading values out of a proposal's text: images, ports, sizes, schedules, names."""

from __future__ import annotations

import re

from cortex_school.models import Improvement
from cortex_school.workers.naming import dns1123
from cortex_school.workers.plan import Storage

# -- extraction helpers --------------------------------------------------------

_IMAGE = re.compile(
    r"(?<![\w/.:=-])((?:[a-z0-9-]+(?:\.[a-z0-9-]+)+(?::\d+)?/)?[a-z0-9][a-z0-9._-]*"
    r"(?:/[a-z0-9][a-z0-9._-]*)*(?::[A-Za-z0-9][A-Za-z0-9._-]{0,127}|@sha256:[a-f0-9]{64})?)"
    r"(?![\w/=])")
_REGISTRIES = ("quay.io", "ghcr.io", "docker.io", "registry.k8s.io", "gcr.io", "public.ecr.aws",
               "nvcr.io", "mcr.microsoft.com")
_PORTS = re.compile(r"\b(?:ports?|TCP|UDP)\s+(\d{2,5})((?:\s*(?:,|and|or)\s*\d{2,5})*)", re.I)
_SIZE = re.compile(r"\b(\d+(?:\.\d+)?)\s?(Gi|Mi|Ti)\b")
_STORAGE_CLASS = re.compile(r"\b(local-path|longhorn|nfs-client|openebs-[a-z-]+|ceph-[a-z-]+)\b")
_SELECTING = re.compile(r"selecting (?:the )?(?:pods? )?(?:labell?ed )?`?([a-z0-9][a-z0-9./-]*[a-z0-9])\s?[=:]\s*"
                        r"[\"']?([A-Za-z0-9][A-Za-z0-9._-]*[A-Za-z0-9]|[A-Za-z0-9])")
_MIN_AVAILABLE = re.compile(r"minAvailable:?\s*(\d+)")
_EXPR_FOR = re.compile(r"\bexpr\s+(.+?)\s+for\s+(\d+[smhd])\b")
_SEVERITY = re.compile(r"\bseverity\s+(info|warning|critical)\b")
_INTERVAL = re.compile(r"\bevery\s+(\d+)\s?(s|m|h)\b|\bevery\s+(\d+)\s+(second|minute|hour)s?\b")
_CRON = re.compile(r"[`'\"]((?:[\d*/,-]+\s+){4}[\d*/,-]+)[`'\"]")
_HOST_LEVEL = re.compile(
    r"\b(k3s|--[a-z][a-z-]+|sysctl|kernel|kubelet|on (every|each) node|"
    r"systemctl|/etc/)", re.I)
_MANUAL_VERBS = re.compile(r"^\s*(?:and\s+)?(update|restart|change|edit|migrate|rewrite|re-?run)\b", re.I)
_DOMAIN = re.compile(r"\b((?:[a-z0-9-]+\.)+(?:local|lan|internal|com|io|net|org|dev))\b")


def _text(improvement: Improvement) -> str:
    return f"{improvement.description}. {improvement.implementation_notes}"


def images_in(text: str) -> list[str]:
    out: list[str] = []
    for m in _IMAGE.finditer(text):
        candidate = m.group(1).rstrip(".")
        name = candidate.rsplit("/", 1)[-1]
        tag = name.split(":", 1)[1] if ":" in name else ""
        # A version tag has a digit; "vllm:gpu_cache_usage_perc" is a metric, not an image.
        tagged = bool(tag) and not tag.isdigit() and any(c.isdigit() for c in tag) and \
            not ("/" not in candidate and "_" in tag and "." not in tag)
        from_registry = "/" in candidate and candidate.split("/", 1)[0] in _REGISTRIES
        if (tagged or from_registry or "@sha256:" in candidate) and candidate not in out:
            out.append(candidate)
    return out


def ports_in(text: str) -> list[int]:
    ports: list[int] = []
    for m in _PORTS.finditer(text):
        for value in [m.group(1), *re.findall(r"\d{2,5}", m.group(2) or "")]:
            number = int(value)
            if 1 <= number <= 65535 and number not in ports:
                ports.append(number)
    return ports


# Phrases naming where traffic comes from, not where resources go.
_SOURCE_PHRASES = re.compile(
    r"\bfrom (?:pods in )?(?:the )?[a-z0-9-]+ namespace|\bfrom [A-Z][A-Za-z]+ in [a-z0-9-]+")


def namespace_in(text: str, known: set[str], default: str) -> str:
    """The namespace the notes put things in: 'in X', 'in/to the X namespace', 'namespace X'
    (a namespace traffic comes *from* does not count)."""
    text = _SOURCE_PHRASES.sub(" ", text)
    for m in re.finditer(r"\bin(?:to)? ([a-z0-9-]+)\b", text):
        if m.group(1) in known:
            return m.group(1)
    named = re.search(r"\b(?:in|into|to) (?:the )?([a-z0-9-]+) namespace\b", text)
    if named:
        return named.group(1)
    for m in re.finditer(r"\bnamespace ([a-z0-9-]+)\b", text):
        if m.group(1) in known:
            return m.group(1)
    return default


_LEADING_VERBS = re.compile(
    r"^(?:(?:add|create|define|deploy|apply|enable|run|point|integrate|implement|set up|"
    r"configure|introduce|use)\s+)?(?:(?:a|an|the|all)\s+)?", re.I)
_KIND_WORDS = re.compile(r"\b(prometheusrule|servicemonitor|networkpolic(?:y|ies)|configmap|"
                         r"cronjob|statefulsets?|deployment)\b", re.I)


def base_name(description: str, *, max_length: int = 40) -> str:
    """A short resource name from a description: no leading verb, article or kind word."""
    core = _KIND_WORDS.sub(" ", _LEADING_VERBS.sub("", description.strip()))
    words = re.findall(r"[A-Za-z0-9]+", core)[:5]
    return dns1123(" ".join(words) or description, max_length=max_length)


def interval_in(text: str) -> str | None:
    m = _INTERVAL.search(text)
    if not m:
        return None
    if m.group(1):
        return f"{m.group(1)}{m.group(2)}"
    return f"{m.group(3)}{m.group(4)[0]}"


def schedule_in(text: str) -> str | None:
    m = _CRON.search(text)
    if m:
        return " ".join(m.group(1).split())
    lowered = text.lower()
    minutes = re.search(r"every (\d{1,2}) minutes?", lowered)
    if minutes and 1 <= int(minutes.group(1)) <= 59:
        return f"*/{int(minutes.group(1))} * * * *"
    at = re.search(r"\b(?:daily|nightly|every (?:day|night)) at (\d{1,2}):(\d{2})\b", lowered)
    if at and int(at.group(1)) < 24 and int(at.group(2)) < 60:
        return f"{int(at.group(2))} {int(at.group(1))} * * *"
    hours = re.search(r"every (\d{1,2}) hours?", lowered)
    if hours and 1 <= int(hours.group(1)) <= 23:
        return f"0 */{int(hours.group(1))} * * *"
    if re.search(r"\b(hourly|every hour)\b", lowered):
        return "0 * * * *"
    if re.search(r"\b(daily|nightly|every day|every night|each night)\b", lowered):
        return "0 2 * * *"
    if re.search(r"\b(weekly|every week)\b", lowered):
        return "0 3 * * 0"
    return None


_VOLUME_WORDS = r"(?:pvc|persistent ?volume(?: ?claim)?|volume|disk)"
_VOLUME_SIZE = re.compile(rf"\b(\d+(?:\.\d+)?)\s?(Gi|Ti|Mi)\b(?:\s+[A-Za-z][\w-]*){{0,2}}?\s+{_VOLUME_WORDS}\b"
                          rf"|\b{_VOLUME_WORDS}\s+(?:of\s+)?(\d+(?:\.\d+)?)\s?(Gi|Ti|Mi)\b", re.I)
_MOUNT = re.compile(r"\bmount(?:ed|s)?(?: it)?\s+(?:at|on|under)\s+`?(/[A-Za-z0-9_./-]*[A-Za-z0-9_-])")
_STORAGE_CLASS_NAMED = re.compile(r"\bstorage ?class(?:Name)?:?\s+`?([a-z0-9][-a-z0-9.]*[a-z0-9])", re.I)
_INGRESS_HOST = re.compile(r"\bingress(?:Route)?\b[^.;]{0,40}?\b(?:for|at|on|host)\s+(?:https?://)?"
                           r"((?:[a-z0-9-]+\.)+[a-z]{2,})\b", re.I)
_ISSUER = re.compile(r"\b(?:cluster)?issuer:?\s+`?([a-z0-9][-a-z0-9]*[a-z0-9])|\bcertificate (?:from|by|issued by) "
                     r"(?:the )?`?([a-z0-9][-a-z0-9]*[a-z0-9])", re.I)


def volume_in(text: str) -> Storage | None:
    """The persistent volume a sentence asks for ("a 2Gi longhorn PVC", "a volume of 5Gi
    mounted at /app/data"): its size, storage class and mount path; None when it asks
    for none."""
    m = _VOLUME_SIZE.search(text)
    if not m:
        return None
    size = f"{m.group(1)}{m.group(2)}" if m.group(1) else f"{m.group(3)}{m.group(4)}"
    named = _STORAGE_CLASS_NAMED.search(text) or _STORAGE_CLASS.search(text)
    mount = _MOUNT.search(text)
    path = mount.group(1) if mount and ".." not in mount.group(1).split("/") else None
    return Storage(size=size, storage_class=named.group(1) if named else None, mount_path=path)


def ingress_host_in(text: str) -> str | None:
    m = _INGRESS_HOST.search(text)
    return m.group(1).lower() if m else None


def issuer_in(text: str) -> str | None:
    m = _ISSUER.search(text)
    return (m.group(1) or m.group(2)) if m else None


def size_in(text: str) -> str | None:
    m = _SIZE.search(text)
    return f"{m.group(1)}{m.group(2)}" if m else None


def app_name_for_image(image: str) -> str:
    repo = image.split("@", 1)[0].rsplit("/", 1)[-1].split(":", 1)[0]
    name = dns1123(repo.replace("_", "-"))
    return name if name[0].isalpha() else dns1123(f"app-{name}")


def sentences(text: str) -> list[str]:
    return [s.strip() for s in re.split(r"(?<=[.;])\s+|,\s+(?=and\b)|\bthen\b", text) if s.strip()]


def camel(text: str, limit: int = 5) -> str:
    words = re.findall(r"[A-Za-z0-9]+", text)[:limit]
    return "".join(w[:1].upper() + w[1:] for w in words) or "CortexAlert"


# Exporters the planner knows how to point at their target service.
KNOWN_EXPORTERS: dict[str, tuple[str, str, int]] = {
    # image repository part → (env var, URL template, default metrics port)
    "redis_exporter": ("REDIS_ADDR", "redis://{host}:{port}", 9121),
    "postgres_exporter": ("DATA_SOURCE_URI", "{host}:{port}/postgres?sslmode=disable", 9187),
}
