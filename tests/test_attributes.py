"""The attribute language: names, aliases, request parsing and the label prior."""

import doctest
import json
from pathlib import Path

import numpy as np
import pytest

from facegen import attributes
from facegen.attributes import (CELEBA_ATTRIBUTES, AttributePrior, format_request,
                                parse_attribute_list, parse_request, resolve_name)
from facegen.errors import FacegenError

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
STUDY_REQUEST = "young: 1.0  blond: 1.0  male: 0.0  attractive: 1.0"
STUDY_EXPECTED = {"Young": 1.0, "Blond_Hair": 1.0, "Male": 0.0, "Attractive": 1.0}


def test_docstring_examples_run():
    result = doctest.testmod(attributes)
    assert result.attempted > 0 and result.failed == 0


def test_forty_names_in_official_order():
    assert len(CELEBA_ATTRIBUTES) == 40 == len(set(CELEBA_ATTRIBUTES))
    assert CELEBA_ATTRIBUTES[0] == "5_o_Clock_Shadow" and CELEBA_ATTRIBUTES[-1] == "Young"
    assert CELEBA_ATTRIBUTES.index("Male") == 20


def test_names_match_the_celeba_file():
    path = DATA / "celeba-9k" / "list_attr_celeba.txt"
    if not path.is_file():
        pytest.skip(f"CelebA labels not found at {path}")
    with path.open() as f:
        f.readline()
        assert tuple(f.readline().split()) == CELEBA_ATTRIBUTES


@pytest.mark.parametrize("given, expected", [
    ("Blond_Hair", ("Blond_Hair", False)), ("blond_hair", ("Blond_Hair", False)),
    ("Blond-Hair", ("Blond_Hair", False)), ("blond hair", ("Blond_Hair", False)),
    ("BLOND", ("Blond_Hair", False)), ("blonde", ("Blond_Hair", False)),
    ("glasses", ("Eyeglasses", False)), ("eyeglasses", ("Eyeglasses", False)),
    ("smile", ("Smiling", False)), ("grey", ("Gray_Hair", False)), ("grey_hair", ("Gray_Hair", False)),
    ("brunette", ("Brown_Hair", False)), ("black", ("Black_Hair", False)),
    ("makeup", ("Heavy_Makeup", False)), ("lipstick", ("Wearing_Lipstick", False)),
    ("hat", ("Wearing_Hat", False)), ("moustache", ("Mustache", False)), ("pale", ("Pale_Skin", False)),
    ("man", ("Male", False)), ("male", ("Male", False)), ("5 o'clock shadow", ("5_o_Clock_Shadow", False)),
    ("female", ("Male", True)), ("Woman", ("Male", True)), ("old", ("Young", True)),
    ("older", ("Young", True)), ("beard", ("No_Beard", True)), ("wavyhair", ("Wavy_Hair", False)),
])
def test_resolve_name(given, expected):
    assert resolve_name(given) == expected


def test_every_canonical_name_resolves_to_itself_in_any_case():
    for name in CELEBA_ATTRIBUTES:
        assert resolve_name(name.lower().replace("_", "-")) == (name, False)


def test_unknown_name_suggests_close_names():
    with pytest.raises(FacegenError, match=r"unknown attribute 'blnd'; did you mean: blond \(Blond_Hair\), "
                                           r"bald \(Bald\)\?"):
        resolve_name("blnd")
    with pytest.raises(FacegenError, match=r"female \(Male, inverted\)"):
        resolve_name("femal")
    with pytest.raises(FacegenError, match="known attributes: 5_o_Clock_Shadow"):
        resolve_name("xyzzy")


def test_custom_names_use_only_aliases_whose_target_exists():
    names = ["male", "Has_Scar", "old"]
    assert resolve_name("HAS-SCAR", names) == ("Has_Scar", False)
    assert resolve_name("female", names) == ("male", True)  # target matched case-insensitively
    assert resolve_name("old", names) == ("old", False)  # a real name beats the inverted alias
    with pytest.raises(FacegenError, match="unknown attribute 'blond'"):
        resolve_name("blond", names)


@pytest.mark.parametrize("spec", [
    STUDY_REQUEST,
    "young: 1.0, blond: 1.0,\nmale: 0.0\nattractive: 1.0",
    ["young=1", "blond=1", "male=0", "attractive=1"],
    ["young:1", "blond", "male:0", "attractive"],
    {"young": 1, "Blond_Hair": 1.0, "MALE": 0, "attractive": True},
])
def test_request_forms_agree(spec):
    request = parse_request(spec)
    assert request == STUDY_EXPECTED and list(request) == list(STUDY_EXPECTED)


def test_bare_name_means_one_and_empty_means_nothing():
    assert parse_request(["smiling"]) == {"Smiling": 1.0}
    assert parse_request("smiling young: 0") == {"Smiling": 1.0, "Young": 0.0}
    assert parse_request("") == {} and parse_request([]) == {}


def test_request_files(tmp_path):
    yaml_path = tmp_path / "request.yaml"
    yaml_path.write_text("young: 1.0\nblond: 1\nmale: 0.0\nattractive: 1.0\n")
    json_path = tmp_path / "request.json"
    json_path.write_text(json.dumps({"young": 1, "blond": 1, "female": 1, "attractive": 1}))
    assert parse_request(str(yaml_path)) == STUDY_EXPECTED
    assert parse_request(json_path) == STUDY_EXPECTED
    assert parse_request([str(json_path), "smiling=0.5"]) == {**STUDY_EXPECTED, "Smiling": 0.5}
    (tmp_path / "empty.yml").write_text("")
    assert parse_request(str(tmp_path / "empty.yml")) == {}


@pytest.mark.parametrize("name, text, message", [
    ("missing.yaml", None, "does not exist"),
    ("broken.json", "{young: 1", "cannot read request file"),
    ("broken.yaml", "young: [1", "cannot read request file"),
    ("list.yaml", "- young\n- blond\n", "must hold a mapping"),
    ("nested.yaml", "young: {a: 1}\n", "not a number"),
])
def test_bad_request_files(tmp_path, name, text, message):
    path = tmp_path / name
    if text is not None:
        path.write_text(text)
    with pytest.raises(FacegenError, match=message):
        parse_request([str(path)])


def test_out_of_range_and_extrapolation():
    with pytest.raises(FacegenError, match=r"value 1.7 for young is outside \[0, 1\]; use --extrapolate"):
        parse_request("young=1.7")
    with pytest.raises(FacegenError, match="outside"):
        parse_request("smiling=-0.1")
    assert parse_request("young=1.7", extrapolate=True) == {"Young": 1.7}
    assert parse_request("female=2", extrapolate=True) == {"Male": -1.0}
    with pytest.raises(FacegenError, match=r"outside \[-3, 4\]; even with --extrapolate"):
        parse_request("young=4.5", extrapolate=True)


@pytest.mark.parametrize("spec, message", [
    ("young=abc", "not a number"), ("young=nan", "not a finite number"), ("young=inf", "not a finite"),
    ("young:", "no value after 'young'"), ("=1", "cannot read"), ("blnd=1", "did you mean: blond"),
    ({"young": None}, "not a number"),
])
def test_bad_values(spec, message):
    with pytest.raises(FacegenError, match=message):
        parse_request(spec)


def test_inverted_aliases_invert_the_value():
    assert parse_request("female=1") == {"Male": 0.0}
    assert parse_request("female=0.3")["Male"] == pytest.approx(0.7)
    assert parse_request("old=1 beard=1") == {"Young": 0.0, "No_Beard": 0.0}


def test_duplicates():
    assert parse_request("male=1 man=1 female=0") == {"Male": 1.0}
    with pytest.raises(FacegenError, match="conflicting values for Male: male=1 and female=1"):
        parse_request("male=1 female=1")
    with pytest.raises(FacegenError, match="conflicting values for Young"):
        parse_request(["young=1", "young=0.5"])


def test_custom_names_in_requests():
    assert parse_request("scar=1 female=1", ["Scar", "Male"]) == {"Scar": 1.0, "Male": 0.0}
    with pytest.raises(FacegenError, match="unknown attribute 'young'"):
        parse_request("young=1", ["Scar", "Male"])


def test_parse_attribute_list():
    assert parse_attribute_list("young,male,blond") == ["Young", "Male", "Blond_Hair"]
    assert parse_attribute_list(["young", "female,old", "glasses"]) == ["Young", "Male", "Eyeglasses"]
    assert parse_attribute_list("all") == list(CELEBA_ATTRIBUTES)
    assert parse_attribute_list("smiling,all")[:2] == ["Smiling", "5_o_Clock_Shadow"]
    assert parse_attribute_list("all", ["A", "B"]) == ["A", "B"]
    for empty in ("", " , ", []):
        with pytest.raises(FacegenError, match="no attributes given"):
            parse_attribute_list(empty)
    with pytest.raises(FacegenError, match="did you mean"):
        parse_attribute_list("young,blnd")


def test_format_request():
    assert format_request({"Young": 1, "Blond_Hair": 1.0, "Male": 0.0}) == "Young=1.00 Blond_Hair=1.00 Male=0.00"
    assert format_request({"Male": -1.0}) == "Male=-1.00"


def _synthetic_labels(rng: np.random.Generator, n: int = 2000) -> np.ndarray:
    """(n, 4) labels over Male, Wearing_Lipstick, Smiling, Young; men never wear lipstick."""
    male = rng.random(n) < 0.4
    lipstick = ~male & (rng.random(n) < 0.8)
    smiling = rng.random(n) < 0.5
    young = rng.random(n) < 0.7
    return np.stack([male, lipstick, smiling, young], axis=1).astype(np.uint8)


PRIOR_NAMES = ["Male", "Wearing_Lipstick", "Smiling", "Young"]


def test_prior_conditions_on_named_attributes():
    labels = _synthetic_labels(np.random.default_rng(1))
    prior = AttributePrior.from_labels(labels, PRIOR_NAMES)
    assert len(prior.patterns) <= 16 and prior.counts.sum() == len(labels)
    y = prior.sample(parse_request("male=1", PRIOR_NAMES), 500, np.random.default_rng(0))
    assert y.shape == (500, 4) and y.dtype == np.float32
    assert (y[:, 0] == 1).all() and (y[:, 1] == 0).all()  # no lipstick on men
    women = prior.sample({"Male": 0.0}, 2000, np.random.default_rng(0))
    assert 0.7 < women[:, 1].mean() < 0.9  # unnamed attributes follow the conditional frequency
    assert 0.6 < women[:, 3].mean() < 0.8


def test_prior_keeps_fractional_and_extrapolated_values():
    prior = AttributePrior.from_labels(_synthetic_labels(np.random.default_rng(1)), PRIOR_NAMES)
    y = prior.sample({"Male": 0.7, "Smiling": -1.0}, 50, np.random.default_rng(0))
    assert np.allclose(y[:, 0], 0.7) and np.allclose(y[:, 2], -1.0)
    assert (y[:, 1] == 0).all()  # 0.7 rounds to male, and men never wear lipstick
    assert set(np.unique(y[:, [1, 3]])) <= {0.0, 1.0}


def test_prior_relaxes_to_the_nearest_rows_when_nothing_matches():
    labels = np.array([[1, 0, 1, 1]] * 5 + [[0, 1, 0, 0]] * 5, dtype=np.uint8)
    prior = AttributePrior.from_labels(labels, PRIOR_NAMES)
    # Male=1 with lipstick never occurs; the first kind agrees on two of three named -> Young=1
    y = prior.sample({"Male": 1, "Wearing_Lipstick": 1, "Smiling": 1}, 20, np.random.default_rng(0))
    assert (y == 1).all()
    y = prior.sample({"Male": 1, "Wearing_Lipstick": 1}, 200, np.random.default_rng(0))
    assert (y[:, :2] == 1).all() and 0.3 < y[:, 2].mean() < 0.7  # a tie: both kinds drawn


def test_prior_round_trip_determinism_and_marginals():
    labels = _synthetic_labels(np.random.default_rng(2))
    prior = AttributePrior.from_labels(labels, PRIOR_NAMES)
    arrays = prior.to_arrays()
    assert arrays["prior_patterns"].dtype == np.uint8 and arrays["prior_counts"].dtype == np.int64
    again = AttributePrior.from_arrays(arrays, PRIOR_NAMES)
    request = {"Smiling": 1.0}
    a = prior.sample(request, 64, np.random.default_rng(7))
    b = again.sample(request, 64, np.random.default_rng(7))
    assert np.array_equal(a, b) and again.names == tuple(PRIOR_NAMES)
    assert not np.array_equal(a, prior.sample(request, 64, np.random.default_rng(8)))
    marginals = prior.marginals()
    assert list(marginals) == PRIOR_NAMES
    assert marginals["Male"] == pytest.approx(labels[:, 0].mean())
    assert prior.sample({}, 0, np.random.default_rng(0)).shape == (0, 4)


def test_prior_errors():
    prior = AttributePrior.from_labels(np.eye(4, dtype=np.uint8), PRIOR_NAMES)
    with pytest.raises(FacegenError, match="'Blond_Hair'.*not among this model's attributes"):
        prior.sample({"Blond_Hair": 1.0}, 2, np.random.default_rng(0))
    with pytest.raises(FacegenError, match="map CelebA's -1/1 labels"):
        AttributePrior.from_labels(np.full((2, 4), -1), PRIOR_NAMES)
    with pytest.raises(FacegenError, match="expected"):
        AttributePrior.from_labels(np.zeros((2, 3), np.uint8), PRIOR_NAMES)
    with pytest.raises(FacegenError, match="no attribute prior"):
        AttributePrior.from_arrays({}, PRIOR_NAMES)
    with pytest.raises(FacegenError, match="damaged"):
        AttributePrior.from_arrays(prior.to_arrays(), PRIOR_NAMES[:3])
