"""Faces composed into one image: one st.image of a grid renders far faster than many."""

import base64
import io

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from fer_core.data.dataset import FaceDataset
from fer_core.data.pictures import pil_image
from fer_core.explain.contact_sheet import GAP, LABEL_COLOR, TILE_TEXT, gallery_grid

__all__ = ["GAP", "TILE_TEXT", "class_grid", "gallery_grid", "png_data_uri"]

LABEL_WIDTH = 110


def sample_rows(dataset: FaceDataset, per_class: int, split: str = "train") -> list[np.ndarray]:
    """Per class of the dataset's task (in its order), the row indices of its first `per_class`
    faces in `split` (any split when that one has none of the class)."""
    rows = dataset.indices(split) if split in dataset.present_splits() else np.arange(len(dataset))
    picked = []
    for k in range(dataset.task.num_classes):
        of_class = rows[dataset.labels[rows] == k]
        if not len(of_class):
            of_class = np.flatnonzero(dataset.labels == k)
        picked.append(of_class[:per_class])
    return picked


def class_grid(dataset: FaceDataset, per_class: int = 12, scale: int = 2) -> Image.Image:
    """One RGBA image: a row of faces per class, labelled on the left, transparent around."""
    size = dataset.task.size * scale
    rows = sample_rows(dataset, per_class)
    width = LABEL_WIDTH + per_class * (size + GAP)
    height = dataset.task.num_classes * (size + GAP)
    grid = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(grid)
    font = ImageFont.load_default(size=18)
    for r, (name, indices) in enumerate(zip(dataset.task.classes, rows)):
        top = r * (size + GAP)
        label = name if len(indices) else f"{name} (none)"
        draw.text((0, top + size // 2), label, fill=LABEL_COLOR, font=font, anchor="lm")
        for c, i in enumerate(indices):
            face = pil_image(dataset.images[i]).resize((size, size), Image.NEAREST)
            grid.paste(face.convert("RGBA"), (LABEL_WIDTH + c * (size + GAP), top))
    return grid


def png_data_uri(image: Image.Image) -> str:
    """The image as a PNG data URI, for plotly's go.Image source."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
