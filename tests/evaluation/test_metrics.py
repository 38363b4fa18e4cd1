import numpy as np
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, roc_auc_score

from medcontrast.evaluation.metrics import bootstrap_weights, point_metrics, weighted_metrics
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
    batch = weighted_metrics(y, prob, weights)
    for b in range(5):
        idx = np.repeat(np.arange(len(y)), weights[b].astype(int))
        ref = point_metrics(y[idx], prob[idx])
        for name, value in ref.items():
            assert batch[name][b] == pytest.approx(value, abs=1e-9), name


def test_probes_learn_a_separable_problem():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 8))
    y = (x[:, 0] > 0).astype(int)
    prob, info = linear_probe(x[:100], y[:100], x[100:150], y[100:150], x[150:], 2, [0.1, 1.0])
    assert point_metrics(y[150:], prob)["auroc"] > 0.95 and info["C"] in (0.1, 1.0)
    prob = knn_probe(x[:100], y[:100], x[150:], 2, k=10)
    assert point_metrics(y[150:], prob)["accuracy"] > 0.8
    assert np.allclose(prob.sum(1), 1)
