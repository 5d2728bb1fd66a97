"""Real browser: on the Confusions page, click an off-diagonal cell of the rendered matrix, see
that pair's gallery, and open one of its faces (Streamlit gives no click on a heatmap cell, so
this proves the overlay works where a user clicks)."""

from browser_helpers import ARTIFACTS, REPO, click_at, streamlit_server

from dashboard.common.gallery import COLUMNS, SCALE
from dashboard.common.images import TILE_TEXT
from fer_core.data.classes import CLASSES
from fer_core.data.readers import load_dataset
from fer_core.evaluation.confusion import cell_positions, confusion_counts, ranked_pairs
from fer_core.evaluation.predict import predict_split
from fer_core.models.checkpoint import load_checkpoint

SHIPPED = REPO / "checkpoints" / "builtin-cnn3"
DATA = "builtin:2000"
ROW = 35  # pixels per row (and header) of st.dataframe


def ranked_cells():
    """The shipped model's pairs on DATA's val split, most confused first, each with its faces
    in the page's default order (most confident mistakes first)."""
    dataset = load_dataset(DATA)
    preds = predict_split(load_checkpoint(SHIPPED).model, dataset, "val", "cpu")
    known = preds.labelled
    pairs = ranked_pairs(confusion_counts(preds.labels[known], preds.predicted[known], CLASSES),
                         CLASSES)
    return [(q["true"], q["pred"], cell_positions(preds, q["true"], q["pred"])) for q in pairs]


def test_click_a_cell_see_its_gallery_and_open_a_face(shipped_root, tmp_path, browser_page):
    page = browser_page
    cells = ranked_cells()
    t, p, faces = cells[0]
    (ARTIFACTS / "confusions-failure.png").unlink(missing_ok=True)
    with streamlit_server(tmp_path / "streamlit.log", FER_CHECKPOINTS_DIR=str(shipped_root),
                          FER_DATA=DATA) as url:
        try:
            page.goto(f"{url}/confusions?true=0&pred=0")  # start on a diagonal cell
            page.get_by_text("True Angry, predicted Angry").first.wait_for()
            click_at(page, ".st-key-cm_matrix", (p + 0.5) / 7, (t + 0.5) / 7)
            title = f"True {CLASSES[t]}, predicted {CLASSES[p]}: {len(faces)} faces"
            page.get_by_text(title).first.wait_for()
            # the URL is updated by a message of its own, just after the page content
            page.wait_for_url(lambda u: f"true={t}" in u and f"pred={p}" in u, timeout=10_000)

            size = 48 * SCALE  # the first face's centre, as a fraction of the gallery
            width = COLUMNS * (size + 4)
            rows = -(-len(faces) // COLUMNS)
            click_at(page, ".st-key-cm_gallery", (size / 2) / min(width, len(faces) * (size + 4)),
                     (size / 2) / (rows * (size + TILE_TEXT)))
            dialog = page.get_by_role("dialog")
            dialog.get_by_text(f"Face #{faces[0]} of val").wait_for()
            page.wait_for_url(lambda u: f"idx={faces[0]}" in u, timeout=10_000)
            page.screenshot(path=str(ARTIFACTS / "confusions.png"), full_page=True)

            page.keyboard.press("Escape")
            dialog.wait_for(state="hidden")
            t2, p2, faces2 = cells[1]  # the pairs table's second row selects its cell
            table = page.locator(".st-key-cm_pairs").first.bounding_box()
            page.mouse.click(table["x"] + 18, table["y"] + ROW * 2.5)
            title = f"True {CLASSES[t2]}, predicted {CLASSES[p2]}: {len(faces2)} faces"
            page.get_by_text(title).first.wait_for()
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "confusions-failure.png"), full_page=True)
            raise
