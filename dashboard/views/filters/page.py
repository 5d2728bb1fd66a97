"""Filters: what the chosen checkpoint's filters respond to. Activation maximization for any
layer and filters, tuned with sliders and watched as the images form (the run is a background
thread the page polls); beside each image, the real faces of the val split that drive the
filter hardest and a dead-filter flag; and the feature maps of any face.
"""

import io

import numpy as np
import pandas as pd
import streamlit as st
import torch

from dashboard.common import face_picker, state
from dashboard.common.images import gallery_grid
from dashboard.common.progress import on_bar
from dashboard.views.filters import jobs
from fer_core.data.pictures import picture, pictures
from fer_core.errors import FerError
from fer_core.explain.contact_sheet import map_grid
from fer_core.explain.filter_stats import feature_maps
from fer_core.explain.filters import INITS, OPTIMIZERS, Settings, parse_filters
from fer_core.explain.settings import PARAMETERIZATIONS
from fer_core.models.architectures import layer_registry

POLL_SECONDS = 0.5
TOP_FACES = 4
CONFIG = {"displayModeBar": False}
KEEP = {"persist_state": "session"}
FINDING = "finding the real faces that drive each filter..."


def layer_label(entry) -> str:
    size = f"{entry.channels} x {entry.size[0]} x {entry.size[1]}" if entry.size else \
        f"{entry.channels} outputs (the classes)"
    return f"{entry.name} ({size})"


def seed_view(layers: list) -> None:
    """Button callback: the seed's view, the first three filters of the last conv block."""
    st.session_state["fi_layer"] = last_relu(layers)
    st.session_state["fi_filters"] = "0-2"


def last_relu(layers: list) -> str:
    return [entry.name for entry in layers if entry.kind == "relu" and entry.size][-1]


def choose_target(layers: list) -> tuple[object, str]:
    """The layer (a registry entry) and the filters text."""
    names = [entry.name for entry in layers]
    by_name = {entry.name: entry for entry in layers}
    if st.session_state.get("fi_layer") not in names:
        st.session_state["fi_layer"] = last_relu(layers)
    cols = st.columns([3, 2, 1, 2], vertical_alignment="bottom")
    name = cols[0].selectbox("Layer", names, key="fi_layer", format_func=lambda n: layer_label(
        by_name[n]), **KEEP, help="Conv, batch-norm and ReLU outputs in forward order, and the "
                                  "final linear layer (its filters are the classes)")
    st.session_state.setdefault("fi_filters", "0-15")
    text = cols[1].text_input("Filters", key="fi_filters", **KEEP,
                              help="Numbers and ranges, e.g. 0-15 or 3, 7, 9")
    cols[2].button("First 16", key="fi_first16", on_click=st.session_state.update,
                   kwargs={"fi_filters": "0-15"}, width="stretch")
    cols[3].button("Seed's view", key="fi_seed", on_click=seed_view, args=(layers,),
                   icon=":material/history:", width="stretch",
                   help="Jump to the last conv block's ReLU, filters 0-2")
    return by_name[name], text


def choose_settings() -> Settings:
    d = Settings()
    cols = st.columns(4)
    steps = cols[0].slider("Steps", 8, 512, d.steps, 8, key="fi_steps", **KEEP)
    lr = cols[1].select_slider("Learning rate", [0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5],
                               d.lr, key="fi_lr", **KEEP)
    optimizer = cols[2].segmented_control("Optimizer", OPTIMIZERS, default=d.optimizer,
                                          key="fi_optimizer", required=True, **KEEP)
    seed = cols[3].number_input("Seed", 0, 10_000, d.seed, key="fi_seed_value", **KEEP)
    cols = st.columns(4)
    init = cols[0].segmented_control("Start from", INITS, default=d.init, key="fi_init",
                                     required=True, **KEEP, help="Grey with a little noise, "
                                                                 "plain grey, or a real face")
    param = cols[1].segmented_control("Parameterization", PARAMETERIZATIONS, default=d.param,
                                      key="fi_param", required=True, **KEEP,
                                      help="Plain pixels, or frequencies scaled by 1/f (Lucid's "
                                           "Fourier parameterization: smoother images)")
    jitter = cols[2].slider("Jitter (pixels)", 0, 4, d.jitter, key="fi_jitter", **KEEP,
                            help="Random shift each step: features that survive it are robust")
    scale = cols[3].slider("Random scaling", 0.0, 0.2, d.scale, 0.01, key="fi_scale", **KEEP)
    cols = st.columns(4)
    l2 = cols[0].slider("L2 decay", 0.0, 2.0, d.l2, 0.05, key="fi_l2", **KEEP,
                        help="Pulls pixels towards grey")
    tv = cols[1].slider("Total variation", 0.0, 2.0, d.tv, 0.05, key="fi_tv", **KEEP,
                        help="Penalizes differences between neighbouring pixels")
    blur = cols[2].slider("Blur every N steps (0: never)", 0, 32, d.blur_every, key="fi_blur",
                          **KEEP)
    return Settings(steps=steps, lr=lr, optimizer=optimizer, init=init, param=param, l2=l2,
                    tv=tv, blur_every=blur, jitter=jitter, scale=scale, seed=int(seed))


def start_face(dataset, init: str) -> torch.Tensor | None:
    """The val face every image starts from, when the run starts from a face."""
    if init != "face":
        return None
    split = dataset.default_split()
    rows = dataset.indices(split)
    position = st.number_input(f"Start face (position in {split}, 0-{len(rows) - 1})", 0,
                               len(rows) - 1, 0, key="fi_face", **KEEP)
    return torch.from_numpy(dataset.images[rows[position]].copy())


def run_controls(ckpt, dataset, layer: str, text: str, count: int, settings: Settings,
                 face: torch.Tensor | None) -> None:
    cols = st.columns([1, 1, 4])
    if cols[0].button("Run", key="fi_run", type="primary", icon=":material/play_arrow:"):
        try:
            filters = parse_filters(text, count)
            settings.check()
        except FerError as e:
            st.error(str(e), icon=":material/error:")
            return
        jobs.start(ckpt, dataset, layer, filters, settings, face)
    job = jobs.current(ckpt, dataset)
    if cols[1].button("Stop", key="fi_stop", icon=":material/stop:",
                      disabled=job is None or not job.running):
        jobs.stop_current()


def show_run(ckpt, dataset) -> None:
    """The run: polled while it climbs, then drawn once with each filter's top real faces."""
    job = jobs.current(ckpt, dataset)
    if job is None:
        st.info("Choose a layer and filters, then Run: the images form here as the ascent "
                "climbs.", icon=":material/info:")
    elif job.running:
        poll(ckpt, dataset)
    else:
        render_ended(ckpt, dataset, job)


@st.fragment(run_every=POLL_SECONDS)
def poll(ckpt, dataset) -> None:
    """Redraws the running job's latest images every POLL_SECONDS; reruns the page when the
    run ends, so the real faces are looked for in a full run, never in this fragment."""
    job = jobs.current(ckpt, dataset)
    if job is None or not job.running:
        st.rerun()
    render_running(dataset, job)


def render_running(dataset, job) -> None:
    """The run as it climbs: its latest images and the activation curve."""
    snap = latest_snapshot(job)
    if snap is None:
        return
    st.caption(run_caption(job, snap, "(running)"))
    picture, side = run_columns()
    picture.image(grid_png(dataset, job, snap, None))
    show_curve(side, job)


def render_ended(ckpt, dataset, job) -> None:
    """The ended run: its images and curve at once; while the split's statistics compute, a
    caption and a progress bar say so (right under the caption, where the eye is); then each
    filter's top real faces and the table, and only then "(done)"."""
    snap = latest_snapshot(job)
    if snap is None:
        return
    caption, bar = st.empty(), st.empty()
    picture, side = run_columns()
    show_curve(side, job)
    split = dataset.default_split()
    if not jobs.stats_kept(ckpt, dataset, split, job.layer, TOP_FACES):
        caption.caption(run_caption(job, snap, f"· {FINDING}"))
        picture.image(grid_png(dataset, job, snap, None))
    stats = real_faces(ckpt, dataset, split, job.layer, bar)
    picture.image(grid_png(dataset, job, snap, stats))
    with side:
        show_table(job, snap, stats)
    caption.caption(run_caption(job, snap, "(stopped)" if job.stop.is_set() else "(done)"))


def latest_snapshot(job):
    """The snapshot to draw, or None after saying why there is none (the run failed, or its
    start image is not in yet)."""
    if job.error:
        st.error(f"The run failed: {job.error}", icon=":material/error:")
        return None
    if job.latest is None:
        st.caption("Starting...")
    return job.latest


def run_caption(job, snap, state: str) -> str:
    return f"{job.layer}, {len(job.filters)} filters: step {snap.step} of " \
           f"{job.settings.steps} {state}"


def run_columns() -> tuple:
    """The slot of the run's picture (left) and the column of its chart and table (right)."""
    left, right = st.columns([3, 2], gap="large")
    return left.empty(), right


def show_curve(side, job) -> None:
    figure = curve_figure(job)
    if figure is not None:
        side.plotly_chart(figure, config=CONFIG, key="fi_curve")


def real_faces(ckpt, dataset, split: str, layer: str, bar):
    """The layer's per-filter statistics over `split` (kept, or computed while `bar` follows the
    pass over the faces)."""
    stats = jobs.real_face_stats(ckpt, dataset, split, layer, TOP_FACES, on_bar(
        bar, lambda done, total: f"Finding the {split} faces that drive each filter of {layer} "
                                 f"hardest: {done:,} of {total:,} faces through the model "
                                 f"(once per checkpoint and layer)"))
    bar.empty()
    return stats


def grid_png(dataset, job, snap, stats) -> bytes:
    """The grid as PNG bytes, drawn once per snapshot: the poll shows the same snapshot several
    times, and encoding the picture each time would take CPU from the run."""
    key = (snap.step, stats is not None)
    if job.drawn is None or job.drawn[0] != key:
        buffer = io.BytesIO()
        result_grid(dataset, job, snap, stats).save(buffer, "PNG")
        job.drawn = (key, buffer.getvalue())
    return job.drawn[1]


def result_grid(dataset, job, snap, stats):
    """One image: per filter, its optimized image, then (when the run is over) its top real
    faces of the split."""
    if stats is None:
        captions = [(f"filter {f}", f"{a:.2f}") for f, a in zip(job.filters, snap.activations)]
        return gallery_grid(pictures(snap.images), captions, columns=min(8, len(job.filters)),
                            scale=2)
    rows = dataset.indices(stats.split)
    tiles, captions = [], []
    for i, f in enumerate(job.filters):
        dead = " DEAD" if stats.dead[f] else ""
        tiles.append(picture(snap.images[i]))
        captions.append((f"filter {f}{dead}", f"{snap.activations[i]:.2f}"))
        for position, value in zip(stats.top_positions[f], stats.top_values[f]):
            tiles.append(picture(dataset.images[rows[position]]))
            captions.append((f"#{position}", f"{value:.2f}"))
    return gallery_grid(np.stack(tiles), captions, columns=1 + stats.top_positions.shape[1],
                        scale=2)


def curve_figure(job) -> dict | None:
    """Each filter's activation against the step (their mean and range beyond 12 filters); None
    before the run's second snapshot: one point draws no line, only empty axes."""
    steps = list(job.steps)  # appended after activations: never longer
    if len(steps) < 2:
        return None
    values = np.stack(job.activations[:len(steps)])
    if values.shape[1] <= 12:
        data = [{"type": "scatter", "mode": "lines", "x": steps, "y": values[:, i].tolist(),
                 "name": f"filter {f}"} for i, f in enumerate(job.filters)]
    else:
        data = [{"type": "scatter", "mode": "lines", "x": steps, "y": values.max(1).tolist(),
                 "name": "max", "line": {"dash": "dot"}},
                {"type": "scatter", "mode": "lines", "x": steps, "y": values.mean(1).tolist(),
                 "name": "mean", "line": {"width": 3}},
                {"type": "scatter", "mode": "lines", "x": steps, "y": values.min(1).tolist(),
                 "name": "min", "line": {"dash": "dot"}}]
    layout = {"height": 280, "margin": {"l": 10, "r": 10, "t": 30, "b": 10},
              "title": {"text": "Mean activation by step", "font": {"size": 14}},
              "xaxis": {"title": "step"}, "yaxis": {"title": "mean activation"},
              "legend": {"orientation": "h", "y": -0.3}}
    return {"data": data, "layout": layout}


def show_table(job, snap, stats) -> None:
    table = pd.DataFrame({
        "filter": job.filters, "image": np.round(snap.activations, 3),
        "best real": np.round(stats.max_activation[job.filters], 3),
        "ratio": np.round(snap.activations / np.maximum(stats.max_activation[job.filters], 1e-6),
                          2),
        "dead": stats.dead[job.filters]})
    st.dataframe(table, hide_index=True, height=min(36 * 21, 36 * (len(table) + 1)))
    st.caption(f"Mean activation of each filter on its optimized image and on the {stats.split} "
               f"face that drives it hardest (best real), and their ratio. Dead: its ReLU "
               f"output is never above 1e-6 on any {stats.split} face.")


def feature_maps_tab(ckpt, dataset, layers: list) -> None:
    spatial = [entry for entry in layers if entry.size]
    names = [entry.name for entry in spatial]
    by_name = {entry.name: entry for entry in spatial}
    source = st.segmented_control("Face from", ["dataset", "upload"], default="dataset",
                                  key="fi_source", required=True, **KEEP,
                                  format_func={"dataset": "Dataset face",
                                               "upload": "Upload a photo"}.get)
    chosen = face_picker.dataset_face(dataset, dataset.present_splits(), prefix="fm") \
        if source == "dataset" else face_picker.photo_face("upload", ckpt.task, prefix="fm")
    if chosen is None:
        return
    name = st.selectbox("Layer", names, index=len(names) - 1, key="fi_map_layer", **KEEP,
                        format_func=lambda n: layer_label(by_name[n]))
    maps = feature_maps(ckpt.model, name, torch.from_numpy(chosen.face.copy()))
    left, right = st.columns([1, 4])
    left.image(picture(chosen.face), caption=chosen.title, width=144)
    right.image(map_grid(maps.cpu().numpy()), output_format="PNG",
                caption=f"The {maps.shape[0]} channels of {name} for this face, in order, "
                        f"row by row; one grey scale for all (black: 0 or below, white: the "
                        f"layer's 99.5th percentile and above), so a silent channel is black.")


def page() -> None:
    opened = state.scoring_page("Filters")
    if opened is None:
        return
    _, dataset, ckpt = opened
    layers = layer_registry(ckpt.arch, ckpt.task, **ckpt.arch_options)
    maximization, maps = st.tabs(["Activation maximization", "Feature maps"])
    with maximization:
        layer, text = choose_target(layers)
        settings = choose_settings()
        face = start_face(dataset, settings.init)
        run_controls(ckpt, dataset, layer.name, text, layer.channels, settings, face)
        show_run(ckpt, dataset)
    with maps:
        feature_maps_tab(ckpt, dataset, layers)


page()
