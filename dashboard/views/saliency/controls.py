"""The Saliency page's choices: the method with its parameters and the target, kept in session
state under `sa_*` keys and mirrored into the URL (?method=ig&steps=64&baseline=blurred&
target=Happy-Sad), so a shared link reproduces the map.

A parameter's widget key includes its method (`sa_smoothgrad_samples`), since two methods may
share a parameter name with different defaults. The parameters, their widgets' ranges and help
are `fer_core.explain.settings`'s: a number takes a slider, a text its choices (the layer: the
model's; a number's range: the checkpoint's face size). Classes are the checkpoint's
(`classes`).
"""

import streamlit as st

from dashboard.common import url
from fer_core.data.task import Task
from fer_core.errors import FerError
from fer_core.explain.attribution import METHODS, Target, cam_layers, default_cam_name
from fer_core.explain.settings import PARAMS
TARGET_KINDS = {"predicted": "Predicted class", "true": "True class", "class": "A class",
                "contrast": "A rather than B"}


def param_key(method: str, name: str) -> str:
    return f"sa_{method}_{name}"


def init_from_url(layers: list[str], task: Task) -> None:
    """A session's first visit takes the method, its parameters (for faces of the model's
    `task`) and the target (one of its classes) from the URL; what is not valid is ignored with
    a warning."""
    if "sa_method" in st.session_state:
        return
    q = st.query_params
    method = q.get("method", "vanilla")
    if method not in METHODS:
        url.ignored("method", expected=f"one of {', '.join(METHODS)}")
        method = "vanilla"
    st.session_state["sa_method"] = method
    for name in PARAMS:
        if q.get(name) is not None:
            take_param(method, name, q.get(name), layers, task.size)
    set_target(q.get("target", "pred"), task.classes)


def take_param(method: str, name: str, text: str, layers: list[str], size: int) -> None:
    """A parameter from the URL into its widget's state, when the method takes it and its widget
    can show it (a number within the slider's range for faces of `size` pixels, one of the
    choices or layers)."""
    param = PARAMS[name]
    if method not in param.defaults:
        url.ignored(name, expected=f"no such parameter for {METHODS[method].title}")
        return
    allowed = param.choices or (layers if param.kind is str else None)
    slider = param.slider_range(size)
    try:
        value = param.parse(text, size, bounds=slider and slider[:2])
    except FerError:
        value = None
    if allowed is not None and value not in allowed:
        url.ignored(name, expected=f"one of {', '.join(allowed)}")
    elif value is None:
        url.ignored(name, expected=f"a number from {slider[0]} to {slider[1]}")
    else:
        st.session_state[param_key(method, name)] = value


def set_target(text: str, classes: tuple[str, ...]) -> None:
    try:
        target = Target.parse(text, classes)
    except FerError:
        url.ignored("target", expected="pred, true, a class name, or A-B (two class names)")
        target = Target()
    st.session_state["sa_target_kind"] = target.kind
    if target.a is not None:
        st.session_state["sa_class_a"] = target.a
    if target.b is not None:
        st.session_state["sa_class_b"] = target.b


def method_choice(label=lambda title, key: title) -> str:
    """The method; `label(title, key)` names it in the list (the trust checks add flags)."""
    return st.selectbox("Method", list(METHODS), key="sa_method", persist_state="session",
                        format_func=lambda k: label(METHODS[k].title, k),
                        help="Gradient methods are fast and fine-grained; Grad-CAM is coarse "
                             "and class-specific; occlusion and the path methods (IG, DeepLift, "
                             "GradientSHAP) cost more passes. ⚠: fails the sanity check (its "
                             "maps hardly change when the model's weights are randomized).")


def params_choice(method: str, arch: str, arch_options: dict, task: Task) -> dict:
    """The method's parameters, one widget each (none for methods without parameters)."""
    defaults = METHODS[method].defaults()
    params = {}
    for name, default in defaults.items():
        key = param_key(method, name)
        st.session_state.setdefault(key, default)
        param = PARAMS[name]
        if param.choices:
            params[name] = st.segmented_control(name.capitalize(), param.choices, key=key,
                                                required=True, help=param.help,
                                                persist_state="session")
        elif param.kind is str:
            params[name] = layer_choice(key, arch, arch_options, task)
        else:
            low, high, step = param.slider_range(task.size)
            params[name] = st.slider(name.capitalize(), low, high, step=step, key=key,
                                     help=param.help, persist_state="session")
    return params


def layer_choice(key: str, arch: str, arch_options: dict, task: Task) -> str:
    """A Grad-CAM layer of `arch` built for `task`, listed with its output size (channels x
    height x width)."""
    layers = cam_layers(arch, task, **arch_options)
    sizes = {layer.name: f"{layer.channels} x {layer.size[0]} x {layer.size[1]}"
             for layer in layers}
    if st.session_state.get(key) not in sizes:  # a layer of another architecture
        st.session_state[key] = default_cam_name(arch, layers)
    return st.selectbox("Layer", list(sizes), key=key, help=PARAMS["layer"].help,
                        format_func=lambda n: f"{n} ({sizes[n]})", persist_state="session")


def target_choice(label_known: bool, classes: tuple[str, ...]) -> Target:
    """What to explain: the predicted class, the true class (when known), any of `classes`, or
    a contrast A - B."""
    kinds = [k for k in TARGET_KINDS if label_known or k != "true"]
    if st.session_state.get("sa_target_kind") not in kinds:
        st.session_state["sa_target_kind"] = "predicted"
    kind = st.segmented_control("Explain", kinds, key="sa_target_kind", required=True,
                                format_func=TARGET_KINDS.get, persist_state="session",
                                help="A contrast explains logit A minus logit B: why A rather "
                                     "than B")
    if kind in ("predicted", "true"):
        return Target(kind)
    cols, choices = st.columns(2), range(len(classes))
    for key, first in (("sa_class_a", 0), ("sa_class_b", 1)):
        if st.session_state.get(key) not in choices:  # none yet, or a class of another task
            st.session_state[key] = first
    a = cols[0].selectbox("Class A" if kind == "contrast" else "Class", choices,
                          key="sa_class_a", format_func=classes.__getitem__,
                          persist_state="session")
    if kind == "class":
        return Target("class", a)
    b = cols[1].selectbox("Class B", choices, key="sa_class_b",
                          format_func=classes.__getitem__, persist_state="session")
    if a == b:
        st.warning("Choose two different classes for a contrast; explaining class A alone.",
                   icon=":material/warning:")
        return Target("class", a)
    return Target("contrast", a, b)


def write_url(method: str, params: dict, target: str, face: tuple | None) -> None:
    """The URL after this run: the face (split and idx, for a dataset face), method, the method's
    parameters and the target (in `Target.text` form); other methods' parameters removed."""
    wanted = {"method": method, "target": target,
              **{name: str(params[name]) if name in params else None for name in PARAMS},
              "split": face[0] if face else None, "idx": str(face[1]) if face else None}
    url.write(wanted)
