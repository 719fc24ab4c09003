"""What each `facegen` command does once its arguments are parsed (cli.py builds the parser and calls these).

Each handler calls the library and prints; it returns the exit code. Heavy
libraries are imported inside the handlers, so `facegen --help` stays fast.
"""

from __future__ import annotations

import argparse
import sys

from facegen.errors import FacegenError
from facegen.kinds import kind


# --------------------------------------------------------------------------- data


def data_info(args: argparse.Namespace) -> int:
    from facegen.data import format_info, open_any

    print(format_info(open_any(args.data)))
    return 0


def prepare(args: argparse.Namespace) -> int:
    from facegen.data import prepare_cache

    result = prepare_cache(args.data, size=args.size, out=args.out, workers=args.workers,
                           progress=not args.quiet, force=args.force)
    print(result.summary())
    return 0


# --------------------------------------------------------------------------- train


def train(args: argparse.Namespace) -> int:
    import json

    from facegen.training.loop import training_loop
    from facegen.training.options import build_options

    given = {"data": args.data, "attributes": args.attrs, "size": args.size, "steps": args.steps,
             "batch_size": args.batch_size, "seed": args.seed, "run_dir": args.out, "resume": args.resume,
             "log_every": args.log_every, "sample_every": args.sample_every, "checkpoint_every": args.checkpoint_every,
             "accelerator": args.accelerator, "devices": args.devices, "num_nodes": args.num_nodes,
             "strategy": args.strategy, "precision": args.precision, "threads": args.threads,
             "init_from": args.init_from,
             "max_seconds": args.max_minutes * 60 if args.max_minutes else None,
             "progress": False if args.no_progress else None}
    settings = list(args.set or [])
    if getattr(args, "preset", None):
        kind(args.model).check_preset(args.preset)
        settings.append(f"preset={json.dumps(args.preset)}")
    options = build_options(model=args.model, given=given, settings=settings)
    run_dir = training_loop(**options)
    if run_dir is not None:  # None on the other processes of a multi-device run: rank 0 alone reports
        print(f"done: {run_dir} (model in {run_dir / 'model'})")
    return 0


# --------------------------------------------------------------------------- generate


def generate(args: argparse.Namespace) -> int:
    import json

    import torch

    from facegen.attributes import format_request
    from facegen.data import make_grid
    from facegen.pipelines.generate import GenerationPipeline
    from facegen.files import check_name, guarded_write, save_image
    from facegen.pipelines.output import check_writable

    check_writable(args.output if not args.out_dir else None, args.out_dir)
    if not args.out_dir:
        check_name(_sidecar(args.output))
    pipe = GenerationPipeline.from_pretrained(args.model, z_prior=args.z_prior, temperature=args.temperature)
    request = list(args.attributes) + ([args.attributes_file] if args.attributes_file else [])
    out = pipe(request, n=args.n, generator=torch.Generator().manual_seed(args.seed), extrapolate=args.extrapolate)
    records = [{"index": i, **{name: round(float(v), 4) for name, v in zip(out.attribute_names, row)}}
               for i, row in enumerate(out.attributes)]
    if args.out_dir:
        from pathlib import Path

        folder = Path(args.out_dir)
        for i, image in enumerate(out.images):
            save_image(image, folder / f"face-{i:04d}.png")
        sidecar = folder / "attributes.json"
        where = f"{len(out.images)} faces in {folder}/"
    else:
        columns = args.nrow or min(8, args.n)
        save_image(make_grid(out.x, nrow=columns), args.output)
        sidecar = _sidecar(args.output)
        where = f"a grid of {len(out.images)} faces in {args.output}"
    text = json.dumps({"model": str(pipe.pretrained.path), "seed": args.seed, "z_prior": pipe.z_prior,
                       **({"temperature": args.temperature} if args.temperature is not None else {}),
                       "request": out.request, "faces": records}, indent=1) + "\n"
    guarded_write(sidecar, lambda tmp: tmp.write_text(text))
    print(f"wrote {where} ({format_request(out.request) or 'no attributes named'}; "
          f"the values of every face are in {sidecar})")
    return 0


def _sidecar(image_path: str):
    from pathlib import Path

    path = Path(image_path)
    return path.with_name(path.stem + ".json")


# --------------------------------------------------------------------------- evaluate


def evaluate(args: argparse.Namespace) -> int:
    from facegen.evaluation import evaluate
    from facegen.evaluation.report import format_table

    metrics = tuple(m.strip() for m in args.metrics.split(",")) if args.metrics else None
    records = evaluate(model=args.model, data=args.data, out=args.out, classifier=args.classifier, n_fid=args.n_fid,
                       n_per_value=args.n_per_value, n_edit=args.n_edit, n_identity=args.n_identity, seed=args.seed,
                       metrics=metrics, decision=args.decision, redraw=args.redraw,
                       label=args.label, progress=not args.quiet)
    print(format_table(records, ["metric", "value", "n_samples", "classifier_balanced_accuracy", "seconds"],
                       headers=["metric", "value", "images", "judge on real (balanced)", "seconds"]))
    print(f"(one JSON line per metric appended to {args.out}/metrics.jsonl)")
    return 0


# --------------------------------------------------------------------------- serve


def serve(args: argparse.Namespace) -> int:
    from facegen.web import serve_models

    serve_models(args.model or [], host=args.host, port=args.port, share=args.share, queue_size=args.queue_size,
                 concurrency=args.concurrency, threads=args.threads)
    return 0


# --------------------------------------------------------------------------- edit


def edit(args: argparse.Namespace) -> int:
    from facegen.pipelines.edit import ALIGNMENT_NOTE, EditPipeline
    from facegen.pipelines.edit_files import edit_files, expand_photos, output_paths, split_tokens

    paths, request = split_tokens(args.inputs)
    request += [args.attributes_file] if args.attributes_file else []
    photos = expand_photos(paths)
    targets = output_paths(photos, output=args.output, out_dir=args.out_dir)
    pipe = EditPipeline.from_pretrained(args.model, classifier=args.classifier, batch_size=args.batch_size,
                                        redraw=args.redraw)
    pipe.parse(request, args.flip, args.extrapolate)  # an unknown attribute stops here, before any photo is read
    report = lambda line: print(f"facegen: {line}", file=sys.stderr)  # noqa: E731
    if args.align:
        return _edit_aligned(args, pipe, photos, targets, request, report)
    failures = edit_files(pipe, photos, targets, request, flip=args.flip, extrapolate=args.extrapolate, log=report)
    if len(photos) == 1 and failures:
        raise FacegenError(failures[0][1])
    done = len(photos) - len(failures)
    what = ("reconstructed" if args.redraw else "copied unchanged") if not request and not args.flip else "edited"
    where = targets[0] if len(photos) == 1 else f"{args.out_dir}/"
    size = (f"redrawn at {pipe.size}x{pipe.size}" if args.redraw
            else "at its own size" if len(photos) == 1 else "each at its own size")
    print(f"{what} {done} photo{'s' * (done != 1)} into {where}, {size} ({ALIGNMENT_NOTE})")
    if failures:
        report(f"{len(failures)} of {len(photos)} photos could not be read (listed above)")
        return 2
    return 0


def _edit_aligned(args, pipe, photos, targets, request, report) -> int:
    from facegen.pipelines.edit_files import save_photo
    from facegen.pipelines.own_photo import check_align_inputs, edit_photo_aligned

    check_align_inputs(photos)
    failures = 0
    for photo, target in zip(photos, targets):
        try:
            result, n_faces, sources = edit_photo_aligned(pipe, photo, request, flip=args.flip,
                                                          extrapolate=args.extrapolate, face=args.face,
                                                          detector=args.detector)
        except FacegenError as error:
            if len(photos) == 1:
                raise
            report(f"skipped {error}")
            failures += 1
            continue
        save_photo(result, target, unchanged_from=None if request or args.flip or pipe.redraw else photo)
        print(f"edited {n_faces} face{'s' * (n_faces != 1)} of {photo} into {target} at {result.size[0]}x{result.size[1]} "
              f"(own values from {sources[0]})")
    return 2 if failures else 0


def sweep(args: argparse.Namespace) -> int:
    from pathlib import Path

    from facegen.attributes import parse_attribute_list
    from facegen.files import save_image
    from facegen.pipelines.edit import ALIGNMENT_NOTE, EditPipeline
    from facegen.pipelines.output import check_writable

    check_writable(args.output, None, inputs=[Path(args.photo)])
    pipe = EditPipeline.from_pretrained(args.model, classifier=args.classifier, redraw=args.redraw)
    names = [token for text in args.attr for token in text.replace(";", ",").split(",") if token.strip()]
    parse_attribute_list(names, pipe.attribute_names)  # unknown names fail here with suggestions
    source, where = pipe.photo_attributes(args.photo)
    grid = pipe.sweep(args.photo, names, steps=args.steps, low=args.low, high=args.high, extrapolate=args.extrapolate,
                      source_attributes=source)
    save_image(grid, args.output)
    print(f"facegen: own attribute values from {where[0]}", file=sys.stderr)
    print(f"wrote {args.output}: {len(names)} row(s) of the photo then {args.steps} steps from {args.low:g} to "
          f"{args.high:g} ({ALIGNMENT_NOTE})")
    return 0
