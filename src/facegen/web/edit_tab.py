"""The Edit a photo tab: upload a photo (or pick a sample), move sliders, see the photo edited.

An uploaded photo takes the path of `facegen edit --align`: its faces are
found and aligned like CelebA, and each slider move edits them and pastes
them back into the whole photo at its own size, which the tab shows above
the face as the model sees it, its reconstruction and its edit. A crop that
is already aligned like CelebA's (the sample faces, or an upload with the
check box ticked) is edited as it is. The session (`gr.State`) keeps the
photo and its aligned faces, with their own attribute values for the model
it was opened with, so a slider move never reads or searches the photo again.
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from facegen.errors import FacegenError
from facegen.web.catalog import Catalog, ModelEntry
from facegen.web.faces import OutputFolder
from facegen.web.photos import (ALREADY_ALIGNED, OpenedPhoto, can_find_faces, chosen_faces, edit_face, edit_photo,
                                faces_note, model_input, open_crop, open_photo, own_attributes, reconstruction_note,
                                sample_paths, sweep_strip)
from facegen.web.ui import CONCURRENCY_ID, attribute_label, no_models_note, slider_pairs, user_errors

NO_PHOTO = "Upload a photo or pick a sample face to start."
ALL_FACES = "all"  # the face choice that edits every face found, like `facegen edit --align` without --face


def build_edit_tab(catalog: Catalog, outputs: OutputFolder) -> None:
    """Add the tab's components and events to the Blocks being built."""
    entries = catalog.editors
    if not entries:
        gr.Markdown(no_models_note("edit"))
        return
    names = Catalog.attribute_union(entries)
    first = entries[0]
    samples = sample_paths()
    can_classify = catalog.classifier is not None
    can_align = can_find_faces()

    photo = gr.State(None)  # {"photo": OpenedPhoto, "face": int | None, "model": key, "source": (n, A) float32}
    with gr.Row(equal_height=True):
        model = gr.Dropdown([(e.label, e.key) for e in entries], value=first.key, label="Model", scale=1,
                            elem_id="edit-model")
        with gr.Column(scale=1, min_width=200):
            upload = gr.File(label="Your photo, up to 20 MB: its faces are found, edited and put back",
                             file_types=["image"], type="filepath", height=140, elem_id="edit-upload")
            aligned = gr.Checkbox(not can_align, label=ALREADY_ALIGNED, elem_id="edit-aligned",
                                  info="framed like the sample faces: edit it as it is" if can_align else
                                  "finding faces needs pip install 'facegen[align]'")
        gallery = gr.Gallery([str(p) for p in samples], label="... or pick a sample face", columns=4, rows=1,
                             height=140, allow_preview=False, object_fit="cover", interactive=False, scale=2,
                             elem_id="edit-samples")
    with gr.Row():
        with gr.Column(scale=2, min_width=280):
            face = gr.Dropdown([("All faces", ALL_FACES)], value=ALL_FACES, label="Face to edit (0 = leftmost)",
                               visible=False, elem_id="edit-face")
            sliders = slider_pairs(names, {name: 0.5 for name in names}, first.attribute_names, "edit")
            reset = gr.Button("Back to the photo's own attributes", elem_id="edit-reset")
        with gr.Column(scale=3):
            result = gr.Image(label="Your photo, edited (at its own size)", type="filepath", interactive=False,
                              visible=False, buttons=["download"], elem_id="edit-result")
            with gr.Row():
                original = _picture("Original", "edit-original")
                reconstruction = _picture("Unchanged", "edit-reconstruction")
                edited = _picture("Edited", "edit-edited")
            note = gr.Markdown(NO_PHOTO, elem_id="edit-note")
            sweep_name = gr.Dropdown(_sweep_choices(first), value=first.attribute_names[0],
                                     label="Sweep one attribute from 0 to 1", elem_id="edit-sweep-name")
            strip = gr.Image(label="The face, then the attribute from 0 to 1", type="filepath", format="png",
                             interactive=False, elem_id="edit-sweep", elem_classes="facegen-photo")

    def show(entry: ModelEntry, opened: OpenedPhoto, face: int | None, sweep_attribute: str):
        """Everything the tab shows for a freshly opened photo (or after a model or face change)."""
        pipe = entry.editor
        x = model_input(pipe, opened)  # (n, 3, S, S): every face of the photo
        source, where = own_attributes(pipe, x, can_classify=can_classify)  # (n, A)
        faces = chosen_faces(opened, face)
        x_face, source_face = x[faces[0]:faces[0] + 1], source[faces[0]]  # the face the pictures show
        crop = opened.crops[faces[0]]
        own = dict(zip(pipe.attribute_names, source_face))
        rebuilt = edit_face(pipe, crop, x_face, source_face, own)
        _, quality = reconstruction_note(crop, rebuilt)
        sweep_attribute = sweep_attribute if sweep_attribute in pipe.attribute_names else pipe.attribute_names[0]
        state = {"photo": opened, "face": face, "model": entry.key, "source": source}
        slider_updates = [gr.update(visible=n in own, **({"value": float(own[n])} if n in own else {})) for n in names]
        slot = outputs.new_slot()
        shown = outputs.write_png(crop, "photo.png", slot)
        rebuilt_png = outputs.write_png(rebuilt, "reconstruction.png", slot)
        strip = outputs.write_png(sweep_strip(pipe, crop, sweep_attribute, source_face), "sweep.png", slot)
        whole = (gr.update(value=None, visible=False) if opened.aligned_crop else  # at its own values: the photo
                 gr.update(value=outputs.write_photo(opened.image, _edited_name(opened.name), slot), visible=True))
        choices = [("All faces", ALL_FACES)] + [(f"Face {i}", str(i)) for i in range(len(opened.crops))]
        face_update = gr.update(choices=choices, value=ALL_FACES if face is None else str(face),
                                visible=len(opened.crops) > 1)
        text = " ".join(part for part in (f"{opened.name}:", faces_note(opened, faces), where, quality) if part)
        return (state, shown, rebuilt_png, rebuilt_png, text, gr.update(choices=_sweep_choices(entry),
                value=sweep_attribute), strip, whole, face_update, *slider_updates)

    @user_errors
    def open_upload(model_key, path, already_aligned, sweep_attribute):
        opened = open_crop(path) if already_aligned else open_photo(path)
        return show(catalog.get(model_key, task="edit"), opened, None, sweep_attribute)

    @user_errors
    def retick(model_key, path, already_aligned, sweep_attribute):
        if not path:
            return tuple(gr.skip() for _ in shown_outputs)  # nothing uploaded: the box applies to the next upload
        return open_upload(model_key, path, already_aligned, sweep_attribute)

    @user_errors
    def open_sample(model_key, sweep_attribute, event: gr.SelectData):
        # The samples are CelebA's own aligned crops; the upload box is emptied so that it shows what is open.
        opened = open_crop(samples[event.index])
        return (*show(catalog.get(model_key, task="edit"), opened, None, sweep_attribute), None)

    @user_errors
    def choose_face(model_key, state, face_value, sweep_attribute):
        if state is None:
            raise FacegenError(NO_PHOTO)
        return show(catalog.get(model_key, task="edit"), state["photo"], _face_number(face_value), sweep_attribute)

    @user_errors
    def switch_model(model_key, state, sweep_attribute):
        entry = catalog.get(model_key, task="edit")
        if state is None:
            shown = [gr.update(visible=n in entry.attribute_names) for n in names]
            return (None, None, None, None, NO_PHOTO, gr.update(choices=_sweep_choices(entry),
                    value=entry.attribute_names[0]), None, gr.update(), gr.update(), *shown)
        return show(entry, state["photo"], state["face"], sweep_attribute)

    def current(model_key, state):
        """The entry, every face at the model's size, their own values and the faces edited; or a message."""
        if state is None:
            raise FacegenError(NO_PHOTO)
        entry = catalog.get(model_key, task="edit")
        if state["model"] != entry.key:
            raise FacegenError("the model changed while this photo was open; pick the photo again")
        opened = state["photo"]
        return entry, model_input(entry.editor, opened), state["source"], chosen_faces(opened, state["face"])

    @user_errors
    def edit(model_key, state, *values):
        entry, x, source, faces = current(model_key, state)
        chosen = {n: v for n, v in zip(names, values) if n in entry.attribute_names}
        face_image, whole = edit_photo(entry.editor, state["photo"], x, source, chosen, faces)
        slot = outputs.new_slot()
        edited_png = outputs.write_png(face_image, "edited.png", slot)
        if whole is None:
            return edited_png, gr.skip()
        return edited_png, outputs.write_photo(whole, _edited_name(state["photo"].name), slot)

    @user_errors
    def sweep(model_key, state, sweep_attribute):
        if state is None:
            return None  # the drop-down moved before any photo: nothing to sweep yet
        entry, x, source, faces = current(model_key, state)
        return outputs.write_png(sweep_strip(entry.editor, state["photo"].crops[faces[0]], sweep_attribute,
                                             source[faces[0]]), "sweep.png")

    @user_errors
    def back_to_own(model_key, state):
        entry, x, source, faces = current(model_key, state)
        opened = state["photo"]
        own = dict(zip(entry.attribute_names, source[faces[0]]))
        slot = outputs.new_slot()
        rebuilt = outputs.write_png(edit_face(entry.editor, opened.crops[faces[0]], x[faces[0]:faces[0] + 1],
                                              source[faces[0]], own), "edited.png", slot)
        # Every face at its own values: the edit adds nothing, so the photo is the photo as it was.
        whole = gr.skip() if opened.aligned_crop else outputs.write_photo(opened.image, _edited_name(opened.name),
                                                                          slot)
        return rebuilt, whole, *[gr.update(value=own[n]) if n in own else gr.update() for n in names]

    shown_outputs = [photo, original, reconstruction, edited, note, sweep_name, strip, result, face, *sliders]
    common = {"show_progress": "hidden", "concurrency_id": CONCURRENCY_ID}
    upload.upload(open_upload, [model, upload, aligned, sweep_name], shown_outputs, api_name="open_photo", **common)
    aligned.input(retick, [model, upload, aligned, sweep_name], shown_outputs, api_visibility="private", **common)
    gallery.select(open_sample, [model, sweep_name], [*shown_outputs, upload], api_visibility="private", **common)
    face.input(choose_face, [model, photo, face, sweep_name], shown_outputs, api_name="choose_face", **common)
    model.change(switch_model, [model, photo, sweep_name], shown_outputs, api_visibility="private", **common)
    gr.on([s.input for s in sliders], edit, [model, photo, *sliders], [edited, result], api_name="edit",
          trigger_mode="always_last", **common)
    sweep_name.input(sweep, [model, photo, sweep_name], strip, api_name="sweep", **common)
    reset.click(back_to_own, [model, photo], [edited, result, *sliders], api_visibility="private", **common)


def _face_number(value) -> int | None:
    """The face choice: None for all faces, else the face's number (0 = leftmost)."""
    if value in (None, "", ALL_FACES):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise FacegenError(f"the face to edit is {ALL_FACES!r} or a number from 0 (leftmost), got {value!r}") from None


def _edited_name(name: str) -> str:
    """`holiday.jpg` -> `holiday-edited.jpg`: what the download of the edited photo is called."""
    return f"{Path(name).stem}-edited{Path(name).suffix}"


def _picture(label: str, elem_id: str) -> gr.Image:
    return gr.Image(label=label, type="filepath", format="png", interactive=False, min_width=120,
                    buttons=["download"], elem_id=elem_id, elem_classes="facegen-photo")


def _sweep_choices(entry: ModelEntry) -> list[tuple[str, str]]:
    return [(attribute_label(name), name) for name in entry.attribute_names]

