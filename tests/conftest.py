"""Shared fixtures: paths, the optional real data, and a tiny cache that tiny models train on in seconds."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"
SHARED_DATA = REPO.parent / "shared" / "data"

# Data, not tests: collecting fixtures/make_fixtures.py for doctests would put fixtures/ on sys.path, and its
# torchvision/ folder (a CelebA layout) would then shadow the real torchvision package.
collect_ignore = ["fixtures"]

# Settings that make every model tiny, so a training test takes seconds.
TINY = {
    "cgan": ["--set", "g_channels=32", "--set", "d_channels=32"],
    "classifier": ["--set", "channels=8"],
}


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory) -> Path:
    """The six-image official-layout fixture at 16x16, as a training cache."""
    from facegen.data import prepare_cache

    out = tmp_path_factory.mktemp("cache") / "tiny16"
    prepare_cache(FIXTURES / "official", size=16, out=out, workers=1, progress=False)
    return out


@pytest.fixture
def celeba9k() -> Path:
    path = SHARED_DATA / "celeba-9k"
    if not (path / "list_attr_celeba.txt").is_file():
        pytest.skip(f"needs the CelebA sample at {path} (absent on this machine)")
    return path


def logged_losses(run: Path) -> list[dict]:
    """A run's stats.jsonl rows without the timing columns: what a bit-for-bit resume must reproduce."""
    import json

    rows = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k not in ("seconds", "images_per_second")} for row in rows]


def run_cli(*args: str) -> int:
    """Call the CLI in-process, the way a user's shell would, and return its exit code."""
    from facegen.cli import main

    return main([str(a) for a in args])
