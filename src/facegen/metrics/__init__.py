"""Measures only: FID/KID, attribute control and edit success, reconstruction, identity, and the judge.

Nothing here loads a model to measure or reads a data set: `facegen.evaluation`
does that, above the library, and hands these functions images and callables.

Heavy optional dependencies (scipy, dlib) are imported inside the functions
that need them, so importing this package costs only torch and numpy.
Install them with `pip install 'facegen[metrics]'` (and `'facegen[identity]'`).
"""

from facegen.metrics.fid import InceptionFeatures, fid_from_features, kid_from_features, real_features
from facegen.metrics.identity import IdentityEmbedder, identity_available, identity_distance, same_person_fraction
from facegen.metrics.protocols import (
    ClassifierFn,
    EditFn,
    SampleFn,
    attribute_control,
    classifier_accuracy,
    diversity,
    edit_success,
    reconstruction_quality,
)
from facegen.metrics.reconstruction import psnr, ssim

__all__ = [
    "ClassifierFn", "EditFn", "IdentityEmbedder", "InceptionFeatures", "SampleFn",
    "attribute_control", "classifier_accuracy", "diversity", "edit_success",
    "fid_from_features", "identity_available", "identity_distance", "kid_from_features",
    "psnr", "real_features", "reconstruction_quality", "same_person_fraction", "ssim",
]
