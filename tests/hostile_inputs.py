"""Bad inputs of every kind, made on the spot: photos, model folders, checkpoints (used by test_cli_hostile.py)."""

from __future__ import annotations

import io
import json
import pickle
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from facegen.attributes import CELEBA_ATTRIBUTES, AttributePrior
from facegen.pretrained import save_pretrained

GAN_ATTRS, EDIT_ATTRS = ["Young", "Male"], ["Young", "Male", "Smiling"]


# --------------------------------------------------------------------------- tiny models


def make_models(root: Path) -> dict[str, Path]:
    """A 16 px cgan, fader, cvae and 40-attribute classifier, untrained, as model folders."""
    from facegen.models import cgan, classifier, cvae, fader

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    gan_prior = AttributePrior.from_labels(rng.integers(0, 2, (20, 2)).astype(np.uint8), GAN_ATTRS)
    edit_prior = AttributePrior.from_labels(rng.integers(0, 2, (20, 3)).astype(np.uint8), EDIT_ATTRS)
    g = {"n_attributes": 2, "size": 16, "z_dim": 8, "channels": 32}
    save_pretrained(root / "cgan", model="cgan", size=16, attribute_names=GAN_ATTRS, prior=gan_prior,
                    modules={"generator": (g, cgan.Generator(**g))})
    e, d = {"size": 16, "channels": 8, "latent_channels": 8}, {"size": 16, "channels": 8, "latent_channels": 8,
                                                                 "n_attributes": 3}
    save_pretrained(root / "fader", model="fader", size=16, attribute_names=EDIT_ATTRS, prior=edit_prior,
                    modules={"encoder": (e, fader.Encoder(**e)), "decoder": (d, fader.Decoder(**d))})
    v = {"n_attributes": 3, "size": 16, "z_dim": 8, "channels": 32}
    save_pretrained(root / "cvae", model="cvae", size=16, attribute_names=EDIT_ATTRS, prior=edit_prior,
                    modules={"encoder": (v, cvae.Encoder(**v)), "decoder": (v, cvae.Decoder(**v))})
    c = {"n_attributes": 40, "size": 16, "channels": 8}
    save_pretrained(root / "classifier", model="classifier", size=16, attribute_names=list(CELEBA_ATTRIBUTES),
                    prior=AttributePrior.from_labels(rng.integers(0, 2, (20, 40)).astype(np.uint8),
                                                     list(CELEBA_ATTRIBUTES)),
                    modules={"classifier": (c, classifier.AttributeClassifier(**c))})
    return {kind: root / kind for kind in ("cgan", "fader", "cvae", "classifier")}


def _set(config: dict, path: tuple, value) -> None:
    """config[path] = value; the value DELETE removes the key."""
    target = config
    for key in path[:-1]:
        target = target[key]
    if value is DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value


DELETE = object()

# (name, path into config.json, new value) applied to the tiny cgan: every shape a config can be wrong in.
CONFIG_EDITS = [
    ("no-model", ("model",), DELETE), ("model-number", ("model",), 3), ("model-unknown", ("model",), "gan"),
    ("model-list", ("model",), ["cgan"]), ("no-names", ("attribute_names",), DELETE),
    ("names-string", ("attribute_names",), "Young,Male"), ("names-numbers", ("attribute_names",), [1, 2]),
    ("names-empty", ("attribute_names",), []), ("names-twice", ("attribute_names",), ["Young", "Young"]),
    ("names-null", ("attribute_names",), None), ("size-string", ("size",), "16"), ("size-huge", ("size",), 10**9),
    ("size-odd", ("size",), 48), ("size-negative", ("size",), -16), ("size-bool", ("size",), True),
    ("size-float", ("size",), 16.0), ("size-missing", ("size",), DELETE), ("no-modules", ("modules",), DELETE),
    ("modules-list", ("modules",), []), ("no-generator", ("modules", "generator"), DELETE),
    ("generator-string", ("modules", "generator"), "big"),
    ("unknown-kwarg", ("modules", "generator", "depth"), 3),
    ("width-huge", ("modules", "generator", "channels"), 10**7),
    ("width-negative", ("modules", "generator", "channels"), -1),
    ("width-string", ("modules", "generator", "channels"), "32"),
    ("width-float", ("modules", "generator", "channels"), 1.5),
    ("width-null", ("modules", "generator", "channels"), None),
    ("zdim-zero", ("modules", "generator", "z_dim"), 0), ("zdim-huge", ("modules", "generator", "z_dim"), 2**40),
    ("n-attributes-wrong", ("modules", "generator", "n_attributes"), 5),
    ("n-attributes-missing", ("modules", "generator", "n_attributes"), DELETE),
    ("module-size-differs", ("modules", "generator", "size"), 32),
    ("no-format", ("format",), DELETE), ("format-other", ("format",), "diffusers"),
    ("format-version-future", ("format_version",), 99), ("format-version-string", ("format_version",), "1"),
    ("preset-unknown", ("preset",), "stylegan9"), ("preset-number", ("preset",), 5),
    ("width-matches-nothing", ("modules", "generator", "channels"), 64),
]

# Whole config.json files that are not a config at all.
CONFIG_FILES = {
    "config-list": "[1, 2, 3]", "config-null": "null", "config-empty": "", "config-not-json": "{model: cgan",
    "config-deep": "[" * 100_000 + "]" * 100_000, "config-binary": b"\x89PNG\r\n\x1a\n\x00\xff\xfe",
    "config-string": '"cgan"', "config-number": "1e999",
}


def broken_models(source: Path, root: Path) -> dict[str, Path]:
    """Copies of the tiny cgan with one thing wrong each: config edits, config files, weight files."""
    base = json.loads((source / "config.json").read_text())
    made = {}
    for name, path, value in CONFIG_EDITS:
        folder = root / name
        shutil.copytree(source, folder)
        config = json.loads(json.dumps(base))
        _set(config, path, value)
        (folder / "config.json").write_text(json.dumps(config))
        made[name] = folder
    for name, text in CONFIG_FILES.items():
        folder = root / name
        shutil.copytree(source, folder)
        (folder / "config.json").write_bytes(text if isinstance(text, bytes) else text.encode())
        made[name] = folder
    weights = {
        "weights-empty": b"", "weights-garbage": b"\x00" * 100, "weights-pickle": pickle.dumps({"w": [1, 2]}),
        "weights-truncated": (source / "model.safetensors").read_bytes()[:300],
        "weights-huge-header": struct.pack("<Q", 2**60) + b"{}",
        "weights-lying-header": _lying_safetensors(),
    }
    for name, data in weights.items():
        folder = root / name
        shutil.copytree(source, folder)
        (folder / "model.safetensors").write_bytes(data)
        made[name] = folder
    (root / "weights-missing").mkdir()
    shutil.copy(source / "config.json", root / "weights-missing")
    made["weights-missing"] = root / "weights-missing"
    (root / "empty-folder").mkdir()
    made["empty-folder"] = root / "empty-folder"
    return made


def _lying_safetensors() -> bytes:
    """A header that claims a tensor of 10^12 floats whose data is not there."""
    header = json.dumps({"generator.x": {"dtype": "F32", "shape": [10**6, 10**6], "data_offsets": [0, 4 * 10**12]}})
    return struct.pack("<Q", len(header)) + header.encode() + b"\x00" * 16


# --------------------------------------------------------------------------- photos


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims width x height pixels and holds one byte of image data (a decompression bomb's shape)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00")) + chunk(b"IEND", b"")


def make_photos(root: Path, good: Path) -> dict[str, tuple[Path, int]]:
    """name -> (photo, expected exit code of `facegen edit PHOTO male=1`): bad ones 2, odd but valid ones 0."""
    root.mkdir(parents=True, exist_ok=True)
    jpeg = good.read_bytes()
    photos: dict[str, tuple[Path, int]] = {}

    def save(name: str, image: Image.Image, code: int, **options) -> None:
        image.save(root / name, **options)
        photos[name] = (root / name, code)

    def raw(name: str, data: bytes, code: int = 2) -> None:
        (root / name).write_bytes(data)
        photos[name] = (root / name, code)

    face = Image.open(good).convert("RGB")
    save("1x1.png", Image.new("RGB", (1, 1)), 2)
    save("8x8.jpg", face.resize((8, 8)), 2)
    save("15x64.png", face.resize((15, 64)), 2)
    save("4000x4.png", Image.new("RGB", (4000, 4)), 2)
    save("16x16.png", face.resize((16, 16)), 0)
    save("gray16.png", Image.fromarray((np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)), 0)
    save("cmyk.jpg", face.convert("CMYK"), 0)
    save("palette.png", face.convert("P"), 0, transparency=0)
    save("rgba.webp", face.convert("RGBA"), 0)
    save("bilevel.png", face.convert("1"), 0)
    frames = [face, face.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    frames[0].save(root / "animated.gif", save_all=True, append_images=frames[1:])
    photos["animated.gif"] = (root / "animated.gif", 0)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees
    save("exif-rotated.jpg", face, 0, exif=exif)
    save("jpeg-named.png", face, 0, format="JPEG")
    raw("empty.jpg", b"")
    raw("text.jpg", b"this is not an image\n")
    raw("truncated.jpg", jpeg[: len(jpeg) // 3])
    raw("header-only.jpg", jpeg[:20])
    raw("bomb.png", _png_header_only(60_000, 60_000))
    raw("zero-size.png", _png_header_only(0, 0))
    raw("html.png", b"<html><body>hello</body></html>")
    raw("svg.png", b'<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64"></svg>')
    raw("zip.jpg", _zip_bytes())
    raw("bmp-bad.bmp", b"BM" + b"\xff" * 60)
    raw("nul-bytes.jpg", b"\x00" * 4096)
    raw("pdf.jpg", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    (root / "folder.jpg").mkdir()
    photos["folder.jpg"] = (root / "folder.jpg", 2)
    (root / "dangling.jpg").symlink_to(root / "nowhere.jpg")
    photos["dangling.jpg"] = (root / "dangling.jpg", 2)
    photos["missing.jpg"] = (root / "missing.jpg", 2)
    (root / "no-images").mkdir()
    (root / "no-images" / "notes.txt").write_text("nothing")
    photos["no-images"] = (root / "no-images", 2)
    return photos


def _zip_bytes() -> bytes:
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("a.txt", "x")
    return buffer.getvalue()


# --------------------------------------------------------------------------- checkpoints


class Boom:  # a pickle that would run code if it were ever unpickled with weights_only=False
    def __reduce__(self):
        return (print, ("pwned",))


def broken_checkpoints(run: Path, root: Path) -> dict[str, Path]:
    """Files in place of a run's last.pt: damaged, crafted, and well-formed but wrong."""
    good = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    made: dict[str, Path] = {}

    def write(name: str, payload=None, data: bytes | None = None) -> None:
        path = root / name / "checkpoints" / "last.pt"
        path.parent.mkdir(parents=True)
        if data is not None:
            path.write_bytes(data)
        else:
            torch.save(payload, path)
        made[name] = path

    raw = (run / "checkpoints" / "last.pt").read_bytes()
    write("ckpt-empty", data=b"")
    write("ckpt-garbage", data=b"\x80\x04garbage" * 10)
    write("ckpt-truncated", data=raw[: len(raw) // 2])
    write("ckpt-code", good | {"stats": Boom()})  # a torch file whose pickle names a function to call
    write("ckpt-bare-pickle", data=pickle.dumps(Boom()))
    write("ckpt-list", [1, 2, 3])
    write("ckpt-version", good | {"version": 7})
    write("ckpt-method", good | {"method": "gan"})
    write("ckpt-step", good | {"step": -5})
    write("ckpt-options", good | {"options": "everything"})
    write("ckpt-no-size", good | {"options": {k: v for k, v in good["options"].items() if k != "size"}})
    write("ckpt-size-huge", good | {"options": good["options"] | {"size": 2**20}})
    write("ckpt-lr-text", good | {"options": good["options"] | {"method_options": {"lr_g": "abc"}}})
    write("ckpt-width-huge", good | {"options": good["options"] | {"method_options": {"g_channels": 10**7}}})
    write("ckpt-state-empty", good | {"state": {"modules": {}, "optimizers": {}}})
    write("ckpt-state-shapes", good | {"state": {**good["state"], "modules": {
        name: {k: torch.zeros(1) for k in module} for name, module in good["state"]["modules"].items()}}})
    write("ckpt-stats", good | {"stats": {"seconds": "long"}})
    return made
