"""The Edit a photo tab: upload (or pick a sample), see the reconstruction, move sliders, see the edit.

The photo lives in the session (`gr.State`) as a 256 px square, with its
own attribute values for the model it was opened with; a slider move then
costs one encode and one decode at the model's size.
"""

from __future__ import annotations

import gradio as gr

from facegen.data import to_pil
from facegen.errors import FacegenError
from facegen.web.catalog import Catalog, ModelEntry
from facegen.web.faces import OutputFolder
from facegen.web.photos import (edit_face, model_input, own_attributes, read_photo, reconstruction_note,
                                sample_paths, sweep_strip)
from facegen.web.ui import CONCURRENCY_ID, attribute_label, slider_pairs, user_errors

NO_PHOTO = "Upload a photo or pick a sample face to start."


def build_edit_tab(catalog: Catalog, outputs: OutputFolder) -> None:
    """Add the tab's components and events to the Blocks being built."""
    entries = catalog.editors
    if not entries:
        gr.Markdown("No model that edits photos is loaded. Start the app with `--model PATH` pointing to a "
                    "fader or cvae model (e.g. a training run folder).")
        return
    names = Catalog.attribute_union(entries)
    first = entries[0]
    samples = sample_paths()
    can_classify = catalog.classifier is not None

    photo = gr.State(None)  # {"pixels": (256, 256, 3) uint8, "name": str, "model": key, "source": [A floats]}
    with gr.Row(equal_height=True):
        model = gr.Dropdown([(e.label, e.key) for e in entries], value=first.key, label="Model", scale=1,
                            elem_id="edit-model")
        upload = gr.File(label="Your photo: a CelebA-aligned face (centred, eyes level), up to 20 MB",
                         file_types=["image"], type="filepath", height=140, scale=1, elem_id="edit-upload")
        gallery = gr.Gallery([str(p) for p in samples], label="... or pick a sample face", columns=4, rows=1,
                             height=140, allow_preview=False, object_fit="cover", interactive=False, scale=2,
                             elem_id="edit-samples")
    with gr.Row():
        with gr.Column(scale=2, min_width=280):
            sliders = slider_pairs(names, {name: 0.5 for name in names}, first.attribute_names, "edit")
            reset = gr.Button("Back to the photo's own attributes", elem_id="edit-reset")
        with gr.Column(scale=3):
            with gr.Row():
                original = _picture("Original (as the model sees it)", "edit-original")
                reconstruction = _picture("Reconstruction", "edit-reconstruction")
                edited = _picture("Edited", "edit-edited")
            note = gr.Markdown(NO_PHOTO, elem_id="edit-note")
            sweep_name = gr.Dropdown(_sweep_choices(first), value=first.attribute_names[0],
                                     label="Sweep one attribute from 0 to 1", elem_id="edit-sweep-name")
            strip = gr.Image(label="The photo, then the attribute from 0 to 1", type="filepath", format="png",
                             interactive=False, elem_id="edit-sweep", elem_classes="facegen-photo")

    def show(entry: ModelEntry, pixels, name: str, sweep_attribute: str):
        """Everything the tab shows for a freshly opened photo (or after a model change)."""
        pipe = entry.editor
        x = model_input(pipe, pixels)
        source, where = own_attributes(pipe, x, can_classify=can_classify)
        rebuilt = edit_face(pipe, x, source, dict(zip(pipe.attribute_names, source)))
        _, quality = reconstruction_note(x, rebuilt)
        sweep_attribute = sweep_attribute if sweep_attribute in pipe.attribute_names else pipe.attribute_names[0]
        state = {"pixels": pixels, "name": name, "model": entry.key, "source": [float(v) for v in source]}
        own = dict(zip(pipe.attribute_names, source))
        slider_updates = [gr.update(visible=n in own, **({"value": float(own[n])} if n in own else {})) for n in names]
        slot = outputs.new_slot()
        shown = outputs.write_png(to_pil(x[0]), "photo.png", slot)
        rebuilt_png = outputs.write_png(to_pil(rebuilt[0]), "reconstruction.png", slot)
        strip = outputs.write_png(sweep_strip(pipe, x, sweep_attribute, source), "sweep.png", slot)
        return (state, shown, rebuilt_png, rebuilt_png, f"{name}: {where} {quality}",
                gr.update(choices=_sweep_choices(entry), value=sweep_attribute), strip, *slider_updates)

    @user_errors
    def open_upload(model_key, path, sweep_attribute):
        from pathlib import Path

        pixels = read_photo(path)
        return show(catalog.get(model_key, task="edit"), pixels, Path(path).name, sweep_attribute)

    @user_errors
    def open_sample(model_key, sweep_attribute, event: gr.SelectData):
        path = samples[event.index]
        return show(catalog.get(model_key, task="edit"), read_photo(path), path.name, sweep_attribute)

    @user_errors
    def switch_model(model_key, state, sweep_attribute):
        entry = catalog.get(model_key, task="edit")
        if state is None:
            shown = [gr.update(visible=n in entry.attribute_names) for n in names]
            return (None, None, None, None, NO_PHOTO, gr.update(choices=_sweep_choices(entry),
                    value=entry.attribute_names[0]), None, *shown)
        return show(entry, state["pixels"], state["name"], sweep_attribute)

    def current(model_key, state):
        """The entry, the photo at its size and the photo's own values, or a message to open a photo first."""
        if state is None:
            raise FacegenError(NO_PHOTO)
        entry = catalog.get(model_key, task="edit")
        if state["model"] != entry.key:
            raise FacegenError("the model changed while this photo was open; pick the photo again")
        return entry, model_input(entry.editor, state["pixels"]), state["source"]

    @user_errors
    def edit(model_key, state, *values):
        entry, x, source = current(model_key, state)
        chosen = {n: v for n, v in zip(names, values) if n in entry.attribute_names}
        return outputs.write_png(to_pil(edit_face(entry.editor, x, source, chosen)[0]), "edited.png")

    @user_errors
    def sweep(model_key, state, sweep_attribute):
        if state is None:
            return None  # the drop-down moved before any photo: nothing to sweep yet
        entry, x, source = current(model_key, state)
        return outputs.write_png(sweep_strip(entry.editor, x, sweep_attribute, source), "sweep.png")

    @user_errors
    def back_to_own(model_key, state):
        entry, x, source = current(model_key, state)
        own = dict(zip(entry.attribute_names, source))
        rebuilt = edit_face(entry.editor, x, source, own)
        return (outputs.write_png(to_pil(rebuilt[0]), "edited.png"),
                *[gr.update(value=own[n]) if n in own else gr.update() for n in names])

    shown = [photo, original, reconstruction, edited, note, sweep_name, strip, *sliders]
    common = {"show_progress": "hidden", "concurrency_id": CONCURRENCY_ID}
    upload.upload(open_upload, [model, upload, sweep_name], shown, api_name="open_photo", **common)
    gallery.select(open_sample, [model, sweep_name], shown, api_visibility="private", **common)
    model.change(switch_model, [model, photo, sweep_name], shown, api_visibility="private", **common)
    gr.on([s.input for s in sliders], edit, [model, photo, *sliders], edited, api_name="edit",
          trigger_mode="always_last", **common)
    sweep_name.input(sweep, [model, photo, sweep_name], strip, api_name="sweep", **common)
    reset.click(back_to_own, [model, photo], [edited, *sliders], api_visibility="private", **common)


def _picture(label: str, elem_id: str) -> gr.Image:
    return gr.Image(label=label, type="filepath", format="png", interactive=False, min_width=120,
                    buttons=["download"], elem_id=elem_id, elem_classes="facegen-photo")


def _sweep_choices(entry: ModelEntry) -> list[tuple[str, str]]:
    return [(attribute_label(name), name) for name in entry.attribute_names]

