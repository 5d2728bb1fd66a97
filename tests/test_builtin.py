"""The built-in procedural faces: contract, determinism, parts masks, and that expressions and
nuisance factors move the pixels they should."""

import numpy as np
import pytest

from fer_core.data import builtin
from fer_core.data.builtin import (
    CLASS_QUOTA,
    EXPRESSION_PARAMS,
    EXPRESSION_TABLE,
    VERSION,
    draw_face_params,
    make_builtin_faces,
    render_faces,
)
from fer_core.data.classes import CLASSES
from fer_core.data.dataset import PART_BITS, SPLITS

NUM_CLASSES = len(CLASSES)


@pytest.fixture(scope="module")
def faces():
    return make_builtin_faces(400, seed=3)


def _part_rows(parts, bit):
    """Mean image row of one part, per face."""
    mask = (parts & bit) > 0
    rows = np.arange(parts.shape[1])[None, :, None]
    return (mask * rows).sum(axis=(1, 2)) / mask.sum(axis=(1, 2))


def _with(params, **values):
    """A copy of `params` with some parameters set to one value for every face."""
    copy = {k: v.copy() for k, v in params.items()}
    for name, value in values.items():
        copy[name][:] = value
    return copy


def _expression(name):
    return dict(zip(EXPRESSION_PARAMS, EXPRESSION_TABLE[CLASSES.index(name)], strict=True))


def test_contract(faces):
    n = 400
    assert faces.images.shape == (n, 1, 48, 48) and faces.images.dtype == np.uint8
    assert faces.labels.shape == (n,) and faces.labels.dtype == np.int64
    assert faces.split_codes.dtype == np.uint8
    assert faces.parts.shape == (n, 48, 48) and faces.parts.dtype == np.uint8
    assert faces.parts.max() <= sum(PART_BITS.values())
    assert faces.sources[0] == "builtin #0" and faces.sources[-1] == f"builtin #{n - 1}"
    assert (faces.name, faces.layout) == ("builtin", "builtin")
    assert faces.task.classes == CLASSES and faces.task.shape == (1, 48, 48)
    assert faces.fingerprint == f"builtin-v{VERSION}-n{n}-s3"


def test_same_seed_same_bytes_and_other_seeds_differ(faces):
    again = make_builtin_faces(400, seed=3)
    for field in ("images", "labels", "split_codes", "parts"):
        assert getattr(faces, field).tobytes() == getattr(again, field).tobytes()
    other = make_builtin_faces(400, seed=4)
    assert other.images.tobytes() != faces.images.tobytes()
    assert other.fingerprint != faces.fingerprint


def test_first_faces_do_not_depend_on_n(faces):
    small = make_builtin_faces(150, seed=3)
    assert np.array_equal(small.images, faces.images[:150])
    assert np.array_equal(small.parts, faces.parts[:150])
    assert np.array_equal(small.labels, faces.labels[:150])


def test_classes_follow_the_quota(faces):
    counts = np.bincount(faces.labels, minlength=NUM_CLASSES)
    assert counts.tolist() == [4 * q for q in CLASS_QUOTA]
    assert counts[CLASSES.index("Disgust")] / len(faces) >= 0.05


def test_splits_are_stratified_80_10_10():
    faces = make_builtin_faces(1000, seed=1)
    assert faces.present_splits() == list(SPLITS)
    for k in range(NUM_CLASSES):
        codes = faces.split_codes[faces.labels == k]
        fractions = np.bincount(codes, minlength=3) / len(codes)
        assert np.allclose(fractions, [0.8, 0.1, 0.1], atol=0.02), (CLASSES[k], fractions)
    assert not np.array_equal(faces.split_codes, make_builtin_faces(1000, seed=2).split_codes)


def test_every_face_has_every_part_in_its_place(faces):
    for bit in PART_BITS.values():
        assert ((faces.parts & bit) > 0).any(axis=(1, 2)).all()
    brows = _part_rows(faces.parts, PART_BITS["brows"])
    eyes = _part_rows(faces.parts, PART_BITS["eyes"])
    mouth = _part_rows(faces.parts, PART_BITS["mouth"])
    assert (brows < eyes).all() and (eyes < mouth).all()
    assert 10 < brows.mean() < eyes.mean() < 24 < mouth.mean() < 40


def test_parts_cover_a_small_share_of_the_image(faces):
    share = (faces.parts > 0).mean(axis=(1, 2))
    assert 0.03 < share.min() and share.max() < 0.25


def test_nuisance_factors_vary_the_pixels(faces):
    pixels = faces.images[:, 0].astype(np.float32)
    assert pixels.mean(axis=(1, 2)).std() > 15          # lighting, skin, background levels
    assert pixels.std(axis=(1, 2)).std() > 4            # contrast
    corners = pixels[:, :4, :4].mean(axis=(1, 2))
    assert corners.std() > 30                            # background
    centroids = np.stack([_part_rows(faces.parts, b) for b in PART_BITS.values()])
    assert centroids.std(axis=1).min() > 0.8             # pose and scale move the parts


def test_nuisance_leaves_the_parts_alone():
    _, params = draw_face_params(64, seed=5)
    dark = _with(params, background=0.1, skin=0.5, light=0.0)
    bright = _with(params, background=0.9, skin=0.8, light=0.4)
    dark_images, dark_parts = render_faces(dark, seed=5)
    bright_images, bright_parts = render_faces(bright, seed=5)
    assert np.array_equal(dark_parts, bright_parts)
    corners = np.s_[:, :3, :3]
    assert bright_images[corners].mean() - dark_images[corners].mean() > 100


def test_a_shift_moves_the_parts_with_the_face():
    _, params = draw_face_params(32, seed=6)
    params = _with(params, angle=0.0, shift_x=0.0, shift_y=0.0)
    _, parts = render_faces(params, seed=6)
    _, moved = render_faces(_with(params, shift_y=2.0), seed=6)
    assert np.array_equal(parts[:, :-2], moved[:, 2:])


@pytest.mark.parametrize(("a", "b", "part"), [
    ("Happy", "Sad", "mouth"), ("Surprise", "Neutral", "mouth"),
    ("Surprise", "Angry", "eyes"), ("Sad", "Angry", "brows"),
])
def test_expressions_move_the_pixels_of_their_part(a, b, part):
    _, params = draw_face_params(64, seed=7)
    images_a, parts_a = render_faces(_with(params, **_expression(a)), seed=7)
    images_b, parts_b = render_faces(_with(params, **_expression(b)), seed=7)
    difference = np.abs(images_a.astype(np.float32) - images_b)
    inside = ((parts_a | parts_b) & PART_BITS[part]) > 0
    elsewhere = (parts_a | parts_b) == 0
    assert difference[inside].mean() > 15
    assert difference[elsewhere].max() == 0


def _corner_lift(mouth):
    """Rows the ends of a (48, 48) mouth mask sit above its middle (negative: below)."""
    cols = np.flatnonzero(mouth.any(axis=0))
    third = max(1, len(cols) // 3)
    middle, ends = cols[third:-third], np.r_[cols[:third], cols[-third:]]

    def centre(c):
        return (mouth[:, c] * np.arange(48)[:, None]).sum() / mouth[:, c].sum()

    return centre(middle) - centre(ends)


def test_happy_mouths_curve_up_and_sad_mouths_down():
    _, params = draw_face_params(32, seed=8)
    params = _with(params, angle=0.0)
    lift = {}
    for name in ("Happy", "Sad"):
        _, parts = render_faces(_with(params, **_expression(name)), seed=8)
        lift[name] = np.mean([_corner_lift(m) for m in (parts & PART_BITS["mouth"]) > 0])
    assert lift["Happy"] > 1.0 and lift["Sad"] < -0.5


def test_feature_windows_hold_the_whole_feature(monkeypatch):
    """Drawing features in small per-face windows gives the same faces as drawing everywhere."""
    _, params = draw_face_params(96, seed=9)
    images, parts = render_faces(params, seed=9)

    def whole_image(params, box):
        return np.tile([0, 48, 0, 48], (len(params["angle"]), 1))

    monkeypatch.setattr(builtin, "_pixel_boxes", whole_image)
    reference_images, reference_parts = render_faces(params, seed=9)
    assert np.array_equal(parts, reference_parts)
    assert np.array_equal(images, reference_images)


@pytest.mark.parametrize(("n", "seed"), [(1, 0), (7, 11), (101, 2024), (130, 99)])
def test_invariants_hold_for_any_size_and_seed(n, seed):
    faces = make_builtin_faces(n, seed)
    assert len(faces) == n and faces.labels.min() >= 0 and faces.labels.max() < NUM_CLASSES
    assert np.bincount(faces.split_codes, minlength=3).sum() == n
    for bit in PART_BITS.values():
        assert ((faces.parts & bit) > 0).any(axis=(1, 2)).all()
    assert 0 < faces.images.mean() < 255


def test_rejects_an_empty_request():
    with pytest.raises(ValueError):
        make_builtin_faces(0)
