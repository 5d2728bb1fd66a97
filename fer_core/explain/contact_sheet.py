"""Many small images composed into one: faces with captions under each, or a layer's feature
maps. One picture of many faces renders far faster in a page than many pictures, and is what a
command writes as a PNG."""

import numpy as np
from PIL import Image, ImageDraw, ImageFont

GAP = 4
LABEL_COLOR = (128, 133, 144, 255)  # readable on both the light and the dark theme
TILE_TEXT = 46  # pixels of caption under each face in a gallery (three lines)


def gallery_grid(faces: np.ndarray, captions: list[tuple[str, ...]], columns: int,
                 scale: int = 2) -> Image.Image:
    """Faces (N, H, W) grey or (N, H, W, 3) RGB (a colour face, or a face with its map beside
    it; `data.pictures.pictures` turns a dataset's N x C x H x W into these) as one RGBA image,
    `columns` a row, caption lines under each."""
    height, width = faces.shape[1] * scale, faces.shape[2] * scale
    rows = max(1, -(-len(faces) // columns))
    tile_w, tile_h = width + GAP, height + TILE_TEXT
    grid = Image.new("RGBA", (columns * tile_w, rows * tile_h), (0, 0, 0, 0))
    draw = ImageDraw.Draw(grid)
    font = ImageFont.load_default(size=12)
    for i, (face, lines) in enumerate(zip(faces, captions)):
        left, top = (i % columns) * tile_w, (i // columns) * tile_h
        tile = Image.fromarray(face).resize((width, height), Image.NEAREST)
        grid.paste(tile.convert("RGBA"), (left, top))
        for j, line in enumerate(lines):
            draw.text((left + width // 2, top + height + 2 + 13 * j), line, fill=LABEL_COLOR,
                      font=font, anchor="mt")
    return grid


def map_grid(maps: np.ndarray, columns: int = 32, gap: int = 2) -> Image.Image:
    """Channels (C, H, W) as one grey image, each zoomed to at least 24 pixels, on one scale
    whose white is the 99.5th percentile (a few extreme values would leave the rest black)."""
    top = max(float(np.percentile(maps, 99.5)), 1e-6)
    grey = (np.clip(maps / top, 0, 1) * 255).astype(np.uint8)
    zoom = max(1, 24 // maps.shape[1])
    c, h, w = grey.shape
    rows = -(-c // columns)
    sheet = np.full((rows * (h * zoom + gap), min(c, columns) * (w * zoom + gap)), 255, np.uint8)
    for i, channel in enumerate(grey):
        r, col = divmod(i, columns)
        tile = np.kron(channel, np.ones((zoom, zoom), np.uint8))
        sheet[r * (h * zoom + gap):r * (h * zoom + gap) + h * zoom,
              col * (w * zoom + gap):col * (w * zoom + gap) + w * zoom] = tile
    return Image.fromarray(sheet)
