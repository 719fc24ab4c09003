"""Decoding, cropping, resizing and tensor conversion (facegen.data.images)."""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from facegen.data import center_square, load_image, make_grid, square_resize, to_image, to_pil, to_tensor, to_uint8
from facegen.data.images import MAX_PIXELS, center_square_box, prepare_image
from facegen.errors import FacegenError

FIXTURES = Path(__file__).resolve().parent / "fixtures"
FACE = FIXTURES / "official" / "img_align_celeba" / "000001.jpg"


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_celeba_face_decodes_as_rgb_89x109():
    image = load_image(FACE)
    assert image.mode == "RGB" and image.size == (89, 109)


@pytest.mark.parametrize("mode, color", [("L", 128), ("1", 1), ("CMYK", (0, 0, 0, 0)), ("RGB", (1, 2, 3))])
def test_modes_convert_to_rgb(mode, color):
    buffer = io.BytesIO()
    Image.new(mode, (5, 4), color).save(buffer, format="TIFF" if mode == "CMYK" else "PNG")
    image = load_image(buffer.getvalue())
    assert image.mode == "RGB" and image.size == (5, 4)


def test_transparency_is_composited_on_white():
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    rgba.putpixel((0, 0), (255, 0, 0, 255))
    image = load_image(_png_bytes(rgba))
    assert image.getpixel((0, 0)) == (255, 0, 0)
    assert image.getpixel((1, 1)) == (255, 255, 255)
    palette = Image.new("P", (2, 2), 0)
    palette.info["transparency"] = 0
    assert load_image(_png_bytes(palette)).getpixel((0, 0)) == (255, 255, 255)


def test_16_bit_grayscale_scales_to_8_bit():
    deep = Image.fromarray(np.full((3, 3), 65535, np.uint16))
    assert load_image(_png_bytes(deep)).getpixel((1, 1)) == (255, 255, 255)


def test_exif_orientation_is_applied():
    buffer = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.new("RGB", (40, 20), (0, 0, 255)).save(buffer, format="JPEG", exif=exif)
    assert load_image(buffer.getvalue()).size == (20, 40)


def test_truncated_jpeg_is_one_line_error(tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(FACE.read_bytes()[:1500])
    with pytest.raises(FacegenError, match="broken.jpg: not a readable image") as error:
        load_image(broken)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("content, message", [(b"not a picture at all", "not a readable image"),
                                              (b"", "not a readable image"), (None, "no such file")])
def test_unreadable_inputs_are_facegen_errors(tmp_path, content, message):
    path = tmp_path / "x.jpg"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(FacegenError, match=message):
        load_image(path)


def test_pixel_bomb_is_refused_before_decoding():
    # A 1x1 PNG whose header claims 20,000 x 20,000 (400 MP): refused from the header alone.
    data = bytearray(_png_bytes(Image.new("L", (1, 1))))
    ihdr = data.index(b"IHDR")
    data[ihdr + 4:ihdr + 12] = struct.pack(">II", 20_000, 20_000)
    data[ihdr + 17:ihdr + 21] = struct.pack(">I", zlib.crc32(bytes(data[ihdr:ihdr + 17])))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(FacegenError, match="too many pixels"):
            load_image(bytes(data))
    assert 20_000 ** 2 > MAX_PIXELS
    # Just above the bound (Pillow itself would only warn here): the same one line.
    data[ihdr + 4:ihdr + 12] = struct.pack(">II", 13_400, 13_400)
    data[ihdr + 17:ihdr + 21] = struct.pack(">I", zlib.crc32(bytes(data[ihdr:ihdr + 17])))
    with pytest.raises(FacegenError, match="too many pixels"):
        load_image(bytes(data))


def test_large_jpeg_decodes_at_reduced_scale():
    buffer = io.BytesIO()
    Image.new("RGB", (4500, 4200), (10, 200, 30)).save(buffer, format="JPEG", quality=50)
    assert load_image(buffer.getvalue()).size == (2250, 2100)  # 18.9 MP: halved, short side still >= 2048
    assert load_image(buffer.getvalue(), min_side=400).size == (563, 525)  # 1/8 still >= 400
    pixels = prepare_image(io.BytesIO(buffer.getvalue()), 32)
    assert pixels.shape == (32, 32, 3) and abs(int(pixels[16, 16, 1]) - 200) <= 3


def test_center_square_boxes_match_fadernetworks():
    assert center_square_box(178, 218) == (0, 20, 178, 198)
    assert center_square_box(89, 109) == (0, 10, 89, 99)
    assert center_square_box(89, 110) == (0, 10, 89, 99)  # odd margin: extra row at the bottom
    assert center_square_box(120, 80) == (20, 0, 100, 80)
    assert center_square(Image.new("RGB", (178, 218))).size == (178, 178)


def test_square_resize_takes_the_centre_rows():
    rows = np.zeros((109, 89, 3), np.uint8)
    rows[10:99] = 200  # exactly the centre square is bright
    pixels = square_resize(Image.fromarray(rows), 89)
    assert pixels.shape == (89, 89, 3) and pixels.dtype == np.uint8 and (pixels == 200).all()
    small = square_resize(Image.fromarray(rows), 16)
    assert (small == 200).all()


def test_square_resize_is_lanczos_of_the_crop():
    face = load_image(FACE)
    expected = np.asarray(face.crop((0, 10, 89, 99)).resize((64, 64), Image.Resampling.LANCZOS))
    np.testing.assert_array_equal(square_resize(face, 64), expected)


def test_tensor_round_trip_and_shapes():
    pixels = np.random.default_rng(0).integers(0, 256, (2, 8, 6, 3), dtype=np.uint8)
    x = to_tensor(pixels)
    assert x.shape == (2, 3, 8, 6) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1
    np.testing.assert_array_equal(to_uint8(x), pixels)
    assert to_tensor(pixels[0]).shape == (1, 3, 8, 6)  # one image -> a batch of one
    assert to_uint8(torch.full((3, 2, 2), 5.0)).max() == 255  # clamped


def test_to_pil_and_make_grid():
    x = torch.zeros(3, 3, 4, 5)
    assert isinstance(to_image(x[0]), Image.Image) and len(to_pil(x[0])) == 1
    assert [image.size for image in to_pil(x)] == [(5, 4)] * 3
    pixels = np.zeros((3, 4, 5, 3), np.uint8)
    pixels[2] = 77
    grid = make_grid(pixels, nrow=2, padding=1)
    assert grid.size == (2 * 6 + 1, 2 * 5 + 1)
    assert grid.getpixel((1, 6)) == (77, 77, 77) and grid.getpixel((0, 0)) == (255, 255, 255)
    assert make_grid(x, nrow=8).size == (3 * 7 + 2, 4 + 4)
