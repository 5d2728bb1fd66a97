"""Mixup (Zhang et al. 2018) and CutMix (Yun et al. 2019): each training batch mixed with itself
reversed, as timm's Mixup pairs faces (no extra randomness on the device, and every face is a
partner once).

The mixing weight, the choice between the two and CutMix's box are drawn on the host from a
generator seeded by (seed, epoch, step): a resumed run draws exactly the same ones with no state
to save, and nothing waits on the device.
"""

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class MixConfig:
    mixup: float = 0.0   # Beta(a, a) of the blend weight; 0: off
    cutmix: float = 0.0  # Beta(a, a) of the share of the face kept; 0: off

    @property
    def active(self) -> bool:
        return self.mixup > 0 or self.cutmix > 0


@dataclass(frozen=True)
class Mixed:
    """A batch's targets after mixing: weight `lam` on the labels, 1 - lam on the reversed ones."""

    lam: float = 1.0

    def loss(self, loss_fn, logits: torch.Tensor, y: torch.Tensor,
             partners: torch.Tensor | None = None) -> torch.Tensor:
        """The loss on labels `y` and their partners' (default: `y` reversed, the whole batch;
        a rank holding a slice of it passes the slice of the reversed labels)."""
        if self.lam == 1.0:
            return loss_fn(logits, y)
        partners = y.flip(0) if partners is None else partners
        return self.lam * loss_fn(logits, y) + (1 - self.lam) * loss_fn(logits, partners)

    def correct(self, logits: torch.Tensor, y: torch.Tensor,
                partners: torch.Tensor | None = None) -> torch.Tensor:
        """Faces predicted right, weighted as the loss weighs the two labels."""
        hits = logits.argmax(1)
        if self.lam == 1.0:
            return (hits == y).sum()
        partners = y.flip(0) if partners is None else partners
        return self.lam * (hits == y).sum() + (1 - self.lam) * (hits == partners).sum()


def mix_batch(x: torch.Tensor, cfg: MixConfig, draw: tuple[int, ...]) -> tuple[torch.Tensor,
                                                                             Mixed]:
    """Mix batch `x` (N x C x H x W) with its reverse; `draw` seeds the weight and the box (the
    run's seed, epoch and step). With both on, each batch is mixed one way or the other, with
    probability 1/2, as timm does."""
    if not cfg.active:
        return x, Mixed()
    rng = np.random.default_rng([abs(v) for v in draw])
    cut = cfg.cutmix > 0 and (cfg.mixup == 0 or rng.random() < 0.5)
    lam = float(rng.beta(cfg.cutmix, cfg.cutmix) if cut else rng.beta(cfg.mixup, cfg.mixup))
    if not cut:
        return x * lam + x.flip(0) * (1 - lam), Mixed(lam)
    (top, bottom), (left, right) = (_cut(size, lam, rng) for size in x.shape[2:])
    mixed = x.clone()
    mixed[:, :, top:bottom, left:right] = x.flip(0)[:, :, top:bottom, left:right]
    pasted = (bottom - top) * (right - left) / (x.shape[2] * x.shape[3])
    return mixed, Mixed(1 - pasted)


def _cut(size: int, lam: float, rng: np.random.Generator) -> tuple[int, int]:
    """One side of CutMix's box: a length of size * sqrt(1 - lam) around a random centre, clipped
    to the face (the paper's rand_bbox; lam is then set to the area actually kept)."""
    length = int(size * np.sqrt(1 - lam))
    centre = int(rng.integers(size))
    return max(centre - length // 2, 0), min(centre + length // 2, size)
