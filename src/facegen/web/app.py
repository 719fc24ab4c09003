"""The browser app behind `facegen serve`: two tabs, Generate and Edit a photo, over the loaded models.

    facegen serve                                     # shipped models, http://127.0.0.1:7860
    facegen serve --model runs/fader --port 8000      # plus a model of your own
    facegen serve --host 0.0.0.0                      # reachable from the network (no login!)

    (skipped as a doctest: it serves until stopped; tests/test_web_app.py builds and drives the app)
    >>> from facegen.web.app import build_app          # doctest: +SKIP
    >>> demo = build_app(Catalog.load(["runs/cgan"]))   # doctest: +SKIP
    >>> demo.queue(max_size=64).launch()                # doctest: +SKIP

Requests go through Gradio's queue: at most `queue_size` waiting (the next
one is told the queue is full, nothing crashes) and `concurrency` model
calls at a time, each on `threads` torch threads, so a burst of users shares
the CPU instead of oversubscribing it.
"""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home from a local tool

import gradio as gr  # noqa: E402 - after the environment above

from facegen.errors import FacegenError  # noqa: E402
from facegen.web import check_limits  # noqa: E402
from facegen.web.catalog import Catalog  # noqa: E402
from facegen.web.edit_tab import build_edit_tab  # noqa: E402
from facegen.web.faces import OutputFolder  # noqa: E402
from facegen.web.generate_tab import build_generate_tab  # noqa: E402

HEADER = """\
# facegen
Faces with the attributes you ask for. **Generate** makes new faces: move a slider and the same faces change
that one attribute. **Edit a photo** changes the attributes of real faces: upload any photo and its faces
are found, aligned like CelebA's, edited and put back into the photo at its own size, as
`facegen edit photo.jpg --align` does. The models were trained on CelebA (non-commercial research only).
"""
# 64 px faces would show as thumbnails: let the browser scale them up to fill their box.
CSS = """
#generate-faces .image-frame, .facegen-photo .image-frame { width: 100%; }
#generate-faces img, .facegen-photo img { width: 100%; height: auto; object-fit: contain; }
"""
MAX_UPLOAD = "20mb"  # the largest photo accepted; the pixel count is checked separately before decoding


def build_app(catalog: Catalog, *, outputs: OutputFolder | None = None) -> gr.Blocks:
    """The Blocks of the app (not started): header, then the two tabs."""
    if not catalog.entries:
        raise FacegenError("no models to serve: this install ships none yet; start with --model PATH "
                           "(a trained cgan, fader or cvae folder)")
    outputs = outputs or OutputFolder()
    # Gradio's own copies of pictures and zips are deleted after an hour (checked every 10 minutes).
    with gr.Blocks(title="facegen", delete_cache=(600, 3600)) as demo:
        gr.Markdown(HEADER)
        with gr.Tab("Generate", id="generate"):
            build_generate_tab(catalog, outputs)
        with gr.Tab("Edit a photo", id="edit"):
            build_edit_tab(catalog, outputs)
    return demo


def serve(catalog: Catalog, *, host: str = "127.0.0.1", port: int = 7860, share: bool = False,
          queue_size: int = 64, concurrency: int = 2, threads: int | None = 1, block: bool = True) -> gr.Blocks:
    """Build the app and start it; with `block=False` return once the server listens (tests, notebooks)."""
    import torch

    check_limits(queue_size=queue_size, concurrency=concurrency, threads=threads)
    if threads:
        torch.set_num_threads(threads)  # with `concurrency` calls at once: one thread each fills 2 cores
    demo = build_app(catalog)
    demo.queue(max_size=queue_size, default_concurrency_limit=concurrency)
    if block:
        _stop_on_sigterm()
    try:
        # quiet: Gradio's own lines would tell a terminal user to "set `share=True` in `launch()`"; ours name --share.
        demo.launch(server_name=host, server_port=port, share=share, max_file_size=MAX_UPLOAD, css=CSS,
                    prevent_thread_lock=True, quiet=True, show_error=False, theme=gr.themes.Soft())
    except OSError:  # lost a race for the port since `check_port`; Gradio's own message is three lines long
        raise FacegenError(f"cannot listen on {host}:{port} (in use?); choose another --port") from None
    print(f"facegen: the app is running at {demo.local_url}" + (f" and {demo.share_url}" if demo.share_url else
          " (this machine only)" if host in ("127.0.0.1", "localhost") else "")
          + ("" if share else "; add --share for a temporary public link") + "; stop it with Ctrl+C", flush=True)
    if block:
        demo.block_thread()
    return demo


def _stop_on_sigterm() -> None:
    """SIGTERM ends the app like Ctrl+C: the server closes and the process exits normally, so its temporary
    folder (/tmp/facegen-web-*) is removed instead of left behind."""
    import signal
    import threading

    def stop(signum, frame):
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, stop)
