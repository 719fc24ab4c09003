"""The README's results tables, built from `facegen evaluate`'s JSON lines (nothing typed by hand).

    python scripts/results_table.py cgan=runs/eval-cgan cgan-study2018=runs/eval-study2018 cvae=runs/eval-cvae \\
        fader=runs/eval-fader [--judge balanced]

A folder may hold records made with either judge (`facegen evaluate --judge`); the tables use the last record of
each metric made with the one asked for (plain by default, as are records from before the option).
Several folders may be given for one model, joined with '+' (e.g. a plain-judge control run beside the FID run).
"""

from __future__ import annotations

import sys
from pathlib import Path

from facegen.evaluation.report import read_jsonl

FOCUS = ("Male", "Blond_Hair", "Young", "Smiling", "Eyeglasses", "Attractive")


JUDGED = ("classifier_accuracy/", "control/", "edit/")


def latest(folder: Path, judge: str = "plain") -> dict[str, dict]:
    """The last record of each metric in a folder's metrics.jsonl; judged metrics only from `judge`'s records."""
    rows = {}
    for row in read_jsonl(folder / "metrics.jsonl"):
        if row["metric"].startswith(JUDGED) and row.get("judge", "plain") != judge:
            continue
        rows[row["metric"]] = row
    return rows


def _pct(row: dict | None) -> str:
    return "–" if row is None or row.get("value") is None else f"{100 * row['value']:.0f}%"


def generation_table(runs: dict[str, dict]) -> str:
    head = ["model", "FID ↓", "KID ↓", *(f"{a}" for a in FOCUS), "all attributes (mean)", "faces (FID / control)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, rows in runs.items():
        if "fid" not in rows:
            continue
        control = [r for k, r in rows.items() if k.startswith("control/")]
        mean = sum(r["value"] for r in control) / len(control) if control else None
        n_control = control[0]["n_samples"] if control else 0
        lines.append("| " + " | ".join([
            name, f"{rows['fid']['value']:.1f}", f"{rows['kid']['value']:.3f}",
            *(_pct(rows.get(f"control/{a}")) for a in FOCUS),
            "–" if mean is None else f"{100 * mean:.0f}%", f"{rows['fid']['n_samples']} / {n_control} per attribute",
        ]) + " |")
    return "\n".join(lines)


def editing_table(runs: dict[str, dict]) -> str:
    head = ["model", "PSNR dB ↑", "SSIM ↑", *(f"{a}" for a in FOCUS), "others unchanged", "identity kept", "faces"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, rows in runs.items():
        if "reconstruction/psnr_db" not in rows:
            continue
        edits = [r for k, r in rows.items() if k.startswith("edit/")]
        others = sum(r["others_unchanged"] for r in edits) / len(edits) if edits else None
        same = [r["identity_same_fraction"] for r in edits if "identity_same_fraction" in r]
        lines.append("| " + " | ".join([
            name, f"{rows['reconstruction/psnr_db']['value']:.1f}", f"{rows['reconstruction/ssim']['value']:.3f}",
            *(_pct(rows.get(f"edit/{a}")) for a in FOCUS),
            "–" if others is None else f"{100 * others:.0f}%",
            "–" if not same else f"{100 * sum(same) / len(same):.0f}%",
            str(rows["reconstruction/psnr_db"]["n_samples"]),
        ]) + " |")
    return "\n".join(lines)


def judge_accuracy(runs: dict[str, dict]) -> str:
    """The judge's balanced accuracy on real held-out faces (mean of its recalls on faces with and without each
    attribute): what it scores on a set like the protocols' own, with as many 1s as 0s."""
    rows = next(iter(runs.values()))

    def balanced(row: dict | None) -> str:
        if row is None or "balanced_accuracy" not in row:
            return _pct(row)
        return f"{100 * row['balanced_accuracy']:.0f}%"

    return ", ".join(f"{a} {balanced(rows.get(f'classifier_accuracy/{a}'))}" for a in FOCUS)


def main() -> None:
    args, judge = sys.argv[1:], "plain"
    if "--judge" in args:
        at = args.index("--judge")
        judge, args = args[at + 1], args[:at] + args[at + 2:]
    runs = {}
    for pair in args:
        name, _, folders = pair.partition("=")
        runs[name] = {}
        for folder in folders.split("+"):
            runs[name] |= latest(Path(folder), judge)
    print("Generation: attribute control (the judge tells faces asked for 1 from faces asked for 0) and realism\n")
    print(generation_table(runs))
    print("\nEditing: flip one attribute of a held-out face; the judge must agree with the new value\n")
    print(editing_table(runs))
    first = next(iter(runs.values()))
    if any("balanced_accuracy" in first.get(f"classifier_accuracy/{a}", {}) for a in FOCUS):
        print(f"\nThe judge ({judge} decision) on the same held-out faces, real photos, scored as if as many had each "
              f"attribute as not (balanced accuracy): {judge_accuracy(runs)}.")
    else:
        print(f"\nThe judge's own accuracy ({judge} decision) on the same held-out faces: {judge_accuracy(runs)}.")


if __name__ == "__main__":
    main()
