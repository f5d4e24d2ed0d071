from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collector.errors import DecodeError, InexactNumber
from collector.protocol.numbers import exact_float, has_long_digit_run, significant_digits


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0.06865", 0.06865),
        ("0.50000", 0.5),
        ("86626.0", 86626.0),
        ("69350", 69350.0),
        ("0", 0.0),
        ("123456789012345", 123456789012345.0),
        ("0.000000000012345", 1.2345e-11),
        ("1e5", 100000.0),
    ],
)
def test_exact_float_accepts_plain_decimals(text: str, value: float) -> None:
    assert exact_float(text) == value


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("9007199254740993", "16 significant digits"),  # 2**53 + 1: no double holds it
        ("0.12345678901234567", "17 significant digits"),
        ("1.0000000000000001", "17 significant digits"),
        ("nan", "not a plain decimal"),
        ("inf", "not a plain decimal"),
        ("-5", "negative"),
        ("1_0", "not a plain decimal"),
        (" 5", "not a plain decimal"),
        ("", "not a plain decimal"),
        ("1.2.3", "not a decimal number"),
        ("1e400", "out of the float64 range"),
        ("1e-400", "underflows"),
    ],
)
def test_exact_float_refuses_what_float64_cannot_hold(text: str, problem: str) -> None:
    with pytest.raises(InexactNumber) as info:
        exact_float(text)
    assert problem in str(info.value)
    assert isinstance(info.value, DecodeError)
    assert info.value.text == text


def test_exact_float_json_numbers_as_decimal_and_int() -> None:
    assert exact_float(Decimal("5302.8")) == 5302.8
    assert exact_float(152) == 152.0
    with pytest.raises(InexactNumber):
        exact_float(Decimal("117661.30000000000001"))
    with pytest.raises(InexactNumber):
        exact_float(True)
    assert exact_float("-1.5", allow_negative=True) == -1.5


def test_significant_digits_ignores_leading_and_trailing_zeros() -> None:
    assert significant_digits(Decimal("0.0012300")) == 3
    assert significant_digits(Decimal("100")) == 1
    assert significant_digits(Decimal("0")) == 0


def test_long_digit_run_detection() -> None:
    assert not has_long_digit_run(b'{"bids":[["59252.5","0.06865"]],"timestamp":1790133628076}')
    assert has_long_digit_run(b'[["0.12345678901234567","1"]]')
    assert has_long_digit_run(b'{"price":1234567890123456}')
    # a long but harmless value is flagged (then checked precisely), never missed
    assert has_long_digit_run(b'"0.000000000012345"')


decimals = st.decimals(
    min_value=Decimal("0.000001"), max_value=Decimal("10000000000"), allow_nan=False, places=6
).filter(lambda d: significant_digits(d) <= 15)


@given(decimals)
def test_every_decimal_up_to_15_digits_round_trips(value: Decimal) -> None:
    text = format(value, "f")
    f = exact_float(text)
    assert Decimal(repr(f)) == value  # float64 holds exactly the decimal that was sent
    assert not has_long_digit_run(text.encode()) or len(text) > 15


@given(st.integers(min_value=10**15, max_value=10**30), st.integers(min_value=0, max_value=10))
def test_every_value_over_15_digits_is_flagged_and_kept_only_if_exact(
    mantissa: int, shift: int
) -> None:
    if mantissa % 10 == 0:
        mantissa += 1  # make the last digit significant
    value = Decimal(f"{mantissa}E-{shift}")
    text = format(value, "f")  # exact: no context rounding
    assert has_long_digit_run(f'"{text}"'.encode())
    if Decimal(repr(float(text))) == value:  # the shortest text of a double: exact
        assert Decimal(repr(exact_float(text))) == value
    else:
        with pytest.raises(InexactNumber):
            exact_float(text)


@pytest.mark.parametrize(
    "text", ["0.30000000000000004", "0.5488135039273248", "86641.90000000001", "1234567890123456"]
)
def test_shortest_double_texts_with_16_or_17_digits_are_exact(text: str) -> None:
    # what a float64 JSON serializer writes (trade prices are JSON numbers): stored exactly
    assert repr(exact_float(text)).removesuffix(".0") == text
