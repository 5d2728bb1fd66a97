"""Saliency: what the chosen checkpoint looks at in one face, from the dataset (often arriving
from a Confusions or Embeddings gallery link) or cut from an uploaded photo or a webcam picture.

One method at a time with its parameters, for the predicted class, the true class, any class or
a contrast (logit A minus logit B), drawn alone and over the face; and every method side by side.
The URL carries the face (?split=val&idx=I), the method, its parameters and the target, so a
shared link reproduces the map (an uploaded photo cannot travel in a link). A photo is cut to
the faces the checkpoint takes (its task's size, in colour for a colour model).
"""

import streamlit as st

from dashboard import sidebar
from dashboard.common import exports, face_picker, state, url
from dashboard.common.gallery import LARGE, input_text, probability_figure
from dashboard.common.keys import memo_key
from dashboard.common.runs import all_runs
from dashboard.common.votes import show_votes
from dashboard.views.saliency import controls, influence_panel, maps, timeline_panel, trust_panel
from fer_core.data.pictures import picture
from fer_core.data.readers import is_builtin_spec
from fer_core.data.task import Task
from fer_core.errors import FerError
from fer_core.explain.attribution import METHODS, cam_layers
from fer_core.explain.export import find_export

SOURCES = {"dataset": "Dataset face", "upload": "Upload a photo", "camera": "Webcam"}
COLUMNS = 5
CONFIG = {"displayModeBar": False}


def face_from_url(dataset, splits: list[str]) -> None:
    """A link's face (?split=&idx=) is taken when it differs from the one this page last wrote:
    on a session's first visit, and when another page sends a face here."""
    q = st.query_params
    arrived = (q.get("split"), q.get("idx"))
    st.session_state.setdefault("sa_source", "dataset")
    st.session_state.setdefault("sa_split", dataset.default_split(splits))
    if arrived == (None, None) or arrived == st.session_state.get("sa_url_face"):
        return
    st.session_state["sa_url_face"] = arrived
    st.session_state["sa_source"] = "dataset"
    if arrived[0] in splits:
        st.session_state["sa_split"] = arrived[0]
    elif arrived[0] is not None:
        url.ignored("split", expected=f"one of {', '.join(splits)}")
    if arrived[1] is not None:
        st.session_state["sa_idx"] = arrived[1]


def forget_link_face() -> None:
    """A photo is shown: the URL loses the dataset face, so that a later link to that same face
    (Explain this face on another page) is taken as a new arrival."""
    st.session_state["sa_url_face"] = None
    url.drop(["split", "idx"])


def choose_face(dataset, splits: list[str], ckpt, run: str):
    source = st.segmented_control("Face from", list(SOURCES), key="sa_source", required=True,
                                  format_func=SOURCES.get, persist_state="session")
    if source == "dataset":
        return face_picker.dataset_face(dataset, splits)
    if ckpt.trained_on_builtin:
        builtin_note(run)
    chosen = face_picker.photo_face(source, ckpt.task)
    if chosen is None:
        st.info("Upload a photo with a face, or take a picture, to explain it."
                if source == "upload" else "Take a picture to explain it.",
                icon=":material/add_a_photo:")
    return chosen


def builtin_note(run: str) -> None:
    """Photos are far from the synthetic faces a builtin-trained model learned from: say so, and
    offer a FER2013-trained checkpoint when there is one."""
    photo_runs = [r.name for r in all_runs()
                  if r.has_checkpoint and r.data and not is_builtin_spec(r.data)]
    note = (f"**{run}** learned from the built-in synthetic faces (drawn shapes, not photos): "
            f"on a real photo its prediction and its saliency say little about real faces.")
    if not photo_runs:
        st.warning(note + " Train a model on FER2013 (Training page) to explain photos.",
                   icon=":material/warning:")
        return
    better = (sidebar.shipped_run(photo_runs, False, state.device().type)
              or photo_runs[0])
    st.warning(note + f" **{better}** was trained on FER2013 photos.", icon=":material/warning:")
    st.button(f"Switch to {better}", key="sa_switch", icon=":material/swap_horiz:",
              on_click=sidebar.choose_run, args=(better,))


def show_face(chosen, result, task: Task) -> None:
    """The exact input (a face of the checkpoint's `task`), its class probabilities, the true
    class when known."""
    st.markdown(f"**{chosen.title}**")
    zoom = max(1, LARGE // task.size)
    st.image(maps.zoomed(picture(chosen.face), zoom), width=LARGE,
             caption=f"The model's input: {input_text(task)} pixels, shown at {zoom}x",
             output_format="PNG")
    predicted, classes = int(result.probs.argmax()), task.classes
    st.plotly_chart(probability_figure(result.probs, chosen.label, predicted, classes),
                    config=CONFIG, key="sa_probs")
    truth = "unknown" if chosen.label is None else f"**{classes[chosen.label]}**"
    st.markdown(f"Predicted **{classes[predicted]}** ({result.probs[predicted]:.1%}); "
                f"true class {truth}.")
    show_votes(chosen.votes, chosen.fer2013_label, key="sa_votes")


def show_map(chosen, result) -> None:
    cols = st.columns(2)
    cmaps = maps.cmap_choices(result.signed)
    cmap = cols[0].selectbox("Colour map", cmaps, persist_state="session",
                             key=f"sa_cmap_{'signed' if result.signed else 'unsigned'}")
    opacity = cols[1].slider("Opacity over the face", 0.0, 1.0, 0.5, 0.05, key="sa_opacity",
                             persist_state="session")
    alone, over = maps.pictures(chosen.face, result, cmap, opacity)
    st.image([alone, over], caption=["The map", "Over the face"], width=240,
             output_format="PNG")
    params = ", ".join(f"{k} {v}" for k, v in result.params.items())
    where = (f"Read from the export in `{result.source}`." if result.source else
             f"Computed in {result.seconds * 1000:.0f} ms on {state.device().type}.")
    st.caption(f"{result.title}{f' ({params})' if params else ''}, explaining "
               f"**{result.target}**. {maps.legend(result)} {where}")


def show_all_methods(ckpt, model_key, chosen, target: str, opacity: float) -> None:
    """Every method with its default parameters for the same face and target."""
    with st.spinner("Running every method..."):
        results = maps.all_methods(ckpt.model, model_key, ckpt.task.classes, chosen.face,
                                   chosen.label, target)
    for start in range(0, len(results), COLUMNS):
        for col, result in zip(st.columns(COLUMNS), results[start:start + COLUMNS]):
            cmap = maps.cmap_choices(result.signed)[0]
            _, over = maps.pictures(chosen.face, result, cmap, opacity, zoom=3)
            col.image(over, caption=f"{result.title} ({result.seconds * 1000:.0f} ms)",
                      width="stretch", output_format="PNG")
    st.caption("Default parameters for each method; signed maps (red for, blue against) on a "
               "diverging scale, unsigned ones on a sequential scale. Each map is scaled to its "
               "own 99.5th percentile, so compare where they point, not how bright they are.")


def one_line(panel, *args) -> None:
    """A panel that reads snapshots: a damaged or unreadable one is one line, not a traceback."""
    try:
        panel(*args)
    except FerError as e:
        st.error(str(e), icon=":material/error:")


def stored_map(ckpt, dataset, chosen, method: str, params: dict, target):
    """A dataset face's map of its predicted class from an export of its split that holds the
    method with these parameters (`find_export`'s rule; a damaged export gets its message and
    is not used)."""
    if chosen.split is None or target.kind != "predicted":
        return None
    folder = find_export(ckpt, dataset, chosen.split, {method: params})
    export = None if folder is None else exports.load(folder, dataset, chosen.split, method)
    return None if export is None else maps.exported_map(export, chosen.position, method,
                                                          ckpt.task.classes)


def page() -> None:
    opened = state.scoring_page("Saliency")
    if opened is None:
        return
    choice, dataset, ckpt = opened
    options, task = ckpt.arch_options, ckpt.task
    controls.init_from_url([layer.name for layer in cam_layers(ckpt.arch, task, **options)], task)
    splits = dataset.present_splits()
    face_from_url(dataset, splits)
    if st.session_state["sa_source"] != "dataset":
        # before the uploader is drawn: the browser has dropped the face from its URL before
        # anyone can upload, so the upload's rerun cannot bring the old face back as a link
        forget_link_face()
    chosen = choose_face(dataset, splits, ckpt, choice.run)
    if chosen is None:
        return
    face = None if chosen.split is None else (chosen.split, chosen.position)
    st.divider()
    left, right = st.columns([2, 3], gap="large")
    report = trust_panel.current_report(ckpt, dataset)
    with right:
        method = controls.method_choice(trust_panel.method_label(report))
        trust_panel.flag_note(report, method)
        params = controls.params_choice(method, ckpt.arch, options, task)
        target = controls.target_choice(chosen.label is not None, task.classes)
    model_key = memo_key(ckpt)
    target_text = target.text(task.classes)
    try:
        result = stored_map(ckpt, dataset, chosen, method, params, target)
        if result is None:
            with st.spinner(f"{METHODS[method].title}..."):
                result = maps.face_map(ckpt.model, model_key, task.classes, chosen.face,
                                       chosen.label, method, target_text,
                                       tuple(sorted(params.items())))
    except FerError as e:
        st.error(str(e), icon=":material/error:")
        return
    with left:
        show_face(chosen, result, task)
    with right:
        show_map(chosen, result)
    st.divider()
    if st.toggle("All methods side by side", key="sa_all", persist_state="session",
                 help="Every method with its default parameters, for this face and target"):
        show_all_methods(ckpt, model_key, chosen, target_text,
                         st.session_state.get("sa_opacity", 0.5))
    one_line(timeline_panel.show, choice.run, task.classes, chosen, method, params, target)
    st.divider()
    trust_panel.show_section(ckpt, dataset, chosen, result, report)
    st.divider()
    one_line(influence_panel.show_section, choice, ckpt, dataset, chosen, result)
    controls.write_url(method, params, target_text, face)
    if face is not None:
        st.session_state["sa_url_face"] = (face[0], str(face[1]))


page()
