"""Metric records as JSON lines, and the terminal table."""

import json

import numpy as np
import pytest

from facegen.evaluation.report import MetricRecord, append_jsonl, format_table, read_jsonl


def test_records_append_one_line_each(tmp_path):
    path = tmp_path / "run" / "metrics.jsonl"
    written = append_jsonl(path, MetricRecord("fid", np.float64(41.5), model="cgan", data="celeba-9k/val",
                                              n_samples=1000, seconds=12.5, extra={"kid": 0.01, "judge_accuracy": 0.9}))
    append_jsonl(path, {"metric": "psnr", "value": float("inf"), "model": "fader", "n_samples": np.int64(8)})
    lines = path.read_text().splitlines()
    assert len(lines) == 2 and all(json.loads(line) for line in lines)  # strict JSON, one object a line
    rows = read_jsonl(path)
    assert rows[0] == written
    assert list(rows[0])[:8] == ["metric", "value", "model", "data", "n_samples", "seconds", "timestamp", "kid"]
    assert rows[0]["value"] == 41.5 and rows[0]["judge_accuracy"] == 0.9 and rows[0]["timestamp"].endswith("+00:00")
    assert rows[1]["value"] is None and rows[1]["n_samples"] == 8 and rows[1]["timestamp"]


def test_records_need_metric_and_value_and_no_clashing_extras(tmp_path):
    with pytest.raises(ValueError, match="value"):
        append_jsonl(tmp_path / "m.jsonl", {"metric": "fid"})
    with pytest.raises(ValueError, match="clash"):
        MetricRecord("fid", 1.0, extra={"model": "x"}).to_dict()
    assert not (tmp_path / "m.jsonl").exists()


def test_table_aligns_text_left_and_numbers_right():
    rows = [
        {"model": "cgan", "metric": "fid", "value": 41.23456, "n": 1000},
        {"model": "fader", "metric": "attribute_accuracy", "value": 0.9, "n": None},
        {"model": "cvae", "metric": "kid"},
    ]
    table = format_table(rows, ["model", "metric", "value", "n"], headers=["model", "metric", "value", "images"])
    assert table.splitlines() == [
        "model  metric              value  images",
        "-----  ------------------  -----  ------",
        "cgan   fid                 41.23    1000",
        "fader  attribute_accuracy    0.9       -",
        "cvae   kid                     -       -",
    ]


def test_table_float_format_and_header_count():
    assert format_table([{"x": 1 / 3}], ["x"], float_format=".2f").splitlines()[-1] == "0.33"
    with pytest.raises(ValueError):
        format_table([], ["a", "b"], headers=["a"])
