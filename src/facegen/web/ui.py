"""Small pieces every tab shares: how errors reach the page, labels, the one concurrency group."""

from __future__ import annotations

import functools
import html

import gradio as gr

from facegen.errors import FacegenError

# Every event that runs a model shares this group, so the queue's concurrency limit bounds model calls
# across both tabs (the machine's cores, not the number of browsers, set the pace).
CONCURRENCY_ID = "model"


def no_models_note(task: str) -> str:
    """What a tab shows when no loaded model can do `task` ("generate" or "edit"), naming the kinds that can."""
    from facegen.kinds import either, names

    what = {"generate": "generates faces", "edit": "edits photos"}[task]
    return (f"No model that {what} is loaded. Start the app with `--model PATH` pointing to a "
            f"{either(names(can=task))} model (e.g. a training run folder).")


def user_errors(fn):
    """Show a FacegenError (a bad upload, an unknown model) as a readable message on the page, not "Error"."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except FacegenError as error:
            # gr.Error renders HTML; a file name is the user's text, so escape it. Quotes stay as they are:
            # they cannot open a tag, and the API would pass "&#x27;" on to its callers verbatim.
            raise gr.Error(html.escape(str(error), quote=False), title="Cannot do that", print_exception=False) from None

    return wrapper


def slider_pairs(names: list[str], values: dict[str, float], shown: list[str], prefix: str) -> list[gr.Slider]:
    """One 0..1 slider per attribute, two to a row (twelve attributes would be a long column otherwise);
    those not in `shown` start hidden. Element ids are `<prefix>-<Attribute_Name>`."""
    sliders = []
    for start in range(0, len(names), 2):
        with gr.Row(equal_height=True):
            sliders += [gr.Slider(0.0, 1.0, value=values[name], step=0.05, label=attribute_label(name),
                                  visible=name in shown, min_width=140, elem_id=f"{prefix}-{name}")
                        for name in names[start:start + 2]]
    return sliders


def attribute_label(name: str) -> str:
    """CelebA's `Blond_Hair` -> `Blond hair`, as a slider label.

    >>> attribute_label("Wearing_Lipstick"), attribute_label("5_o_Clock_Shadow")
    ('Wearing lipstick', "5 o'clock shadow")
    """
    if name == "5_o_Clock_Shadow":
        return "5 o'clock shadow"
    return name.replace("_", " ").capitalize()
