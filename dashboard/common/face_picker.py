"""The face the Saliency page explains: a face of the dataset (by split and position), or one
cut from an uploaded photo or a webcam picture through `fer_core.data.photos` (in memory only),
as the checkpoint's task takes faces (its size; colour for a colour model).

Photos are shown with every detected face boxed (the one used in red) and, when no face is
found or the user asks, a centre crop they move and size with sliders.
"""

from dataclasses import dataclass

import numpy as np
import streamlit as st
from PIL import Image, ImageDraw

from dashboard.common import url
from dashboard.common.clicks import parse_index
from dashboard.common.votes import face_votes
from fer_core.data.photos import MAX_PHOTO_BYTES, CentreCrop, FaceInput, face_from_upload
from fer_core.data.task import Task
from fer_core.errors import FerError

PHOTO_TYPES = ["jpg", "jpeg", "png", "webp", "bmp", "gif"]
PREVIEW_SIDE = 480
USED, OTHER = (230, 40, 40), (250, 200, 0)


@dataclass(frozen=True)
class ChosenFace:
    """uint8 face (C x H x W, as the model takes it), its true class (None when unknown) and
    where it came from."""

    face: np.ndarray
    label: int | None
    title: str
    split: str | None = None
    position: int | None = None
    votes: np.ndarray | None = None  # its crowd votes (FER+), where the data has them
    fer2013_label: int | None = None  # its FER2013 label beside the votes, where known


def dataset_face(dataset, splits: list[str], prefix: str = "sa") -> ChosenFace:
    """A face chosen by split and position within it (the URL's ?split=&idx= on arrival). The
    widgets' keys start with `prefix`: each page keeps its own choice."""
    split_key, idx_key = f"{prefix}_split", f"{prefix}_idx"
    if st.session_state.get(split_key) not in splits:
        st.session_state[split_key] = dataset.default_split(splits)
    cols = st.columns([3, 2, 1], vertical_alignment="bottom")
    split = cols[0].segmented_control("Split", splits, key=split_key, required=True,
                                      persist_state="session", on_change=st.session_state.update,
                                      kwargs={idx_key: 0})
    rows = dataset.indices(split)
    position = parse_index(st.session_state.get(idx_key), len(rows))
    if position is None:
        if isinstance(st.session_state.get(idx_key), str):  # text comes from a link
            url.ignored("idx", expected=f"a face number from 0 to {len(rows) - 1} of {split}")
        position = 0  # a number past a smaller dataset's end is reset quietly
    st.session_state[idx_key] = position
    position = cols[1].number_input(f"Face (0-{len(rows) - 1:,})", 0, len(rows) - 1,
                                    key=idx_key, persist_state="session")
    cols[2].button("Random", key=f"{prefix}_random", icon=":material/casino:",
                   on_click=random_face, args=(idx_key, len(rows)),
                   help="Another face of this split, at random")
    row = rows[position]
    label = int(dataset.labels[row])
    votes, fer2013 = face_votes(dataset, row)
    return ChosenFace(face=dataset.images[row], label=label if label >= 0 else None,
                      title=f"Face #{position} of {split} ({dataset.sources[row]})",
                      split=split, position=int(position), votes=votes, fer2013_label=fer2013)


def random_face(key: str, n: int) -> None:
    st.session_state[key] = int(np.random.default_rng().integers(n))


def photo_face(source: str, task: Task, prefix: str = "sa") -> ChosenFace | None:
    """The face cut from an uploaded photo or a webcam picture for a model of `task`, or None
    (nothing given yet, or the file was refused: then the message is shown)."""
    if source == "camera":
        file = st.camera_input("Take a picture", key=f"{prefix}_camera", on_change=new_photo,
                               args=(prefix,))
    else:
        file = st.file_uploader("A photo with a face (JPEG, PNG, WebP, BMP or GIF)",
                                type=PHOTO_TYPES, key=f"{prefix}_upload", on_change=new_photo,
                                args=(prefix,),
                                help=f"Up to {MAX_PHOTO_BYTES >> 20} MB. Read in memory, never "
                                     f"saved.")
    if file is None:
        return None
    data = file.getvalue()
    found = faces_in(data, file.name, task)
    if isinstance(found, str):
        st.error(found, icon=":material/error:")
        return None
    photo, controls = st.columns([3, 2])  # the face picker and crop beside the photo
    with controls:
        found = cut(data, file.name, task, found, prefix)
    if found is None:
        return None
    with photo:
        show_photo(found)
    pick = st.session_state.get(f"{prefix}_pick", 0)
    how = f"face {pick + 1}" if found.face_box else "centre crop"
    return ChosenFace(face=found.face, label=None, title=f"{file.name}, {how}")


def new_photo(prefix: str) -> None:
    """Another photo starts from its largest face."""
    st.session_state[f"{prefix}_pick"] = 0
    st.session_state[f"{prefix}_by_hand"] = False


@st.cache_data(max_entries=8, show_spinner="Finding faces...")
def faces_in(data: bytes, name: str, task: Task) -> FaceInput | str:
    """The photo decoded with its faces found (the largest cut for `task`), or the reason it was
    refused. In memory only."""
    try:
        return face_from_upload(data, name, task=task)
    except FerError as e:
        return str(e)


def cut(data: bytes, name: str, task: Task, found: FaceInput, prefix: str) -> FaceInput | None:
    """The face the user picks among those found, or the centre crop they set by hand."""
    boxes, pick_key = found.boxes, f"{prefix}_pick"
    by_hand = not boxes
    if boxes:
        st.caption(f"{len(boxes)} face{'s' if len(boxes) > 1 else ''} found (boxed on the photo, "
                   f"the one used in red).")
        if st.session_state.get(pick_key, 0) >= len(boxes):  # fewer faces in this photo
            st.session_state[pick_key] = 0
        if len(boxes) > 1:
            st.selectbox("Face", range(len(boxes)), key=pick_key, persist_state="session",
                         format_func=lambda i: f"Face {i + 1} ({boxes[i][2]} px wide)")
        by_hand = st.toggle("Crop by hand", key=f"{prefix}_by_hand", persist_state="session")
    else:
        problem = found.finder_problem
        why = f"{problem[0].upper()}{problem[1:]};" if problem else "No face found in this photo:"
        st.warning(f"{why} the centre crop below is used. Move and size it with the sliders so "
                   f"that it frames the face.", icon=":material/warning:")
    crop = centre_crop(prefix) if by_hand else None
    result = cut_face(data, name, task, min(st.session_state.get(pick_key, 0),
                                            max(len(boxes) - 1, 0)),
                      None if crop is None else (crop.cx, crop.cy, crop.size))
    if isinstance(result, str):
        st.error(result, icon=":material/error:")
        return None
    return result


@st.cache_data(max_entries=8, show_spinner=False)
def cut_face(data: bytes, name: str, task: Task, pick: int,
             centre: tuple | None) -> FaceInput | str:
    """The face `pick`, or the centre crop (cx, cy, size), cut from the photo for `task`; or
    the reason it cannot be. Kept in memory, so moving a slider elsewhere does not decode the
    photo again."""
    try:
        return face_from_upload(data, name, task=task, pick=pick,
                                centre=None if centre is None else CentreCrop(*centre))
    except FerError as e:
        return str(e)


def centre_crop(prefix: str) -> CentreCrop:
    keep = {"persist_state": "session"}
    return CentreCrop(
        cx=st.slider("Centre x", 0.0, 1.0, 0.5, 0.01, key=f"{prefix}_cx", **keep),
        cy=st.slider("Centre y", 0.0, 1.0, 0.5, 0.01, key=f"{prefix}_cy", **keep),
        size=st.slider("Size", 0.05, 1.0, 1.0, 0.01, key=f"{prefix}_size", **keep,
                       help="A fraction of the photo's shorter side"))


def show_photo(found: FaceInput) -> None:
    st.image(boxed_photo(found), caption="The photo: detected faces boxed, the square cut for "
                                         "the model in red", width=PREVIEW_SIDE)


def boxed_photo(found: FaceInput) -> Image.Image:
    """The photo (in colour when stored so, at most PREVIEW_SIDE wide) with every detected face
    in yellow and the square cut for the model in red."""
    photo = found.photo
    pixels = photo.rgb if photo.rgb is not None else (photo.gray * 255).round().astype(np.uint8)
    image = Image.fromarray(pixels).convert("RGB")
    scale = min(1.0, PREVIEW_SIDE / max(image.size))
    image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))))
    draw = ImageDraw.Draw(image)
    width = max(2, round(3 * scale * max(found.photo.gray.shape) / PREVIEW_SIDE))
    for x, y, w, h in found.boxes:
        draw.rectangle(scaled_box((x, y, w, h), scale), outline=OTHER, width=width)
    draw.rectangle(scaled_box(found.crop, scale), outline=USED, width=width)
    return image


def scaled_box(box, scale: float) -> tuple[int, int, int, int]:
    x, y, w, h = (v * scale for v in box)
    return round(x), round(y), round(x + w), round(y + h)
