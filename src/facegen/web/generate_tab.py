"""The Generate tab: a slider per attribute, a seed, a count; the faces redraw as a slider moves.

The noise depends on the seed only, so moving one slider changes one
attribute on the very same faces. Each redraw also writes the zip that the
download button offers (a few milliseconds for 64 px faces), so the button
always holds exactly the faces on screen.
"""

from __future__ import annotations

import random

import gradio as gr

from facegen.errors import FacegenError
from facegen.validation import MAX_SEED
from facegen.web.catalog import Catalog
from facegen.web.faces import MAX_FACES, OutputFolder, face_grid, generate_faces, whole_number
from facegen.web.ui import CONCURRENCY_ID, no_models_note, slider_pairs, user_errors

DEFAULT_COUNT = 8
MIN_SPREAD, MAX_SPREAD = 0.1, 1.5  # the noise's temperature on the page; 1 is the prior as trained


def spread_of(value: object, entry) -> float:
    """The spread from the page (or an API caller) as a float in [MIN_SPREAD, MAX_SPREAD]; empty: the model's own."""
    if value is None or value == "":
        return entry.generator.default_temperature
    try:
        spread = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        spread = float("nan")
    if not MIN_SPREAD <= spread <= MAX_SPREAD:  # nan fails too
        raise FacegenError(f"the spread of the noise must be between {MIN_SPREAD} and {MAX_SPREAD}, got {value!r}")
    return spread


def build_generate_tab(catalog: Catalog, outputs: OutputFolder) -> None:
    """Add the tab's components and events to the Blocks being built."""
    entries = catalog.generators
    if not entries:
        gr.Markdown(no_models_note("generate"))
        return
    names = Catalog.attribute_union(entries)  # one slider per attribute name any generator takes
    first = entries[0]
    defaults = {}
    for entry in reversed(entries):  # the first model's start values win
        defaults.update(entry.defaults())

    def draw(entry, values: dict, seed_value: int, count_value: int, temperature: float):
        x = generate_faces(entry.generator, values, seed=seed_value, count=count_value, temperature=temperature)
        slot = outputs.new_slot()
        return (outputs.write_png(face_grid(x), "faces.png", slot),
                outputs.write_faces(x, model=entry.key, seed=seed_value, values=values, slot=slot,
                                    temperature=temperature))

    # The first picture is drawn once here, not on every page load: a new visitor costs no model call.
    first_spread = first.generator.default_temperature
    first_grid, first_zip = draw(first, {name: defaults[name] for name in first.attribute_names}, 0, DEFAULT_COUNT,
                                 first_spread)

    with gr.Row():
        with gr.Column(scale=2, min_width=280):
            model = gr.Dropdown([(e.label, e.key) for e in entries], value=first.key, label="Model",
                                elem_id="generate-model")
            with gr.Row(equal_height=True):
                seed = gr.Number(value=0, precision=0, minimum=0, label="Seed", min_width=80, elem_id="generate-seed")
                new_faces = gr.Button("New faces", variant="secondary", min_width=80, elem_id="generate-new")
                count = gr.Slider(1, MAX_FACES, value=DEFAULT_COUNT, step=1, label="Faces",
                                  min_width=140, elem_id="generate-count")
            spread = gr.Slider(MIN_SPREAD, MAX_SPREAD, value=first_spread, step=0.05,
                               label="Spread of the noise (lower: more typical faces; starts at the model's own)",
                               elem_id="generate-temperature")
            sliders = slider_pairs(names, defaults, first.attribute_names, "generate")
        with gr.Column(scale=3):
            grid = gr.Image(first_grid, label="Faces (same seed, same faces)", type="filepath", format="png",
                            interactive=False, buttons=["download", "fullscreen"],
                            elem_id="generate-faces")
            download = gr.DownloadButton("Download these faces (zip: one PNG each + attributes.json)",
                                         first_zip, elem_id="generate-download")

    @user_errors
    def generate(model_key, seed_value, count_value, spread_value, *values):
        entry = catalog.get(model_key, task="generate")
        chosen = {name: float(v) for name, v in zip(names, values) if name in entry.attribute_names}
        return draw(entry, chosen, whole_number(seed_value or 0, "the seed", 0, MAX_SEED),
                    whole_number(count_value or DEFAULT_COUNT, "the number of faces", 1, MAX_FACES),
                    spread_of(spread_value, entry))

    @user_errors
    def switch_model(model_key, seed_value, count_value, _spread, *values):
        """Another model: its sliders, and its own spread (the cVAE's fitted prior ships at 0.7, the cGAN at 1)."""
        entry = catalog.get(model_key, task="generate")
        shown = [gr.update(visible=name in entry.attribute_names) for name in names]
        own = entry.generator.default_temperature
        return *shown, own, *generate(model_key, seed_value, count_value, own, *values)

    inputs = [model, seed, count, spread, *sliders]
    # always_last: while a redraw runs, further moves collapse into one last redraw, so a drag never queues up.
    gr.on([s.input for s in sliders] + [count.input, spread.input, seed.change], generate, inputs, [grid, download],
          api_name="generate", trigger_mode="always_last", show_progress="hidden", concurrency_id=CONCURRENCY_ID)
    model.change(switch_model, inputs, [*sliders, spread, grid, download], api_visibility="private",
                 show_progress="hidden", concurrency_id=CONCURRENCY_ID)
    new_faces.click(lambda: random.randrange(1_000_000), None, seed, api_visibility="private", queue=False)
