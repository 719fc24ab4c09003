"""Finding and reading CelebA's layouts and custom folders (facegen.data.celeba, .tables)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from facegen.data import SPLITS, format_info, open_dataset
from facegen.data.rows import derived_split
from facegen.errors import FacegenError

FIXTURES = Path(__file__).resolve().parent / "fixtures"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
NAMES = [f"{i:06d}.jpg" for i in range(1, 7)]
# Real rows of 000001..000006 (checked against list_attr_celeba.txt): Attractive, Male.
ATTRACTIVE = [1, 0, 0, 1, 1, 1]
MALE = [0, 0, 1, 0, 0, 0]


def _copy(name: str, tmp_path: Path) -> Path:
    return Path(shutil.copytree(FIXTURES / name, tmp_path / name))


@pytest.mark.parametrize("folder, layout, image_dir", [
    ("official", "official", "official/img_align_celeba"),
    ("archive", "official-archive", "archive/Img/img_align_celeba"),
    ("kaggle", "kaggle", "kaggle/img_align_celeba/img_align_celeba"),
    ("torchvision", "torchvision", "torchvision/celeba/img_align_celeba"),
    ("torchvision/celeba", "torchvision", "torchvision/celeba/img_align_celeba"),
])
def test_every_celeba_layout_reads_the_same_rows(folder, layout, image_dir):
    dataset = open_dataset(FIXTURES / folder)
    assert dataset.layout == layout
    assert dataset.image_dir == FIXTURES / image_dir
    assert dataset.files == NAMES and len(dataset) == 6 and dataset.missing == []
    assert len(dataset.attribute_names) == 40 and dataset.attribute_names[2] == "Attractive"
    assert dataset.labels.dtype == np.uint8 and dataset.labels.shape == (6, 40)
    assert dataset.labels[:, 2].tolist() == ATTRACTIVE and dataset.labels[:, 20].tolist() == MALE
    assert dataset.split.tolist() == [0, 0, 0, 0, 1, 2]
    assert dataset.split_source.startswith("official list_eval_partition")
    assert dataset.indices("valid").tolist() == [4] and dataset.indices("test").dtype == np.int64
    assert dataset.path(0).is_file()


def test_custom_folder_with_own_labels():
    dataset = open_dataset(FIXTURES / "custom")
    assert dataset.layout == "custom" and dataset.image_dir == FIXTURES / "custom"
    assert dataset.attribute_names == ["smiling", "eyeglasses", "male"]
    assert dataset.files == ["a.jpg", "b_gray.jpg", "c_alpha.png", "more/d.jpg"]
    assert dataset.labels.tolist() == [[1, 0, 0], [1, 0, 0], [0, 0, 1], [0, 0, 0]]
    assert dataset.split_source.startswith("derived")
    assert all(dataset.path(i).is_file() for i in range(len(dataset)))


def test_custom_csv_with_split_column_minus_one_values_and_image_subfolder(tmp_path):
    (tmp_path / "pictures").mkdir()
    for name in ("x.jpg", "y.jpg", "z.jpg"):
        shutil.copyfile(FIXTURES / "official" / "img_align_celeba" / NAMES[0], tmp_path / "pictures" / name)
    (tmp_path / "mine.csv").write_text("Image,happy,split\nx.jpg,1.0,train\ny.jpg,-1,valid\nz.jpg,1,test\n")
    dataset = open_dataset(tmp_path)
    assert dataset.image_dir == tmp_path / "pictures"
    assert dataset.labels[:, 0].tolist() == [1, 0, 1] and dataset.split.tolist() == [0, 1, 2]
    assert dataset.split_source == "'split' column of mine.csv"


def test_derived_split_is_by_file_name_and_stable():
    files = [f"{i:06d}.jpg" for i in range(1, 2001)]
    split = derived_split(files)
    assert 0.07 < split.mean() < 0.13 and set(split.tolist()) == {0, 1}
    assert derived_split(files[::-1]).tolist() == split[::-1].tolist()  # order and neighbours do not matter


def test_missing_image_rows_are_skipped_and_counted(tmp_path):
    root = _copy("official", tmp_path)
    (root / "img_align_celeba" / NAMES[1]).unlink()
    dataset = open_dataset(root)
    assert dataset.missing == [NAMES[1]] and len(dataset) == 5 and NAMES[1] not in dataset.files
    assert dataset.labels[:, 2].tolist() == ATTRACTIVE[:1] + ATTRACTIVE[2:]
    assert "1 rows name an absent image" in format_info(dataset)


def test_format_info_lists_layout_splits_and_every_attribute():
    text = format_info(open_dataset(FIXTURES / "kaggle"))
    assert "kaggle" in text and "train 4   valid 1   test 1" in text
    assert "Attractive" in text and " 66.7%" in text  # 4 of 6
    assert text.index("5_o_Clock_Shadow") < text.index("Young")


def _rewrite(path: Path, old: str, new: str, count: int = 1) -> None:
    path.write_text(path.read_text().replace(old, new, count))


@pytest.mark.parametrize("case, message", [
    ("missing folder", "no such folder"),
    ("a file", "is a file"),
    ("no attribute file", "no attribute file"),
    ("no images", "no image folder"),
    ("image folder named", "name the folder above it"),
    ("wrong column count txt", r"list_attr_celeba.txt, line 5: expected 41 fields .* found 40"),
    ("wrong column count csv", r"list_attr_celeba.csv, line 3: expected 41 comma-separated fields"),
    ("row count mismatch", "line 1 says 7 rows but the file has 6"),
    ("value 1.7 txt", r"line 3, column '5_o_Clock_Shadow': value '1.7' is not 0/1 or -1/1"),
    ("value yes csv", r"labels.csv, line 2, column 'smiling': value 'yes'"),
    ("duplicate row", "has two rows"),
    ("no file column", "no CSV here has a file column"),
    ("two csvs", "several label CSVs"),
    ("no rows exist", "none of the 6 images listed"),
    ("partition lacks a row", "has no row for 000006.jpg"),
    ("bad split value", "column 'split': 'later' is not train, valid or test"),
])
def test_bad_inputs_are_clear_one_line_errors(tmp_path, case, message):
    official = _copy("official", tmp_path)
    attributes = official / "list_attr_celeba.txt"
    target = official
    if case == "missing folder":
        target = tmp_path / "nowhere"
    elif case == "a file":
        target = attributes
    elif case == "no attribute file":
        attributes.unlink()
    elif case == "no images":
        shutil.rmtree(official / "img_align_celeba")
    elif case == "image folder named":
        target = official / "img_align_celeba"
    elif case == "wrong column count txt":
        _rewrite(attributes, "000003.jpg -1", "000003.jpg")
    elif case == "wrong column count csv":
        target = _copy("kaggle", tmp_path)
        _rewrite(target / "list_attr_celeba.csv", "000002.jpg,-1,", "000002.jpg,")
    elif case == "row count mismatch":
        _rewrite(attributes, "6\n", "7\n")
    elif case == "value 1.7 txt":
        _rewrite(attributes, "000001.jpg -1", "000001.jpg 1.7")
    elif case == "value yes csv":
        target = _copy("custom", tmp_path)
        _rewrite(target / "labels.csv", "a.jpg,1", "a.jpg,yes")
    elif case == "duplicate row":
        _rewrite(attributes, "000002.jpg", "000001.jpg")
    elif case in ("no file column", "two csvs", "bad split value"):
        target = _copy("custom", tmp_path)
        if case == "no file column":
            _rewrite(target / "labels.csv", "filename,", "picture,")
        elif case == "two csvs":
            shutil.copyfile(target / "labels.csv", target / "other.csv")
        else:
            (target / "labels.csv").write_text("filename,smiling,split\na.jpg,1,later\n")
    elif case == "no rows exist":
        for name in NAMES:
            (official / "img_align_celeba" / name).rename(official / "img_align_celeba" / ("x" + name))
    elif case == "partition lacks a row":
        _rewrite(official / "list_eval_partition.txt", "000006.jpg 2\n", "")
    with pytest.raises(FacegenError, match=message) as error:
        open_dataset(target)
    assert "\n" not in str(error.value)


def test_unknown_attribute_is_a_clear_error():
    dataset = open_dataset(FIXTURES / "official")
    assert dataset.attribute_columns(["Young", "male"]) == [39, 20]
    with pytest.raises(FacegenError, match="unknown attribute 'Blonde_Hair'.*did you mean Blond_Hair"):
        dataset.attribute_columns(["Blonde_Hair"])
    with pytest.raises(FacegenError, match="unknown split 'validation'"):
        dataset.indices("validation")
    assert SPLITS == ("train", "valid", "test")


@pytest.mark.skipif(not (SHARED / "celeba-9k").is_dir(), reason="../shared/data/celeba-9k is not on this machine")
def test_shared_celeba_9k_and_fullres_100_agree():
    small = open_dataset(SHARED / "celeba-9k")
    assert small.layout == "official" and len(small) == 9000 and small.missing == []
    assert small.split_counts()["valid"] == 907 and small.split_counts()["test"] == 0
    frequency = dict(zip(small.attribute_names, small.frequencies()))
    assert round(100 * frequency["Male"], 1) == 42.2 and round(100 * frequency["Young"], 1) == 77.8
    if not (SHARED / "celeba-fullres-100").is_dir():
        pytest.skip("../shared/data/celeba-fullres-100 is not on this machine")
    full = open_dataset(SHARED / "celeba-fullres-100")
    assert full.files == small.files[:100]
    np.testing.assert_array_equal(full.labels, small.labels[:100])
    np.testing.assert_array_equal(full.split, small.split[:100])  # same names, same derived split
