"""The API's one JSON parser: a body is measured before it is parsed, so no body costs a 500.

Python's json module recurses once per nesting level (a body of 100,000 "[" was a RecursionError,
answered with a 500), reads 1e999 as infinity (which no field or jsonb column can hold), and
refuses an integer of more than 4,300 digits with advice about sys.set_int_max_str_digits(). Here
a body over TMT_API_MAX_BODY_BYTES is refused with a 413 before it is read, and one nesting deeper
than TMT_API_MAX_JSON_DEPTH (found by a scan, without recursion) or holding a number that is not
finite with a 400 that says why.
"""

from __future__ import annotations

import json
import math
import re

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser, get_encoding

from .exceptions import BodyTooLarge

PARSE_ERROR = "JSON parse error - {}"

# A JSON string, escapes included (the unrolled form: linear, no backtracking).
_STRINGS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = re.compile(r"[^\[\]{}]+")
_INNERMOST_PAIRS = re.compile(r"\[\]|\{\}")


def nests_deeper_than(text: str, limit: int) -> bool:
    """Whether the JSON `text` nests arrays and objects more than `limit` levels deep.

    Brackets inside strings do not count. Exact for well-formed JSON; malformed text may be
    judged either way (json.loads refuses it next), but what passes never makes json.loads
    recurse more than twice `limit` deep."""
    if text.count("[") + text.count("{") <= limit:
        return False  # the common case: too few brackets to nest that deep
    brackets = _NOT_BRACKETS.sub("", _STRINGS.sub("", text))
    # Each pass removes the innermost level everywhere at C speed (a body of 700,000 "[]" is
    # two passes), so only what nests deeper, or does not match, is left to count one by one.
    for _ in range(limit):
        peeled = _INNERMOST_PAIRS.sub("", brackets)
        if peeled == brackets:
            break
        brackets = peeled
    else:
        return bool(brackets)
    depth = 0
    for bracket in brackets:
        depth += 1 if bracket in "[{" else -1
        if depth > limit:
            return True
    return False


def _finite_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise ValueError(f"Numbers must be finite ({literal[:20]} is too large).")
    return value


def _integer(literal: str) -> int:
    try:
        return int(literal)
    except ValueError:  # over sys.get_int_max_str_digits()
        raise ValueError(f"A number of {len(literal):,} digits is too long.") from None


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a JSON number.")


class BoundedJSONParser(BaseParser):
    """application/json within the size and depth limits (settings TMT_API_MAX_BODY_BYTES and
    TMT_API_MAX_JSON_DEPTH, read per request).

    Not a subclass of DRF's JSONParser on purpose: DRF reads a JSONParser's whole body into
    memory first (request.body, up to DATA_UPLOAD_MAX_MEMORY_SIZE); this one reads at most one
    byte past its limit."""

    media_type = "application/json"

    def parse(self, stream, media_type=None, parser_context=None):
        parser_context = parser_context or {}
        limit = settings.TMT_API_MAX_BODY_BYTES
        request = parser_context.get("request")
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0) if request is not None else 0
        except ValueError:
            declared = 0
        if declared > limit:
            raise BodyTooLarge(limit)
        raw = stream.read(limit + 1)
        if len(raw) > limit:
            raise BodyTooLarge(limit)
        try:
            text = raw.decode(get_encoding(parser_context))
        except UnicodeDecodeError as exc:
            raise ParseError(PARSE_ERROR.format(exc)) from None
        depth = settings.TMT_API_MAX_JSON_DEPTH
        if nests_deeper_than(text, depth):
            raise ParseError(f"The JSON nests more than {depth} levels deep.")
        try:
            return json.loads(text, parse_float=_finite_float, parse_int=_integer, parse_constant=_refuse_constant)
        except ValueError as exc:
            raise ParseError(PARSE_ERROR.format(exc)) from None
