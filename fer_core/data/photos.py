"""An uploaded photo -> the face a model sees: decode in memory, upright, find the faces (in
grey), crop with FER2013's framing, resize to the model's task (`data.task`): its size, and in
colour for a colour model (a grey photo's one channel repeated), grey for a grey one.

Nothing is written to disk. A bad file raises one FerError saying what is wrong with it (never
quoting its content): empty, too large, an SVG, not an image, truncated, a decompression bomb (a
small file declaring a huge image), or too small to hold a face.

Faces are found with OpenCV's frontal-face Haar cascade, which ships inside
`opencv-python-headless` 4.x (no download); cv2 is imported on first use. It misses faces that
already fill the frame (a FER2013-style crop): then, or whenever the caller asks, a centre crop
whose centre and size can be changed is used instead. Where no cascade can be had (cv2 missing,
or OpenCV 5, whose wheels dropped the cascades), no faces are found and the result says why.
"""

import functools
import io
import os
import threading
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import FerError
from .pictures import is_grey_mode
from .task import FER2013, Task

MAX_PHOTO_BYTES = 16 << 20      # the dashboard's upload limit (.streamlit/config.toml)
MAX_PHOTO_PIXELS = 50_000_000   # a 50-megapixel photo decodes to 150 MB of RGB
MIN_PHOTO_SIDE = 16
FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF")
DETECT_SIDE = 640               # faces are searched in a copy scaled down to this size
CASCADE = "haarcascade_frontalface_default.xml"
# FER2013's framing relative to the Haar box: on 433 of the first 600 FER2013 faces (edges
# repeated 24 pixels outwards, scaled x4) the cascade's box was a median 0.98 of the 48-pixel
# frame (quartiles 0.92-1.03), centred within 0.02 box sides. The faces were evidently framed
# by the same kind of detector, so the frame is the box itself (made square), no margin.
FRAME_SCALE = 1.0

Box = tuple[int, int, int, int]  # x, y, width, height in photo pixels


@dataclass(frozen=True)
class Photo:
    """A decoded photo, upright (EXIF orientation applied): grayscale float32 (H, W) in [0, 1]
    (faces are found in it), and for a photo stored in colour its uint8 RGB (H, W, 3) (None for
    a grey one); its format and original mode, for messages."""

    gray: np.ndarray
    format: str
    mode: str
    rgb: np.ndarray | None = None


@dataclass(frozen=True)
class CentreCrop:
    """A square crop chosen by hand: centre (fractions of the width and height) and side (a
    fraction of the shorter side)."""

    cx: float = 0.5
    cy: float = 0.5
    size: float = 1.0

    def __post_init__(self):
        if not (0 <= self.cx <= 1 and 0 <= self.cy <= 1 and 0.05 <= self.size <= 1):
            raise FerError("centre crop: centre must lie in [0, 1] and size in [0.05, 1]")

    def box(self, height: int, width: int) -> Box:
        side = max(1, round(self.size * min(height, width)))
        return (round(self.cx * width - side / 2), round(self.cy * height - side / 2), side, side)


@dataclass(frozen=True)
class FaceInput:
    """The uint8 face (C, H, W) the model receives (its task's shape), and how it was cut from
    the photo.

    boxes: every detected face, largest first; face_box: the one used (None when no face was
    found or a centre crop was asked for); crop: the square actually cut (it may reach past the
    photo's edges, which are then repeated); finder_problem: why faces could not be searched
    for at all (face finding is unavailable), else None.
    """

    face: np.ndarray
    photo: Photo
    boxes: list[Box]
    face_box: Box | None
    crop: Box
    finder_problem: str | None = None


def face_from_upload(data: bytes, name: str = "upload", *, task: Task = FER2013, pick: int = 0,
                     centre: CentreCrop | None = None) -> FaceInput:
    """Decode `data`, find faces and cut face number `pick` (largest first) with FER2013's
    framing, as the face a model of `task` takes; with `centre`, or when no face is found, cut
    that centre crop (default: the largest centred square). Where face finding is unavailable,
    no face is found and `finder_problem` says why."""
    photo = decode_photo(data, name)
    try:
        boxes, finder_problem = find_faces(photo.gray), None
    except FaceFindingUnavailable as e:
        boxes, finder_problem = [], str(e)
    if centre is None and boxes:
        if not 0 <= pick < len(boxes):
            raise FerError(f"{name}: face {pick} asked for, but {len(boxes)} found")
        face_box = boxes[pick]
        crop = fer_frame(face_box)
    else:
        face_box = None
        crop = (centre or CentreCrop()).box(*photo.gray.shape)
    return FaceInput(face=crop_face(photo, crop, task), photo=photo, boxes=boxes,
                     face_box=face_box, crop=crop, finder_problem=finder_problem)


# ---- decoding ------------------------------------------------------------------------------

def decode_photo(data: bytes, name: str = "upload") -> Photo:
    """The photo in `data`, upright, in grey and (when stored in colour) in colour; or a
    FerError saying what is wrong."""
    if not data:
        raise FerError(f"{name}: empty file")
    if len(data) > MAX_PHOTO_BYTES:
        raise FerError(f"{name}: {len(data) / 2**20:.1f} MB, above the "
                       f"{MAX_PHOTO_BYTES >> 20} MB limit for a photo")
    if looks_like_svg(data):
        raise FerError(f"{name}: an SVG drawing, not a photo: export it as PNG or JPEG")
    try:
        with Image.open(io.BytesIO(data), formats=FORMATS) as image:
            check_size(image, name)
            image.load()
            upright = ImageOps.exif_transpose(image)
            gray, rgb = grey_and_colour(upright)
            return Photo(gray=gray, format=image.format, mode=image.mode, rgb=rgb)
    except UnidentifiedImageError:
        raise FerError(f"{name}: not an image in a supported format "
                       f"({', '.join(FORMATS)})") from None
    except Image.DecompressionBombError:
        raise FerError(f"{name}: declares an image of more than {MAX_PHOTO_PIXELS:,} pixels "
                       f"(a decompression bomb?)") from None
    except (OSError, SyntaxError, ValueError, EOFError):
        raise FerError(f"{name}: truncated or damaged image") from None


def looks_like_svg(data: bytes) -> bool:
    head = data[:4096].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return head.startswith(b"<svg") or (head.startswith(b"<?xml") and b"<svg" in head)


def check_size(image: Image.Image, name: str) -> None:
    """Refuse, from the header alone, images too large to decode safely or too small for a
    face."""
    width, height = image.size
    if width * height > MAX_PHOTO_PIXELS:
        raise FerError(f"{name}: declares {width} x {height} pixels, above the "
                       f"{MAX_PHOTO_PIXELS:,}-pixel limit (a decompression bomb?)")
    if min(width, height) < MIN_PHOTO_SIDE:
        raise FerError(f"{name}: {width} x {height} pixels, too small to hold a face "
                       f"(at least {MIN_PHOTO_SIDE} x {MIN_PHOTO_SIDE})")


def grey_and_colour(image: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """(grayscale float32 (H, W) in [0, 1], uint8 RGB (H, W, 3)) of a colour or palette image;
    (grayscale, None) of a grey one. Transparent pixels are laid over white."""
    if is_grey_mode(image.mode):
        return grayscale(image), None
    rgb = on_white(image)
    return np.asarray(rgb.convert("L"), dtype=np.float32) / 255, np.asarray(rgb)


def grayscale(image: Image.Image) -> np.ndarray:
    """float32 (H, W) in [0, 1] from any mode: 16- and 32-bit integer images are scaled to
    their range (PIL's convert("L") clips them); transparent pixels are laid over white."""
    if image.mode.startswith("I;16"):
        return np.asarray(image, dtype=np.float32) / 65535
    if image.mode == "I":
        values = np.asarray(image, dtype=np.float64)
        top = 65535 if values.max() <= 65535 else values.max()
        return (np.clip(values, 0, None) / top).astype(np.float32)
    if image.mode == "F":
        return np.clip(np.asarray(image, dtype=np.float32), 0, 1)
    if image.mode != "L":
        image = on_white(image).convert("L")
    return np.asarray(image, dtype=np.float32) / 255


def on_white(image: Image.Image) -> Image.Image:
    """An 8-bit RGB version of any image, transparent pixels laid over white."""
    if image.has_transparency_data:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


# ---- finding and cutting faces ---------------------------------------------------------------

_DETECT_LOCK = threading.Lock()


class FaceFindingUnavailable(FerError):
    """This machine's OpenCV cannot find faces: not installed, or without the Haar cascades."""


@functools.cache
def haar_cascade():
    """The frontal-face cascade, loaded once (a failure is not cached); FaceFindingUnavailable
    when cv2 cannot be imported or has no cascade (the OpenCV 5 wheels have neither
    cv2.CascadeClassifier nor cv2.data's XML files)."""
    try:
        import cv2
    except ImportError as e:
        raise FaceFindingUnavailable(
            f"face finding is unavailable: OpenCV (cv2) cannot be imported ({e})") from None
    version = getattr(cv2, "__version__", "?")
    folder = getattr(getattr(cv2, "data", None), "haarcascades", None)
    if not (hasattr(cv2, "CascadeClassifier") and folder
            and os.path.isfile(os.path.join(folder, CASCADE))):
        raise FaceFindingUnavailable(
            f"face finding is unavailable: OpenCV {version} has no Haar cascades")
    cascade = cv2.CascadeClassifier(os.path.join(folder, CASCADE))
    if cascade.empty():
        raise FaceFindingUnavailable(
            f"face finding is unavailable: OpenCV {version} cannot load its {CASCADE}")
    return cascade


def find_faces(gray: np.ndarray) -> list[Box]:
    """Frontal faces in a grayscale photo (float [0, 1]), largest first, in photo pixels;
    FaceFindingUnavailable when this OpenCV cannot look for them."""
    cascade = haar_cascade()
    import cv2

    pixels = np.round(gray * 255).astype(np.uint8)
    scale = min(1.0, DETECT_SIDE / max(pixels.shape))
    if scale < 1:
        pixels = cv2.resize(pixels, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    pixels = cv2.equalizeHist(pixels)
    with _DETECT_LOCK:  # one cascade object, not documented as safe to share between threads
        found = cascade.detectMultiScale(pixels, scaleFactor=1.1, minNeighbors=5,
                                         minSize=(20, 20))
    boxes = [tuple(round(v / scale) for v in box) for box in np.asarray(found).reshape(-1, 4)]
    return sorted(boxes, key=lambda b: b[2] * b[3], reverse=True)


def fer_frame(face_box: Box) -> Box:
    """The square around a detected face that frames it as FER2013 does."""
    x, y, w, h = face_box
    side = max(1, round(max(w, h) * FRAME_SCALE))
    cx, cy = x + w / 2, y + h / 2
    return (round(cx - side / 2), round(cy - side / 2), side, side)


def crop_face(photo: Photo, crop: Box, task: Task) -> np.ndarray:
    """uint8 (C, S, S) for a model of `task`: the `crop` square of the photo (edges repeated
    where it reaches past them), resized to the task's size S with an antialiasing bicubic
    filter; in colour for a colour task (a grey photo's one channel repeated), else grey."""
    size = (task.size, task.size)
    if task.colour and photo.rgb is not None:
        square = Image.fromarray(cut_square(photo.rgb, crop))
        return np.moveaxis(np.asarray(square.resize(size, Image.Resampling.BICUBIC)), -1, 0)
    resized = Image.fromarray(cut_square(photo.gray, crop)).resize(size, Image.Resampling.BICUBIC)
    grey = np.round(np.clip(np.asarray(resized), 0, 1) * 255).astype(np.uint8)
    return np.repeat(grey[None], task.channels, axis=0)


def cut_square(pixels: np.ndarray, crop: Box) -> np.ndarray:
    """The `crop` square of an (H, W) or (H, W, 3) photo, edges repeated where it reaches past
    them."""
    x, y, w, h = crop
    height, width = pixels.shape[:2]
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, width), min(y + h, height)
    if x1 <= x0 or y1 <= y0:
        raise FerError(f"crop {crop} lies outside the {width} x {height} photo")
    pad = ((y0 - y, y + h - y1), (x0 - x, x + w - x1)) + ((0, 0),) * (pixels.ndim - 2)
    return np.pad(pixels[y0:y1, x0:x1], pad, mode="edge")
