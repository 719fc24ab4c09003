"""Markdown tables of `benchmarks/edit_photos.py` results, for the README, docs/models.md and the notes.

    python scripts/edit_photos_table.py residual fader fader-redraw cvae          # the summary table
    python scripts/edit_photos_table.py residual --all                            # every attribute, both directions
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
SUMMARY = ("Male", "Blond_Hair", "Young", "Attractive", "Smiling", "Eyeglasses")


def load(design: str) -> dict:
    return json.loads((RESULTS / f"edit-photos-{design}.json").read_text())


def pct(value) -> str:
    return "–" if value is None else f"{100 * value:.0f}%"


def ceiling(row: dict) -> float:
    """What the judge would score if every edit were a real photo of the asked class: its recall on real photos
    of each target class, weighed by how many faces go each way. No edit can be expected to score much above it."""
    n1, n0 = row["n_to_1"], row["n_to_0"]
    return (n1 * row["judge_recall_at_1_real"] + n0 * row["judge_recall_at_0_real"]) / max(n1 + n0, 1)


def summary(designs: list[str]) -> str:
    head = ["design", "nothing asked (dB)", *SUMMARY, "mean of 12", "same person", "sweep change (levels)", "output"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for design in designs:
        r = load(design)
        db = r["nothing_asked_psnr_db_median"]
        sweep = r.get("sweep_end_to_end_change_levels", {})
        cells = [design, "identical" if math.isinf(db) else f"{db:.1f}",
                 *[pct(r["attributes"][a]["flip"]) for a in SUMMARY], pct(r["mean_flip"]),
                 pct(r.get("mean_identity_same_fraction")),
                 f"{sum(sweep.values()) / max(len(sweep), 1):.1f}", "{}x{}".format(*r["output_size"])]
        lines.append("| " + " | ".join(cells) + " |")
    first = load(designs[0])
    rows = first["attributes"]
    real = ["real photos of the asked class (the judge's ceiling)", "–", *[pct(ceiling(rows[a])) for a in SUMMARY],
            pct(sum(ceiling(row) for row in rows.values()) / len(rows)), "–", "–", "–"]
    lines.append("| " + " | ".join(real) + " |")
    return "\n".join(lines)


def every_attribute(design: str) -> str:
    r = load(design)
    head = ["attribute", "flip", "to 1", "to 0", "faces to 1 / to 0", "judge's recall on real (1 / 0)",
            "judge's ceiling",
            "others kept", "same person", "median distance"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, row in r["attributes"].items():
        lines.append("| " + " | ".join([
            name, pct(row["flip"]), pct(row["flip_to_1"]), pct(row["flip_to_0"]), f"{row['n_to_1']} / {row['n_to_0']}",
            f"{pct(row['judge_recall_at_1_real'])} / {pct(row['judge_recall_at_0_real'])}", pct(ceiling(row)),
            pct(row["others_kept"]),
            pct(row.get("identity_same_fraction")),
            f"{row['identity_distance_median']:.2f}" if "identity_distance_median" in row else "–"]) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("designs", nargs="+")
    parser.add_argument("--all", action="store_true", help="every attribute of each design, both directions")
    args = parser.parse_args()
    if args.all:
        print("\n\n".join(f"**{d}**\n\n" + every_attribute(d) for d in args.designs))
    else:
        print(summary(args.designs))


if __name__ == "__main__":
    main()
