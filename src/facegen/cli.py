"""The `facegen` command: parse arguments, call the library, print.

    facegen data info ../shared/data/celeba-9k
    facegen prepare ../shared/data/celeba-9k --size 64 --out cache/celeba9k-64
    facegen train cgan --data cache/celeba9k-64 --attrs young,male,blond --out runs/cgan
    facegen generate young=1 blond=1 male=0 attractive=1 -n 16 --seed 0 -o faces.png
    facegen edit photo.jpg male=0 young=0.3 -o out.png
    facegen sweep photo.jpg --attr male --steps 8 -o strip.png

Every error a user can cause is a `FacegenError`: one line on stderr, exit 2.
The handlers live in commands.py; heavy libraries are imported inside them so
`--help` stays fast.
"""

from __future__ import annotations

import argparse
import sys

from facegen import __version__, commands
from facegen.errors import FacegenError
from facegen.kinds import DEFAULT_MODELS, KINDS, all_presets, either, names
from facegen.training.defaults import DEFAULTS as D
from facegen.validation import MAX_COUNT, MAX_SIZE, SEED, float_type, int_type


class _Parser(argparse.ArgumentParser):
    """argparse that exits with 2 and one line, like every other user error."""

    def error(self, message: str) -> None:  # noqa: D102 - argparse API
        raise FacegenError(f"{self.prog}: {message} (see --help)")


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    editors, redrawers = names(can="edit"), either(names(can="edit", encoder_decoder=True))  # for the help texts
    parser = _Parser(prog="facegen", description=__doc__.split("\n\n")[0],
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"facegen {__version__}")
    subcommands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    subcommands.required = True
    parser.commands = subcommands.choices  # {name: its parser}, for `parse` (argparse keeps its own list private)

    data = subcommands.add_parser("data", help="inspect a data set")
    data_commands = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND", parser_class=_Parser)
    data_commands.required = True
    info = data_commands.add_parser("info", help="layout, split counts and attribute frequencies of a data set")
    info.add_argument("data", help="a CelebA folder (any of its layouts), a custom image folder with a CSV, or a cache")
    info.set_defaults(handler=commands.data_info)

    prepare = subcommands.add_parser("prepare", help="decode, crop and resize a data set once into a cache for training")
    prepare.add_argument("data", help="a CelebA folder (any of its layouts) or a custom image folder with a CSV")
    prepare.add_argument("--size", type=int_type(1, MAX_SIZE), default=64, help="side of the square images in pixels (default 64)")
    prepare.add_argument("--out", required=True, help="folder for the cache")
    prepare.add_argument("--workers", type=int_type(1, 1024), default=None, help="decoding processes (default: all cores)")
    prepare.add_argument("--force", action="store_true", help="rebuild even if a valid cache for this input exists")
    prepare.add_argument("--quiet", action="store_true", help="no progress bar")
    prepare.set_defaults(handler=commands.prepare)

    train = subcommands.add_parser("train", help=f"train a model ({either(KINDS)})")
    train.add_argument("model", choices=tuple(KINDS))
    train.add_argument("--data", help="a cache from `facegen prepare`, or a data set folder (cached on first use)")
    train.add_argument("--attrs", help="attributes to condition on, e.g. young,male,blond,smiling (or all)")
    train.add_argument("--out", help="run folder (new, or the run being resumed)")
    train.add_argument("--resume", help="continue a run from its folder or checkpoints/last.pt")
    train.add_argument("--init-from", metavar="RUN",
                       help="start a new run from another run's weights, or from an exported model such as the "
                            "shipped `cgan` (same model and sizes; fresh optimizers, step 0, this run's --set "
                            "settings; a GAN's discriminator starts anew when the model has none)")
    train.add_argument("--size", type=int_type(1, MAX_SIZE), help=f"image side in pixels (default {D['size']})")
    train.add_argument("--steps", type=int_type(1, MAX_COUNT), help=f"total training steps (default {D['steps']})")
    train.add_argument("--batch-size", type=int_type(1, 65536), help=f"images per step over all devices (default {D['batch_size']})")
    train.add_argument("--seed", type=SEED, help=f"seed of initialisation, data order and noise (default {D['seed']})")
    train.add_argument("--preset", choices=all_presets(),
                       help="the architecture and loss of the model's recipe: "
                            + "; ".join(f"{k.name} {', '.join(k.presets)}" for k in KINDS.values() if k.presets))
    train.add_argument("--set", action="append", metavar="KEY=VALUE",
                       help="a setting of the model's recipe, e.g. --set lr_g=1e-4 (repeatable)")
    train.add_argument("--log-every", type=int_type(1, MAX_COUNT), help=f"steps between log lines (default {D['log_every']})")
    train.add_argument("--sample-every", type=int_type(1, MAX_COUNT), help=f"steps between sample grids (default {D['sample_every']})")
    train.add_argument("--checkpoint-every", type=int_type(1, MAX_COUNT),
                       help=f"steps between checkpoints (default {D['checkpoint_every']})")
    train.add_argument("--max-minutes", type=float_type(0, 1e7, open_low=True), help="stop with a checkpoint after this many minutes")
    scale = train.add_argument_group("devices (Lightning Fabric; see docs/scaling.md)")
    scale.add_argument("--accelerator", help=f"cpu, cuda, mps or auto (default {D['accelerator']})")
    scale.add_argument("--devices", help="devices (processes) per node: a number, a list like 0,1 or auto "
                                         f"(default {D['devices']}); "
                                         "with more than one, facegen starts the other processes itself")
    scale.add_argument("--num-nodes", type=int_type(1, 1024),
                       help=f"machines, when launched by torchrun, fabric run or srun (default {D['num_nodes']})")
    scale.add_argument("--strategy", help=f"auto or ddp (default {D['strategy']}, which is ddp on several devices)")
    scale.add_argument("--precision", help=f"32-true, bf16-mixed or 16-mixed (GPU only) (default {D['precision']})")
    scale.add_argument("--threads", type=int_type(1, 256), help="CPU threads per process")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.set_defaults(handler=commands.train)

    generate = subcommands.add_parser("generate", help="make faces with the attributes you ask for")
    generate.add_argument("attributes", nargs="*", metavar="NAME=VALUE",
                          help="e.g. young=1 blond=1 male=0 attractive=1 (values in [0, 1]); unnamed ones follow the data")
    generate.add_argument("--attributes-file", help="a YAML or JSON file of name: value pairs")
    generate.add_argument("--model", default=DEFAULT_MODELS["generate"],
                          help=f"a shipped model ({', '.join(names(can='generate'))}) or a model folder "
                               f"(default {DEFAULT_MODELS['generate']})")
    generate.add_argument("-n", type=int, default=16, help="number of faces (default 16)")
    generate.add_argument("--seed", type=SEED, default=0, help="the same seed gives the same faces (default 0)")
    generate.add_argument("-o", "--output", default="faces.png", help="grid image to write (default faces.png)")
    generate.add_argument("--out-dir", help="write one PNG per face into this folder instead of a grid")
    generate.add_argument("--nrow", type=int_type(1, MAX_COUNT), help="faces per row of the grid (default 8)")
    generate.add_argument("--extrapolate", action="store_true", help="allow values beyond [0, 1] (up to -3..4)")
    generate.add_argument("--z-prior", choices=("fitted", "normal"),
                          help="where the noise z comes from: the model's fitted prior (the cvae ships one) or "
                               "N(0, I) (default: fitted where the model has one)")
    generate.add_argument("--temperature", type=float_type(0, 10, open_low=True),
                          help="scale of z's spread around the prior's centres (default: the prior's own; 1 for N(0, I))")
    generate.set_defaults(handler=commands.generate)

    evaluate = subcommands.add_parser("evaluate", help="measure a model: attribute control, FID/KID, edits, reconstruction")
    evaluate.add_argument("--model", required=True, help="a shipped model or a model folder")
    evaluate.add_argument("--data", required=True, help="a cache (facegen prepare) at the model's size; its validation split is used")
    evaluate.add_argument("--classifier", default=DEFAULT_MODELS["classify"],
                          help="the attribute classifier that judges (default: shipped)")
    evaluate.add_argument("--metrics", help="comma list of accuracy,control,fid,edit (default: all the model supports; "
                                            "control and fid measure cgan and cvae, edit fader and cvae)")
    evaluate.add_argument("--decision", "--judge", dest="decision", choices=("plain", "balanced"), default="plain",
                          help="how the judge (the classifier) decides: plain (default; prob > 0.5) or balanced (its training "
                               "priors taken out; see docs/notes/classifier.md for why it is not the default)")
    evaluate.add_argument("--redraw", action="store_true",
                          help=f"{redrawers}: measure the model's own decodes (and their reconstruction) instead "
                               "of the changes they apply to a photo")
    evaluate.add_argument("--n-fid", type=int_type(2, 10**6), default=2000, help="generated faces for FID/KID (default 2000)")
    evaluate.add_argument("--n-per-value", type=int_type(1, 10**6), default=200, help="faces per attribute value for control (default 200)")
    evaluate.add_argument("--n-edit", type=int_type(1, 10**7), default=500, help="validation faces to edit (default 500)")
    evaluate.add_argument("--n-identity", type=int_type(0, 10**7), default=100,
                          help="edited faces per attribute for the dlib identity distance (default 100; ~0.1 s each; 0: none)")
    evaluate.add_argument("--seed", type=SEED, default=0)
    evaluate.add_argument("--out", default="runs/eval", help="folder for metrics.jsonl (default runs/eval)")
    evaluate.add_argument("--label", help="the model's name in the records (default: --model)")
    evaluate.add_argument("--quiet", action="store_true", help="no progress bars")
    evaluate.set_defaults(handler=commands.evaluate)

    serve = subcommands.add_parser("serve", help="the browser app: generate faces with sliders, edit a photo")
    serve.add_argument("--model", action="append", metavar="PATH",
                       help="also offer this model folder, or use it as the attribute classifier "
                            "for photos (repeatable); the shipped models are always offered")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 opens it to the network)")
    serve.add_argument("--port", type=int, default=7860, help="port to listen on (default 7860)")
    serve.add_argument("--share", action="store_true", help="also publish a temporary public link through Gradio")
    serve.add_argument("--queue-size", type=int, default=64,
                       help="requests that may wait; the next one is told the queue is full (default 64)")
    serve.add_argument("--concurrency", type=int, default=2, help="model calls at once (default 2)")
    serve.add_argument("--threads", type=int, default=1, help="torch threads per model call (default 1)")
    serve.set_defaults(handler=commands.serve)

    edit = subcommands.add_parser("edit", help="change the attributes of face photos, at their own resolution",
                               description="Edit face photos framed like CelebA's aligned images (centred, eyes "
                                           "level; any size). The model looks at the centre square and its change "
                                           "is added to the photo at the photo's own resolution; with nothing asked "
                                           "the photo comes back unchanged. Attributes you do not name "
                                           "keep the photo's own values: its CelebA labels when it comes from a "
                                           "CelebA folder, else the attribute classifier's reading.")
    edit.add_argument("inputs", nargs="+", metavar="PHOTO|NAME=VALUE",
                      help="photos or folders of photos, and attribute values, e.g. photo.jpg male=0 young=0.3")
    edit.add_argument("--flip", action="append", metavar="ATTR",
                      help="set this attribute to the opposite of each photo's own value (repeatable)")
    edit.add_argument("--attributes-file", help="a YAML or JSON file of name: value pairs")
    edit.add_argument("--model", default=DEFAULT_MODELS["edit"],
                      help=f"a shipped model ({', '.join(editors)}) or a model folder (default {DEFAULT_MODELS['edit']})")
    edit.add_argument("--redraw", action="store_true",
                      help=f"{redrawers}: return the model's own decode at its size (the 2018 study's way) instead "
                           "of applying the change to the photo")
    edit.add_argument("--classifier", help="attribute classifier that reads a photo's own values (default: shipped)")
    edit.add_argument("-o", "--output", default="edited.png", help="output image for one photo (default edited.png)")
    edit.add_argument("--out-dir", help="folder for many photos: one output per input, same file name")
    edit.add_argument("--batch-size", type=int_type(1, 4096), default=64, help="photos per batch (default 64)")
    edit.add_argument("--extrapolate", action="store_true", help="allow values beyond [0, 1] (up to -3..4)")
    edit.add_argument("--align", action="store_true",
                      help="any photo: find the faces (dlib), align each like CelebA, edit, paste back at full size")
    edit.add_argument("--face", type=int_type(0, 10_000), help="with --align: only face N (0 = leftmost; default all)")
    edit.add_argument("--detector", choices=("hog", "cnn"), default="hog",
                      help="with --align: dlib's fast HOG detector or its slower, more thorough CNN (default hog)")
    edit.set_defaults(handler=commands.edit)

    sweep = subcommands.add_parser("sweep", help="one photo across the range of one or more attribute faders",
                                description="The Fader Networks figure: the photo, then STEPS edits with the "
                                            "attribute going from LOW to HIGH; one row per attribute. The face must "
                                            "be framed like CelebA's aligned images.")
    sweep.add_argument("photo", help="a face photo in CelebA framing")
    sweep.add_argument("--attr", action="append", required=True, metavar="ATTR",
                       help="attribute to sweep, e.g. --attr male --attr smiling or --attr male,smiling")
    sweep.add_argument("--steps", type=int_type(2, 64), default=8, help="edits per row (default 8)")
    sweep.add_argument("--low", type=float_type(-1e6, 1e6), default=0.0, help="first value (default 0)")
    sweep.add_argument("--high", type=float_type(-1e6, 1e6), default=1.0, help="last value (default 1)")
    sweep.add_argument("--model", default=DEFAULT_MODELS["edit"],
                       help=f"a shipped model ({', '.join(editors)}) or a model folder (default {DEFAULT_MODELS['edit']})")
    sweep.add_argument("--redraw", action="store_true", help=f"{redrawers}: show the model's decodes (see edit --redraw)")
    sweep.add_argument("--classifier", help="attribute classifier that reads the photo's own values (default: shipped)")
    sweep.add_argument("-o", "--output", default="sweep.png", help="grid image to write (default sweep.png)")
    sweep.add_argument("--extrapolate", action="store_true", help="allow --low/--high beyond [0, 1] (up to -3..4)")
    sweep.set_defaults(handler=commands.sweep)

    return parser


# Commands whose free-form tokens (photos, NAME=VALUE) may stand between flags: `edit photo.jpg --align male=0`.
_INTERMIXED = ("generate", "edit")


def parse(argv: list[str]) -> argparse.Namespace:
    parser = build_parser()
    if argv and argv[0] in _INTERMIXED and not {"-h", "--help"} & set(argv):
        return parser.commands[argv[0]].parse_intermixed_args(argv[1:])
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse(list(sys.argv[1:] if argv is None else argv))
        return args.handler(args)
    except FacegenError as error:
        print(f"facegen: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("facegen: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `facegen data info X | head`: the reader left; not an error of ours
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    raise SystemExit(main())
