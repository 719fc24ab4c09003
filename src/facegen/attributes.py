"""The attribute language every command speaks: names, aliases, requests, and the label prior.

A request says which attributes a face should have, as values in [0, 1]
(1 = has it). Names are case-insensitive, with `_`, `-` and space
interchangeable, and friendly aliases work (`blond`, `glasses`, `grey`).
Inverted aliases flip the value: `female=1` means `Male=0`, `old=1` means
`Young=0`, `beard=1` means `No_Beard=0`.

>>> resolve_name("blonde")
('Blond_Hair', False)
>>> resolve_name("Female")
('Male', True)
>>> parse_request("young: 1.0  blond: 1.0  female: 1")
{'Young': 1.0, 'Blond_Hair': 1.0, 'Male': 0.0}
>>> parse_request(["smiling", "old=0.25"])
{'Smiling': 1.0, 'Young': 0.75}
>>> format_request(parse_request("young=1, blond=1, male=0"))
'Young=1.00 Blond_Hair=1.00 Male=0.00'
>>> parse_attribute_list("young,male,blond,female")
['Young', 'Male', 'Blond_Hair']

Attributes a request leaves out are drawn from the training labels, given the
ones it names, so that asking for men does not give them lipstick:

>>> labels = np.array([[1, 0], [1, 0], [0, 1], [0, 0]], dtype=np.uint8)  # (N, A)
>>> prior = AttributePrior.from_labels(labels, ["Male", "Wearing_Lipstick"])
>>> prior.sample({"Male": 1.0}, 3, np.random.default_rng(0)).tolist()
[[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]]
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import yaml

from facegen.errors import FacegenError

CELEBA_ATTRIBUTES: tuple[str, ...] = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs",
    "Big_Lips", "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows",
    "Chubby", "Double_Chin", "Eyeglasses", "Goatee", "Gray_Hair", "Heavy_Makeup", "High_Cheekbones",
    "Male", "Mouth_Slightly_Open", "Mustache", "Narrow_Eyes", "No_Beard", "Oval_Face", "Pale_Skin",
    "Pointy_Nose", "Receding_Hairline", "Rosy_Cheeks", "Sideburns", "Smiling", "Straight_Hair",
    "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat", "Wearing_Lipstick", "Wearing_Necklace",
    "Wearing_Necktie", "Young",
)  # the official order of list_attr_celeba.txt; models index y by it

# Friendly name -> canonical name. Every canonical name also matches itself.
_ALIASES: dict[str, str] = {
    "stubble": "5_o_Clock_Shadow", "five_o_clock_shadow": "5_o_Clock_Shadow",
    "5_oclock_shadow": "5_o_Clock_Shadow", "arched_brows": "Arched_Eyebrows",
    "bags": "Bags_Under_Eyes", "eye_bags": "Bags_Under_Eyes", "fringe": "Bangs",
    "black": "Black_Hair", "blond": "Blond_Hair", "blonde": "Blond_Hair",
    "blonde_hair": "Blond_Hair", "brown": "Brown_Hair", "brunette": "Brown_Hair",
    "bushy_brows": "Bushy_Eyebrows", "glasses": "Eyeglasses", "spectacles": "Eyeglasses",
    "gray": "Gray_Hair", "grey": "Gray_Hair", "grey_hair": "Gray_Hair",
    "white_hair": "Gray_Hair", "makeup": "Heavy_Makeup", "cheekbones": "High_Cheekbones",
    "man": "Male", "men": "Male", "mouth_open": "Mouth_Slightly_Open",
    "open_mouth": "Mouth_Slightly_Open", "moustache": "Mustache", "beardless": "No_Beard",
    "clean_shaven": "No_Beard", "oval": "Oval_Face", "pale": "Pale_Skin",
    "receding": "Receding_Hairline", "rosy": "Rosy_Cheeks", "smile": "Smiling",
    "straight": "Straight_Hair", "wavy": "Wavy_Hair", "earrings": "Wearing_Earrings",
    "hat": "Wearing_Hat", "lipstick": "Wearing_Lipstick", "necklace": "Wearing_Necklace",
    "necktie": "Wearing_Necktie", "tie": "Wearing_Necktie", "youth": "Young",
}
# Friendly name -> canonical name whose value it flips (v means canonical = 1 - v).
_INVERTED_ALIASES: dict[str, str] = {
    "female": "Male", "woman": "Male", "women": "Male",
    "old": "Young", "older": "Young", "elderly": "Young", "aged": "Young",
    "beard": "No_Beard", "bearded": "No_Beard",
}

# With --extrapolate a value may lie up to three trained spans past either end of [0, 1]:
# Fader Networks stay meaningful a little beyond the labels, further out only artifacts grow.
EXTRAPOLATE_RANGE: tuple[float, float] = (-3.0, 4.0)
REQUEST_FILE_SUFFIXES = (".yaml", ".yml", ".json")

# One "name", "name=value" or "name: value" item, with the separators that follow it.
_ITEM = re.compile(r"[\s,;]*([^\s,;=:]+)(?:\s*[=:]\s*([^\s,;=:]+))?[\s,;]*")


def _key(name: str) -> str:
    """Lookup form of a name: lower case, `-`/space -> `_`, apostrophes dropped."""
    key = re.sub(r"[\s\-_]+", "_", name.strip().lower().replace("'", ""))
    return key.strip("_")


def known_names(names: Sequence[str] = CELEBA_ATTRIBUTES) -> dict[str, tuple[str, bool]]:
    """Every accepted lookup key -> (canonical name, inverted), for the given attribute set.

    >>> known_names(["Male", "Smiling"])["woman"]
    ('Male', True)
    """
    by_key = {_key(n): n for n in names}
    table: dict[str, tuple[str, bool]] = {}
    for aliases, inverted in ((_ALIASES, False), (_INVERTED_ALIASES, True)):
        for alias, target in aliases.items():
            if _key(target) in by_key:  # aliases apply only when their target is trained
                table[alias] = (by_key[_key(target)], inverted)
    table.update({key: (n, False) for key, n in by_key.items()})  # a real name beats an alias
    return table


def resolve_name(name: str, names: Sequence[str] = CELEBA_ATTRIBUTES) -> tuple[str, bool]:
    """(canonical name, inverted) for a user's attribute name; unknown names get suggestions."""
    if name in names:
        return name, False
    table = known_names(names)
    key = _key(name)
    compact = {alias.replace("_", ""): found for alias, found in table.items()}
    if key in table or key.replace("_", "") in compact:  # "wavyhair" finds Wavy_Hair too
        return table.get(key) or compact[key.replace("_", "")]
    suggestions: dict[str, str] = {}  # canonical -> "alias (Canonical)", one per attribute
    for match in difflib.get_close_matches(key, list(table), n=10, cutoff=0.6):
        target, inverted = table[match]
        suggestions.setdefault(target, f"{match} ({target}{', inverted' if inverted else ''})")
    hint = f"did you mean: {', '.join(list(suggestions.values())[:3])}? " if suggestions else ""
    raise FacegenError(f"unknown attribute {name!r}; {hint}known attributes: {', '.join(names)}")


def _to_value(raw: object, name: str) -> float:
    """A request value as a float; booleans and yes/no count as 1/0."""
    if isinstance(raw, str):
        raw = {"true": 1.0, "yes": 1.0, "on": 1.0, "false": 0.0, "no": 0.0, "off": 0.0}.get(
            raw.strip().lower(), raw)
    try:
        value = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise FacegenError(f"value {raw!r} for {name} is not a number; "
                           f"write e.g. {name}=1 or {name}=0.5") from None
    if not math.isfinite(value):
        raise FacegenError(f"value {raw!r} for {name} is not a finite number; use a value in [0, 1]")
    return value


def _read_request_file(path: Path) -> list[tuple[str, object]]:
    """(name, value) pairs from a YAML or JSON file holding one mapping."""
    if not path.is_file():
        raise FacegenError(f"request file {str(path)!r} does not exist; "
                           "give a .yaml/.json file holding e.g. {young: 1, blond: 1}")
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError, RecursionError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise FacegenError(f"cannot read request file {str(path)!r}: {first_line}") from None
    if data is None:  # an empty YAML file is an empty request
        return []
    if not isinstance(data, Mapping):
        raise FacegenError(f"request file {str(path)!r} must hold a mapping of attribute: value, "
                           f"e.g. {{young: 1, blond: 1}}; it holds a {type(data).__name__}")
    return [(str(name), value) for name, value in data.items()]


def _parse_text(text: str) -> list[tuple[str, object]]:
    """(name, value) pairs from "young: 1.0  blond=1, smiling"; a bare name means 1."""
    pairs: list[tuple[str, object]] = []
    position = 0
    text = text.strip()
    while position < len(text):
        match = _ITEM.match(text, position)
        if match is None and text[position] in "=:" and pairs and pairs[-1][1] == 1.0:
            raise FacegenError(f"no value after {pairs[-1][0]!r} in request {text!r}; "
                               f"write e.g. {pairs[-1][0]}=1")
        if match is None:
            raise FacegenError(f"cannot read {text[position:]!r} in request {text!r}; write "
                               "name=value pairs like 'young=1 blond=1' (use _ inside names)")
        pairs.append((match.group(1), 1.0 if match.group(2) is None else match.group(2)))
        position = match.end()
    return pairs


def _is_request_file(token: str) -> bool:
    return Path(token.strip()).suffix.lower() in REQUEST_FILE_SUFFIXES


def _request_pairs(spec: object) -> list[tuple[str, object]]:
    if isinstance(spec, Mapping):
        return [(str(name), value) for name, value in spec.items()]
    if isinstance(spec, os.PathLike):
        return _read_request_file(Path(spec))
    if isinstance(spec, str):
        return _read_request_file(Path(spec.strip())) if _is_request_file(spec) else _parse_text(spec)
    if isinstance(spec, Sequence):
        return [pair for token in spec for pair in _request_pairs(token)]
    raise TypeError(f"a request is a str, a list of str, a path or a mapping, not {type(spec).__name__}")


def parse_request(spec: str | os.PathLike | Sequence[str] | Mapping[str, float],
                  names: Sequence[str] = CELEBA_ATTRIBUTES, *,
                  extrapolate: bool = False) -> dict[str, float]:
    """Canonical name -> value, in the order given, from any of the request forms.

    `spec` is text ("young: 1.0  blond: 1.0", commas and newlines allowed),
    command-line tokens (["young=1", "blond:1", "smiling"]; a bare name
    means 1), a .yaml/.yml/.json file path (also as one of the tokens), or a
    mapping. Values must lie in [0, 1], or in EXTRAPOLATE_RANGE = [-3, 4]
    with `extrapolate`. Inverted aliases give 1 - value. An attribute given
    twice must get the same value both times. An empty spec is an empty
    request (every attribute is then drawn from the prior).
    """
    low, high = EXTRAPOLATE_RANGE if extrapolate else (0.0, 1.0)
    request: dict[str, float] = {}
    given_as: dict[str, str] = {}  # canonical -> how the user wrote it, for conflict messages
    for given, raw in _request_pairs(spec):
        name, inverted = resolve_name(given, names)
        value = _to_value(raw, given)
        if not low <= value <= high:
            advice = ("even with --extrapolate" if extrapolate
                      else "use --extrapolate to push a fader beyond its trained range")
            raise FacegenError(f"value {value:g} for {given} is outside [{low:g}, {high:g}]; {advice}")
        value = 1.0 - value if inverted else value
        if name in request and abs(request[name] - value) > 1e-9:
            raise FacegenError(f"conflicting values for {name}: {given_as[name]} and {given}={raw} "
                               f"(means {name}={value:g}); give each attribute once")
        request.setdefault(name, value)
        given_as.setdefault(name, f"{given}={raw}" + (f" (means {name}={value:g})" if inverted else ""))
    return request


def parse_attribute_list(text: str | Sequence[str],
                         names: Sequence[str] = CELEBA_ATTRIBUTES) -> list[str]:
    """Canonical names from "young,male,blond" (or tokens), order kept, duplicates dropped.

    Inverted aliases name the same attribute (female -> Male): a list says
    which attributes to condition on, not their values. "all" means every name.
    """
    tokens = re.split(r"[\s,;]+", text) if isinstance(text, str) else [
        part for token in text for part in re.split(r"[\s,;]+", token)]
    chosen: list[str] = []
    for token in filter(None, tokens):
        if _key(token) == "all" and "all" not in known_names(names):
            found = list(names)
        else:
            found = [resolve_name(token, names)[0]]
        chosen.extend(name for name in found if name not in chosen)
    if not chosen:
        raise FacegenError("no attributes given; name some, e.g. --attrs young,male,blond (or 'all')")
    return chosen


def format_request(values: Mapping[str, float]) -> str:
    """One line for printing: "Young=1.00 Blond_Hair=1.00 Male=0.00"."""
    return " ".join(f"{name}={value:.2f}" for name, value in values.items())


class AttributePrior:
    """The training labels' joint distribution, kept as unique label rows and their counts.

    `sample` fills in the attributes a request leaves out with a label row
    drawn, in proportion to its count, from the training rows that agree
    with the request on its named attributes (each rounded: >= 0.5 -> 1).
    When no row agrees on all of them, the rows agreeing on the most of them
    (smallest Hamming distance) are used instead, so a rare combination still
    gets the commonest context of its nearest neighbours.
    """

    def __init__(self, patterns: np.ndarray, counts: np.ndarray, names: Sequence[str]):
        self.names: tuple[str, ...] = tuple(names)
        patterns, counts = np.asarray(patterns), np.asarray(counts)
        if patterns.ndim != 2 or patterns.shape[1] != len(self.names) or counts.shape != patterns[:, 0].shape:
            raise FacegenError(f"attribute prior has patterns {patterns.shape} and counts {counts.shape} "
                               f"for {len(self.names)} names; the model file is damaged, re-export it")
        if len(counts) == 0 or (counts <= 0).any():
            raise FacegenError("attribute prior holds no label rows; it needs the training labels")
        self.patterns = patterns.astype(np.uint8)  # (K, A) unique label rows in {0, 1}
        self.counts = counts.astype(np.int64)  # (K,) how many training rows have each
        self._column = {name: i for i, name in enumerate(self.names)}

    @classmethod
    def from_labels(cls, labels: np.ndarray, names: Sequence[str]) -> AttributePrior:
        """The prior of a (N, A) label matrix in {0, 1}, columns ordered like `names`."""
        labels = np.asarray(labels)
        if labels.ndim != 2 or labels.shape[1] != len(names) or labels.shape[0] == 0:
            raise FacegenError(f"labels have shape {labels.shape}; expected (N >= 1, {len(names)}), "
                               "one column per attribute name")
        if not np.isin(labels, (0, 1)).all():
            raise FacegenError("labels must be 0 or 1 (map CelebA's -1/1 labels to 0/1 first)")
        patterns, counts = np.unique(labels.astype(np.uint8), axis=0, return_counts=True)
        return cls(patterns, counts, names)  # (K, A), (K,)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The arrays to store next to a model's weights (e.g. in its safetensors file)."""
        return {"prior_patterns": self.patterns.copy(), "prior_counts": self.counts.copy()}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], names: Sequence[str]) -> AttributePrior:
        """Inverse of `to_arrays`."""
        missing = {"prior_patterns", "prior_counts"} - set(arrays)
        if missing:
            raise FacegenError(f"model file has no attribute prior ({', '.join(sorted(missing))} "
                               "missing); re-export the model with its training labels")
        return cls(np.asarray(arrays["prior_patterns"]), np.asarray(arrays["prior_counts"]), names)

    def marginals(self) -> dict[str, float]:
        """How often each attribute is 1 in the training labels."""
        frequency = (self.patterns * self.counts[:, None]).sum(0) / self.counts.sum()  # (A,)
        return {name: float(f) for name, f in zip(self.names, frequency)}

    def sample(self, request: Mapping[str, float], n: int, rng: np.random.Generator) -> np.ndarray:
        """(n, A) float32 attribute vectors: named ones as requested, the rest drawn given them."""
        unknown = [name for name in request if name not in self._column]
        if unknown:
            raise FacegenError(f"attribute(s) {', '.join(map(repr, unknown))} are not among this model's "
                               f"attributes: {', '.join(self.names)}")
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        columns = [self._column[name] for name in request]
        values = np.array([float(v) for v in request.values()], dtype=np.float32)  # (R,)
        if not np.isfinite(values).all():
            raise FacegenError(f"request {format_request(request)} has a value that is not finite")
        weights = self.counts.astype(np.float64)  # (K,)
        if columns:
            distance = (self.patterns[:, columns] != (values >= 0.5)).sum(1)  # (K,) disagreements
            weights = np.where(distance == distance.min(), weights, 0.0)
        rows = rng.choice(len(weights), size=n, p=weights / weights.sum())  # (n,)
        y = self.patterns[rows].astype(np.float32)  # (n, A)
        y[:, columns] = values
        return y
