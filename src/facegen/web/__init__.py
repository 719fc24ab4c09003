"""The browser app (`facegen serve`). Gradio is imported only here, and only when the app starts.

(Skipped as a doctest: it starts a server that runs until stopped; tests/test_web_app.py starts one and stops it.)

    >>> from facegen.web import serve_models                        # doctest: +SKIP
    >>> serve_models(["runs/cgan"], port=7860)                      # doctest: +SKIP

Without gradio installed, the rest of facegen works and `facegen serve`
says how to add it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from facegen.errors import FacegenError


def require_gradio() -> None:
    """Raise a one-line FacegenError when the web extra is not installed (without importing gradio: slow)."""
    import importlib.util

    if importlib.util.find_spec("gradio") is None:
        raise FacegenError("the browser app needs gradio: pip install 'facegen[web]'")


def check_port(host: str, port: int) -> None:
    """Fail in a second, not after loading everything, when the address cannot be listened on."""
    import socket

    if not 1 <= port <= 65535:
        raise FacegenError(f"--port must be between 1 and 65535, got {port}")
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server itself will
            probe.bind((host, port))
    except OSError as error:
        raise FacegenError(f"cannot listen on {host}:{port} ({error.strerror or error}); "
                           "choose another --port (or --host)") from None


def check_limits(*, queue_size: int = 64, concurrency: int = 2, threads: int | None = 1, **_) -> None:
    """The queue and thread settings, checked before anything slow happens."""
    if not 1 <= queue_size <= 10_000:
        raise FacegenError(f"--queue-size must be between 1 and 10000, got {queue_size}")
    if not 1 <= concurrency <= 64:
        raise FacegenError(f"--concurrency must be between 1 and 64, got {concurrency}")
    if threads is not None and not 0 <= threads <= 256:
        raise FacegenError(f"--threads must be between 1 and 256 (0: torch's default), got {threads}")


def serve_models(models: Sequence[str | Path] = (), *, shipped: bool = True, **options):
    """Load the shipped models (if `shipped`) and `models`, then start the app; `options` go to `app.serve`."""
    require_gradio()
    check_limits(**options)
    if "port" in options:
        check_port(options.get("host", "127.0.0.1"), options["port"])
    from facegen.web.catalog import Catalog

    catalog = Catalog.load(models, shipped=shipped)  # a bad --model fails here, before gradio's slow import
    if not catalog.entries:
        raise FacegenError("no models to serve: none of cgan, fader, cvae is installed; start with --model PATH "
                           "(a trained model or training run folder)")
    from facegen.web.app import serve

    return serve(catalog, **options)


__all__ = ["check_limits", "check_port", "require_gradio", "serve_models"]
