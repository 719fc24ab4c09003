"""The preprocessed cache: round trip, no-op re-runs, skips, safety (facegen.data.cache)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from facegen.cli import main
from facegen.data import (build, format_info, is_cache, load_image, open_cache, open_dataset, prepare_cache,
                          resolve_training_data, square_resize)
from facegen.data.images import prepare_image
from facegen.errors import FacegenError

FIXTURES = Path(__file__).resolve().parent / "fixtures"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def _prepare(source, out, **options):
    return prepare_cache(source, size=options.pop("size", 32), out=out, workers=options.pop("workers", 1),
                         progress=False, **options)


def test_cache_round_trips_a_direct_decode_crop_resize(tmp_path):
    result = _prepare(FIXTURES / "official", tmp_path / "c32")
    assert not result.reused and result.skipped == [] and result.images_per_second > 0
    cache = open_cache(result.path)
    dataset = open_dataset(FIXTURES / "official")
    assert isinstance(cache.images, np.memmap) and cache.images.shape == (6, 32, 32, 3)
    for i in range(len(dataset)):
        np.testing.assert_array_equal(cache.images[i], square_resize(load_image(dataset.path(i)), 32))
    np.testing.assert_array_equal(cache.labels, dataset.labels)
    np.testing.assert_array_equal(cache.split, dataset.split)
    assert cache.files == dataset.files and cache.attribute_names == dataset.attribute_names
    assert cache.size == 32 and len(cache) == 6 and cache.indices("test").tolist() == [5]
    manifest = json.loads((result.path / "manifest.json").read_text())
    assert manifest["layout"] == "official" and manifest["count"] == 6
    assert manifest["split_counts"] == {"train": 4, "valid": 1, "test": 1}
    assert "wrote" in result.summary() and "images/s" in result.summary()


def test_rerun_is_a_no_op_until_the_input_changes(tmp_path):
    source = Path(shutil.copytree(FIXTURES / "official", tmp_path / "data"))
    out = tmp_path / "cache"
    _prepare(source, out)
    stamp = (out / "images.npy").stat().st_mtime_ns
    again = _prepare(source, out)
    assert again.reused and "up to date" in again.summary()
    assert (out / "images.npy").stat().st_mtime_ns == stamp
    assert not _prepare(source, out, force=True).reused
    _prepare(source, out, size=48)  # another size replaces the cache in place
    assert open_cache(out).size == 48
    labels = source / "list_attr_celeba.txt"
    labels.write_text(labels.read_text().replace("000001.jpg -1", "000001.jpg  1"))
    assert not _prepare(source, out, size=48).reused
    assert open_cache(out).labels[0, 0] == 1


def test_corrupt_images_are_skipped_counted_and_listed(tmp_path):
    source = Path(shutil.copytree(FIXTURES / "official", tmp_path / "data"))
    jpeg = source / "img_align_celeba" / "000003.jpg"
    jpeg.write_bytes(jpeg.read_bytes()[:1000])  # truncated
    (source / "img_align_celeba" / "000004.jpg").write_bytes(b"this is not a jpeg")
    (source / "img_align_celeba" / "000001.jpg").unlink()  # a row whose file is missing
    result = _prepare(source, tmp_path / "cache")
    assert [name for name, _ in result.skipped] == ["000003.jpg", "000004.jpg"]
    assert "skipped 2 unreadable" in result.summary() and "1 labelled row(s) had no image" in result.summary()
    cache = open_cache(result.path)
    assert len(cache) == 3 and cache.files == ["000002.jpg", "000005.jpg", "000006.jpg"]
    assert cache.images.shape == (3, 32, 32, 3)
    np.testing.assert_array_equal(cache.images[1], prepare_image(source / "img_align_celeba" / "000005.jpg", 32))
    assert cache.manifest["skipped"][0][0] == "000003.jpg" and cache.manifest["missing"] == ["000001.jpg"]
    assert cache.manifest["rows_listed"] == 6
    assert "2 unreadable images: 000003.jpg, 000004.jpg" in format_info(cache)


def test_no_decodable_image_at_all_is_an_error(tmp_path):
    source = Path(shutil.copytree(FIXTURES / "official", tmp_path / "data"))
    for jpeg in (source / "img_align_celeba").iterdir():
        jpeg.write_bytes(b"junk")
    with pytest.raises(FacegenError, match="none of the 6 images .* could be decoded"):
        _prepare(source, tmp_path / "cache")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["data"]


def test_parallel_workers_give_the_same_cache(tmp_path, monkeypatch):
    serial = open_cache(_prepare(FIXTURES / "custom", tmp_path / "serial").path)
    monkeypatch.setattr(build, "CHUNK_IMAGES", 1)  # 4 tasks over 2 worker processes
    parallel = open_cache(_prepare(FIXTURES / "custom", tmp_path / "parallel", workers=2).path)
    np.testing.assert_array_equal(serial.images, parallel.images)
    assert parallel.files == ["a.jpg", "b_gray.jpg", "c_alpha.png", "more/d.jpg"]


def test_a_users_folder_is_never_replaced(tmp_path):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("do not delete")
    with pytest.raises(FacegenError, match="exists and is not a facegen cache"):
        _prepare(FIXTURES / "official", precious)
    assert (precious / "thesis.tex").read_text() == "do not delete"
    with pytest.raises(FacegenError, match="is a file"):
        _prepare(FIXTURES / "official", precious / "thesis.tex")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert is_cache(_prepare(FIXTURES / "official", empty).path)


def test_an_interrupted_run_leaves_nothing_that_looks_valid(tmp_path, monkeypatch):
    real = build.decode_all

    def interrupted(*args):
        for number, chunk in enumerate(real(*args)):
            if number == 1:
                raise KeyboardInterrupt
            yield chunk

    monkeypatch.setattr(build, "CHUNK_IMAGES", 2)
    monkeypatch.setattr("facegen.data.cache.decode_all", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _prepare(FIXTURES / "official", tmp_path / "cache")
    assert list(tmp_path.iterdir()) == []


def test_leftovers_of_a_killed_run_are_cleared_and_never_valid(tmp_path):
    leftover = tmp_path / ".cache.partial-999999999"  # no such process
    leftover.mkdir()
    (leftover / ".building").write_text("999999999")
    (leftover / "images.npy").write_bytes(b"half")
    assert not is_cache(leftover)
    _prepare(FIXTURES / "official", tmp_path / "cache")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["cache"]


def test_damaged_or_foreign_caches_are_clear_errors(tmp_path):
    out = _prepare(FIXTURES / "official", tmp_path / "cache").path
    with pytest.raises(FacegenError, match="not a facegen cache"):
        open_cache(tmp_path)
    manifest = json.loads((out / "manifest.json").read_text())
    (out / "manifest.json").write_text(json.dumps({**manifest, "version": 99}))
    with pytest.raises(FacegenError, match="version 99 cache.*--force"):
        open_cache(out)
    (out / "manifest.json").write_text(json.dumps(manifest))
    (out / "labels.npy").unlink()
    with pytest.raises(FacegenError, match="damaged cache"):
        open_cache(out)
    assert not _prepare(FIXTURES / "official", out).reused  # a damaged cache is rebuilt, not reused


@pytest.mark.parametrize("size", [8, 15, 1025])
def test_size_out_of_range(tmp_path, size):
    with pytest.raises(FacegenError, match="out of range; choose 16 to 1024"):
        _prepare(FIXTURES / "official", tmp_path / "cache", size=size)


def test_resolve_training_data_prepares_once_and_checks_size(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEGEN_CACHE", str(tmp_path / "home-cache"))
    cache = resolve_training_data(FIXTURES / "kaggle", size=16, progress=False)
    assert cache.path.parent == tmp_path / "home-cache" and cache.path.name.startswith("kaggle-")
    assert cache.path.name.endswith("-16") and len(cache) == 6
    assert resolve_training_data(cache.path, size=16).path == cache.path
    with pytest.raises(FacegenError, match="holds 16x16 images, not 64x64"):
        resolve_training_data(cache.path, size=64)
    with pytest.raises(FacegenError, match="already a cache"):
        prepare_cache(cache.path, size=16, out=tmp_path / "again")


def test_cli_prepare_and_info(tmp_path, capsys):
    out = tmp_path / "c16"
    assert main(["prepare", str(FIXTURES / "archive"), "--size", "16", "--out", str(out), "--quiet"]) == 0
    assert "wrote" in capsys.readouterr().out
    assert main(["data", "info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "facegen cache v1, 16x16" in text and "official-archive" in text and "Young" in text
    assert main(["data", "info", str(FIXTURES / "custom")]) == 0
    assert "custom" in capsys.readouterr().out
    for argv in (["data", "info", str(tmp_path / "nope")],
                 ["prepare", str(FIXTURES / "official"), "--size", "8", "--out", str(out)]):
        assert main(argv) == 2
        error = capsys.readouterr().err
        assert error.startswith("facegen: error: ") and error.count("\n") == 1 and "Traceback" not in error


@pytest.mark.skipif(not (SHARED / "celeba-fullres-100").is_dir(), reason="../shared/data/celeba-fullres-100 absent")
def test_full_resolution_celeba_matches_the_half_size_copy(tmp_path):
    full = open_cache(_prepare(SHARED / "celeba-fullres-100", tmp_path / "full", size=32, workers=2).path)
    dataset = open_dataset(SHARED / "celeba-fullres-100")
    assert load_image(dataset.path(0)).size == (178, 218) and len(full) == 100
    np.testing.assert_array_equal(full.images[7], prepare_image(dataset.path(7), 32))
    if (SHARED / "celeba-9k").is_dir():
        half = open_dataset(SHARED / "celeba-9k")
        small = np.stack([prepare_image(half.path(i), 32) for i in range(100)])
        # Same framing: the 178x218 and 89x109 copies crop to the same face (JPEG noise aside).
        assert np.abs(small.astype(int) - full.images[:].astype(int)).mean() < 4
