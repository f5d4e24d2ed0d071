"""Exact numbers: BTSE decimals held as float64, proven exact by a digit check.

Representation (see README "Protocol core"): every price and amount is a Python ``float``
(IEEE-754 binary64). That is exact *in the sense that matters for storage*: any decimal with at
most 15 significant digits converts to the nearest double and back to the very same decimal
(``repr(float("0.06865")) == "0.06865"``), because 10**15 < 2**53. A value with 16 or 17 digits
is exact only if it is the shortest text of its double (``0.30000000000000004``, what a float64
JSON serializer writes for trade prices): it is accepted when ``repr`` gives the same decimal
back, refused otherwise (``1.0000000000000001`` would become ``1.0``) — never silently rounded.

The check is cheap enough for the hot path: ``has_long_digit_run`` looks for sixteen digits or
dots in a row (in pure Python: every byte of the raw frame mapped to ``1`` or a space with one
``bytes.translate``, then a substring search; in C: every 16th byte first, walking back only
from a digit). A number with more than 15 significant digits always contains such a run; a
frame without one is proven exact without looking at single values. A frame with a run (a long
but harmless ``"0.000000001234"``, or a real 17-digit value) goes to the precise check,
``exact_float``, which counts significant digits with :class:`decimal.Decimal` and, above 15,
checks the round trip.
"""

from __future__ import annotations

import math
from decimal import Decimal, InvalidOperation

from collector.errors import InexactNumber
from collector.protocol import native

MAX_SIGNIFICANT_DIGITS = 15

# Smallest magnitude accepted: below the normal range of binary64 the 15-digit guarantee ends.
_MIN_NORMAL = 2.2250738585072014e-308

_RUN_TABLE = bytes(0x31 if (0x30 <= b <= 0x39 or b == 0x2E) else 0x20 for b in range(256))
_RUN_NEEDLE = b"1" * (MAX_SIGNIFICANT_DIGITS + 1)


def py_has_long_digit_run(raw: bytes) -> bool:
    """True if ``raw`` holds 16 or more consecutive digits/dots (a possibly inexact number).

    False proves that every number in the frame (quoted or not) has at most 15 significant
    digits. True only means "check the values one by one" (``exact_float``).
    """
    return _RUN_NEEDLE in raw.translate(_RUN_TABLE)


#: :func:`py_has_long_digit_run`, or its C twin (the same answer, ~4x faster: it looks at every
#: 16th byte first and skips the frame's runs of letters and punctuation) when built.
has_long_digit_run = (
    native.speedups.has_long_digit_run if native.speedups is not None else py_has_long_digit_run
)


def significant_digits(value: Decimal) -> int:
    """Number of significant digits of a finite decimal (trailing zeros do not count)."""
    digits = value.as_tuple().digits
    text = "".join(map(str, digits)).strip("0")
    return len(text)


def exact_float(token: str | int | float | Decimal, *, allow_negative: bool = False) -> float:
    """The float64 that holds ``token`` exactly, or :class:`InexactNumber` naming the problem.

    ``token`` is the decimal as sent: a string (book levels) or a :class:`Decimal` built from
    a JSON number's text (trades). Ints are accepted when they fit 15 digits. A ``float`` input
    has already lost its text: it is accepted only as the round-trip of its own ``repr``.
    """
    if isinstance(token, bool):
        raise InexactNumber(repr(token), "a boolean is not a number")
    original = token if isinstance(token, str) else str(token)
    if isinstance(token, float):
        token = Decimal(repr(token))
    elif isinstance(token, int):
        token = Decimal(token)
    elif isinstance(token, str):
        text = token
        if not text or not all(c in "0123456789.-+eE" for c in text):
            raise InexactNumber(text, "not a plain decimal number")
        try:
            token = Decimal(text)
        except InvalidOperation:
            raise InexactNumber(text, "not a decimal number") from None
    if not token.is_finite():
        raise InexactNumber(original, "not a finite number")
    if token.is_signed() and not allow_negative and token != 0:
        raise InexactNumber(original, "negative value")
    digits = significant_digits(token)
    result = float(token)
    if digits > MAX_SIGNIFICANT_DIGITS and Decimal(repr(result)) != token:
        # 16-17 digits are exact only when they are the shortest text of a double (what a
        # float64 JSON serializer writes, e.g. 0.30000000000000004): then repr gives them back
        raise InexactNumber(
            original,
            f"{digits} significant digits, float64 holds {MAX_SIGNIFICANT_DIGITS} "
            f"(nearest double: {result!r})",
        )
    if math.isinf(result):
        raise InexactNumber(original, "out of the float64 range")
    if result != 0.0 and abs(result) < _MIN_NORMAL:
        raise InexactNumber(original, "below the float64 normal range")
    if result == 0.0 and digits:
        raise InexactNumber(original, "underflows to zero")
    return result
