"""The faces of the control protocol that the judge doubts most, to look at: does the face show the attribute?

    python scripts/judge_doubts.py cgan Eyeglasses docs/img/cgan-eyeglasses-judge-doubts.png
    python scripts/judge_doubts.py cgan Eyeglasses out/no-glasses.png --value 0 --show 200

The faces are the ones `facegen evaluate --metrics control` makes for the request
(same seeds: `attribute_control`'s streams for this attribute and value, 200
faces at the default `--n-per-value 400`), sorted so that the judge's least
convinced come first, drawn 8 or 16 to a row. It prints the protocol's hit rate
and the judge's probability of each face shown. A control number is only as
good as the judge: this sheet is where to check it by eye (docs/notes/cgan.md).
"""

from __future__ import annotations

import argparse

import torch

from facegen.data.images import make_grid, to_uint8
from facegen.errors import FacegenError
from facegen.metrics.judge import Judge
from facegen.metrics.protocols import control_requests
from facegen.pipelines.generate import GenerationPipeline
from facegen.pretrained import load_pretrained


def doubted_faces(model: str, attribute: str, value: int, n: int = 200, show: int = 64, decision: str = "plain"):
    """(faces (show, H, W, 3) uint8, their judge probabilities, the protocol's hit rate over all n)."""
    pretrained = load_pretrained(model)
    if attribute not in pretrained.prior.names:
        raise FacegenError(f"{model} has no attribute {attribute}; it knows {', '.join(pretrained.prior.names)}")
    judge = Judge("classifier", decision=decision)
    y, generator = control_requests(pretrained.prior, attribute, value, n)  # the protocol's rows and streams
    pipe = GenerationPipeline(pretrained)
    with torch.no_grad():
        # In batches of 100, as attribute_control draws them: the generator's stream depends on it.
        x = torch.cat([pipe.sample(y[start:start + 100], generator) for start in range(0, n, 100)])  # (n, 3, H, W)
        prob = judge(x)[:, judge.names.index(attribute)]  # (n,)
    hits = (prob > 0.5) == bool(value)  # the balanced judge's probabilities carry its offset already
    order = torch.argsort(prob if value else -prob)[:show]
    return to_uint8(x[order]), prob[order].numpy(), float(hits.float().mean())  # faces (show, H, W, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="a shipped name or a model folder")
    parser.add_argument("attribute", help="a CelebA name the model knows, e.g. Eyeglasses")
    parser.add_argument("out", help="PNG to write")
    parser.add_argument("--value", type=int, choices=(0, 1), default=1, help="the requested value (default 1)")
    parser.add_argument("--show", type=int, default=64, help="how many of the 200 faces to draw (default 64)")
    parser.add_argument("--judge", choices=("plain", "balanced"), default="plain", help="the judge's decision")
    args = parser.parse_args()
    torch.set_num_threads(2)
    try:
        faces, probs, hit_rate = doubted_faces(args.model, args.attribute, args.value, show=args.show,
                                               decision=args.judge)
    except FacegenError as error:
        parser.exit(2, f"judge_doubts: {error}\n")
    make_grid(faces, nrow=8 if len(faces) <= 64 else 16).save(args.out)
    print(f"{args.model} {args.attribute}={args.value}: the judge agrees on {hit_rate:.1%} of 200 faces; "
          f"probabilities of the {len(faces)} shown, least convinced first: {' '.join(f'{p:.2f}' for p in probs)}")


if __name__ == "__main__":
    main()
