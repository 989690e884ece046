"""The batch paths' JSON: fast, and no different from the standard library in what it accepts."""

import json
import math

import pytest

from shared import fastjson


@pytest.mark.parametrize(
    "text",
    [
        '{"inputs": [[5.1, 3.5, 1.4, 0.2], null, "x", {"a": [true, false]}]}',
        "[1e-07, -0.0, 12345678901234567890]",
        '"é"',
    ],
)
def test_loads_reads_what_the_standard_library_reads(text):
    assert fastjson.loads(text.encode()) == json.loads(text)


def test_non_finite_literals_are_read_as_text_that_validation_refuses_by_name():
    assert fastjson.loads(b"[NaN, Infinity, -Infinity, 1]") == ["NaN", "Infinity", "-Infinity", 1]


def test_non_finite_floats_survive_a_round_trip_as_those_literals():
    values = [math.inf, -math.inf, math.nan, None, 1.5]
    assert fastjson.dumps(values) == b"[Infinity,-Infinity,NaN,null,1.5]"
    assert fastjson.loads(fastjson.dumps(values)) == ["Infinity", "-Infinity", "NaN", None, 1.5]


def test_integers_beyond_64_bits_are_kept_exactly():
    big = 2**80 + 1
    assert fastjson.loads(fastjson.dumps([big])) == [big]
    assert json.loads(fastjson.dumps_strict({"observation_id": big})) == {"observation_id": big}


@pytest.mark.parametrize("text", [b"{", b"[1,]", b"\xff\xfe", b"{'a': 1}"])
def test_invalid_json_raises_value_error_with_a_position(text):
    with pytest.raises(ValueError):
        fastjson.loads(text)


def test_strict_output_is_always_json():
    assert json.loads(fastjson.dumps_strict({"score": math.nan}), parse_constant=pytest.fail) == {"score": None}


def test_a_long_digit_run_is_found_across_scan_windows():
    body = b"[" + b"1.5," * 10 + b"123456789012345678901234567890]"
    for window in (4, 7, 16, 1 << 20):  # the run straddles window edges at the small sizes
        assert fastjson._has_long_digit_run(body, window)
    assert not fastjson._has_long_digit_run(b"[1234567890123456789]" * 1000, 7)
