"""Real browser: on the Embeddings page, click a point of the WebGL scatter and see its face
with its nearest neighbours, then lasso a region and see exactly the faces inside it (AppTest
cannot click a chart, so this proves the selection works where a user clicks)."""

from browser_helpers import ARTIFACTS, REPO, loneliest, scatter_points, streamlit_server

SHIPPED = REPO / "checkpoints" / "builtin-cnn3"
DATA = "builtin:2000"
MARGIN = 6  # pixels: no point this close to the lasso's edge, so inside and outside are clear

GALLERY_JS = """(selector) => Array.from(
  document.querySelector(selector + ' .js-plotly-plot').data[1].customdata).map(Number)"""


def clear_box(points) -> tuple[tuple[float, float, float, float], list[int]]:
    """A box around a few faces with no point near its edges, and the faces inside it."""
    xs, ys = [p[1] for p in points], [p[2] for p in points]
    x0, y0, x1, y1 = min(xs), min(ys), max(xs), max(ys)
    for fraction in (0.3, 0.35, 0.4, 0.25, 0.45, 0.2):
        for cx in (0.5, 0.4, 0.6, 0.3, 0.7):
            for cy in (0.5, 0.4, 0.6, 0.3, 0.7):
                w, h = (x1 - x0) * fraction, (y1 - y0) * fraction
                left, top = x0 + (x1 - x0) * cx - w / 2, y0 + (y1 - y0) * cy - h / 2
                box = (left, top, left + w, top + h)
                near_edge = any(
                    box[0] - MARGIN < x < box[2] + MARGIN and box[1] - MARGIN < y < box[3] + MARGIN
                    and not (box[0] + MARGIN < x < box[2] - MARGIN
                             and box[1] + MARGIN < y < box[3] - MARGIN)
                    for _, x, y in points)
                inside = sorted(p for p, x, y in points
                                if box[0] < x < box[2] and box[1] < y < box[3])
                if not near_edge and 3 <= len(inside) <= 100:
                    return box, inside
    raise AssertionError("no box with a clear edge around 3 to 100 faces")


def lasso(page, box: tuple[float, float, float, float]) -> None:
    """Pick the lasso in the chart's toolbar (shown on hover) and draw `box` with it."""
    left, top, right, bottom = box
    page.mouse.move(left, top)
    page.locator('.st-key-em_scatter .modebar-btn[data-val="lasso"]').first.click()
    corners = [(left, top), (right, top), (right, bottom), (left, bottom), (left, top)]
    page.mouse.move(*corners[0])
    page.mouse.down()
    for x, y in corners[1:]:
        page.mouse.move(x, y, steps=8)
    page.mouse.up()


def test_click_a_point_see_its_face_then_lasso_a_region(shipped_root, tmp_path, browser_page):
    page = browser_page
    (ARTIFACTS / "embeddings-failure.png").unlink(missing_ok=True)
    with streamlit_server(tmp_path / "streamlit.log", FER_CHECKPOINTS_DIR=str(shipped_root),
                          FER_DATA=DATA) as url:
        try:
            page.goto(f"{url}/embeddings?split=val&method=pca&colour=true")
            points = scatter_points(page)
            position, x, y = loneliest(points)
            page.mouse.click(x, y)
            page.get_by_text(f"Face #{position} of val").first.wait_for()
            page.get_by_text("Cosine similarity, nearest first").first.wait_for()
            assert f"idx={position}" in page.url and "method=pca" in page.url
            page.screenshot(path=str(ARTIFACTS / "embeddings.png"), full_page=True)

            box, inside = clear_box(scatter_points(page))
            lasso(page, box)
            page.get_by_text(f"Selected: {len(inside)} faces").first.wait_for()
            page.locator(".st-key-em_gallery .nsewdrag").first.wait_for()
            assert page.evaluate(GALLERY_JS, ".st-key-em_gallery") == inside
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "embeddings-failure.png"), full_page=True)
            raise
