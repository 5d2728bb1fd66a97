"""Faces as pictures: the (H, W) or (H, W, 3) arrays that Pillow, Streamlit and plotly draw.

A dataset holds faces as (C, H, W) (`data.task`); a page or a PNG wants grey faces as (H, W) and
colour faces as (H, W, 3).
"""

import numpy as np
from PIL import Image


def picture(face: np.ndarray) -> np.ndarray:
    """One face (C, H, W) as (H, W) when grey, (H, W, 3) when colour; an (H, W) face as it is."""
    if face.ndim == 2:
        return face
    return face[0] if face.shape[0] == 1 else np.moveaxis(face, 0, -1)


def pictures(faces: np.ndarray) -> np.ndarray:
    """Faces (N, C, H, W) as (N, H, W) when grey, (N, H, W, 3) when colour."""
    return faces[:, 0] if faces.shape[1] == 1 else np.moveaxis(faces, 1, -1)


def pil_image(face: np.ndarray) -> Image.Image:
    """A uint8 face (C, H, W) or (H, W) as a Pillow image: mode L when grey, RGB when colour."""
    return Image.fromarray(np.ascontiguousarray(picture(face)))


def is_grey_mode(mode: str) -> bool:
    """Whether a Pillow image mode stores grey pixels (1, L, LA, La, I, F and the 16-bit I;16
    modes)."""
    return mode in ("1", "L", "LA", "La", "I", "F") or mode.startswith("I;16")


def luminance(faces: np.ndarray) -> np.ndarray:
    """Grey (N, H, W) float32 of uint8 faces (N, C, H, W): ITU-R 601-2 luma for colour (as
    Pillow's convert('L')), the one channel for grey. Overlays draw maps on it."""
    if faces.shape[1] == 1:
        return faces[:, 0].astype(np.float32)
    weights = np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return np.einsum("nchw,c->nhw", faces.astype(np.float32), weights)
