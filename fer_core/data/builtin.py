"""The built-in dataset: procedurally drawn 48x48 cartoon faces for the seven FER2013 emotions.

It is the default when no FER2013 path is given, and what the tests train on. Each face is drawn
from a few expression parameters (brows, eyes, mouth) plus non-expressive nuisance (pose, scale,
position, face shape, skin and hair tone, lighting, background, pixel noise). Expressions are
drawn from per-class means (EXPRESSION_TABLE), scaled by a per-face intensity and jittered by
per-face noise, so that neighbouring classes overlap the way real ones do and a CNN makes the
classic mistakes (fear/surprise, anger/disgust, sadness/neutral).

Because every feature is drawn from a signed distance in face coordinates, the renderer also
knows where the expression lives: `parts` marks, per face, the pixels of the brows, eyes and
mouth as rendered after the pose transform, for scoring saliency maps.

Rendering is vectorized numpy over chunks of faces, with no per-face Python: the head is drawn
over the whole image, the brows/eyes, nose and mouth only inside a small per-face window around
each (sized from the face's own parameters, so nothing is clipped). 10,000 faces take about a
second on one core. The first m faces of make_builtin_faces(n, seed) do not depend on n (m <= n),
apart from the split each one lands in.
"""

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .classes import CLASSES
from .classes import FER2013_SIZE as IMAGE_SIZE
from .dataset import PART_BITS, FaceDataset

VERSION = 2  # bump whenever a change alters the faces drawn for some (n, seed)

EXPRESSION_PARAMS = (
    "brow_raise",   # face units (~18 px) the brows move up; negative = lowered
    "brow_tilt",    # inner brow ends up (+, sad/fear) or down (-, anger), face units
    "eye_open",     # eye height, times a neutral eye
    "mouth_curve",  # mouth corners up (+, smile) or down (-, frown), face units
    "mouth_open",   # height of the mouth opening, face units
    "mouth_width",  # mouth width, times a neutral mouth
    "mouth_skew",   # one corner up, the other down (sneer), face units; its side is random
)

# Per-class mean of each expression parameter, rows in CLASSES order. The overlaps are on purpose:
# - Fear vs Surprise: both raise the brows, widen the eyes and open the mouth. Fear tilts the
#   inner brows up and stretches a wider, flatter mouth; Surprise drops the jaw into a tall,
#   narrow "O" with level brows.
# - Angry vs Disgust: both lower the brows and narrow the eyes with the mouth corners down.
#   Anger pulls the inner brows down harder and presses the lips; Disgust squints harder and
#   sneers (mouth_skew) with the lip slightly raised.
# - Sad vs Neutral: Sadness is a mild inner-brow raise, heavy lids and a slight frown, so weak
#   sad faces look neutral.
# - Happy is the most distinct (the smile), as in FER2013, though weak smiles approach Neutral.
# The per-face INTENSITY scales each face's distance from Neutral, which makes every class
# shade into Neutral; PARAM_NOISE adds per-face spread on top.
EXPRESSION_TABLE = np.array([
    # raise  tilt   eye    curve  open   width  skew
    [-0.08, -0.10, 0.85, -0.05, 0.03, 0.90, 0.00],   # Angry
    [-0.06, -0.06, 0.65, -0.07, 0.06, 0.95, 0.06],   # Disgust
    [0.09, 0.07, 1.45, -0.04, 0.14, 1.05, 0.00],     # Fear
    [0.00, 0.00, 0.80, 0.13, 0.08, 1.20, 0.00],      # Happy
    [0.00, 0.07, 0.75, -0.08, 0.00, 0.95, 0.00],     # Sad
    [0.12, 0.02, 1.55, 0.00, 0.20, 0.88, 0.00],      # Surprise
    [0.00, 0.00, 1.00, 0.00, 0.00, 1.00, 0.00],      # Neutral
], dtype=np.float64)
NEUTRAL = EXPRESSION_TABLE[CLASSES.index("Neutral")]
PARAM_NOISE = np.array([0.035, 0.03, 0.12, 0.03, 0.035, 0.08, 0.015])  # per-face std, same order
INTENSITY = (0.4, 1.2)  # uniform range of a face's expression intensity (1 = the class mean)

# Faces per class in every block of 100 (FER2013's shape, with Disgust lifted from 1.5% to 7%).
CLASS_QUOTA = (13, 7, 14, 20, 16, 12, 18)
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)

# Non-expressive nuisance: name -> (low, high) of a uniform draw; angle is drawn separately.
APPEARANCE_RANGES = {
    "scale": (17.5, 20.5),        # pixels per face unit
    "shift_x": (-2.0, 2.0),       # face centre offset, pixels
    "shift_y": (-2.0, 2.0),
    "yaw": (-0.07, 0.07),         # inner features shifted sideways, face units
    "head_width": (0.92, 1.06),
    "head_height": (1.20, 1.36),
    "jaw_taper": (0.05, 0.22),
    "skin": (0.45, 0.85),
    "hair": (0.05, 0.55),
    "hairline": (-0.85, -0.60),
    "hair_volume": (1.00, 1.12),
    "eye_x": (0.33, 0.40),
    "eye_y": (-0.16, -0.08),
    "eye_width": (0.16, 0.21),
    "brow_gap": (0.24, 0.30),     # brow line above the eye line
    "brow_length": (0.40, 0.50),
    "brow_thickness": (0.040, 0.065),
    "brow_tone": (0.20, 0.55),    # brow intensity, times skin
    "brow_arch": (0.00, 0.05),
    "mouth_y": (0.48, 0.58),
    "teeth": (0.0, 1.0),
    "light_angle": (0.0, 2 * np.pi),
    "light": (0.0, 0.4),          # strength of the directional lighting gradient
    "contrast": (0.75, 1.15),
    "brightness": (-0.08, 0.08),
    "background": (0.05, 0.95),
    "background_angle": (0.0, 2 * np.pi),
    "background_slope": (0.0, 0.3),
    "texture": (0.0, 0.15),
    "pixel_noise": (0.004, 0.03),
}
MAX_ANGLE_DEG = 15.0
ANGLE_STD_DEG = 6.0
TEXTURE_GRID = 6
MASK_MARGIN_PX = 1.0
_CHUNK = 64  # faces per rendering pass: small enough for the working arrays to stay in cache


def make_builtin_faces(n: int = 10_000, seed: int = 0) -> FaceDataset:
    """`n` procedurally drawn faces, seeded: the same (n, seed) always gives the same bytes."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    labels, params = draw_face_params(n, seed)
    images, parts = render_faces(params, seed)
    return FaceDataset(
        images=images[:, None],
        labels=labels,
        split_codes=stratified_split_codes(labels, seed),
        sources=np.array([f"builtin #{i}" for i in range(n)]),
        name="builtin",
        layout="builtin",
        fingerprint=f"builtin-v{VERSION}-n{n}-s{seed}",
        parts=parts,
    )


def draw_face_params(n: int, seed: int = 0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Labels (n,) and every per-face parameter (name -> (n,) float array) for n faces.

    Each generator fills its draws face by face, so the first m faces do not depend on n.
    """
    label_rng, expression_rng, appearance_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence([seed, VERSION]).spawn(3))
    labels = draw_labels(n, label_rng)
    expression = draw_expressions(labels, expression_rng)
    return labels, {**expression, **draw_appearance(n, appearance_rng)}


def draw_labels(n: int, rng: np.random.Generator) -> np.ndarray:
    """Labels in shuffled blocks of 100 that follow CLASS_QUOTA exactly."""
    block = np.repeat(np.arange(len(CLASSES)), CLASS_QUOTA)
    blocks = [rng.permutation(block) for _ in range(-(-n // len(block)))]
    return np.concatenate(blocks)[:n].astype(np.int64)


def draw_expressions(labels: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per-face expression parameters: Neutral + intensity * (class mean - Neutral) + noise."""
    k = len(EXPRESSION_PARAMS)
    draws = rng.random((len(labels), 2 * k + 2))
    noise = np.sqrt(-2.0 * np.log1p(-draws[:, :k])) * np.cos(2.0 * np.pi * draws[:, k:2 * k])
    intensity = INTENSITY[0] + (INTENSITY[1] - INTENSITY[0]) * draws[:, -2]
    shift = intensity[:, None] * (EXPRESSION_TABLE[labels] - NEUTRAL)
    table = dict(zip(EXPRESSION_PARAMS, (NEUTRAL + shift + PARAM_NOISE * noise).T, strict=True))
    table["eye_open"] = np.clip(table["eye_open"], 0.15, None)
    table["mouth_open"] = np.clip(table["mouth_open"], 0.0, None)
    table["mouth_width"] = np.clip(table["mouth_width"], 0.6, None)
    table["mouth_skew"] *= np.where(draws[:, -1] < 0.5, -1.0, 1.0)
    table["intensity"] = intensity
    return table


def draw_appearance(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per-face non-expressive parameters: pose, shape, tones, lighting, background, noise."""
    k = len(APPEARANCE_RANGES)
    draws = rng.random((n, k + 2 + TEXTURE_GRID**2))
    table = {name: lo + (hi - lo) * draws[:, i]
             for i, (name, (lo, hi)) in enumerate(APPEARANCE_RANGES.items())}
    normal = np.sqrt(-2.0 * np.log1p(-draws[:, k])) * np.cos(2.0 * np.pi * draws[:, k + 1])
    table["angle"] = np.deg2rad(np.clip(ANGLE_STD_DEG * normal, -MAX_ANGLE_DEG, MAX_ANGLE_DEG))
    grid = draws[:, k + 2:].reshape(n, TEXTURE_GRID, TEXTURE_GRID)
    table["texture_grid"] = (grid - 0.5) * np.sqrt(12.0)  # zero mean, unit variance
    return table


def render_faces(params: dict[str, np.ndarray], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Render faces from their parameters (as draw_face_params gives them).

    Returns uint8 images (N, 48, 48) and their uint8 part masks (PART_BITS); `seed` seeds the
    pixel noise. Tests and notebooks can edit parameters (say, one expression for every face)
    and render again: only the pixels inside the edited parts change.
    """
    n = len(params["angle"])
    images = np.empty((n, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    parts = np.empty((n, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    windows = [(draw, _pixel_boxes(params, box(params))) for draw, box in _FEATURES]
    for start in range(0, n, _CHUNK):
        rows = slice(start, min(start + _CHUNK, n))
        chunk = {k: v[rows].astype(np.float32).reshape(-1, 1, 1)
                 for k, v in params.items() if v.ndim == 1}
        chunk["texture_grid"] = params["texture_grid"][rows].astype(np.float32)
        noise_rng = np.random.default_rng([seed, VERSION, start // _CHUNK])
        noise = noise_rng.random((rows.stop - start, IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
        chunk_windows = [(draw, boxes[rows]) for draw, boxes in windows]
        images[rows], parts[rows] = _render_chunk(chunk, noise, chunk_windows)
    return images, parts


def stratified_split_codes(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """Split codes (index into SPLITS) taking SPLIT_FRACTIONS of every class, seeded."""
    rng = np.random.default_rng([seed, VERSION, 7])
    codes = np.zeros(len(labels), dtype=np.uint8)
    for k in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == k))
        n_val = int(round(len(rows) * SPLIT_FRACTIONS[1]))
        n_test = int(round(len(rows) * SPLIT_FRACTIONS[2]))
        codes[rows[:n_val]] = 1
        codes[rows[n_val:n_val + n_test]] = 2
    return codes


_PIXELS = np.arange(IMAGE_SIZE, dtype=np.float32) - (IMAGE_SIZE - 1) / 2  # pixel centres
_WINDOW_MARGIN_PX = 2.0


def _render_chunk(p, noise, windows):
    """Draw one chunk of faces (every parameter a (B, 1, 1) float32 array)."""
    p["cos"] = (np.cos(p["angle"]) / p["scale"]).astype(np.float32)
    p["sin"] = (np.sin(p["angle"]) / p["scale"]).astype(np.float32)
    image = _background(p)
    _draw_head(image, p, *_face_coords(p, _PIXELS[:, None], _PIXELS[None, :]))
    parts = np.zeros(image.shape, dtype=np.uint8)
    for draw, boxes in windows:
        _draw_in_window(image, parts, p, boxes, draw)

    angle = p["light_angle"]
    image *= 1.0 + p["light"] / IMAGE_SIZE * (
        np.cos(angle) * _PIXELS + np.sin(angle) * _PIXELS[:, None])
    image -= 0.5
    image *= p["contrast"]
    image += 0.5 + p["brightness"]
    noise -= 0.5
    noise *= np.sqrt(12.0, dtype=np.float32) * p["pixel_noise"]
    image += noise
    np.clip(image, 0.0, 1.0, out=image)
    image *= 255.0
    return np.rint(image, out=image).astype(np.uint8), parts


def _face_coords(p, rows, cols):
    """Face coordinates (u right, v down; 1 unit = `scale` pixels) at pixel centres rows x cols."""
    x, y = cols - p["shift_x"], rows - p["shift_y"]
    return x * p["cos"] + y * p["sin"], y * p["cos"] - x * p["sin"]


def _draw_in_window(image, parts, p, boxes, draw):
    """Run `draw` on a per-face window (row0, row1, col0, col1) of the image, then paste it back."""
    height = max(1, int((boxes[:, 1] - boxes[:, 0]).max()))
    width = max(1, int((boxes[:, 3] - boxes[:, 2]).max()))
    row0 = np.minimum(boxes[:, 0], IMAGE_SIZE - height)
    col0 = np.minimum(boxes[:, 2], IMAGE_SIZE - width)
    faces = np.arange(len(image))
    image_view = sliding_window_view(image, (height, width), axis=(1, 2), writeable=True)
    parts_view = sliding_window_view(parts, (height, width), axis=(1, 2), writeable=True)
    window = image_view[faces, row0, col0]
    rows = _PIXELS[row0[:, None] + np.arange(height)][:, :, None]
    cols = _PIXELS[col0[:, None] + np.arange(width)][:, None, :]
    u, v = _face_coords(p, rows, cols)
    masks = draw(window, p, u, v)
    image_view[faces, row0, col0] = window
    if masks:
        margin = MASK_MARGIN_PX / p["scale"]
        bits = parts_view[faces, row0, col0]
        for part, distance in masks.items():
            bits |= (distance < margin).astype(np.uint8) * np.uint8(PART_BITS[part])
        parts_view[faces, row0, col0] = bits


def _pixel_boxes(params, box):
    """Per-face pixel windows (row0, row1, col0, col1) around the face-unit box (u0, u1, v0, v1).

    The box's corners go through the face's pose; the window adds _WINDOW_MARGIN_PX on each side,
    more than the half pixel of anti-aliasing and the MASK_MARGIN_PX the masks reach beyond a shape.
    """
    u0, u1, v0, v1 = box
    corners_u = np.stack([u0, u0, u1, u1], axis=1)
    corners_v = np.stack([v0, v1, v0, v1], axis=1)
    cos, sin = np.cos(params["angle"])[:, None], np.sin(params["angle"])[:, None]
    s, centre = params["scale"][:, None], (IMAGE_SIZE - 1) / 2
    x = params["shift_x"][:, None] + s * (cos * corners_u - sin * corners_v) + centre
    y = params["shift_y"][:, None] + s * (sin * corners_u + cos * corners_v) + centre
    boxes = np.stack([
        np.floor(y.min(axis=1) - _WINDOW_MARGIN_PX), np.ceil(y.max(axis=1) + _WINDOW_MARGIN_PX) + 1,
        np.floor(x.min(axis=1) - _WINDOW_MARGIN_PX), np.ceil(x.max(axis=1) + _WINDOW_MARGIN_PX) + 1,
    ], axis=1)
    return np.clip(boxes, 0, IMAGE_SIZE).astype(np.int64)


def _coverage(d, scale):
    """Anti-aliased coverage of a shape from its signed distance `d` in face units."""
    cover = d * -scale
    cover += 0.5
    return np.clip(cover, 0.0, 1.0, out=cover)


def _lerp(image, cover, value):
    """Paint `value` over `image` with opacity `cover`, in place."""
    image += cover * (value - image)


def _upsample_matrix(size, grid):
    """Bilinear interpolation weights (size x grid) from a coarse grid to `size` samples."""
    src = np.clip((np.arange(size) + 0.5) * grid / size - 0.5, 0, grid - 1)
    low = np.minimum(np.floor(src).astype(int), grid - 2)
    weights = np.zeros((size, grid), dtype=np.float32)
    weights[np.arange(size), low] = 1 - (src - low)
    weights[np.arange(size), low + 1] = src - low
    return weights


_UPSAMPLE = _upsample_matrix(IMAGE_SIZE, TEXTURE_GRID)


def _background(p):
    """Background: a level, a linear gradient and a smooth random texture."""
    angle = p["background_angle"]
    grain = _UPSAMPLE @ p["texture_grid"] @ _UPSAMPLE.T
    grain *= p["texture"]
    grain += p["background"] + p["background_slope"] / IMAGE_SIZE * (
        np.cos(angle) * _PIXELS + np.sin(angle) * _PIXELS[:, None])
    return grain


def _draw_head(image, p, u, v):
    """Hair behind the head, the skin ellipse with a tapered jaw, and the fringe over it."""
    s, width, height = p["scale"], p["head_width"], p["head_height"]
    hv = v - 0.08
    hair_width, hair_height = width * p["hair_volume"], height * p["hair_volume"]
    hair_d = np.sqrt((u / hair_width) ** 2 + ((hv + 0.05) / hair_height) ** 2) - 1.0
    hair_d *= hair_width
    np.maximum(hair_d, v + 0.2, out=hair_d)
    _lerp(image, _coverage(hair_d, s), p["hair"])

    jaw = width * (1.0 - p["jaw_taper"] * np.maximum(hv, 0.0) ** 2)
    head_d = np.sqrt((u / jaw) ** 2 + (hv / height) ** 2) - 1.0
    head_d *= width
    fringe_d = p["hairline"] + 0.35 * u * u - v
    cover = _coverage(head_d, s)
    cover *= _coverage(fringe_d, s)
    _lerp(image, cover, p["skin"])


def _upper_box(q):
    """Face-unit box (u0, u1, v0, v1) of the brows, eyes and eye sockets."""
    half = np.maximum(q["eye_x"] + 1.35 * q["eye_width"], 0.12 + q["brow_length"]) + 0.03
    brow_line = q["eye_y"] - q["brow_gap"] - q["brow_raise"]
    brow_half = q["brow_thickness"] * np.sqrt(1.0 + (q["brow_tilt"] / q["brow_length"]) ** 2)
    top = np.minimum.reduce([
        brow_line - np.maximum(q["brow_tilt"], 0) - q["brow_arch"] - brow_half,
        q["eye_y"] - 0.09 * q["eye_open"] - 0.03,
        q["eye_y"] - 0.19])
    bottom = np.maximum.reduce([
        brow_line + np.maximum(-q["brow_tilt"], 0) + brow_half,
        q["eye_y"] + 0.06 * q["eye_open"],
        q["eye_y"] + 0.13])
    return q["yaw"] - half, q["yaw"] + half, top - 0.03, bottom + 0.03


def _draw_upper(image, p, u, v):
    """Brows and eyes, mirrored about the (yawed) face midline; returns their distances."""
    au = np.abs(u - p["yaw"])
    return {"brows": _draw_brows(image, p, au, v), "eyes": _draw_eyes(image, p, au, v)}


def _draw_brows(image, p, au, v):
    """Two mirrored brows: a tapered stroke whose inner end moves with brow_tilt."""
    inner, length, tilt = 0.12, p["brow_length"], p["brow_tilt"]
    t = (au - inner) / length
    base = p["eye_y"] - p["brow_gap"] - p["brow_raise"]
    line = base - tilt * (1.0 - t) - p["brow_arch"] * 4.0 * t * (1.0 - t)
    slope_norm = 1.0 / np.sqrt(1.0 + (tilt / length) ** 2)
    half = p["brow_thickness"] * (1.0 - 0.35 * np.clip(t, 0.0, 1.0))
    d = np.abs(v - line) * slope_norm - half
    np.maximum(d, np.maximum(inner - au, au - inner - length), out=d)
    _lerp(image, _coverage(d, p["scale"]), p["skin"] * p["brow_tone"])
    return d


def _draw_eyes(image, p, au, v):
    """Mirrored almond eyes: socket shadow, white, iris, and a dark upper lid."""
    s, width = p["scale"], p["eye_width"]
    du = au - p["eye_x"]
    dv = v - p["eye_y"]
    socket = np.clip(1.0 - (du / (1.35 * width)) ** 2 - ((dv + 0.03) / 0.16) ** 2, 0.0, 1.0)
    image *= 1.0 - 0.25 * socket

    profile = np.maximum(1.0 - (du / width) ** 2, 0.0)
    top = -0.09 * p["eye_open"] * profile
    bottom = 0.06 * p["eye_open"] * profile
    side = np.abs(du) - width
    open_d = np.maximum(np.maximum(top - dv, dv - bottom), side)
    open_cover = _coverage(open_d, s)
    _lerp(image, open_cover, 0.85)
    iris_d = np.sqrt(du * du + (dv - 0.01) ** 2) - 0.075
    _lerp(image, _coverage(iris_d, s) * open_cover, 0.15)
    lid_d = np.maximum(np.abs(dv - top) - 0.03, side)
    _lerp(image, _coverage(lid_d, s), 0.1)
    almond_d = np.maximum(np.maximum(top - 0.03 - dv, dv - bottom), side)
    return np.minimum(almond_d, lid_d)


def _nose_box(q):
    """Face-unit box (u0, u1, v0, v1) of the nostrils and the nose shadow."""
    centre = 1.5 * q["yaw"]
    return centre - 0.15, centre + 0.15, np.full_like(centre, -0.06), np.full_like(centre, 0.34)


def _draw_nose(image, p, u, v):
    """A hint of a nose: two soft nostrils and a shadow along the side away from the light."""
    nu = u - 1.5 * p["yaw"]
    nostrils = np.clip(1.0 - ((np.abs(nu) - 0.09) / 0.05) ** 2 - ((v - 0.30) / 0.03) ** 2, 0.0, 1.0)
    side = -np.sign(np.cos(p["light_angle"]))
    ridge = np.clip(1.0 - np.abs(nu - 0.09 * side) / 0.035, 0.0, 1.0)
    ridge *= np.clip(4.0 * (0.28 - v), 0.0, 1.0) * np.clip(4.0 * (v + 0.05), 0.0, 1.0)
    image *= 1.0 - 0.45 * nostrils - 0.2 * ridge
    return {}


def _mouth_box(q):
    """Face-unit box (u0, u1, v0, v1) of the lips, opening and teeth."""
    half = 0.30 * q["mouth_width"] + 0.01
    lift = np.abs(q["mouth_skew"]) + 0.03
    top = q["mouth_y"] - np.maximum(q["mouth_curve"], 0) - lift - 0.35 * q["mouth_open"] - 0.05
    bottom = q["mouth_y"] + np.maximum(-q["mouth_curve"], 0) + lift + 0.65 * q["mouth_open"] + 0.07
    return q["yaw"] - half - 0.03, q["yaw"] + half + 0.03, top, bottom


def _draw_mouth(image, p, u, v):
    """Lips, the lip line and (when open) a dark opening with teeth along its upper edge."""
    s = p["scale"]
    width = 0.30 * p["mouth_width"]
    mu = u - p["yaw"]
    r = mu / width
    r2 = r * r
    centre = p["mouth_y"] - p["mouth_curve"] * r2 + p["mouth_skew"] * r
    opening = np.sqrt(np.maximum(1.0 - r2, 0.0)) * p["mouth_open"]
    upper, lower = centre - 0.35 * opening, centre + 0.65 * opening
    side = np.abs(mu) - width

    lips_d = np.maximum(np.maximum(upper - 0.05 - v, v - lower - 0.07), side - 0.01)
    image *= 1.0 - 0.18 * _coverage(lips_d, s)
    inside_d = np.maximum(np.maximum(upper - v, v - lower), side)
    line_d = np.maximum(np.abs(v - centre) - 0.025, side)
    _lerp(image, _coverage(np.minimum(inside_d, line_d), s), 0.12)
    teeth_d = np.maximum(inside_d, v - upper - 0.05)
    _lerp(image, _coverage(teeth_d, s) * p["teeth"], 0.75)
    return {"mouth": lips_d}


_FEATURES = ((_draw_upper, _upper_box), (_draw_nose, _nose_box), (_draw_mouth, _mouth_box))
