"""Uploaded photos: every format and mode, EXIF rotation, face finding and the no-face fallback,
and one clear error for each kind of bad file. The photos are scikit-image's astronaut."""

import io
import struct
import sys
import zlib

import numpy as np
import pytest
from PIL import Image

from fer_core.data.photos import (
    MAX_PHOTO_BYTES,
    CentreCrop,
    decode_photo,
    face_from_upload,
    fer_frame,
)
from fer_core.data.task import FER2013
from fer_core.errors import FerError

skimage_data = pytest.importorskip("skimage.data")


@pytest.fixture(scope="module")
def astronaut() -> Image.Image:
    return Image.fromarray(skimage_data.astronaut())


@pytest.fixture(scope="module")
def reference_box(astronaut):
    found = face_from_upload(encode(astronaut, "PNG"))
    assert len(found.boxes) == 1
    return found.face_box


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def overlap(a, b) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    w = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    h = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    return w * h / (a[2] * a[3] + b[2] * b[3] - w * h)


def transparent(image: Image.Image) -> Image.Image:
    rgba = image.convert("RGBA")
    alpha = np.full(image.size[::-1], 255, np.uint8)
    alpha[:, :60] = 0
    rgba.putalpha(Image.fromarray(alpha))
    return rgba


def sixteen_bit(image: Image.Image) -> Image.Image:
    gray = np.asarray(image.convert("L"), dtype=np.uint16) * 257
    return Image.fromarray(gray)


PHOTOS = {
    "jpeg-rgb": lambda im: encode(im, "JPEG", quality=90),
    "jpeg-cmyk": lambda im: encode(im.convert("CMYK"), "JPEG", quality=90),
    "jpeg-gray": lambda im: encode(im.convert("L"), "JPEG", quality=90),
    "png-rgb": lambda im: encode(im, "PNG"),
    "png-rgba": lambda im: encode(transparent(im), "PNG"),
    "png-palette": lambda im: encode(im.convert("P", palette=Image.Palette.ADAPTIVE), "PNG"),
    "png-la": lambda im: encode(transparent(im).convert("LA"), "PNG"),
    "png-16bit": lambda im: encode(sixteen_bit(im), "PNG"),
    "webp": lambda im: encode(im, "WEBP", quality=90),
    "bmp": lambda im: encode(im, "BMP"),
    "gif": lambda im: encode(im.convert("P", palette=Image.Palette.ADAPTIVE), "GIF"),
    "gif-animated": lambda im: encode(im, "GIF", save_all=True, duration=100,
                                      append_images=[Image.new("RGB", im.size, "black")]),
}


@pytest.mark.parametrize("kind", list(PHOTOS))
def test_every_format_and_mode_gives_the_astronauts_face(astronaut, reference_box, kind):
    result = face_from_upload(PHOTOS[kind](astronaut), f"astronaut.{kind}")
    assert result.face.shape == (1, 48, 48) and result.face.dtype == np.uint8
    assert result.photo.gray.shape == (512, 512)
    assert 0 <= result.photo.gray.min() and result.photo.gray.max() <= 1
    assert result.face_box is not None and overlap(result.face_box, reference_box) > 0.7
    assert result.crop == fer_frame(result.face_box)


def test_sixteen_bit_grey_is_scaled_not_clipped(astronaut):
    decoded = decode_photo(encode(sixteen_bit(astronaut), "PNG"))
    eight_bit = np.asarray(astronaut.convert("L"), dtype=np.float32) / 255
    assert decoded.mode.startswith("I")
    np.testing.assert_allclose(decoded.gray, eight_bit, atol=1e-6)
    assert (decoded.gray >= 0.999).mean() < 0.05


def test_transparent_pixels_are_laid_over_white(astronaut):
    decoded = decode_photo(encode(transparent(astronaut), "PNG"))
    assert (decoded.gray[:, :60] == 1).all()


@pytest.mark.parametrize("orientation, turn", [(6, Image.Transpose.ROTATE_90),
                                               (8, Image.Transpose.ROTATE_270),
                                               (3, Image.Transpose.ROTATE_180)])
def test_exif_orientation_is_honoured(astronaut, reference_box, orientation, turn):
    stored = astronaut.crop((0, 0, 512, 400)).transpose(turn)   # as a camera would store it
    exif = Image.Exif()
    exif[0x0112] = orientation
    result = face_from_upload(encode(stored, "JPEG", quality=90, exif=exif))
    assert result.photo.gray.shape == (400, 512)
    assert overlap(result.face_box, reference_box) > 0.7


def test_several_faces_come_largest_first_and_any_can_be_picked(astronaut):
    group = Image.new("RGB", (768, 512), "white")
    group.paste(astronaut, (0, 0))
    group.paste(astronaut.resize((256, 256)), (512, 128))
    data = encode(group, "PNG")
    first, second = face_from_upload(data), face_from_upload(data, pick=1)
    assert len(first.boxes) == 2 and first.boxes == second.boxes
    assert first.face_box[0] < 512 <= second.face_box[0]
    assert first.face_box[2] > second.face_box[2]
    with pytest.raises(FerError, match="face 2 asked for, but 2 found"):
        face_from_upload(data, pick=2)


def test_no_face_falls_back_to_a_centre_crop():
    noise = np.random.default_rng(0).integers(0, 256, (300, 400), dtype=np.uint8)
    data = encode(Image.fromarray(noise), "PNG")
    result = face_from_upload(data)
    assert result.boxes == [] and result.face_box is None and result.finder_problem is None
    assert result.crop == (50, 0, 300, 300)
    moved = face_from_upload(data, centre=CentreCrop(cx=0.25, cy=0.5, size=0.5))
    assert moved.crop == (25, 75, 150, 150)
    expected = Image.fromarray(noise[75:225, 25:175]).resize((48, 48), Image.Resampling.BICUBIC)
    assert np.abs(moved.face[0].astype(int) - np.asarray(expected, dtype=int)).max() <= 1


@pytest.mark.parametrize("hidden", ["CascadeClassifier", "haarcascades", "cv2"])
def test_without_face_finding_a_photo_gets_the_centre_crop_and_the_reason(astronaut, monkeypatch,
                                                                          fresh_face_finder,
                                                                          hidden):
    import cv2

    if hidden == "cv2":  # not installed: the import fails
        monkeypatch.setitem(sys.modules, "cv2", None)
    else:  # the OpenCV 5 wheels: no CascadeClassifier, no cascade files
        monkeypatch.delattr(cv2.data if hidden == "haarcascades" else cv2, hidden)
    result = face_from_upload(encode(astronaut, "PNG"))
    assert result.boxes == [] and result.face_box is None
    assert result.crop == (0, 0, 512, 512)
    reason = "cannot be imported" if hidden == "cv2" else f"{cv2.__version__} has no Haar cascades"
    assert result.finder_problem.startswith("face finding is unavailable: OpenCV")
    assert reason in result.finder_problem


def test_a_crop_reaching_past_the_edge_repeats_the_edge():
    ramp = np.tile(np.linspace(0, 255, 100).astype(np.uint8), (100, 1))
    result = face_from_upload(encode(Image.fromarray(ramp), "PNG"),
                              centre=CentreCrop(cx=0.0, cy=0.5, size=1.0))
    assert result.crop == (-50, 0, 100, 100)
    assert (result.face[..., :20] == 0).all()


def test_a_centre_crop_can_be_asked_for_when_a_face_was_found(astronaut):
    result = face_from_upload(encode(astronaut, "PNG"), centre=CentreCrop())
    assert result.face_box is None and len(result.boxes) == 1
    assert result.crop == (0, 0, 512, 512)


COLOUR_64 = FER2013.with_input(size=64, channels=3)


def test_a_colour_photo_for_a_colour_model_keeps_its_colour_at_the_models_size(astronaut):
    data = encode(astronaut, "PNG")
    grey, colour = face_from_upload(data), face_from_upload(data, task=COLOUR_64)
    assert grey.face.shape == (1, 48, 48) and colour.face.shape == (3, 64, 64)
    assert colour.face.dtype == np.uint8 and colour.crop == grey.crop
    red, green, blue = colour.face.astype(int)
    assert np.abs(red - blue).mean() > 20  # the astronaut's skin and suit: far from grey
    x, y, w, h = colour.crop
    expected = astronaut.crop((x, y, x + w, y + h)).resize((64, 64), Image.Resampling.BICUBIC)
    np.testing.assert_array_equal(np.moveaxis(colour.face, 0, -1), np.asarray(expected))


def test_a_grey_photo_for_a_colour_model_repeats_its_channel(astronaut):
    grey = encode(astronaut.convert("L"), "PNG")
    result = face_from_upload(grey, task=COLOUR_64, centre=CentreCrop())
    assert result.face.shape == (3, 64, 64) and result.photo.rgb is None
    assert (result.face == result.face[:1]).all()
    expected = astronaut.convert("L").resize((64, 64), Image.Resampling.BICUBIC)
    assert np.abs(result.face[0].astype(int) - np.asarray(expected, dtype=int)).mean() < 0.5


@pytest.mark.parametrize("crop", [dict(cx=1.5), dict(size=0.0), dict(cy=-0.1)])
def test_a_centre_crop_outside_its_bounds_is_refused(crop):
    with pytest.raises(FerError, match="centre crop"):
        CentreCrop(**crop)


# ---- bad files: one clear message each -----------------------------------------------------

def png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares width x height grey pixels."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b""))


def test_an_empty_file_is_refused():
    with pytest.raises(FerError, match="photo.jpg: empty file"):
        decode_photo(b"", "photo.jpg")


def test_a_file_that_is_not_an_image_is_refused():
    with pytest.raises(FerError, match="photo.jpg: not an image in a supported format"):
        decode_photo(b"name,age\nsecret,42\n" * 20, "photo.jpg")


def test_a_file_in_an_unsupported_format_is_refused(astronaut):
    with pytest.raises(FerError, match="not an image in a supported format"):
        decode_photo(encode(astronaut, "TIFF"))


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_a_truncated_image_is_refused(astronaut, fmt):
    data = encode(astronaut, fmt)
    with pytest.raises(FerError, match="truncated or damaged"):
        decode_photo(data[:len(data) // 2])


@pytest.mark.parametrize("side", [8_000, 30_000])
def test_a_decompression_bomb_is_refused(side):
    data = png_declaring(side, side)
    assert len(data) < 200
    with pytest.raises(FerError, match="decompression bomb"):
        decode_photo(data)


def test_an_svg_is_refused():
    svg = b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="48"/>'
    with pytest.raises(FerError, match="an SVG drawing, not a photo"):
        decode_photo(svg, "face.png")


def test_a_one_pixel_image_is_refused():
    with pytest.raises(FerError, match="1 x 1 pixels, too small to hold a face"):
        decode_photo(encode(Image.new("L", (1, 1)), "PNG"))


def test_a_file_above_the_size_limit_is_refused():
    with pytest.raises(FerError, match="above the 16 MB limit"):
        decode_photo(b"\xff\xd8\xff" + bytes(MAX_PHOTO_BYTES), "huge.jpg")


def test_messages_never_quote_the_file():
    secret = b"password=hunter2 " * 10
    with pytest.raises(FerError) as caught:
        decode_photo(secret, "notes.png")
    assert "hunter2" not in str(caught.value)
