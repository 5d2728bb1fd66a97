import pytest
import torch

from fer_core.training.augment import AugmentConfig, augment_batch

# FER2013's grey 48-pixel faces, and colour faces of another size (RAF-DB's at 64 pixels).
SHAPES = [(1, 48, 48), (3, 64, 64)]


def _faces(n=64, seed=0, shape=(1, 48, 48)):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, *shape, generator=g)


@pytest.mark.parametrize("shape", SHAPES)
def test_shift_only_moves_whole_pixels_without_resampling(shape):
    x = _faces(shape=shape)
    size = shape[-1]
    out = augment_batch(x, AugmentConfig(shift=3, flip=False, rotate=0),
                        torch.Generator().manual_seed(1))
    for face, moved in zip(x, out):
        found = [(dy, dx) for dy in range(-3, 4) for dx in range(-3, 4)
                 if torch.equal(face[:, 3:-3, 3:-3],
                                moved[:, 3 + dy:size - 3 + dy, 3 + dx:size - 3 + dx])]
        assert len(found) == 1  # every channel moved alike
    assert set(out.unique().tolist()) <= set(x.unique().tolist())


@pytest.mark.parametrize("shape", SHAPES)
def test_flip_mirrors_about_half_the_faces(shape):
    x = _faces(200, shape=shape)
    out = augment_batch(x, AugmentConfig(shift=0, flip=True, rotate=0),
                        torch.Generator().manual_seed(2))
    flipped = [torch.equal(o, f.flip(-1)) for o, f in zip(out, x)]
    kept = [torch.equal(o, f) for o, f in zip(out, x)]
    assert all(a != b for a, b in zip(flipped, kept))
    assert 70 < sum(flipped) < 130


def test_rotation_keeps_pixel_statistics_and_is_seeded():
    x = _faces()
    cfg = AugmentConfig(shift=2, flip=True, rotate=15)
    a = augment_batch(x, cfg, torch.Generator().manual_seed(3))
    b = augment_batch(x, cfg, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and not torch.equal(a, x)
    assert abs(a.std().item() - x.std().item()) < 0.01  # no blur: noise keeps its variance


def test_nothing_to_do_returns_the_batch():
    x = _faces(4)
    assert augment_batch(x, AugmentConfig(0, False, 0), torch.Generator()) is x
