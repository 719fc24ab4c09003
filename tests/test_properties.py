"""Property-based tests: any string or JSON in, one clear error or a valid result out.

The attribute language (requests and attribute lists, as text, tokens, mappings or files) and the model
config loader are fed whatever Hypothesis makes; the only outcomes allowed are a `FacegenError` with a
one-line message or a result that obeys the rules. Anything else (a KeyError, a TypeError, an allocation
that never ends) fails.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from facegen.attributes import CELEBA_ATTRIBUTES, EXTRAPOLATE_RANGE, parse_attribute_list, parse_request  # noqa: E402
from facegen.errors import FacegenError  # noqa: E402

NAMES = ["Young", "Male", "Smiling", "Blond_Hair"]
SETTINGS = settings(max_examples=200, deadline=None,  # a busy CI machine must not turn slowness into failure
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large])
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
                    max_leaves=12)
# Text near the language: names, aliases, separators, numbers, junk.
WORDS = st.sampled_from(["young", "male", "female", "old", "blond", "blond_hair", "smiling", "all", "wizard", "=",
                         ":", ",", ";", " ", "\n", "1", "0", "0.5", "-1", "2", "1e309", "nan", "inf", "yes", "no",
                         "true", "Young=1", "male:0", "é", "\x00", "=="])
LANGUAGE = st.one_of(st.text(max_size=60), st.lists(WORDS, max_size=12).map("".join))


def _one_line(error: FacegenError) -> None:
    text = str(error)
    assert text and "\n" not in text.strip(), repr(text)


def _check_request(result: dict, extrapolate: bool) -> None:
    low, high = EXTRAPOLATE_RANGE if extrapolate else (0.0, 1.0)
    low, high = min(low, 1 - high), max(high, 1 - low)  # an inverted alias (old=v) gives 1 - v
    assert set(result) <= set(NAMES)
    for value in result.values():
        assert isinstance(value, float) and math.isfinite(value) and low <= value <= high


@SETTINGS
@given(text=LANGUAGE, extrapolate=st.booleans())
def test_any_request_text_parses_or_is_one_clear_error(text, extrapolate):
    try:
        result = parse_request(text, NAMES, extrapolate=extrapolate)
    except FacegenError as error:
        _one_line(error)
    else:
        _check_request(result, extrapolate)


@SETTINGS
@given(tokens=st.lists(LANGUAGE, max_size=5), extrapolate=st.booleans())
def test_any_command_line_tokens_parse_or_are_one_clear_error(tokens, extrapolate):
    tokens = [t for t in tokens if not t.strip().lower().endswith((".yaml", ".yml", ".json"))]
    try:
        result = parse_request(tokens, NAMES, extrapolate=extrapolate)
    except FacegenError as error:
        _one_line(error)
    else:
        _check_request(result, extrapolate)


@SETTINGS
@given(mapping=st.dictionaries(st.one_of(WORDS, st.text(max_size=10)), JSON, max_size=6))
def test_any_mapping_parses_or_is_one_clear_error(mapping):
    try:
        result = parse_request(mapping, NAMES)
    except FacegenError as error:
        _one_line(error)
    else:
        _check_request(result, False)


@SETTINGS
@given(data=st.one_of(JSON, st.text(max_size=80)), suffix=st.sampled_from([".json", ".yaml"]))
def test_any_request_file_parses_or_is_one_clear_error(data, suffix, tmp_path):
    path = tmp_path / f"request{suffix}"
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    try:
        result = parse_request(str(path), NAMES)
    except FacegenError as error:
        _one_line(error)
    else:
        _check_request(result, False)


@SETTINGS
@given(text=st.one_of(LANGUAGE, st.lists(LANGUAGE, max_size=4)))
def test_any_attribute_list_parses_or_is_one_clear_error(text):
    try:
        chosen = parse_attribute_list(text, CELEBA_ATTRIBUTES)
    except FacegenError as error:
        _one_line(error)
    else:
        assert chosen and len(set(chosen)) == len(chosen) and set(chosen) <= set(CELEBA_ATTRIBUTES)


# --------------------------------------------------------------------------- the config loader


@pytest.fixture(scope="module")
def tiny_cgan(tmp_path_factory) -> Path:
    from hostile_inputs import make_models

    return make_models(tmp_path_factory.mktemp("property-models"))["cgan"]


def _paths(value, prefix=()):
    """Every key path into a JSON value."""
    yield prefix
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from _paths(inner, prefix + (key,))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            yield from _paths(inner, prefix + (index,))


@SETTINGS
@given(config=JSON)
def test_any_json_config_is_valid_or_one_clear_error(config):
    from facegen.validation import check_model_config

    try:
        check_model_config(config, "config.json")
    except FacegenError as error:
        _one_line(error)


@SETTINGS
@given(data=st.data())
def test_any_change_to_a_real_config_loads_or_is_one_clear_error(data, tiny_cgan, tmp_path):
    """One part of a working model's config replaced by any JSON (or removed, or joined by a new key)."""
    from facegen.pretrained import Pretrained, load_pretrained

    config = json.loads((tiny_cgan / "config.json").read_text())
    path = data.draw(st.sampled_from(list(_paths(config))[1:]))
    action = data.draw(st.sampled_from(["replace", "delete", "add"]))
    target = config
    for key in path[:-1]:
        target = target[key]
    if action == "replace":
        target[path[-1]] = data.draw(JSON)
    elif action == "delete":
        del target[path[-1]]
    elif isinstance(target, dict):
        target[data.draw(st.text(max_size=8))] = data.draw(JSON)
    folder = tmp_path / "model"
    if not folder.exists():
        shutil.copytree(tiny_cgan, folder)
    (folder / "config.json").write_text(json.dumps(config))
    try:
        loaded = load_pretrained(folder)
    except FacegenError as error:
        _one_line(error)
    else:
        assert isinstance(loaded, Pretrained) and loaded.kind in ("cgan", "fader", "cvae", "classifier")


@SETTINGS
@given(raw=st.binary(max_size=200))
def test_any_bytes_as_config_are_one_clear_error(raw, tiny_cgan, tmp_path):
    from facegen.pretrained import load_pretrained

    folder = tmp_path / "model"
    if not folder.exists():
        shutil.copytree(tiny_cgan, folder)
    (folder / "config.json").write_bytes(raw)
    with pytest.raises(FacegenError) as caught:
        load_pretrained(folder)
    _one_line(caught.value)
