"""Write a shipped model's MODEL_CARD.md from its run folder and `facegen evaluate`'s metrics.jsonl.

    python scripts/model_card.py cgan runs/cgan-default runs/eval-cgan/metrics.jsonl [--note docs/notes/cgan.md]

Every number in the card comes from those two files; prose that needs judgement
(what the faces look like, where the model fails) is passed in with --note.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from facegen.evaluation.report import format_table, read_jsonl
from facegen.pretrained import SHIPPED_DIR

LICENCE = ("Trained on CelebA, which is licensed for non-commercial research only; these weights inherit that "
           "restriction.")


def card(name: str, run: Path, metrics: Path | None, note: str) -> str:
    options = json.loads((run / "training_options.json").read_text())
    config = json.loads((SHIPPED_DIR / name / "config.json").read_text())
    stats = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    info = config.get("info", {})
    last = {"step": info.get("steps", stats[-1]["step"]), "kimg": info.get("kimg", stats[-1]["kimg"]),
            "seconds": info.get("seconds", stats[-1]["seconds"])}  # the exported weights' own step, not the last log
    size_mb = (SHIPPED_DIR / name / "model.safetensors").stat().st_size / 1e6
    threads = int(options.get("threads") or 1)
    lines = [
        f"# Model card: `{name}`", "",
        f"{config['model']} (preset {config.get('preset', 'default')}), {config['size']}x{config['size']} pixels, "
        f"{len(config['attribute_names'])} attributes: {', '.join(config['attribute_names'])}.", "",
        f"- **Data:** `{options['data']}` (CelebA's first 9,000 aligned images at half size, centre square, "
        f"Lanczos-resized); validation = `crc32(file name) % 10 == 0` (907 faces), never trained on.",
        f"- **Training:** {last['step']} steps of {options['batch_size']} images ({last['kimg']:.0f}k images), "
        f"{last['seconds'] / 60:.0f} minutes of training-step time on "
        + ("one thread of a 2-core CPU shared with other training runs" if threads == 1
           else f"{threads} threads of a 2-core CPU")
        + f" (`--threads {threads}`"
        + (f", `--precision {options['precision']}`" if _precision(options) else "") + f"), seed {options['seed']}.",
        *_started_from(options),
        f"- **Settings:** `{json.dumps(options.get('method_options') or {})}` on top of the recipe's defaults; "
        f"the full options are in `training_options.json` of the run.",
        f"- **Weights:** float16 safetensors, {size_mb:.1f} MB"
        + (", with the training labels' joint distribution (prior) used to fill in attributes a request leaves "
           "out." if config["model"] != "classifier" else "."),
        f"- **Licence:** {LICENCE}", "",
        "Reproduce: `facegen train " + config["model"] + " --data cache/celeba9k-64 --attrs "
        + ",".join(options["attributes"]) + f" --steps {last['step']} "
        + (f"--batch-size {options['batch_size']} " if options["batch_size"] != 64 else "")
        + " ".join(f"--set {k}={json.dumps(v)}" for k, v in (options.get("method_options") or {}).items())
        + (f" --init-from {options['init_from']}" if options.get("init_from") else "")
        + (f" --precision {options['precision']}" if _precision(options) else "")
        + f" --threads {threads}`", "",
    ]
    if metrics and metrics.is_file():
        latest = {r["metric"]: r for r in read_jsonl(metrics)  # a metric measured again: its last record,
                  if r.get("judge", "plain") == "plain"}  # by the default judge (see docs/notes/classifier.md)
        rows = [dict(r, judge_on_real=r.get("classifier_balanced_accuracy", r.get("classifier_accuracy")))
                for r in latest.values()
                if config["model"] == "classifier" or not r["metric"].startswith("classifier_accuracy/")]
        judges = sorted({r["judge"] for r in rows if "judge" in r}) or ["plain"]
        if config["model"] == "classifier":  # its own accuracy, and how it does on each class alone
            intro = (f"`facegen evaluate` on the held-out faces, deciding with the {' and '.join(judges)} rule (see "
                     "docs/notes/classifier.md): accuracy, balanced accuracy (the mean of the two recalls) and the "
                     "recall on faces with (1) and without (0) each attribute.")
            table = format_table(rows, ["metric", "value", "balanced_accuracy", "recall_at_1", "recall_at_0", "n_samples"],
                                 headers=["metric", "accuracy", "balanced", "recall at 1", "recall at 0", "images"])
        else:
            intro = ("`facegen evaluate` on held-out faces; the judge is the shipped attribute classifier "
                     f"({' and '.join(judges)} decision), and beside each number it produced is its own balanced "
                     "accuracy on real held-out faces (mean of its recalls with and without the attribute).")
            table = format_table(rows, ["metric", "value", "n_samples", "judge_on_real", "seconds"],
                                 headers=["metric", "value", "images", "judge on real", "seconds"])
        lines += ["## Measured", "", intro, "", "```", table, "```", ""]
    if note:
        lines += [note.strip(), ""]
    return "\n".join(lines)


def _precision(options: dict) -> bool:
    """Whether the run trained in another precision than the default float32."""
    return str(options.get("precision", "32-true")) not in ("32-true", "32")


def _started_from(options: dict) -> list[str]:
    """A line on the run this one was fine-tuned from (`--init-from`), with that run's own steps and time."""
    source = options.get("init_from")
    if not source:
        return []
    folder = Path(source) if Path(source).is_dir() else Path(source).parent.parent
    info = {}
    if (folder / "model" / "config.json").is_file():
        info = json.loads((folder / "model" / "config.json").read_text()).get("info", {})
    before = (f" ({info['steps']} steps, {info['kimg']:.0f}k images, {info['seconds'] / 60:.0f} minutes)"
              if {"steps", "kimg", "seconds"} <= set(info) else "")
    return [f"- **Started from:** the weights of `{folder}`{before}, by `facegen train --init-from`; the steps, "
            "images and minutes above are this run's own, on top of those."]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name")
    parser.add_argument("run", type=Path)
    parser.add_argument("metrics", type=Path, nargs="?")
    parser.add_argument("--note", type=Path, help="a Markdown file of observations to append")
    args = parser.parse_args()
    text = card(args.name, args.run, args.metrics, args.note.read_text() if args.note else "")
    (SHIPPED_DIR / args.name / "MODEL_CARD.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
