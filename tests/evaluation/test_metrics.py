import numpy as np
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, roc_auc_score

from medcontrast.evaluation.metrics import (
    bootstrap_weights,
    percentile_interval,
    point_metrics,
    weighted_metrics,
    youden_threshold,
)
from medcontrast.evaluation.probes import knn_probe, linear_probe


@pytest.mark.parametrize("classes", [2, 4])
def test_metrics_agree_with_sklearn_also_under_resampling(classes):
    rng = np.random.default_rng(classes)
    y = rng.integers(0, classes, 150)
    prob = rng.dirichlet(np.ones(classes), 150)
    prob[:20] = prob[20:40]  # ties
    ours = point_metrics(y, prob)
    pred = prob.argmax(1)
    auc = (
        roc_auc_score(y, prob[:, 1]) if classes == 2 else roc_auc_score(y, prob, multi_class="ovr")
    )
    assert ours["auroc"] == pytest.approx(auc)
    assert ours["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert ours["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred))
    assert ours["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro"))
    weights = bootstrap_weights(len(y), 5, seed=1)
    for threshold in (None, 0.3):
        batch = weighted_metrics(y, prob, weights, threshold=threshold, positive=classes - 1)
        for b in range(5):
            idx = np.repeat(np.arange(len(y)), weights[b].astype(int))
            ref = point_metrics(y[idx], prob[idx], threshold=threshold, positive=classes - 1)
            for name, value in ref.items():
                assert batch[name][b] == pytest.approx(value, abs=1e-9), name


def test_sensitivity_and_specificity_of_the_positive_class():
    y = np.array([1, 1, 1, 0, 0])
    prob = np.array([[0.2, 0.8], [0.6, 0.4], [0.3, 0.7], [0.9, 0.1], [0.4, 0.6]])
    m = point_metrics(y, prob, ["sensitivity", "specificity"])
    assert m == {"sensitivity": pytest.approx(2 / 3), "specificity": pytest.approx(1 / 2)}
    # The other class as the positive one swaps them.
    m0 = point_metrics(y, prob, ["sensitivity", "specificity"], positive=0)
    assert m0 == {"sensitivity": pytest.approx(1 / 2), "specificity": pytest.approx(2 / 3)}


def _miscalibrated(rng, n):
    """A model whose positives score around 0.3 and negatives around 0.1: ranked well, but a
    0.5 threshold calls almost nothing positive."""
    y = (rng.random(n) < 0.3).astype(int)
    p = np.where(y == 1, rng.beta(3, 7, n), rng.beta(1, 9, n))
    return y, np.stack([1 - p, p], 1)


def test_a_threshold_chosen_on_validation_differs_from_one_half_and_helps():
    rng = np.random.default_rng(0)
    y_val, p_val = _miscalibrated(rng, 400)
    y_test, p_test = _miscalibrated(rng, 400)
    t = youden_threshold(y_val, p_val)
    assert t is not None and 0.05 < t < 0.4
    names = ["balanced_accuracy", "sensitivity"]
    tuned = point_metrics(y_test, p_test, names, threshold=t)
    fixed = point_metrics(y_test, p_test, names)
    assert tuned["balanced_accuracy"] > fixed["balanced_accuracy"] + 0.1
    assert tuned["sensitivity"] > 0.5 > fixed["sensitivity"]
    assert point_metrics(y_test, p_test, ["auroc"], threshold=t) == point_metrics(
        y_test, p_test, ["auroc"]
    )
    assert youden_threshold(np.zeros(10, int), p_val[:10]) is None  # one class: cannot choose


def test_patient_bootstrap_is_wider_than_image_bootstrap_when_patients_repeat():
    rng = np.random.default_rng(1)
    patients, per = 40, 5
    y_p = rng.integers(0, 2, patients)
    score_p = y_p + rng.normal(0, 0.8, patients)  # what a patient looks like to the model
    y = np.repeat(y_p, per)
    score = np.repeat(score_p, per) + rng.normal(0, 0.05, patients * per)
    p = 1 / (1 + np.exp(-score))
    prob = np.stack([1 - p, p], 1)
    groups = np.repeat(np.arange(patients), per)
    width = {}
    for name, g in (("images", None), ("patients", groups)):
        w = bootstrap_weights(len(y), 2000, 0, g)
        lo, hi = percentile_interval(weighted_metrics(y, prob, w, ["auroc"])["auroc"])
        width[name] = hi - lo
    assert width["patients"] > 1.6 * width["images"]


def test_probes_learn_a_separable_problem():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 8))
    y = (x[:, 0] > 0).astype(int)
    prob, info = linear_probe(x[:100], y[:100], x[100:150], y[100:150], x[150:], 2, [0.1, 1.0])
    assert point_metrics(y[150:], prob)["auroc"] > 0.95 and info["C"] in (0.1, 1.0)
    prob = knn_probe(x[:100], y[:100], x[150:], 2, k=10)
    assert point_metrics(y[150:], prob)["accuracy"] > 0.8
    assert np.allclose(prob.sum(1), 1)
