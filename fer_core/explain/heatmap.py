"""Saliency maps as pictures: scaled for display, coloured, laid over the face.

A signed map (positive: for the target, negative: against) is scaled to [-1, 1] and drawn on a
diverging colour map centred at 0; an unsigned one is scaled to [0, 1] on a sequential map. The
scale is the map's CLIP_PERCENTILE-th percentile of |value|, so a few extreme pixels do not wash
out the rest (the usual choice in Captum's and the SmoothGrad paper's visualizations).

Faces come as pictures (`data.pictures.picture`): H x W grey or H x W x 3 colour. A map is laid
over the face's grey (its luminance for a colour face), as Captum's blended heat map does, so the
map's colours are not mixed with the face's.
"""

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..data.pictures import luminance

CLIP_PERCENTILE = 99.5
SIGNED_CMAP, UNSIGNED_CMAP = "RdBu_r", "inferno"


def scaled(values: np.ndarray, signed: bool) -> np.ndarray:
    """A map scaled to [-1, 1] (signed) or [0, 1] (unsigned), outliers clipped."""
    values = np.asarray(values, dtype=np.float32)
    magnitude = np.abs(values) if signed else np.clip(values, 0, None)
    top = float(np.percentile(magnitude, CLIP_PERCENTILE))
    if top <= 0:
        return np.zeros_like(values)
    low = -1 if signed else 0
    return np.clip(values / top, low, 1)


def colorize(values: np.ndarray, signed: bool, cmap: str | None = None) -> np.ndarray:
    """uint8 RGB (H, W, 3) of a map scaled by `scaled`, with a matplotlib colour map."""
    import matplotlib

    colours = matplotlib.colormaps[cmap or (SIGNED_CMAP if signed else UNSIGNED_CMAP)]
    unit = (scaled(values, signed) + 1) / 2 if signed else scaled(values, signed)
    return (colours(unit)[..., :3] * 255).round().astype(np.uint8)


def grey_of(face: np.ndarray) -> np.ndarray:
    """float32 H x W: a grey face as it is, a colour one (H x W x 3) as its luminance."""
    face = np.asarray(face)
    if face.ndim == 3:
        return luminance(np.moveaxis(face, -1, 0)[None])[0]
    return face.astype(np.float32)


def rgb(faces: np.ndarray, grey_dims: int) -> np.ndarray:
    """uint8 RGB of pictures: grey ones (`grey_dims` axes, H x W last) repeated into three
    channels, colour ones (one axis more) as they are."""
    faces = np.asarray(faces, dtype=np.uint8)
    return np.repeat(faces[..., None], 3, axis=-1) if faces.ndim == grey_dims else faces


def overlay(face: np.ndarray, coloured: np.ndarray, opacity: float = 0.5) -> np.ndarray:
    """uint8 RGB: the coloured map over the face's grey with the given opacity."""
    grey = np.repeat(grey_of(face)[..., None], 3, axis=2)
    mixed = (1 - opacity) * grey + opacity * coloured.astype(np.float32)
    return mixed.round().astype(np.uint8)


def beside_maps(faces: np.ndarray, maps: np.ndarray, signed: bool) -> np.ndarray:
    """uint8 RGB (N, H, 2W, 3): each face (N, H, W grey or N, H, W, 3 colour) with its coloured
    map on its right, each map on its own scale."""
    coloured = np.stack([colorize(m, signed) for m in maps])
    return np.concatenate([rgb(faces, 3), coloured], axis=2)


def panels(face: np.ndarray, values: np.ndarray, signed: bool, caption: str, zoom: int = 4,
           cmap: str | None = None, opacity: float = 0.5) -> Image.Image:
    """One picture: the face (H x W grey or H x W x 3 colour), the map and the overlay side by
    side (each `zoom` times larger, nearest-neighbour so pixels stay visible), under a one-line
    caption."""
    coloured = colorize(values, signed, cmap)
    tiles = [rgb(face, 2), coloured, overlay(face, coloured, opacity)]
    side, gap, top = face.shape[0] * zoom, 4, 18
    sheet = Image.new("RGB", (3 * side + 2 * gap, side + top), "white")
    for i, tile in enumerate(tiles):
        image = Image.fromarray(tile).resize((side, side), Image.Resampling.NEAREST)
        sheet.paste(image, (i * (side + gap), top))
    ImageDraw.Draw(sheet).text((2, 2), caption, fill="black", font=ImageFont.load_default(12))
    return sheet
