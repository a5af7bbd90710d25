"""The trained models' out-of-distribution references (training/ood_reference.py, finished by the
pipeline with the served model): they flag at most 5 % of each model's own test inputs, and they
flag the inputs the models never saw, through the code serving runs (scripts/measure_ood.py's
helpers: decoding, image statistics, served probabilities, domain.ood). NOT FOR CLINICAL USE."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from med_classifier.domain.ood import NO_COLOUR
from med_classifier.domain.preprocessing import decode_batch
from scripts.measure_ood import (
    converted,
    image_verdicts,
    mostly_transparent,
    served,
    synthetic_inputs,
    tabular_verdicts,
)
from tests.helpers.keras_models import breast_cancer_lite_candidate, chest_ct_candidate
from tests.helpers.models import breast_cancer_candidate
from tests.helpers.skin_lesion import skin_lesion_candidate
from training.datasets import chest_ct as chest_ct_data
from training.datasets import ham10000
from training.ood_reference import TARGET_FALSE_FLAG_RATE

TABULAR = {"breast-cancer": breast_cancer_candidate, "breast-cancer-lite": breast_cancer_lite_candidate}
IMAGES = {"chest-ct": chest_ct_candidate, "skin-lesion": skin_lesion_candidate}


@pytest.fixture(scope="module")
def models():
    return {}


def model(models, name):
    if name not in models:
        candidate = {**TABULAR, **IMAGES}[name]()
        models[name] = (candidate, served(candidate))
    return models[name]


@pytest.fixture(scope="module")
def new_images(tmp_path_factory) -> dict[str, list[bytes]]:
    """Images of each data set's generator with a seed no model was trained on."""
    root = tmp_path_factory.mktemp("ood-images")
    written = {
        "chest-ct": chest_ct_data.write_synthetic(root / "chest-ct", 5, seed=1234),
        "skin-lesion": ham10000.write_synthetic(root / "ham10000", 2, seed=1234),
    }
    return {
        name: [p.read_bytes() for p in sorted(Path(folder).rglob("*")) if p.suffix in (".png", ".jpg")]
        for name, folder in written.items()
    }


def flagged(verdicts) -> list[bool]:
    return [in_distribution is False for in_distribution, _ in verdicts]


# --------------------------------------------------------------------------------- tabular


@pytest.mark.parametrize("name", list(TABULAR))
def test_a_tabular_reference_flags_at_most_5_percent_of_its_test_rows(models, name):
    candidate, served_model = model(models, name)
    ood = served_model.manifest.ood
    test_rows = candidate.ood["test"]["values"]
    assert ood.false_flag_rate <= TARGET_FALSE_FLAG_RATE
    assert ood.false_flag_rate == np.mean(flagged(tabular_verdicts(served_model, test_rows)))
    assert ood.score is None and ood.score_threshold is None


@pytest.mark.parametrize("name", list(TABULAR))
def test_a_tabular_reference_carries_drift_bins_and_the_class_mix(models, name):
    candidate, served_model = model(models, name)
    ood = served_model.manifest.ood
    assert [f.name for f in ood.features] == candidate.input_spec["feature_names"]
    for feature in ood.features:
        assert feature.low < feature.high
        assert len(feature.proportions) == len(feature.edges) + 1 and sum(feature.proportions) == pytest.approx(1)
        assert feature.edges == sorted(feature.edges)
    assert list(ood.class_mix) == ["malignant", "benign"] and sum(ood.class_mix.values()) == pytest.approx(1)


@pytest.mark.parametrize("name", list(TABULAR))
def test_an_absurd_radius_and_every_feature_at_10_times_its_max_are_flagged(models, name):
    candidate, served_model = model(models, name)
    features = served_model.manifest.ood.features
    base = np.median(candidate.ood["test"]["values"], axis=0)
    absurd = base.copy()
    absurd[0] = -3e38
    ((in_distribution, reasons),) = tabular_verdicts(served_model, absurd[None, :])
    radius = features[0]
    assert (in_distribution, reasons) == (
        False,
        [f"mean radius = -3e+38 is outside the range seen in training ({radius.low:.4g} to {radius.high:.4g})"],
    )
    rows = np.tile(base, (len(features), 1))
    rows[np.arange(len(features)), np.arange(len(features))] = [10 * f.high for f in features]
    verdicts = tabular_verdicts(served_model, rows)
    assert flagged(verdicts) == [True] * len(features)
    assert [reasons[0].split(" = ")[0] for _, reasons in verdicts] == [f.name for f in features]


# ---------------------------------------------------------------------------------- images


@pytest.mark.parametrize("name", list(IMAGES))
def test_an_image_reference_flags_at_most_5_percent_of_its_test_images(models, name):
    candidate, served_model = model(models, name)
    ood = served_model.manifest.ood
    assert ood.false_flag_rate <= TARGET_FALSE_FLAG_RATE
    assert [f.name for f in ood.features] == [
        "brightness",
        "contrast",
        "colourfulness",
        "edge_density",
        "transparent_fraction",
    ]
    assert set(ood.class_mix) == set(candidate.classes)


@pytest.mark.parametrize("name, other", [("chest-ct", "skin-lesion"), ("skin-lesion", "chest-ct")])
def test_the_other_models_images_are_flagged(models, new_images, name, other):
    _, served_model = model(models, name)
    assert all(flagged(image_verdicts(served_model, new_images[other])))


@pytest.mark.parametrize("name", list(IMAGES))
def test_noise_and_blank_images_are_flagged(models, name):
    _, served_model = model(models, name)
    for kind, images in synthetic_inputs(served_model.manifest.input.width, seed=7).items():
        assert all(flagged(image_verdicts(served_model, images))), kind


@pytest.mark.parametrize("name", list(IMAGES))
def test_a_blank_image_says_so(models, name):
    _, served_model = model(models, name)
    (gray,) = [images[5] for kind, images in synthetic_inputs(32, seed=7).items() if kind == "blank (one gray level)"]
    ((in_distribution, reasons),) = image_verdicts(served_model, [gray])
    assert in_distribution is False and "the image is blank (a single flat colour)" in reasons


@pytest.mark.parametrize("name", list(IMAGES))
def test_transparent_images_are_flagged_as_such(models, new_images, name):
    _, served_model = model(models, name)
    images = new_images[name][:5]
    for verdict in image_verdicts(served_model, [converted(d, "RGBA", alpha=0) for d in images]):
        assert verdict[0] is False and "the image is mostly transparent (100 % of pixels)" in verdict[1]
    for in_distribution, reasons in image_verdicts(served_model, [mostly_transparent(d) for d in images]):
        assert in_distribution is False and reasons[0].startswith("the image is mostly transparent (")


def test_grayscale_images_sent_to_the_colour_model_are_flagged_as_such(models, new_images):
    _, served_model = model(models, "skin-lesion")
    for in_distribution, reasons in image_verdicts(
        served_model, [converted(d, "L") for d in new_images["skin-lesion"]]
    ):
        assert in_distribution is False
        assert "the image has no colour; this model was trained on colour images" in reasons


def test_colour_images_sent_to_the_grayscale_model_are_flagged_as_such(models, new_images):
    _, served_model = model(models, "chest-ct")
    # As PNGs: a JPEG sent to a grayscale model is decoded in grayscale by libjpeg (draft mode, as in
    # training), so its statistics see no colour; it is flagged for its other statistics.
    images = [converted(d, "RGB") for d in new_images["skin-lesion"]]
    colourful = [decode_batch([d], served_model.manifest.input)[1][0]["colourfulness"] > NO_COLOUR for d in images]
    assert sum(colourful) > len(images) / 2
    for in_colour, (in_distribution, reasons) in zip(colourful, image_verdicts(served_model, images)):
        assert in_distribution is False
        assert ("the image is in colour; this model was trained on grayscale images" in reasons) == in_colour
