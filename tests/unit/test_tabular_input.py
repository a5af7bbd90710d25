import math

import numpy as np
import pytest

from med_classifier.errors import InvalidInput, PayloadTooLarge
from med_classifier.manifest import TabularInput
from med_classifier.tabular import rows_to_matrix

SPEC = TabularInput(feature_names=["radius", "texture", "smoothness"], input_name="features")


def test_list_and_object_rows_give_the_same_matrix():
    by_position = rows_to_matrix([[1, 2.5, 3], [4, 5, 6]], SPEC, max_rows=10)
    by_name = rows_to_matrix([{"texture": 2.5, "radius": 1, "smoothness": 3}, {"radius": 4, "texture": 5,
                                                                                "smoothness": 6}], SPEC, 10)
    assert by_position.dtype == np.float32 and by_position.shape == (2, 3)
    np.testing.assert_array_equal(by_position, by_name)


@pytest.mark.parametrize("rows, expected", [
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
])
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
