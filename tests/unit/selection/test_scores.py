"""Active-learning scores and class vectors: hand-computed against the formulas of Lightly's scorers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kurate.selection import scores as sc

H = lambda p: -sum(v * math.log2(v) for v in p if v > 0)  # noqa: E731 - entropy in bits, for the expectations


@pytest.mark.parametrize(
    "probs, name, expected",
    [
        ([0.8, 0.1, 0.1], "uncertainty_least_confidence", 0.2 / (1 - 1 / 3)),
        ([0.8, 0.1, 0.1], "uncertainty_margin", 1 - (0.8 - 0.1)),
        ([0.8, 0.1, 0.1], "uncertainty_entropy", H([0.8, 0.1, 0.1]) / math.log2(3)),
        ([1.0, 0.0, 0.0], "uncertainty_entropy", 0.0),  # sure: 0
        ([0.25] * 4, "uncertainty_least_confidence", 1.0),  # uniform: 1
        ([0.5, 0.5], "uncertainty_margin", 1.0),
        ([0.7], "uncertainty_least_confidence", 0.3 / 0.5),  # one column: binary [0.7, 0.3]
    ],
)
def test_classification_scores_by_hand(probs, name, expected):
    assert sc.uncertainty(np.array([probs]), name)[0] == pytest.approx(expected)


def test_classification_sample_uses_its_one_prediction():
    rec = [{"category_id": 0, "probabilities": [0.8, 0.1, 0.1]}]
    assert sc.sample_score(rec, sc.CLASSIFICATION, "uncertainty_margin") == pytest.approx(0.3)


# Lightly's own detection example (docs: datasource_predictions.rst "Example object detection")
OBJECTS = [
    {"category_id": 0, "bbox": [140, 100, 80, 90], "score": 0.8, "probabilities": [0.2, 0.8]},
    {"category_id": 1, "bbox": [1, 1, 1, 1], "score": 0.9, "probabilities": [0.9, 0.1]},
    {"category_id": 0, "bbox": [1, 1, 1, 1], "score": 0.5, "probabilities": [0.6, 0.4]},
]


def test_detection_takes_the_most_uncertain_object():
    # least confidence per object 0.2, 0.1, 0.4 of at most 0.5 -> 0.4, 0.2, 0.8; the image: 0.8
    assert sc.sample_score(OBJECTS, sc.DETECTION, "uncertainty_least_confidence") == pytest.approx(0.8)
    assert sc.sample_score(OBJECTS, sc.DETECTION, "uncertainty_margin") == pytest.approx(1 - 0.2)
    assert sc.sample_score(OBJECTS, sc.DETECTION, "uncertainty_entropy") == pytest.approx(H([0.6, 0.4]))
    assert sc.sample_score([], sc.DETECTION, "uncertainty_entropy") == 0.0  # no object: 0


def test_objects_without_probabilities_use_lightlys_from_scores_vector():
    objs = [{"category_id": 0, "score": 0.8}, {"category_id": 1, "score": 0.9}]
    # max label 1 -> vectors [0.8, 0.2] and [0.1, 0.9]: least confidence 0.4 and 0.2
    assert sc.sample_score(objs, sc.DETECTION, "uncertainty_least_confidence") == pytest.approx(0.4)
    # label 3 of 4 classes: (1 - 0.6) / 3 on the others
    np.testing.assert_allclose(sc.object_vector({"category_id": 3, "score": 0.6}, 3), [0.4 / 3] * 3 + [0.6])


def test_score_columns_by_hand():
    recs = [OBJECTS, [], None, [{"category_id": 2, "score": 0.5}] * 3]
    np.testing.assert_allclose(
        sc.score_column(recs, sc.DETECTION, "objectness_least_confidence"),
        [1 - (0.8 + 0.9 + 0.5) / 3, 0, 0, 0.5],
    )
    # object frequency raw: 1 + 0.25 (class 0 twice) + 1 = 2.25; 0; 0; 1 + 0.5 -> [0.9, 1]
    np.testing.assert_allclose(
        sc.score_column(recs, sc.DETECTION, "object_frequency"), [1.0, 0.9, 0.9, 0.9 + 0.1 * 1.5 / 2.25]
    )


def test_class_distribution_and_category_count():
    recs = [OBJECTS, [{"category_id": 1}, {"category_id": 1}], None]
    dist = sc.class_distribution(recs, sc.DETECTION, 2)
    np.testing.assert_allclose(dist, [[1.7, 1.3], [0, 2], [0, 0]], rtol=1e-6)
    cls = sc.class_distribution([[{"category_id": 2}]], sc.CLASSIFICATION, 3)
    np.testing.assert_array_equal(cls, [[0, 0, 1]])
    np.testing.assert_array_equal(sc.category_count(recs), [3, 2, 0])
    np.testing.assert_array_equal(sc.category_count(recs, [1]), [1, 2, 0])


@pytest.mark.parametrize("name", sc.UNCERTAINTY)
def test_uncertainty_is_in_0_1_and_maximal_when_uniform(name):
    rng = np.random.default_rng(3)
    p = rng.dirichlet(np.ones(5), size=200)
    s = sc.uncertainty(p, name)
    assert (s >= 0).all() and (s <= 1 + 1e-12).all()
    assert sc.uncertainty(np.full((1, 5), 0.2), name)[0] == pytest.approx(1.0)
    assert s.max() < 1.0
