"""Kubernetes names from untrusted text (titles with ':', quotes, emoji, any script)."""

from __future__ import annotations

import hashlib
import re
import unicodedata

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def dns1123(text: str, *, max_length: int = 63, fallback: str = "improvement") -> str:
    """A DNS-1123 label (lower case, digits, '-'; at most ``max_length``) derived from ``text``.

    Non-ASCII letters are transliterated where Unicode allows (é → e) and dropped
    otherwise; a name that had to be cut keeps a short hash of the full text so two
    long titles never collide.
    """
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    slug = re.sub(r"[^a-z0-9]+", "-", folded).strip("-")
    if not slug:
        digest = hashlib.sha256(text.encode()).hexdigest()[:8]
        slug = f"{fallback}-{digest}"
    if len(slug) > max_length:
        digest = hashlib.sha256(text.encode()).hexdigest()[:6]
        slug = f"{slug[: max_length - 7].rstrip('-')}-{digest}"
    if not DNS1123_LABEL.match(slug):  # e.g. fallback itself was unusable
        raise ValueError(f"cannot derive a DNS-1123 name from {text!r:.60}")
    return slug


def with_suffix(base: str, suffix: str, *, max_length: int = 63) -> str:
    """``base-suffix`` kept within ``max_length`` by shortening ``base``."""
    room = max_length - len(suffix) - 1
    return f"{base[:room].rstrip('-')}-{suffix}"
