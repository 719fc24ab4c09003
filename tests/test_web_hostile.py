"""The app under hostile input: seeds out of range, errors read plainly through the API, a clean SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from conftest import REPO
from facegen.errors import FacegenError

pytest.importorskip("gradio")


@pytest.mark.parametrize("seed", [10**22, -1, float("nan"), float("inf"), "abc", 1.5, None, [3]])
def test_a_seed_out_of_range_is_a_message_not_a_traceback(seed):
    from facegen.web.faces import whole_number

    if seed is None:  # an empty number box means 0
        assert whole_number(seed or 0, "the seed", 0, 2**63 - 1) == 0
        return
    with pytest.raises(FacegenError, match="the seed must be a whole number"):
        whole_number(seed, "the seed", 0, 2**63 - 1)


def test_generate_faces_refuses_a_seed_torch_cannot_take():
    import torch

    from facegen.web.faces import generate_faces

    class Pipe:  # only reached if the seed were accepted
        attribute_names = ["Young"]

        def sample(self, y, generator, temperature=None):
            return torch.zeros(len(y), 3, 16, 16)

    with pytest.raises(FacegenError, match="seed"):
        generate_faces(Pipe(), {}, seed=1180591620717411303424, count=1)
    assert generate_faces(Pipe(), {}, seed=2**63 - 1, count=2).shape == (2, 3, 16, 16)


def test_errors_reach_the_page_with_apostrophes_but_no_markup():
    import gradio as gr

    from facegen.web.ui import user_errors

    @user_errors
    def fail():
        raise FacegenError("model 'bogus' can't generate here; <b>choose</b> another")

    with pytest.raises(gr.Error) as caught:
        fail()
    assert caught.value.message == "model 'bogus' can't generate here; &lt;b&gt;choose&lt;/b&gt; another"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_sigterm_removes_the_apps_temporary_folder_and_names_share(tmp_path):
    from hostile_inputs import make_models

    model = make_models(tmp_path / "models")["cgan"]
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = os.environ | {"PYTHONPATH": str(REPO / "src"), "TMPDIR": str(temp), "GRADIO_ANALYTICS_ENABLED": "False"}
    command = [sys.executable, "-m", "facegen", "serve", "--model", str(model), "--port", str(_free_port())]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            lines.append(line)
            if "running at" in line or not line:
                break
        assert "running at" in lines[-1], "".join(lines)
        assert list(temp.glob("facegen-web-*")), "the app made no temporary folder"
        process.send_signal(signal.SIGTERM)
        rest, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    output = "".join(lines) + rest
    assert "--share" in output and "share=True" not in output and "Traceback" not in output
    assert not list(temp.glob("facegen-web-*")), output
