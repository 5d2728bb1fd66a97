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

Rendering is vectorized over faces (torch on the CPU, in chunks); ~10,000 faces take about a
second. The first m faces of make_builtin_faces(n, seed) do not depend on n (m <= n), apart from
the split each one lands in.
"""

import numpy as np
import torch
import torch.nn.functional as F

from .classes import CLASSES, IMAGE_SIZE, NUM_CLASSES
from .dataset import PART_BITS, FaceDataset

VERSION = 1

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
    [0.09, 0.09, 1.45, -0.04, 0.12, 1.15, 0.00],     # Fear
    [0.00, 0.00, 0.80, 0.13, 0.08, 1.20, 0.00],      # Happy
    [0.00, 0.07, 0.75, -0.08, 0.00, 0.95, 0.00],     # Sad
    [0.13, 0.01, 1.55, 0.00, 0.22, 0.80, 0.00],      # Surprise
    [0.00, 0.00, 1.00, 0.00, 0.00, 1.00, 0.00],      # Neutral
], dtype=np.float64)
NEUTRAL = EXPRESSION_TABLE[CLASSES.index("Neutral")]
PARAM_NOISE = np.array([0.035, 0.03, 0.12, 0.03, 0.035, 0.08, 0.015])
INTENSITY = (0.4, 1.2)

# Faces per class in every block of 100 (FER2013's shape, with Disgust lifted from 1.5% to 7%).
CLASS_QUOTA = (13, 7, 14, 20, 16, 12, 18)
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)

# Non-expressive nuisance: name -> (low, high) of a uniform draw; angle is drawn separately.
APPEARANCE_RANGES = {
    "scale": (16.5, 19.5),        # pixels per face unit
    "shift_x": (-2.0, 2.0),       # face centre offset, pixels
    "shift_y": (-2.0, 2.0),
    "yaw": (-0.07, 0.07),         # inner features shifted sideways, face units
    "head_width": (0.92, 1.06),
    "head_height": (1.20, 1.36),
    "jaw_taper": (0.10, 0.35),
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
_CHUNK = 256


def make_builtin_faces(n: int = 10_000, seed: int = 0) -> FaceDataset:
    """`n` procedurally drawn faces, seeded: the same (n, seed) always gives the same bytes."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    labels, params = draw_face_params(n, seed)
    images, parts = render_faces(params, seed)
    return FaceDataset(
        images=images,
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
    return labels, {**draw_expressions(labels, expression_rng), **draw_appearance(n, appearance_rng)}


def draw_labels(n: int, rng: np.random.Generator) -> np.ndarray:
    """Labels in shuffled blocks of 100 that follow CLASS_QUOTA exactly."""
    block = np.repeat(np.arange(NUM_CLASSES), CLASS_QUOTA)
    blocks = [rng.permutation(block) for _ in range(-(-n // len(block)))]
    return np.concatenate(blocks)[:n].astype(np.int64)


def draw_expressions(labels: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per-face expression parameters: Neutral + intensity * (class mean - Neutral) + noise."""
    k = len(EXPRESSION_PARAMS)
    draws = rng.random((len(labels), 2 * k + 2))
    noise = np.sqrt(-2.0 * np.log1p(-draws[:, :k])) * np.cos(2.0 * np.pi * draws[:, k:2 * k])
    intensity = INTENSITY[0] + (INTENSITY[1] - INTENSITY[0]) * draws[:, -2]
    values = NEUTRAL + intensity[:, None] * (EXPRESSION_TABLE[labels] - NEUTRAL) + PARAM_NOISE * noise
    table = dict(zip(EXPRESSION_PARAMS, values.T))
    table["eye_open"] = np.clip(table["eye_open"], 0.15, None)
    table["mouth_open"] = np.clip(table["mouth_open"], 0.0, None)
    table["mouth_width"] = np.clip(table["mouth_width"], 0.6, None)
    table["mouth_skew"] *= np.where(draws[:, -1] < 0.5, -1.0, 1.0)
    table["intensity"] = intensity
    return table


def draw_appearance(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per-face non-expressive parameters: pose, shape, tones, lighting, background, noise."""
    draws = rng.random((n, len(APPEARANCE_RANGES) + 2))
    table = {name: lo + (hi - lo) * draws[:, i]
             for i, (name, (lo, hi)) in enumerate(APPEARANCE_RANGES.items())}
    normal = np.sqrt(-2.0 * np.log1p(-draws[:, -2])) * np.cos(2.0 * np.pi * draws[:, -1])
    table["angle"] = np.deg2rad(np.clip(ANGLE_STD_DEG * normal, -MAX_ANGLE_DEG, MAX_ANGLE_DEG))
    return table


def render_faces(params: dict[str, np.ndarray], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Render faces from their parameters: uint8 images (N, 48, 48) and uint8 part masks."""
    n = len(params["angle"])
    images = np.empty((n, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    parts = np.empty((n, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    for start in range(0, n, _CHUNK):
        stop = min(start + _CHUNK, n)
        chunk = {k: torch.from_numpy(np.asarray(v[start:stop], dtype=np.float32)).view(-1, 1, 1)
                 for k, v in params.items()}
        rng = np.random.default_rng([seed, VERSION, start // _CHUNK])
        texture = rng.standard_normal((stop - start, 1, TEXTURE_GRID, TEXTURE_GRID), dtype=np.float32)
        noise = rng.standard_normal((stop - start, IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
        image, mask = _render_chunk(chunk, torch.from_numpy(texture), torch.from_numpy(noise))
        images[start:stop] = image.numpy()
        parts[start:stop] = mask.numpy()
    return images, parts


def stratified_split_codes(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """Split codes (0 train, 1 val, 2 test) taking SPLIT_FRACTIONS of every class, seeded."""
    rng = np.random.default_rng([seed, VERSION, 7])
    codes = np.zeros(len(labels), dtype=np.uint8)
    for k in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == k))
        n_val = int(round(len(rows) * SPLIT_FRACTIONS[1]))
        n_test = int(round(len(rows) * SPLIT_FRACTIONS[2]))
        codes[rows[:n_val]] = 1
        codes[rows[n_val:n_val + n_test]] = 2
    return codes


def _coverage(d: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Anti-aliased coverage of a shape from its signed distance `d` in face units."""
    return (0.5 - d * scale).clamp_(0.0, 1.0)


def _lerp(image: torch.Tensor, cover: torch.Tensor, value) -> torch.Tensor:
    return image.add_(cover * (value - image))


def _render_chunk(p: dict[str, torch.Tensor], texture: torch.Tensor, noise: torch.Tensor):
    """Draw one chunk of faces; every parameter is a (B, 1, 1) tensor."""
    centre = (IMAGE_SIZE - 1) / 2
    cols = (torch.arange(IMAGE_SIZE, dtype=torch.float32) - centre).view(1, 1, -1)
    rows = (torch.arange(IMAGE_SIZE, dtype=torch.float32) - centre).view(1, -1, 1)
    s = p["scale"]
    cos, sin = torch.cos(p["angle"]) / s, torch.sin(p["angle"]) / s
    x, y = cols - p["shift_x"], rows - p["shift_y"]
    u = x * cos + y * sin             # face coordinates: u right, v down, 1 unit = s pixels
    v = y * cos - x * sin

    image = _background(p, texture, cols, rows)
    _draw_head(image, p, u, v)
    brow_d = _draw_brows(image, p, u, v)
    eye_d = _draw_eyes(image, p, u, v)
    _draw_nose(image, p, u, v)
    mouth_d = _draw_mouth(image, p, u, v)

    angle = p["light_angle"]
    light = 1.0 + p["light"] * (torch.cos(angle) * cols + torch.sin(angle) * rows) / IMAGE_SIZE
    image.mul_(light).sub_(0.5).mul_(p["contrast"]).add_(0.5 + p["brightness"])
    image.add_(noise * p["pixel_noise"])
    pixels = image.clamp_(0.0, 1.0).mul_(255.0).round_().to(torch.uint8)

    margin = MASK_MARGIN_PX / s
    parts = ((brow_d < margin).to(torch.uint8) * PART_BITS["brows"]
             | (eye_d < margin).to(torch.uint8) * PART_BITS["eyes"]
             | (mouth_d < margin).to(torch.uint8) * PART_BITS["mouth"])
    return pixels, parts


def _background(p, texture, cols, rows):
    angle = p["background_angle"]
    slope = p["background_slope"] * (torch.cos(angle) * cols + torch.sin(angle) * rows) / IMAGE_SIZE
    grain = F.interpolate(texture, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear",
                          align_corners=False)[:, 0]
    return grain.mul_(p["texture"]).add_(slope).add_(p["background"])


def _draw_head(image, p, u, v):
    """Hair behind the head, the skin ellipse with a tapered jaw, and the fringe over it."""
    s, width, height = p["scale"], p["head_width"], p["head_height"]
    hv = v - 0.08
    hair_width, hair_height = width * p["hair_volume"], height * p["hair_volume"]
    hair_d = (((u / hair_width) ** 2 + ((hv + 0.05) / hair_height) ** 2).sqrt_() - 1.0) * hair_width
    hair_d = torch.maximum(hair_d, v + 0.2)
    _lerp(image, _coverage(hair_d, s), p["hair"])

    jaw = width * (1.0 - p["jaw_taper"] * hv.clamp(min=0.0) ** 2)
    head_d = (((u / jaw) ** 2 + (hv / height) ** 2).sqrt_() - 1.0) * width
    fringe_d = p["hairline"] + 0.35 * u * u - v
    skin_cover = _coverage(head_d, s).mul_(1.0 - _coverage(-fringe_d, s))
    _lerp(image, skin_cover, p["skin"])


def _draw_brows(image, p, u, v):
    """Two mirrored brows: a tapered stroke whose inner end moves with brow_tilt."""
    s = p["scale"]
    inner, length, tilt = 0.12, p["brow_length"], p["brow_tilt"]
    au = (u - p["yaw"]).abs_()
    t = (au - inner) / length
    base = p["eye_y"] - p["brow_gap"] - p["brow_raise"]
    line = base - tilt * (1.0 - t) - p["brow_arch"] * 4.0 * t * (1.0 - t)
    slope_norm = 1.0 / torch.sqrt(1.0 + (tilt / length) ** 2)
    half = p["brow_thickness"] * (1.0 - 0.35 * t.clamp(0.0, 1.0))
    d = (v - line).abs_().mul_(slope_norm).sub_(half)
    d = torch.maximum(d, torch.maximum(inner - au, au - inner - length))
    _lerp(image, _coverage(d, s), p["skin"] * p["brow_tone"])
    return d


def _draw_eyes(image, p, u, v):
    """Mirrored almond eyes: socket shadow, white, iris, and a dark upper lid."""
    s, width = p["scale"], p["eye_width"]
    du = (u - p["yaw"]).abs_().sub_(p["eye_x"])
    dv = v - p["eye_y"]
    socket = (1.0 - (du / (1.6 * width)) ** 2 - ((dv + 0.03) / 0.2) ** 2).clamp_(0.0, 1.0)
    image.mul_(1.0 - 0.25 * socket)

    profile = 1.0 - (du / width) ** 2
    top = -0.09 * p["eye_open"] * profile
    bottom = 0.06 * p["eye_open"] * profile
    side = du.abs() - width
    open_d = torch.maximum(torch.maximum(top - dv, dv - bottom), side)
    open_cover = _coverage(open_d, s)
    _lerp(image, open_cover, 0.85)
    iris_d = (du * du + (dv - 0.01) ** 2).sqrt_().sub_(0.075)
    _lerp(image, _coverage(iris_d, s).mul_(open_cover), 0.15)
    lid_d = torch.maximum((dv - top).abs_().sub_(0.03), side)
    _lerp(image, _coverage(lid_d, s), 0.1)
    return torch.minimum(open_d, lid_d)


def _draw_nose(image, p, u, v):
    """A hint of a nose: two soft nostrils and a shadow along the side away from the light."""
    nu = u - 1.5 * p["yaw"]
    nostrils = (1.0 - ((nu.abs() - 0.09) / 0.05) ** 2 - ((v - 0.30) / 0.03) ** 2).clamp_(0.0, 1.0)
    side = -torch.sign(torch.cos(p["light_angle"]))
    ridge = (1.0 - (nu - 0.09 * side).abs_() / 0.035).clamp_(0.0, 1.0)
    ridge.mul_((4.0 * (0.28 - v)).clamp_(0.0, 1.0)).mul_((4.0 * (v + 0.05)).clamp_(0.0, 1.0))
    image.mul_(1.0 - 0.45 * nostrils - 0.2 * ridge)


def _draw_mouth(image, p, u, v):
    """Lips, the lip line and (when open) a dark opening with teeth along its upper edge."""
    s = p["scale"]
    width = 0.30 * p["mouth_width"]
    mu = u - p["yaw"]
    r = mu / width
    r2 = r * r
    centre = p["mouth_y"] - p["mouth_curve"] * r2 + p["mouth_skew"] * r
    opening = (1.0 - r2).clamp_(min=0.0).sqrt_().mul_(p["mouth_open"])
    upper, lower = centre - 0.35 * opening, centre + 0.65 * opening
    side = mu.abs() - width

    lips_d = torch.maximum(torch.maximum(upper - 0.05 - v, v - lower - 0.07), side - 0.01)
    image.mul_(1.0 - 0.18 * _coverage(lips_d, s))
    inside_d = torch.maximum(torch.maximum(upper - v, v - lower), side)
    line_d = torch.maximum((v - centre).abs_().sub_(0.025), side)
    _lerp(image, _coverage(torch.minimum(inside_d, line_d), s), 0.12)
    teeth_d = torch.maximum(inside_d, v - upper - 0.05)
    _lerp(image, _coverage(teeth_d, s).mul_(p["teeth"]), 0.75)
    return lips_d
