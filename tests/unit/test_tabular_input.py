import math

import numpy as np
import pytest

from med_classifier.domain.errors import InvalidInput, PayloadTooLarge
from med_classifier.domain.manifest import TabularInput
from med_classifier.domain.tabular import rows_to_matrix

SPEC = TabularInput(feature_names=["radius", "texture", "smoothness"], input_name="features")


def test_list_and_object_rows_give_the_same_matrix():
    by_position = rows_to_matrix([[1, 2.5, 3], [4, 5, 6]], SPEC, max_rows=10)
    by_name = rows_to_matrix(
        [{"texture": 2.5, "radius": 1, "smoothness": 3}, {"radius": 4, "texture": 5, "smoothness": 6}], SPEC, 10
    )
    assert by_position.dtype == np.float32 and by_position.shape == (2, 3)
    np.testing.assert_array_equal(by_position, by_name)


@pytest.mark.parametrize(
    "rows, expected",
    [
        ([[1, 2]], "row 0: expected 3 features, got 2"),
        ([[1, 2, 3], [1, 2, 3, 4]], "row 1: expected 3 features, got 4"),
        ([[1, "2", 3]], "row 0, feature 1 (texture): expected a number, got str '2'"),
        ([[1, None, 3]], "row 0, feature 1 (texture): expected a number, got NoneType"),
        ([[True, 2, 3]], "row 0, feature 0 (radius): expected a number, got bool"),
        ([[1, math.nan, 3]], "row 0, feature 1 (texture): expected a finite number, got nan"),
        ([[1, 2, math.inf]], "row 0, feature 2 (smoothness): expected a finite number, got inf"),
        ([{"radius": 1, "texture": 2}], "row 0: missing 1 feature(s): smoothness"),
        ([{"radius": 1, "texture": 2, "smoothness": 3, "colour": 4}], "row 0: unknown key(s): colour"),
        ([5], "row 0: expected a list of 3 numbers or an object keyed by feature name, got int"),
    ],
)
def test_bad_rows_name_the_row_and_feature(rows, expected):
    with pytest.raises(InvalidInput) as info:
        rows_to_matrix(rows, SPEC, max_rows=10)
    assert expected in info.value.message
    assert info.value.status_code == 422


def test_every_problem_is_listed_up_to_a_limit():
    with pytest.raises(InvalidInput) as info:
        rows_to_matrix([["a", "b", "c"]] * 20, SPEC, max_rows=100)
    assert 1 < len(info.value.details) <= 10
    assert "more" in info.value.message


def test_empty_and_oversized_batches():
    with pytest.raises(InvalidInput, match="at least one row"):
        rows_to_matrix([], SPEC, max_rows=10)
    with pytest.raises(PayloadTooLarge, match="at most 10 rows") as info:
        rows_to_matrix([[1, 2, 3]] * 11, SPEC, max_rows=10)
    assert info.value.status_code == 413


# --- each guard on its own, with the exact message -----------------------------------------

WIDE = TabularInput(feature_names=[f"f{i}" for i in range(8)], input_name="features")


def messages(rows, spec=SPEC, max_rows=10):
    with pytest.raises(InvalidInput) as info:
        rows_to_matrix(rows, spec, max_rows=max_rows)
    return info.value.message, info.value.details


def test_the_matrix_holds_the_values_in_feature_order():
    matrix = rows_to_matrix([[1, 2.5, -3], {"smoothness": 0.125, "radius": 1e3, "texture": 0}], SPEC, max_rows=2)
    expected = np.array([[1.0, 2.5, -3.0], [1000.0, 0.0, 0.125]], dtype=np.float32)
    np.testing.assert_array_equal(matrix, expected)
    assert matrix.dtype == np.float32


def test_a_batch_of_exactly_the_limit_is_accepted():
    assert rows_to_matrix([[1, 2, 3]] * 10, SPEC, max_rows=10).shape == (10, 3)
    with pytest.raises(PayloadTooLarge) as info:
        rows_to_matrix([[1, 2, 3]] * 11, SPEC, max_rows=10)
    assert info.value.message == "11 rows sent; at most 10 rows per request. Split the batch."


@pytest.mark.parametrize("rows", [[], None, {"radius": 1}, "1,2,3"])
def test_no_rows_or_no_list_of_rows(rows):
    message, details = messages(rows)
    assert message == 'Send at least one row: {"instances": [[...features...]]}.'
    assert details == []


def test_one_problem_is_the_message_and_the_only_detail():
    message, details = messages([[1, "x", 3]])
    assert message == "Invalid input: row 0, feature 1 (texture): expected a number, got str 'x'"
    assert details == ["row 0, feature 1 (texture): expected a number, got str 'x'"]


def test_the_count_of_further_problems_is_exact():
    message, details = messages([[1, "a", "b"]])
    assert message == "Invalid input: row 0, feature 1 (texture): expected a number, got str 'a' (and 1 more)"
    assert details == [
        "row 0, feature 1 (texture): expected a number, got str 'a'",
        "row 0, feature 2 (smoothness): expected a number, got str 'b'",
    ]


def test_at_most_ten_problems_are_reported_and_checking_stops_there():
    # Five bad rows of three values: the fourth row reaches ten problems (twelve found), the fifth is not read.
    message, details = messages([["a", "b", "c"]] * 5, max_rows=10)
    assert len(details) == 10
    assert details[-1] == "row 3, feature 0 (radius): expected a number, got str 'a'"
    assert message.endswith(" (and 11 more)")
    # A row's problems are all listed before the limit is checked, and then the rest is cut.
    _, details = messages([["a", "b", "c"]] * 3 + [[1, 2, 3]] + [["a", "b", "c"]] * 2, max_rows=10)
    assert len(details) == 10 and details[-1].startswith("row 4, feature 0 ")


def test_exactly_nine_problems_are_all_reported():
    _, details = messages([["a", "b", "c"]] * 3)
    assert len(details) == 9


def test_long_values_are_cut_in_messages():
    message, _ = messages([[1, "x" * 100, 3]])
    shown = "'" + "x" * 36 + "..."
    assert message == f"Invalid input: row 0, feature 1 (texture): expected a number, got str {shown}"
    exactly_forty = "y" * 38  # its repr, quotes included, is 40 characters: shown whole
    message, _ = messages([[1, exactly_forty, 3]])
    assert message.endswith(f"got str '{exactly_forty}'")
    forty_one = "z" * 39
    message, _ = messages([[1, forty_one, 3]])
    assert message.endswith("got str '" + "z" * 36 + "...")


def test_missing_features_list_five_then_an_ellipsis():
    message, _ = messages([{"f0": 1, "f1": 2}], spec=WIDE)
    assert message == "Invalid input: row 0: missing 6 feature(s): f2, f3, f4, f5, f6 ..."
    message, _ = messages([{"f0": 1, "f1": 2, "f2": 3}], spec=WIDE)
    assert message == "Invalid input: row 0: missing 5 feature(s): f3, f4, f5, f6, f7"


def test_unknown_keys_list_five_and_combine_with_missing_ones():
    row = {"radius": 1, "texture": 2, **{f"x{i}": 0 for i in range(7)}}
    message, _ = messages([row])
    assert message == ("Invalid input: row 0: missing 1 feature(s): smoothness; unknown key(s): x0, x1, x2, x3, x4")


def test_a_bad_row_does_not_hide_the_next_rows_problems():
    _, details = messages([[1, 2], {"radius": 1}, "row", [1, 2, None]])
    assert details == [
        "row 0: expected 3 features, got 2",
        "row 1: missing 2 feature(s): texture, smoothness",
        "row 2: expected a list of 3 numbers or an object keyed by feature name, got str",
        "row 3, feature 2 (smoothness): expected a number, got NoneType None",
    ]


def test_named_rows_name_the_feature_in_messages():
    message, _ = messages([{"radius": 1, "texture": "soft", "smoothness": 3}])
    assert message == "Invalid input: row 0, feature 'texture': expected a number, got str 'soft'"


@pytest.mark.parametrize("value, shown", [(math.inf, "inf"), (-math.inf, "-inf"), (math.nan, "nan")])
def test_non_finite_values_are_named(value, shown):
    message, _ = messages([[value, 2, 3]])
    assert message == f"Invalid input: row 0, feature 0 (radius): expected a finite number, got {shown}"


def test_integers_and_floats_are_numbers_and_bools_are_not():
    np.testing.assert_array_equal(rows_to_matrix([[1, 2.0, 3]], SPEC, 1), [[1.0, 2.0, 3.0]])
    message, _ = messages([[1, False, 3]])
    assert message == "Invalid input: row 0, feature 1 (texture): expected a number, got bool False"


def test_checking_stops_at_the_row_that_brings_the_count_to_exactly_ten():
    five = TabularInput(feature_names=[f"f{i}" for i in range(5)], input_name="features")
    message, details = messages([["x"] * 5] * 3, spec=five)
    assert len(details) == 10 and message.endswith(" (and 9 more)")  # the third row is not read


# --- numbers the float32 models cannot hold ------------------------------------------------------------

AREA = TabularInput(feature_names=["mean radius", "mean texture", "mean perimeter", "mean area"], input_name="x")


@pytest.mark.parametrize(
    "value, shown",
    [
        (1e39, "1e+39"),  # passed the finiteness check and became inf in the float32 matrix
        (-1e39, "-1e+39"),
        (3.4028236e38, "3.4028236e+38"),  # rounds to inf in float32
        (10**400, "1" + "0" * 36 + "..."),  # measured: OverflowError (a 500) in math.isfinite
        (-(10**39), "-1" + "0" * 35 + "..."),
    ],
    ids=["1e39", "-1e39", "just past float32", "an int of 401 digits", "a negative int"],
)
def test_a_number_outside_float32s_range_is_refused_naming_row_and_feature(value, shown):
    with pytest.raises(InvalidInput) as info:
        rows_to_matrix([[1, 2, 3, value]], AREA, max_rows=10)
    assert info.value.message == (
        f"Invalid input: row 0, feature 3 (mean area): {shown} is outside the float32 range (±3.4028235e+38)"
    )
    assert info.value.status_code == 422


def test_the_largest_float32_values_are_numbers():
    largest = float(np.finfo(np.float32).max)
    matrix = rows_to_matrix([[largest, -largest, 3.4028235e38, 10**38]], AREA, max_rows=10)
    assert np.isfinite(matrix).all() and matrix[0, 2] == np.float32(largest)
