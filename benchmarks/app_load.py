"""Latency of the browser app on loopback: one user moving a slider, then 20 users at once.

    python benchmarks/app_load.py --model runs/cgan/model --model runs/fader/model   # starts `facegen serve`
    python benchmarks/app_load.py --url http://127.0.0.1:7860/ --users 20           # an app already running
    python benchmarks/app_load.py --model ... --screenshots docs/img                # the docs' pictures instead

A request's round trip is what a browser waits for after a slider move:
join Gradio's queue, wait for the result event, then fetch the new picture.
Single-user numbers come from `--moves` sequential slider moves on the
Generate tab (and on the Edit tab when an editing model is loaded: open a
sample face, then move sliders). Then `--users` clients, each its own
session, fire `--requests` slider moves back to back, all at once; every
request must be answered (none lost, none refused by the bounded queue).
Percentiles and counts go to benchmarks/results/app-load.json.

Loopback only: the script refuses any other address. Its loops are bounded
in count and by `--deadline` seconds.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def percentiles(seconds: list[float]) -> dict:
    """p50/p90/p99/max in milliseconds (nearest rank)."""
    ordered = sorted(seconds)

    def rank(p: float) -> float:
        return round(1000 * ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))], 1)

    return {"n": len(ordered), "p50_ms": rank(50), "p90_ms": rank(90), "p99_ms": rank(99),
            "max_ms": round(1000 * ordered[-1], 1), "mean_ms": round(1000 * statistics.fmean(ordered), 1)}


class App:
    """A client session of the app, timing each call as a browser would see it (result + picture fetched)."""

    def __init__(self, url: str, info: dict | None = None):
        import httpx
        from gradio_client import Client

        # Generous timeouts: a slow answer must count as slow, not as lost (httpx's default is 5 s).
        self.client = Client(url, verbose=False, download_files=False, httpx_kwargs={"timeout": 300})
        self.http = httpx.Client(timeout=300)
        self.info = info = info or self.client.view_api(print_info=False, return_format="dict")["named_endpoints"]
        generate = info["/generate"]["parameters"]
        self.generator = generate[0]["parameter_default"]  # the first model of the drop-down
        self.n_sliders = len(generate) - 3
        edit = info.get("/open_photo")
        self.editor = edit["parameters"][0]["parameter_default"] if edit else None

    def call(self, *args, api_name: str) -> float:
        tic = time.perf_counter()
        result = self.client.predict(*args, api_name=api_name)
        picture = result[0] if isinstance(result, (list, tuple)) else result
        self.http.get(picture["url"]).raise_for_status()
        return time.perf_counter() - tic

    def move_generate_slider(self, step: int, seed: int = 0) -> float:
        values = [0.0] * self.n_sliders
        values[step % self.n_sliders] = (step % 21) / 20  # one slider at a new value, like a drag
        return self.call(self.generator, seed, 8, *values, api_name="/generate")

    def open_sample(self) -> list[float]:
        from gradio_client import handle_file

        from facegen.web.photos import sample_paths

        shown = self.client.predict(self.editor, handle_file(str(sample_paths()[-1])), True, "Young",
                                    api_name="/open_photo")  # True: a sample is already an aligned crop
        return [float(v["value"]) if isinstance(v, dict) else float(v) for v in shown[8:]]

    def move_edit_slider(self, own: list[float], step: int) -> float:
        values = list(own)
        values[step % len(values)] = (step % 21) / 20
        return self.call(self.editor, *values, api_name="/edit")


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of a process so far (0 when unknown): what a request costs, whatever the load."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(moves: int, move, pid: int | None) -> dict:
    """Percentiles of `moves` sequential calls of move(i), with the CPU time each call cost server and client:
    on a busy machine the round trip mostly measures the wait for a core, the CPU time does not."""
    server_before, client_before = cpu_seconds(pid), time.process_time()
    result = percentiles([move(i + 1) for i in range(moves)])
    result["client_cpu_ms_per_request"] = round(1000 * (time.process_time() - client_before) / moves, 1)
    if pid is not None:
        result["server_cpu_ms_per_request"] = round(1000 * (cpu_seconds(pid) - server_before) / moves, 1)
    return result


def single_user(url: str, moves: int, pid: int | None) -> dict:
    app = App(url)
    app.move_generate_slider(0)  # warm-up: the first call of a session sets things up
    result = {"generate": timed(moves, app.move_generate_slider, pid)}
    if app.editor:
        own = app.open_sample()
        app.move_edit_slider(own, 0)
        result["edit"] = timed(moves, lambda i: app.move_edit_slider(own, i), pid)
    return result


def many_users(url: str, users: int, requests: int, deadline_s: float, pid: int | None) -> dict:
    first = App(url)
    apps = [first] + [App(url, first.info) for _ in range(users - 1)]  # opened one by one: setup is not measured
    start = threading.Barrier(users)
    stop_at = time.monotonic() + deadline_s
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def user(index: int) -> None:
        start.wait()  # everyone starts at the same instant
        for step in range(requests):
            if time.monotonic() > stop_at:
                with lock:
                    errors.append("deadline passed before the request was sent")
                continue
            try:
                seconds = apps[index].move_generate_slider(step, seed=index)
                with lock:
                    latencies.append(seconds)
            except Exception as error:  # noqa: BLE001 - every failure is counted, whatever it is
                with lock:
                    errors.append(f"{type(error).__name__}: {error}"[:200])

    tic, server_cpu, client_cpu = time.perf_counter(), cpu_seconds(pid), time.process_time()
    with concurrent.futures.ThreadPoolExecutor(users) as pool:
        list(pool.map(user, range(users)))
    wall = time.perf_counter() - tic
    answered = max(1, len(latencies))
    result = {"users": users, "requests_per_user": requests, "sent": users * requests, "answered": len(latencies),
              "lost_or_failed": len(errors), "errors": sorted(set(errors))[:5], "wall_s": round(wall, 2),
              "requests_per_s": round(len(latencies) / wall, 2), "latency": percentiles(latencies) if latencies else {},
              "client_cpu_ms_per_request": round(1000 * (time.process_time() - client_cpu) / answered, 1)}
    if pid is not None:
        result["server_cpu_ms_per_request"] = round(1000 * (cpu_seconds(pid) - server_cpu) / answered, 1)
    return result


def screenshots(url: str, folder: Path) -> None:
    """docs/img/app-generate.png and app-edit.png: headless Chromium (Debian's), after one slider move each."""
    from PIL import Image
    from playwright.sync_api import sync_playwright

    def new_picture(page, selector: str, old: str | None) -> str:
        page.wait_for_function("([s, old]) => { const i = document.querySelector(s + ' img');"
                               " return i && i.src && i.src !== old; }", arg=[selector, old], timeout=300_000)
        return page.locator(f"{selector} img").first.get_attribute("src")

    folder.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto(url)
        faces = new_picture(page, "#generate-faces", None)
        page.locator("#generate-Smiling input[type=range]").fill("1")
        new_picture(page, "#generate-faces", faces)
        time.sleep(1)  # let the page settle after the swap
        page.screenshot(path=str(folder / "app-generate.png"), full_page=True)
        page.get_by_role("tab", name="Edit a photo").click()
        page.locator("#edit-samples img").nth(1).click()
        edited = new_picture(page, "#edit-edited", None)
        page.locator("#edit-Smiling input[type=range]").fill("0")
        new_picture(page, "#edit-edited", edited)
        time.sleep(1)
        page.screenshot(path=str(folder / "app-edit.png"), full_page=True)
        browser.close()
    for name in ("app-generate.png", "app-edit.png"):  # 256 colours: a third of the bytes, the same look
        path = folder / name
        Image.open(path).convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
        print(f"wrote {path} ({path.stat().st_size // 1024} KB)")


def start_app(models: list[str], port: int, extra: list[str]) -> subprocess.Popen:
    command = [sys.executable, "-m", "facegen", "serve", "--port", str(port), *extra]
    for model in models:
        command += ["--model", model]
    return subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"})


def wait_until_up(url: str, process: subprocess.Popen | None, timeout_s: float = 300) -> None:
    import httpx

    stop_at = time.monotonic() + timeout_s
    while time.monotonic() < stop_at:
        if process is not None and process.poll() is not None:
            raise SystemExit(f"the app exited with code {process.returncode}: {process.stderr.read()[-2000:]}")
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise SystemExit(f"the app at {url} did not answer within {timeout_s:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="an app already running on loopback (default: start one)")
    parser.add_argument("--model", action="append", default=[], help="--model for the app started here (repeatable)")
    parser.add_argument("--serve-arg", action="append", default=[], help="another argument for `facegen serve`")
    parser.add_argument("--moves", type=int, default=30, help="sequential slider moves of the single user")
    parser.add_argument("--users", type=int, default=20, help="simultaneous users")
    parser.add_argument("--requests", type=int, default=10, help="slider moves per simultaneous user")
    parser.add_argument("--deadline", type=float, default=600, help="seconds after which no request is sent")
    parser.add_argument("--name", default="app-load", help="result file name")
    parser.add_argument("--screenshots", type=Path, help="take the docs' screenshots into this folder instead")
    args = parser.parse_args()

    process = None
    if args.url:
        url = args.url if args.url.endswith("/") else args.url + "/"
    else:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        url = f"http://127.0.0.1:{port}/"
        process = start_app(args.model, port, args.serve_arg)
    host = urlparse(url).hostname or ""
    if not (host == "localhost" or host.startswith("127.") or host == "::1"):
        raise SystemExit(f"{url}: this load test only targets loopback addresses (127.0.0.0/8, localhost, ::1)")
    try:
        started = time.perf_counter()
        wait_until_up(url, process)
        if args.screenshots:
            return screenshots(url, args.screenshots)
        payload = {"url": url, "models": args.model, "startup_s": round(time.perf_counter() - started, 1),
                   "load_average_before": os.getloadavg()}
        payload["single_user"] = single_user(url, args.moves, process.pid if process else None)
        payload["simultaneous"] = many_users(url, args.users, args.requests, args.deadline,
                                             process.pid if process else None)
        payload["load_average_after"] = os.getloadavg()
        write_result(args.name, payload)
    finally:
        if process is not None:
            process.terminate()
            process.wait(timeout=30)


if __name__ == "__main__":
    main()
