"""The running app, for real: its API through `gradio_client`, and the page in headless Chromium.

One server (in this process, on a free loopback port) serves every test here. Its models are tiny and
untrained (see test_web.py); what is checked is the plumbing: a slider move reaches the model and a new
picture reaches the page, an ordinary photo comes back edited at its own size, bad uploads and photos without
a face come back as readable messages, a burst of requests is all answered.
"""

from __future__ import annotations

import concurrent.futures
import shutil
import socket
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from test_align import needs_data, needs_dlib
from test_web import NAMES, photo_with_one_face, photo_with_two_faces, tiny_model

gr = pytest.importorskip("gradio", reason="the web extra (gradio) is not installed: pip install 'facegen[web]'")
gradio_client = pytest.importorskip("gradio_client", reason="gradio_client comes with gradio")

CHROMIUM = "/usr/bin/chromium"
pytestmark = [  # gradio's own queue code trips pandas 3 deprecations; not ours to fix
    pytest.mark.filterwarnings("ignore:'future.no_silent_downcasting' is deprecated"),
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """(url, {kind: model key}) of a running app with a tiny cgan, fader and classifier."""
    from facegen.web.app import serve
    from facegen.web.catalog import Catalog

    root = tmp_path_factory.mktemp("web-app")
    paths = {kind: tiny_model(kind, root / kind) for kind in ("cgan", "fader", "classifier")}
    catalog = Catalog.load([paths["cgan"], paths["fader"], paths["classifier"]], shipped=False)
    port = _free_port()
    demo = serve(catalog, port=port, block=False, threads=None, queue_size=64, concurrency=2)
    yield f"http://127.0.0.1:{port}/", {kind: str(path) for kind, path in paths.items()}
    demo.close()


def _client(url: str):
    # httpx's default 5 s timeout would turn a slow answer on a busy machine into a failure
    return gradio_client.Client(url, verbose=False, httpx_kwargs={"timeout": 120})


@pytest.fixture(scope="module")
def client(server):
    return _client(server[0])


def _pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_api_generate_same_seed_same_faces_and_sliders_change_them(server, client):
    cgan = server[1]["cgan"]
    values = dict.fromkeys(NAMES, 0.0)
    grid, download = client.predict(cgan, 7, 4, 1.0, *values.values(), api_name="/generate")
    again, _ = client.predict(cgan, 7, 4, 1.0, *values.values(), api_name="/generate")
    smiling, _ = client.predict(cgan, 7, 4, 1.0, *{**values, "Smiling": 1.0}.values(), api_name="/generate")
    assert _pixels(grid).shape == (20, 4 * 18 + 2, 3)  # 4 faces of 16 px in one row
    assert np.array_equal(_pixels(grid), _pixels(again))
    assert not np.array_equal(_pixels(grid), _pixels(smiling))
    assert Path(download).suffix == ".zip"


def _value(output):
    """An output's value: gradio_client gives a `gr.update(...)` as its dict ({"__type__": "update"}: unchanged)."""
    return output.get("value") if isinstance(output, dict) else output


def _slider_values(shown) -> list[float]:
    return [float(_value(v)) for v in shown[-len(NAMES):]]


def test_api_edit_a_sample_then_move_a_slider(server, client):
    from facegen.web.photos import sample_paths

    fader = server[1]["fader"]
    # /open_photo: model, file, already an aligned crop?, sweep attribute
    shown = client.predict(fader, gradio_client.handle_file(str(sample_paths()[0])), True, "Smiling",
                           api_name="/open_photo")
    original, reconstruction, edited, note = shown[:4]
    assert _pixels(original).shape == (256, 256, 3) and "celeba-" in note  # the crop at its own size
    own = _slider_values(shown)
    assert set(own) <= {0.0, 1.0}  # the tiny classifier's reading
    flipped, whole = client.predict(fader, *[own[0], 1.0 - own[1], own[2]], api_name="/edit")
    assert not np.array_equal(_pixels(flipped), _pixels(edited))
    assert _value(whole) is None  # an aligned crop: the edit is the result, there is no photo to paste it into


@needs_dlib
@needs_data
def test_api_an_ordinary_photo_comes_back_edited_at_its_own_size(server, tmp_path):
    client = _client(server[0])  # a session of its own
    fader, path = server[1]["fader"], photo_with_one_face(tmp_path)
    shown = client.predict(fader, gradio_client.handle_file(str(path)), False, "Smiling", api_name="/open_photo")
    original, note, whole = shown[0], shown[3], _value(shown[6])
    assert _pixels(original).shape == (256, 256, 3) and "holiday.png: 1 face found." in note
    assert np.array_equal(_pixels(whole), _pixels(path))  # at the face's own values: the photo as it was
    own = _slider_values(shown)
    _, edited = client.predict(fader, *[own[0], 1.0 - own[1], own[2]], api_name="/edit")
    assert Path(edited).name == "holiday-edited.png" and _pixels(edited).shape == (320, 420, 3)
    changed = np.any(_pixels(edited) != _pixels(path), axis=-1)
    assert 0 < changed.mean() < 0.7 and not changed[:, :100].any()  # the face, right of centre, and nothing else


@needs_dlib
@needs_data
def test_api_choose_one_of_two_faces(server, tmp_path):
    client = _client(server[0])
    fader = server[1]["fader"]
    shown = client.predict(fader, gradio_client.handle_file(str(photo_with_two_faces(tmp_path))), False, "Smiling",
                           api_name="/open_photo")
    assert "2 faces found" in shown[3] and "editing all of them" in shown[3] and _value(shown[7]) == "all"
    shown = client.predict(fader, "1", "Smiling", api_name="/choose_face")  # model, face, sweep attribute
    assert "editing face 1" in shown[3] and _value(shown[7]) == "1"
    own = _slider_values(shown)
    _, edited = client.predict(fader, *[own[0], 1.0 - own[1], own[2]], api_name="/edit")
    changed = np.any(_pixels(edited) != _pixels(tmp_path / "pair.png"), axis=-1)
    assert changed[:, 240:].any() and not changed[:, :200].any()  # the right-hand face only (left one: x 20-198)


def test_api_bad_uploads_come_back_as_readable_messages(server, client, tmp_path):
    junk = tmp_path / "holiday.jpg"
    junk.write_bytes(b"this is not a JPEG")
    with pytest.raises(gradio_client.exceptions.AppError, match="holiday.jpg: not a readable image"):
        client.predict(server[1]["fader"], gradio_client.handle_file(str(junk)), False, "Young",
                       api_name="/open_photo")
    fresh = _client(server[0])  # a new session: no photo opened yet
    with pytest.raises(gradio_client.exceptions.AppError, match="Upload a photo"):
        fresh.predict(server[1]["fader"], 0.0, 0.0, 0.0, api_name="/edit")


@needs_dlib
def test_api_a_photo_without_a_face_says_so(server, client, tmp_path):
    wall = tmp_path / "wall.png"
    Image.new("RGB", (400, 300), (120, 130, 140)).save(wall)
    with pytest.raises(gradio_client.exceptions.AppError, match="wall.png: no face found"):
        client.predict(server[1]["fader"], gradio_client.handle_file(str(wall)), False, "Young",
                       api_name="/open_photo")


def test_a_burst_of_requests_is_all_answered(server, client):
    cgan = server[1]["cgan"]
    jobs = [client.submit(cgan, seed, 2, 1.0, 0.0, 1.0, 0.0, api_name="/generate") for seed in range(20)]
    done, _ = concurrent.futures.wait(jobs, timeout=120)
    assert len(done) == 20 and all(Path(job.result()[0]).is_file() for job in jobs)


def test_a_full_queue_refuses_politely_and_the_app_goes_on(server):
    """A queue of 2 under a burst of 12: each request is answered or told the queue is full; nothing else."""
    from facegen.web.app import serve
    from facegen.web.catalog import Catalog

    port = _free_port()
    demo = serve(Catalog.load([server[1]["cgan"]], shipped=False), port=port, block=False, threads=None,
                 queue_size=2, concurrency=1)
    try:
        small = _client(f"http://127.0.0.1:{port}/")
        jobs = [small.submit(server[1]["cgan"], seed, 4, 1.0, 0.0, 0.0, 0.0, api_name="/generate") for seed in range(12)]
        concurrent.futures.wait(jobs, timeout=120)
        outcomes = []
        for job in jobs:
            try:
                outcomes.append("answered" if Path(job.result()[0]).is_file() else "no file")
            except Exception as error:  # noqa: BLE001 - sorted below
                outcomes.append("full" if "queue is full" in str(error).lower() else f"other: {error}")
        assert set(outcomes) <= {"answered", "full"} and "answered" in outcomes, outcomes
        assert Path(small.predict(server[1]["cgan"], 0, 1, 1.0, 0.0, 0.0, 0.0, api_name="/generate")[0]).is_file()
    finally:
        demo.close()


@pytest.fixture(scope="module")
def page(server):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    if not Path(CHROMIUM).is_file() and not shutil.which("chromium"):
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install chromium")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM if Path(CHROMIUM).is_file()
                                             else shutil.which("chromium"), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(server[0])
        yield page
        browser.close()


def _image_after_change(page, selector: str, old_src: str | None, timeout_ms: int = 30_000) -> str:
    """Wait until the <img> under `selector` shows a new picture; its src."""
    page.wait_for_function("([sel, old]) => { const img = document.querySelector(sel + ' img');"
                           " return img && img.src && img.src !== old; }", arg=[selector, old_src],
                           timeout=timeout_ms)
    return page.locator(f"{selector} img").first.get_attribute("src")


def _fetch(page, src: str) -> np.ndarray:
    import io

    return np.asarray(Image.open(io.BytesIO(page.request.get(src).body())).convert("RGB"))


def _upload(page, path: Path) -> None:
    """Upload `path` on the Edit a photo tab, emptying the box first if it still holds an earlier upload."""
    page.get_by_role("tab", name="Edit a photo").click()
    clear = page.locator("#edit-upload button[aria-label='Clear']")
    if clear.count():
        clear.first.click()
    page.set_input_files("#edit-upload input[type=file]", str(path))


def test_browser_slider_move_redraws_the_faces(page, tmp_path):
    before = _image_after_change(page, "#generate-faces", None)
    slider = page.locator("#generate-Smiling input[type=range]")
    target = "0" if slider.input_value() == "1" else "1"
    start = time.perf_counter()
    slider.fill(target)  # what a drag ends with: an input event at the new value
    after = _image_after_change(page, "#generate-faces", before)
    print(f"slider move -> new faces in the browser: {1000 * (time.perf_counter() - start):.0f} ms")
    assert not np.array_equal(_fetch(page, before), _fetch(page, after))
    page.screenshot(path=str(tmp_path / "generate.png"))


def test_browser_edit_a_sample_face(page, tmp_path):
    page.get_by_role("tab", name="Edit a photo").click()
    page.locator("#edit-samples img").first.click()
    edited = _image_after_change(page, "#edit-edited", None)
    assert page.locator("#edit-reconstruction img").count() == 1 and page.locator("#edit-sweep img").count() == 1
    slider = page.locator("#edit-Male input[type=range]")
    slider.fill("0" if slider.input_value() == "1" else "1")
    changed = _image_after_change(page, "#edit-edited", edited)
    assert not np.array_equal(_fetch(page, edited), _fetch(page, changed))
    page.screenshot(path=str(tmp_path / "edit.png"))


def test_browser_bad_upload_shows_a_message(page, tmp_path):
    junk = tmp_path / "cat.jpg"
    junk.write_bytes(b"GIF89a but not really")
    _upload(page, junk)
    page.get_by_text("cat.jpg: not a readable image").first.wait_for(timeout=30_000)


@needs_dlib
@needs_data
def test_browser_an_ordinary_photo_is_edited_whole(page, tmp_path):
    path = photo_with_one_face(tmp_path)
    _upload(page, path)
    before = _image_after_change(page, "#edit-result", None)
    assert _fetch(page, before).shape == (320, 420, 3)  # the whole photo, at its own size
    slider = page.locator("#edit-Male input[type=range]")
    slider.fill("0" if slider.input_value() == "1" else "1")
    after = _image_after_change(page, "#edit-result", before)
    changed = np.any(_fetch(page, after) != _pixels(path), axis=-1)
    assert 0 < changed.mean() < 0.7 and not changed[:, :100].any()  # the face (right of centre) and its margin only
    page.screenshot(path=str(tmp_path / "edit-own-photo.png"))


@needs_dlib
def test_browser_no_face_says_so_and_the_check_box_opens_it_as_a_crop(page, tmp_path):
    wall = tmp_path / "wall.png"
    Image.new("RGB", (300, 300), (120, 130, 140)).save(wall)
    _upload(page, wall)
    page.get_by_text("wall.png: no face found").first.wait_for(timeout=30_000)
    page.locator("#edit-aligned input[type=checkbox]").check()  # the same upload, edited as it is
    page.locator("#edit-note").get_by_text("wall.png:").wait_for(timeout=30_000)
    assert not page.locator("#edit-result").is_visible()  # a crop: no whole photo to paste into
