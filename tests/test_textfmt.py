"""The text presentations' number styles and markdown table (attnbench/textfmt.py): what each
style prints, its missing value, and the table's shape."""

import pytest

from attnbench import textfmt

NAN, INF = float("nan"), float("inf")


def test_missing_is_none_or_nan_and_prints_as_a_dash():
    assert textfmt.MISSING == "-"
    assert textfmt.missing(None) and textfmt.missing(NAN)
    assert not any(textfmt.missing(v) for v in (0, 0.0, -1.5, INF, "", "nan"))


def test_number_is_a_format_spec_with_the_missing_dash():
    assert textfmt.number(0.123456, ".4f") == "0.1235"
    assert textfmt.number(-3.14159, "+.2f") == "-3.14"
    assert textfmt.number(2.5, "+.2f") == "+2.50"
    assert textfmt.number(0.000123, ".2e") == "1.23e-04"
    assert textfmt.number(12345678.9, ".0f") == "12345679"
    assert textfmt.number(7.0, "d") == "7"  # a count stored as a float
    assert textfmt.number(0, ".1f") == "0.0"
    assert textfmt.number(None, ".4f") == "-"
    assert textfmt.number(NAN, ".4f") == "nan"  # parity and explain never hid a NaN


def test_points_is_one_decimal_and_nan_is_missing():
    assert [textfmt.points(v) for v in (61.25, 0, -2.04, 100.0, 1234.56)] == ["61.2", "0.0", "-2.0", "100.0", "1234.6"]
    assert textfmt.points(None) == textfmt.points(NAN) == "-"  # a spread over one repeat is NaN


def test_by_magnitude_gives_fewer_decimals_the_larger_the_value():
    assert [textfmt.by_magnitude(v) for v in (14732.4, 100.0, 99.95, 12.34, 10.0, 9.994, 0.4234, 0.0)] == \
        ["14732", "100", "100.0", "12.3", "10.0", "9.99", "0.42", "0.00"]
    assert [textfmt.by_magnitude(v) for v in (-250.6, -12.34, -0.5)] == ["-251", "-12.3", "-0.50"]
    assert textfmt.by_magnitude(7) == "7" and textfmt.by_magnitude(0) == "0"  # an int stays whole
    assert textfmt.by_magnitude(1e12) == "1000000000000"
    assert textfmt.by_magnitude(None) == textfmt.by_magnitude(NAN) == "-"  # a mean over no pass is NaN


def test_compact_keeps_three_significant_digits_below_one():
    assert [textfmt.compact(v) for v in (2394.4, 100.0, 99.96, 12.34, 1.0, 0.5, 0.0041234, 0.0)] == \
        ["2394", "100", "100.0", "12.3", "1.0", "0.5", "0.00412", "0"]
    assert [textfmt.compact(v) for v in (-2394.4, -1.25, -0.0041234)] == ["-2394", "-1.2", "-0.00412"]
    assert textfmt.compact(1.5e9) == "1500000000"
    assert textfmt.compact(None) == "-"


def test_significant_digits():
    assert [textfmt.significant(v) for v in (0.0123456, 3.14159, 12345.6, -0.5, 0.0)] == \
        ["0.01235", "3.142", "1.235e+04", "-0.5", "0"]
    assert textfmt.significant(0.000123456, 3) == "0.000123"
    assert textfmt.significant(None) == "-"


def test_grouped_separates_thousands_and_uses_exponents_at_the_extremes():
    assert [textfmt.grouped(v) for v in (0, 0.01, 0.41234, 123.45, 999.9, 1000.0, 14732.4, 999999.0)] == \
        ["0", "0.01", "0.4123", "123.5", "999.9", "1,000", "14,732", "999,999"]
    assert [textfmt.grouped(v) for v in (0.00123, 1e6, 2.5e7, -14732.4, -0.5)] == \
        ["0.00123", "1e+06", "2.5e+07", "-14,732", "-0.5"]
    assert textfmt.grouped(None) == "-"


def test_signed_pct_always_has_a_sign():
    assert [textfmt.signed_pct(v) for v in (3.24, -0.5, 0.0, 1234.56)] == ["+3.2%", "-0.5%", "+0.0%", "+1234.6%"]
    assert textfmt.signed_pct(INF) == "+inf%" and textfmt.signed_pct(-INF) == "-inf%"  # a change from 0
    assert textfmt.signed_pct(None) == "-"


def test_share_is_a_fraction_as_a_whole_percentage():
    assert [textfmt.share(v) for v in (0.374, 0.0, 1.0, 1.5, -0.25)] == ["37%", "0%", "100%", "150%", "-25%"]
    assert textfmt.share(None) == "-"


def test_plus_minus_pct():
    assert textfmt.plus_minus_pct(1.234) == "±1.2%" and textfmt.plus_minus_pct(0) == "±0.0%"


def test_md_table_shape_alignment_and_escaping():
    lines = textfmt.md_table(["name", "value"], [["fa3", "1.5"], ["a|b", 7], ["", None]], align="lr")
    assert lines == ["| name | value |", "|---|---:|", "| fa3 | 1.5 |", "| a\\|b | 7 |", "|  | None |"]
    assert textfmt.md_table(("x", "y", "z"), []) == ["| x | y | z |", "|---|---|---|"]  # default: all 'l'
    assert textfmt.md_table(["max |Δ|"], iter([["0.1"]])) == ["| max \\|Δ\\| |", "|---|", "| 0.1 |"]
    assert textfmt.md_escape("a|b|c") == "a\\|b\\|c"


@pytest.mark.parametrize("align", ["l", "lrr", "lc"])
def test_md_table_wants_one_l_or_r_per_column(align):
    with pytest.raises(ValueError, match="one 'l' or 'r' per column"):
        textfmt.md_table(["a", "b"], [], align=align)

