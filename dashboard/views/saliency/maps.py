"""Saliency maps for the page: computed by `fer_core.explain.attribution.explain` on the shared
frozen model, cached in memory per (checkpoint version, face pixels, label, method, target,
parameters), or read from an export of the face's split when it holds the same method and
parameters for the predicted class; drawn as pictures (the map alone and over the face, zoomed
with visible pixels). Targets are named with the checkpoint's classes (`classes`).
"""

import time
from dataclasses import dataclass

import numpy as np
import streamlit as st
import torch
from PIL import Image

from fer_core.data.pictures import picture
from fer_core.explain.attribution import METHODS, Target, explain
from fer_core.explain.export_files import Export
from fer_core.explain.heatmap import SIGNED_CMAP, UNSIGNED_CMAP, colorize, overlay

ZOOM = 5
SIGNED_CMAPS = [SIGNED_CMAP, "coolwarm", "bwr", "PiYG"]
UNSIGNED_CMAPS = [UNSIGNED_CMAP, "viridis", "magma", "hot", "gray"]


@dataclass(frozen=True)
class Map:
    """One explanation of one face, moved to the CPU once for drawing."""

    values: np.ndarray  # float32 H x W
    probs: np.ndarray   # float32, one per class
    signed: bool
    title: str
    target: str         # the explained output, e.g. "Happy" or "Happy - Sad"
    output: int         # its `attribution.Scores` index: a class, or K + K a + b for a - b
    params: dict
    seconds: float
    source: str = ""    # where a map not computed here was read from


@st.cache_data(max_entries=128, show_spinner=False)
def face_map(_model: torch.nn.Module, model_key: tuple, classes: tuple[str, ...],
             face: np.ndarray, label: int | None, method: str, target: str,
             params: tuple) -> Map:
    """The map of one face (uint8 C x H x W, of the model's task) for a target in
    `Target.parse`'s text form over the model's `classes`. `model_key` names the checkpoint
    version (file and stamp): the model cannot be hashed."""
    labels = None if label is None else torch.tensor([label])
    start = time.perf_counter()
    result = explain(_model, torch.tensor(face)[None], method, Target.parse(target, classes),
                     labels=labels, **dict(params))
    maps = result.maps[0].cpu().numpy()
    seconds = time.perf_counter() - start
    return Map(values=maps, probs=result.probs[0].cpu().numpy(), signed=result.signed,
               title=result.title, target=result.target_names(classes)[0],
               output=int(result.outputs[0]), params=result.params, seconds=seconds)


def exported_map(export: Export, position: int, method: str, classes: tuple[str, ...]) -> Map:
    """The map of `method` that `export` holds for the face at `position` of its split (of the
    face's predicted class, one of the model's `classes`: an export explains that only)."""
    predicted = int(export.predictions[position])
    return Map(values=export.maps[method][position].astype(np.float32),
               probs=export.probs[position], signed=METHODS[method].signed,
               title=METHODS[method].title, target=classes[predicted], output=predicted,
               params=export.params(method), seconds=0.0, source=str(export.folder))


def zoomed(pixels: np.ndarray, zoom: int = ZOOM) -> Image.Image:
    """A small picture (H x W grey or H x W x 3 colour) enlarged with nearest-neighbour sampling,
    so its pixels stay sharp."""
    image = Image.fromarray(pixels)
    return image.resize((image.width * zoom, image.height * zoom), Image.Resampling.NEAREST)


def pictures(face: np.ndarray, result: Map, cmap: str, opacity: float,
             zoom: int = ZOOM) -> tuple[Image.Image, Image.Image]:
    """(the map alone, the map over the face (uint8 C x H x W)), zoomed."""
    coloured = colorize(result.values, result.signed, cmap)
    return zoomed(coloured, zoom), zoomed(overlay(picture(face), coloured, opacity), zoom)


def legend(result: Map) -> str:
    """What the colours mean for this map."""
    if result.signed:
        return (f"Red: pixels that raise the {result.target} score; blue: pixels that lower it "
                f"(colour scale centred at 0).")
    return f"Bright: pixels whose change moves the {result.target} score most."


def cmap_choices(signed: bool) -> list[str]:
    return SIGNED_CMAPS if signed else UNSIGNED_CMAPS


def all_methods(model, model_key, classes: tuple[str, ...], face: np.ndarray, label,
                target: str) -> list[Map]:
    """Every method with its default parameters, for one face and one target."""
    return [face_map(model, model_key, classes, face, label, key, target, ())
            for key in METHODS]
