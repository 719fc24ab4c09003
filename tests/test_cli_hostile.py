"""Hostile input never produces a traceback: well over 150 bad command lines through the real CLI.

Each case is a command line and the exit code it must end with: 2 for a refusal (one line on stderr that
starts `facegen: error:`), 0 for odd but valid input. Any exception escaping `main`, or any other exit
code, fails the test. The inputs are made here: photos of every bad kind, configs of every bad shape,
damaged and crafted checkpoints, numbers out of range, outputs the system will not write.
"""

from __future__ import annotations

import os
import subprocess
import sys
import traceback
from pathlib import Path

import pytest

from conftest import FIXTURES, REPO, TINY
from hostile_inputs import broken_checkpoints, broken_models, make_models, make_photos

GOOD_PHOTO = FIXTURES / "official" / "img_align_celeba" / "000001.jpg"
LONG = "x" * 300
SEED_OVERFLOW = "1180591620717411303424"


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_cache):
    from facegen.cli import main

    from facegen.data import prepare_cache

    root = tmp_path_factory.mktemp("hostile")
    models = make_models(root / "models")
    for name, source, size in (("cache32", "official", 32), ("custom16", "custom", 16)):  # wrong size; no Young
        prepare_cache(FIXTURES / source, size=size, out=root / name, workers=1, progress=False)
    run = root / "run"
    assert main(["train", "cgan", "--data", str(tiny_cache), "--out", str(run), "--attrs", "young,male",
                 "--steps", "2", "--batch-size", "4", "--checkpoint-every", "1", "--no-progress", "--threads", "1",
                 *TINY["cgan"]]) == 0
    return {"root": root, "models": models, "run": run, "cache": tiny_cache,
            "broken": broken_models(models["cgan"], root / "broken"),
            "photos": make_photos(root / "photos", GOOD_PHOTO),
            "checkpoints": broken_checkpoints(run, root / "checkpoints"), "mine": _my_photo(root / "mine")}


def _my_photo(folder: Path) -> Path:
    """A photo the user owns: no command may overwrite it."""
    folder.mkdir()
    (folder / "me.jpg").write_bytes(GOOD_PHOTO.read_bytes())
    return folder / "me.jpg"


def corpus(w) -> list[tuple[str, list, int]]:
    """(name, argv, expected exit code) for every hostile input."""
    root, m, cache, run = w["root"], w["models"], w["cache"], w["run"]
    out = root / "out"
    out.mkdir(exist_ok=True)
    gen = ["generate", "--model", m["cgan"]]
    edit = ["edit", "--model", m["fader"], "--classifier", m["classifier"]]
    sweep = ["sweep", GOOD_PHOTO, "--attr", "male", "--model", m["fader"], "--classifier", m["classifier"]]
    ev = ["evaluate", "--data", cache, "--classifier", m["classifier"], "--quiet", "--out", out / "eval"]
    new = ["train", "cgan", "--data", cache, "--attrs", "young,male", "--steps", 2, "--batch-size", 4, "--no-progress",
           "--threads", 1, *TINY["cgan"]]
    cases: list[tuple[str, list, int]] = []

    def add(name, argv, code=2):
        taken = {case[0] for case in cases}
        cases.append((name if name not in taken else f"{name}-{len(cases)}", argv, code))

    # Photos of every bad kind (and odd but valid ones) through `facegen edit`.
    for name, (photo, code) in w["photos"].items():
        add(f"edit-photo-{name}", [*edit, photo, "male=1", "-o", out / f"edit-{name}.png"], code)
    add("sweep-photo-1x1", [*sweep[:1], w["photos"]["1x1.png"][0], *sweep[2:], "-o", out / "s.png"])
    add("sweep-photo-text", [*sweep[:1], w["photos"]["text.jpg"][0], *sweep[2:], "-o", out / "s.png"])
    # Model folders of every bad shape, through each command that reads one.
    for name, folder in w["broken"].items():
        add(f"generate-model-{name}", [*gen[:1], "--model", folder, "-o", out / "g.png"])
    for name in ("no-model", "width-huge", "names-string", "config-deep", "weights-pickle", "n-attributes-wrong"):
        folder = w["broken"][name]
        add(f"edit-model-{name}", ["edit", GOOD_PHOTO, "male=1", "--model", folder, "-o", out / "e.png"])
        add(f"edit-classifier-{name}", [*edit, w["photos"]["16x16.png"][0], "male=1", "--classifier", folder,
                                        "-o", out / "e.png"])
        add(f"evaluate-model-{name}", ["evaluate", "--model", folder, *ev[1:]])
        add(f"serve-model-{name}", ["serve", "--model", folder, "--port", 1])
    add("edit-model-is-a-classifier", ["edit", GOOD_PHOTO, "male=1", "--model", m["classifier"], "-o", out / "e.png"])
    add("generate-model-is-a-fader", [*gen[:1], "--model", m["fader"], "-o", out / "g.png"])
    add("evaluate-classifier-is-a-cgan", [*ev, "--model", m["cgan"], "--classifier", m["cgan"]])
    # Numbers out of range and options of the wrong kind.
    for value in (SEED_OVERFLOW, "-1", "abc", "1.5", str(2**64)):
        add(f"generate-seed-{value[:8]}", [*gen, "--seed", value, "-o", out / "g.png"])
        add(f"train-seed-{value[:8]}", [*new, "--seed", value, "--out", out / f"t-seed{value[:8]}"])
        add(f"evaluate-seed-{value[:8]}", [*ev, "--model", m["cgan"], "--seed", value])
    for flag, values in {"-n": ["0", "-3", "100000", "abc", SEED_OVERFLOW], "--nrow": ["0", "-1", "x"]}.items():
        for value in values:
            add(f"generate{flag}-{value[:8]}", [*gen, flag, value, "-o", out / "g.png"])
    for request in ("young=abc", "young=nan", "young=inf", "young=1e309", "=1", "young==1", "wizard=1", "young=2",
                    "young=1 young=0", "ÿ=1", "young:", ",,,", "young=-0.5", "a" * 5000 + "=1"):
        add(f"generate-request-{request[:12]}", [*gen, request, "-o", out / "g.png"])
    for flag, value in [("--steps", "0"), ("--steps", "-1"), ("--steps", SEED_OVERFLOW), ("--batch-size", "0"),
                        ("--batch-size", "100000"), ("--batch-size", "7"), ("--size", "48"), ("--size", "0"),
                        ("--size", "99999999999"), ("--log-every", "0"), ("--sample-every", "-2"),
                        ("--checkpoint-every", "abc"), ("--max-minutes", "nan"), ("--max-minutes", "-1"),
                        ("--max-minutes", "inf"), ("--threads", "0"), ("--threads", "100000"), ("--num-nodes", "0"),
                        ("--devices", "abc"), ("--devices", "0"), ("--precision", "8-bit"), ("--strategy", "fsdp"),
                        ("--accelerator", "abacus"), ("--attrs", "wizard"), ("--attrs", ",,,"),
                        ("--data", root / "missing"), ("--data", GOOD_PHOTO)]:
        argv = [*new, flag, value, "--out", out / f"t{flag}{len(cases)}"]
        add(f"train{flag}-{str(value)[:12]}", argv)
    for setting in ("lr_g=abc", "lr_g=-1", "lr_g=nan", "lr_g=1e999", "lr_g=[1]", "g_channels=10000000",
                    "g_channels=-4", "g_channels=1.5", "z_dim=0", "betas=[2]", "betas=abc", "betas=[]",
                    "augment=bogus", "augment=5", "preset=zzz", "balance=7", "nonsense=1", "=3", "lr_g",
                    "ema_kimg=-1", "aux_weight=true"):
        add(f"train-set-{setting[:14]}", [*new, "--set", setting, "--out", out / f"tset{len(cases)}"])
    add("train-preset-study-huge", [*new, "--preset", "study2018", "--set", "g_channels=99999",
                                    "--out", out / "tstudy"])
    for flag, value in [("--n-fid", "0"), ("--n-fid", "1"), ("--n-fid", "-5"), ("--n-per-value", "0"),
                        ("--n-edit", "-1"), ("--n-identity", "-1"), ("--n-fid", SEED_OVERFLOW),
                        ("--metrics", "bogus"), ("--metrics", ","), ("--metrics", "edit,nope"), ("--metrics", "fid,edits"),
                        ("--metrics", "accuracy,nope"), ("--judge", "strict")]:
        add(f"evaluate-cgan{flag}-{value[:10]}", [*ev, "--model", m["cgan"], flag, value])
    add("evaluate-fader-metrics-fid", [*ev, "--model", m["fader"], "--metrics", "fid"])
    add("evaluate-fader-metrics-control", [*ev, "--model", m["fader"], "--metrics", "control"])
    add("evaluate-cache-wrong-size", ["evaluate", "--model", m["cgan"], "--data", root / "cache32", *ev[3:]])
    add("evaluate-fader-cache-wrong-size", ["evaluate", "--model", m["fader"], "--data", root / "cache32", *ev[3:]])
    add("evaluate-cache-without-attributes", ["evaluate", "--model", m["cgan"], "--data", root / "custom16", *ev[3:]])
    add("train-cache-without-attributes", [*new[:2], "--data", root / "custom16", *new[4:], "--out", out / "tc"])
    add("generate-resume-as-model", [*gen[:1], "--model", run / "checkpoints" / "last.pt", "-o", out / "g.png"])
    add("evaluate-cache-missing", ["evaluate", "--model", m["cgan"], "--data", root / "nocache", *ev[3:]])
    add("evaluate-cache-is-photo", ["evaluate", "--model", m["cgan"], "--data", GOOD_PHOTO, *ev[3:]])
    for flag, value in [("--steps", "1"), ("--steps", "65"), ("--steps", "abc"), ("--low", "nan"),
                        ("--high", "inf"), ("--low", "5"), ("--high", "-2"), ("--attr", "wizard"), ("--attr", ",")]:
        attr = [] if flag == "--attr" else ["--attr", "male"]
        add(f"sweep{flag}-{value}", [*sweep[:2], *sweep[4:], *attr, flag, value, "-o", out / "s.png"])
    for flag, value in [("--batch-size", "0"), ("--batch-size", "-1"), ("--face", "-1"), ("--face", "abc"),
                        ("--flip", "wizard"), ("--detector", "eyeball"), ("--attributes-file", root / "none.yaml")]:
        add(f"edit{flag}-{str(value)[-10:]}", [*edit, GOOD_PHOTO, flag, value, "-o", out / "e.png"])
    add("edit-flip-and-set", [*edit, GOOD_PHOTO, "male=1", "--flip", "male", "-o", out / "e.png"])
    for flag, value in [("--port", "0"), ("--port", "70000"), ("--port", "abc"), ("--queue-size", "0"),
                        ("--concurrency", "0"), ("--threads", "-1"), ("--concurrency", SEED_OVERFLOW)]:
        add(f"serve{flag}-{value[:8]}", ["serve", flag, value, "--model", m["cgan"]])
    for argv in (["prepare", FIXTURES / "official", "--size", "0", "--out", out / "p"],
                 ["prepare", FIXTURES / "official", "--size", "-64", "--out", out / "p"],
                 ["prepare", FIXTURES / "official", "--workers", "0", "--out", out / "p"],
                 ["prepare", root / "missing", "--out", out / "p"], ["data", "info", root / "missing"],
                 ["data", "info", GOOD_PHOTO], ["data"], ["frobnicate"], [], ["generate", "--bogus-flag"],
                 ["train"], ["train", "gan"], ["train", "cgan"], ["evaluate"]):
        add(f"misc-{'-'.join(str(a)[-10:] for a in argv[:2]) or 'empty'}", argv)
    # Outputs the system will not write: names too long, paths it refuses, folders given as files.
    refused = {"long-name": out / f"{LONG}.png", "proc": Path("/proc/facegen-test.png"),
               "dev-null-dir": Path("/dev/null/faces.png"), "sys": Path("/sys/facegen.png"),
               "folder": out, "no-folder": out / "missing" / "x.png", "long-folder": out / LONG / "x.png",
               "sidecar-too-long": out / ("y" * 252 + ".png"), "bad-suffix": out / "faces.gif.txt"}
    for name, target in refused.items():
        add(f"generate-o-{name}", [*gen, "-n", 1, "-o", target])
        add(f"edit-o-{name}", [*edit, GOOD_PHOTO, "male=1", "-o", target])
        add(f"sweep-o-{name}", [*sweep, "-o", target])
    mine = w["mine"]
    for name, folder in {"long": out / LONG, "proc": Path("/proc/facegen-out"), "file": mine,
                         "under-file": mine / "sub"}.items():
        add(f"generate-out-dir-{name}", [*gen, "-n", 1, "--out-dir", folder])
        add(f"edit-out-dir-{name}", [*edit, mine, "male=1", "--out-dir", folder])
        add(f"evaluate-out-{name}", [*ev[:-2], "--model", m["cgan"], "--metrics", "accuracy", "--out", folder])
        add(f"train-out-{name}", [*new, "--out", folder])
        add(f"prepare-out-{name}", ["prepare", FIXTURES / "official", "--size", 16, "--quiet", "--out", folder])
    add("prepare-out-name-fits-but-not-its-temporary", ["prepare", FIXTURES / "official", "--size", 16, "--quiet",
                                                        "--out", out / ("p" * 250)])
    add("prepare-out-sys", ["prepare", FIXTURES / "official", "--size", 16, "--quiet", "--out", "/sys/facegen"])
    add("edit-o-is-input", [*edit, mine, "male=1", "-o", mine])
    add("edit-out-dir-holds-input", [*edit, mine, "male=1", "--out-dir", mine.parent])
    add("train-out-holds-photos", [*new, "--out", mine.parent])
    # Checkpoints: damaged, crafted, and well-formed but wrong, for --resume and --init-from.
    for name, path in w["checkpoints"].items():
        add(f"resume-{name}", ["train", "cgan", "--resume", path.parent.parent, "--steps", 4, "--no-progress"])
        add(f"init-from-{name}", [*new, "--init-from", path, "--out", out / f"init-{name}"])
    add("resume-missing", ["train", "cgan", "--resume", root / "nothing", "--steps", 4])
    add("resume-a-photo", ["train", "cgan", "--resume", GOOD_PHOTO, "--steps", 4])
    add("resume-wrong-model", ["train", "fader", "--resume", run, "--steps", 4])
    add("resume-already-done", ["train", "cgan", "--resume", run, "--steps", 2])
    add("resume-change-size", ["train", "cgan", "--resume", run, "--steps", 4, "--size", 32])
    # Odd but valid: these must work (exit 0).
    add("ok-generate-max-seed", [*gen, "-n", 2, "--seed", 2**63 - 1, "-o", out / "ok.png"], 0)
    add("ok-generate-out-dir", [*gen, "-n", 2, "--out-dir", out / "faces"], 0)
    add("ok-generate-name-255-bytes", [*gen, "-n", 1, "-o", out / ("z" * 250 + ".png")], 0)
    add("ok-edit-extrapolate", [*edit, GOOD_PHOTO, "male=3.5", "--extrapolate", "-o", out / "ok-e.jpg"], 0)
    add("ok-evaluate-accuracy", [*ev, "--model", m["fader"], "--metrics", "accuracy"], 0)
    add("ok-evaluate-edit", [*ev, "--model", m["fader"], "--metrics", "edit", "--n-edit", 2, "--n-identity", 0], 0)
    add("ok-evaluate-control", [*ev, "--model", m["cgan"], "--metrics", "control", "--n-per-value", 1], 0)
    add("ok-version", ["--version"], 0)
    add("ok-help", ["generate", "--help"], 0)
    return cases


def _run(argv: list, capsys) -> tuple[int | None, str, str | None]:
    """(exit code, stderr, traceback or None) of one in-process CLI call."""
    from facegen.cli import main

    try:
        code = main([str(a) for a in argv])
    except SystemExit as stop:  # argparse's --help and --version
        code = stop.code if isinstance(stop.code, int) else 0
    except BaseException:  # noqa: BLE001 - exactly what this test hunts
        return None, capsys.readouterr().err, traceback.format_exc()
    return code, capsys.readouterr().err, None


def test_the_hostile_corpus_never_ends_in_a_traceback(world, capsys, monkeypatch, tmp_path):
    import facegen.web.catalog  # imported now, so that it keeps the real SHIPPED_DIR once this test is over

    for module in ("facegen.pretrained", "facegen.web.catalog"):  # the same on every machine
        monkeypatch.setattr(f"{module}.SHIPPED_DIR", tmp_path / "no-weights")
    monkeypatch.chdir(tmp_path)
    cases = corpus(world)
    assert len(cases) >= 150 and len({name for name, _, _ in cases}) == len(cases)
    failures, counts = [], {0: 0, 2: 0}
    for name, argv, expected in cases:
        code, err, trace = _run(argv, capsys)
        lines = [line for line in err.splitlines() if line.strip()]
        if trace is not None:
            failures.append(f"{name}: traceback\n{trace}")
        elif code != expected:
            failures.append(f"{name}: exit {code}, expected {expected}: {err.strip()[-300:]}")
        elif code == 2 and not (lines and lines[-1].startswith("facegen: error: ") and "Traceback" not in err):
            failures.append(f"{name}: refusal is not one 'facegen: error:' line: {err!r}")
        else:
            counts[code] += 1
    print(f"hostile corpus: {len(cases)} inputs, {counts[2]} refused cleanly (exit 2), {counts[0]} accepted "
          f"(exit 0), {sum('traceback' in f for f in failures)} tracebacks")
    assert not failures, "\n".join(failures)
    # Nothing the user owns was touched: the photo, the run's finished checkpoints.
    assert world["mine"].read_bytes() == GOOD_PHOTO.read_bytes() and sorted(world["mine"].parent.iterdir()) == [
        world["mine"]]
    assert (world["run"] / "checkpoints" / "last.pt").is_file()


@pytest.mark.parametrize("case", ["seed", "config", "output", "checkpoint"])
def test_no_traceback_reaches_the_terminal(world, case, tmp_path):
    """A few of the corpus through a real process: stderr holds one line, never a traceback."""
    argv = {"seed": ["generate", "--model", world["models"]["cgan"], "--seed", SEED_OVERFLOW],
            "config": ["generate", "--model", world["broken"]["width-huge"], "-o", tmp_path / "g.png"],
            "output": ["generate", "--model", world["models"]["cgan"], "-n", 1, "-o", tmp_path / f"{LONG}.png"],
            "checkpoint": ["train", "cgan", "--resume", world["checkpoints"]["ckpt-code"].parent.parent,
                           "--steps", 4]}[case]
    env = os.environ | {"PYTHONPATH": str(REPO / "src")}
    done = subprocess.run([sys.executable, "-m", "facegen", *map(str, argv)], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "pwned" not in done.stdout + done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and done.stderr.startswith("facegen: error: "), done.stderr


def test_the_validation_and_registry_doctests_run():
    import doctest

    from facegen import validation
    from facegen.evaluation import registry

    for module in (validation, registry):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__
