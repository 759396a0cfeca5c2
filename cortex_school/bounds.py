"""Bounded reading of untrusted text: how deep JSON nests, found in linear time before
any parser sees it (a deeply nested document is refused, never parsed)."""

from __future__ import annotations

import re
from itertools import accumulate

# A JSON string, or the rest of the text after an unterminated quote: one left-to-right
# pass, never re-scanned (an unterminated quote swallows the rest instead of backtracking).
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_DEPTH_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def max_json_depth(text: str) -> int:
    """How deep arrays and objects nest in ``text``, in linear time and without parsing.

    Brackets inside strings do not count. Meant for valid JSON; for malformed text the
    answer is only an estimate (the parser refuses such text anyway).
    """
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text))
    return max(accumulate(map(_DEPTH_STEP.__getitem__, brackets)), default=0)
