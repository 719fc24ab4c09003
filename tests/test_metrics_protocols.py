"""The evaluation protocols, run on tiny fake models whose right answers are known.

Images here are 3x16x16 "barcodes": attribute k of the model paints stripe
k (two rows) white for 1 and black for 0; the fake classifier reads the
stripes back by name. Broken fakes must score exactly as badly as they are.
"""

import math

import numpy as np
import pytest
import torch

from facegen.errors import FacegenError
from facegen.metrics.identity import identity_available
from facegen.metrics.protocols import (attribute_control, classifier_accuracy, classifier_recalls, classifier_columns, diversity,
                                       edit_success, reconstruction_quality)

MODEL_NAMES = ["Smiling", "Male", "Young"]
# The classifier's columns: other order, one attribute the model lacks.
CLASSIFIER_NAMES = ["Young", "Eyeglasses", "Smiling", "Male"]


def paint(y: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
    """(B, 3, 16, 16) images with stripe k at +1 / -1 for y[:, k] = 1 / 0."""
    x = torch.zeros(len(y), 3, 16, 16)
    for k in range(y.shape[1]):
        x[:, :, 2 * k:2 * k + 2] = (y[:, k] * 2 - 1).view(-1, 1, 1, 1)
    return x if noise is None else (x + noise).clamp(-1, 1)


def classifier(x: torch.Tensor) -> torch.Tensor:
    """Reads the model's stripes back, by name, into CLASSIFIER_NAMES' column order."""
    stripe_means = [x[:, :, 2 * k:2 * k + 2].mean(dim=(1, 2, 3)) for k in range(len(MODEL_NAMES))]
    probs = torch.full((len(x), len(CLASSIFIER_NAMES)), 0.5)
    for name, mean in zip(MODEL_NAMES, stripe_means):
        probs[:, CLASSIFIER_NAMES.index(name)] = torch.sigmoid(8 * mean)
    probs[:, CLASSIFIER_NAMES.index("Eyeglasses")] = 0.1
    return probs


class FakePrior:
    names = MODEL_NAMES

    def __init__(self):
        self.requests = []

    def sample(self, request, n, rng):
        self.requests.append(dict(request))
        y = rng.integers(0, 2, size=(n, len(self.names))).astype(np.float32)
        for name, value in request.items():
            y[:, self.names.index(name)] = value
        return y


def random_labels(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 2, (n, len(MODEL_NAMES)), generator=torch.Generator().manual_seed(seed)).float()


# attribute_control -------------------------------------------------------------------------------------------


def faithful_sampler(y, generator):
    return paint(y, 0.3 * torch.randn(len(y), 3, 16, 16, generator=generator))


def test_faithful_generator_scores_full_control():
    prior = FakePrior()
    result = attribute_control(faithful_sampler, prior, ["Smiling", "Male"], classifier, CLASSIFIER_NAMES,
                               n_per_value=20, batch_size=8)
    assert set(result) == {"Smiling", "Male"}
    for row in result.values():
        assert row["accuracy"] == row["accuracy_at_1"] == row["accuracy_at_0"] == 1.0 and row["n"] == 40
        assert row["mean_prob_at_1"] > 0.9 and row["mean_prob_at_0"] < 0.1
    assert {"Smiling": 1.0} in prior.requests and {"Male": 0.0} in prior.requests


def test_generator_that_ignores_an_attribute_is_caught():
    def always_young(y, generator):
        y = y.clone()
        y[:, MODEL_NAMES.index("Young")] = 1
        return paint(y)

    result = attribute_control(always_young, FakePrior(), ["Young", "Smiling"], classifier, CLASSIFIER_NAMES,
                               n_per_value=10, batch_size=4)
    assert result["Young"]["accuracy_at_1"] == 1.0 and result["Young"]["accuracy_at_0"] == 0.0
    assert result["Young"]["accuracy"] == 0.5
    assert result["Smiling"]["accuracy"] == 1.0


def test_requested_value_wins_over_a_careless_prior():
    class CarelessPrior(FakePrior):
        def sample(self, request, n, rng):
            return np.zeros((n, len(self.names)), np.float32)  # ignores the request

    result = attribute_control(lambda y, g: paint(y), CarelessPrior(), ["Male"], classifier, CLASSIFIER_NAMES,
                               n_per_value=4)
    assert result["Male"]["accuracy"] == 1.0


def test_attribute_control_is_seeded_per_attribute():
    def run(attributes, seed):
        return attribute_control(faithful_sampler, FakePrior(), attributes, classifier, CLASSIFIER_NAMES,
                                 n_per_value=6, seed=seed)["Male"]

    assert run(["Male"], 0) == run(["Smiling", "Male"], 0)  # the same faces whatever else is measured
    assert run(["Male"], 0)["mean_prob_at_1"] != run(["Male"], 1)["mean_prob_at_1"]


def test_unknown_attribute_names_are_user_errors():
    with pytest.raises(FacegenError, match="Bald"):
        attribute_control(faithful_sampler, FakePrior(), ["Bald"], classifier, CLASSIFIER_NAMES, n_per_value=2)
    with pytest.raises(FacegenError, match="classifier has no attribute Smiling"):
        classifier_columns(["Smiling"], ["Male"])


# edit_success ---------------------------------------------------------------------------------------------------


@pytest.fixture
def real_batch():
    y = random_labels(12)
    noise = 0.2 * torch.randn(12, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    return paint(y, noise), y


def perfect_editor(x, y_src, y_target):
    return paint(y_target)


def test_perfect_editor_succeeds_and_leaves_others_alone(real_batch):
    x, y = real_batch
    result = edit_success(perfect_editor, x, y, MODEL_NAMES, classifier, CLASSIFIER_NAMES, batch_size=5,
                          identity=False)
    assert set(result) == set(MODEL_NAMES)
    for name, row in result.items():
        assert row["success"] == row["success_to_1"] == row["success_to_0"] == 1.0
        assert row["others_unchanged"] == 1.0 and row["n"] == 12
        assert row["n_to_1"] == int((y[:, MODEL_NAMES.index(name)] < 0.5).sum())
        assert "identity_distance" not in row


def test_editor_that_does_nothing_fails_every_edit(real_batch):
    x, y = real_batch
    result = edit_success(lambda x, y_src, y_target: x, x, y, MODEL_NAMES, classifier, CLASSIFIER_NAMES,
                          identity=False, edit_names=["Male"])
    assert list(result) == ["Male"]
    assert result["Male"]["success"] == 0.0 and result["Male"]["others_unchanged"] == 1.0


def test_leaky_and_one_way_editors_score_exactly(real_batch):
    x, y = real_batch
    smiling, male = MODEL_NAMES.index("Smiling"), MODEL_NAMES.index("Male")

    def leaky(x, y_src, y_target):  # editing Smiling also flips Male
        y_out = y_target.clone()
        if (y_target[:, smiling] != y_src[:, smiling]).any():
            y_out[:, male] = 1 - y_src[:, male]
        return paint(y_out)

    def only_adds(x, y_src, y_target):  # can switch attributes on, never off
        return paint(torch.maximum(y_src, y_target))

    leak = edit_success(leaky, x, y, MODEL_NAMES, classifier, CLASSIFIER_NAMES, edit_names=["Smiling"],
                        identity=False)["Smiling"]
    assert leak["success"] == 1.0 and leak["others_unchanged"] == 0.5  # of Male and Young, Male always moved
    one_way = edit_success(only_adds, x, y, MODEL_NAMES, classifier, CLASSIFIER_NAMES, edit_names=["Young"],
                           identity=False)["Young"]
    assert one_way["success_to_1"] == 1.0 and one_way["success_to_0"] == 0.0
    assert one_way["success"] == pytest.approx(one_way["n_to_1"] / 12)


def test_attributes_the_classifier_lacks_are_not_judged():
    names = MODEL_NAMES + ["Custom"]
    y = torch.cat([random_labels(4), torch.ones(4, 1)], dim=1)
    x = paint(y[:, :3])

    def editor(x, y_src, y_target):
        return paint(y_target[:, :3])

    result = edit_success(editor, x, y, names, classifier, CLASSIFIER_NAMES, edit_names=["Male"], identity=False)
    assert result["Male"]["others_unchanged"] == 1.0
    with pytest.raises(FacegenError, match="Custom"):
        edit_success(editor, x, y, names, classifier, CLASSIFIER_NAMES, edit_names=["Custom"], identity=False)
    with pytest.raises(FacegenError, match="cannot edit Bald"):
        edit_success(editor, x, y, names, classifier, CLASSIFIER_NAMES, edit_names=["Bald"], identity=False)


@pytest.mark.skipif(not identity_available(), reason="dlib absent: pip install 'facegen[identity]'")
def test_identity_is_reported_when_dlib_is_there(real_batch):
    x, y = real_batch
    result = edit_success(lambda x, y_src, y_target: x, x[:2], y[:2], MODEL_NAMES, classifier, CLASSIFIER_NAMES,
                          edit_names=["Young"])["Young"]
    assert result["identity_distance"] == 0.0 and result["identity_same_fraction"] == 1.0


# reconstruction, diversity, the judge's accuracy ----------------------------------------------------------------


def test_reconstruction_quality_of_known_errors(real_batch):
    x, y = real_batch
    exact = reconstruction_quality(lambda x, y_src, y_target: x.clone(), x, y, batch_size=5)
    assert math.isinf(exact["psnr_mean"]) and exact["ssim_mean"] == pytest.approx(1.0) and exact["n"] == 12

    def brighter(x, y_src, y_target):
        assert torch.equal(y_src, y_target)  # a reconstruction asks for the same attributes
        return x + 0.2  # 0.1 on [0, 1] (x * 0.5 + 0.2 stays in [-1, 1]): 20 dB exactly

    shifted = reconstruction_quality(brighter, x * 0.5, y)
    assert shifted["psnr_mean"] == pytest.approx(20.0) and shifted["psnr_std"] == pytest.approx(0.0, abs=1e-4)
    assert shifted["ssim_mean"] < 1.0


def test_diversity_of_collapsed_and_spread_samples():
    collapsed = torch.zeros(5, 3, 8, 8)
    assert diversity(collapsed) == 0.0
    corners = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    # 4 sides of length 1, 2 diagonals of sqrt(2), over 6 pairs
    assert diversity(corners) == pytest.approx((4 + 2 * math.sqrt(2)) / 6)
    with pytest.raises(FacegenError):
        diversity(np.zeros((1, 4)))


def test_classifier_accuracy_per_attribute(real_batch):
    x, y = real_batch
    names = ["Male", "Smiling"]
    y_true = y[:, [MODEL_NAMES.index(name) for name in names]].clone()
    assert classifier_accuracy(classifier, CLASSIFIER_NAMES, x, y_true, names) == {"Male": 1.0, "Smiling": 1.0}
    y_true[:6, 1] = 1 - y_true[:6, 1]  # half the Smiling labels wrong
    assert classifier_accuracy(classifier, CLASSIFIER_NAMES, x, y_true, names, batch_size=5)["Smiling"] == 0.5


def test_classifier_recalls_score_each_class_on_its_own(real_batch):
    x, y = real_batch
    names = ["Male", "Smiling"]
    y_true = y[:, [MODEL_NAMES.index(name) for name in names]].clone()
    # A judge that always says "no smile" is right on every non-smiling face and wrong on every smiling one.
    never = lambda images: torch.zeros(images.shape[0], len(CLASSIFIER_NAMES))  # noqa: E731
    rows = classifier_recalls(never, CLASSIFIER_NAMES, x, y_true, names)
    smiling = y_true[:, 1] > 0.5
    assert rows["Smiling"]["recall_at_1"] == 0.0 and rows["Smiling"]["recall_at_0"] == 1.0
    assert rows["Smiling"]["balanced_accuracy"] == 0.5
    assert rows["Smiling"]["accuracy"] == pytest.approx(float((~smiling).float().mean()))
    perfect = classifier_recalls(classifier, CLASSIFIER_NAMES, x, y_true, names)
    assert all(row["balanced_accuracy"] == 1.0 for row in perfect.values())
