"""Real browser: with an export of the split in the run folder, the Confusions gallery draws each
face's map beside it (tiles twice as wide), a click on a wide tile still opens its face, and the
Saliency page shows that face's stored map without computing it."""

import shutil

from browser_helpers import ARTIFACTS, REPO, TILES_JS, streamlit_server

from fer_core.cli.main import main
from fer_core.data.classes import CLASSES
from fer_core.explain.export_files import load_export

DATA = "builtin:600"


def test_maps_beside_the_faces_and_a_stored_map_on_saliency(tmp_path, browser_page):
    page = browser_page
    root = tmp_path / "checkpoints"
    shutil.copytree(REPO / "checkpoints" / "builtin-cnn3", root / "shipped",
                    ignore=shutil.ignore_patterns("last.pt"))
    assert main(["export", "--checkpoint", str(root / "shipped"), "--data", DATA, "--split",
                 "val", "--methods", "gradcam"]) == 0
    export = load_export(next((root / "shipped" / "exports").iterdir()))
    (ARTIFACTS / "exports-failure.png").unlink(missing_ok=True)
    with streamlit_server(tmp_path / "streamlit.log", FER_CHECKPOINTS_DIR=str(root),
                          FER_DATA=DATA) as url:
        try:
            page.goto(f"{url}/confusions?run=shipped&split=val&true=3&pred=3")
            page.get_by_text("Mean Grad-CAM map of").first.wait_for()
            page.locator(".st-key-cm_gallery .js-plotly-plot").wait_for()
            narrow = page.evaluate(TILES_JS)
            page.get_by_text("Each face's map beside it").click()
            page.get_by_text("beside it, its map of the predicted class").wait_for()
            page.wait_for_function(f"() => ({TILES_JS})().length > 1 && ({TILES_JS})()[1][1] - "
                                   f"({TILES_JS})()[0][1] > {1.5 * (narrow[1][1] - narrow[0][1])}")
            tiles = page.evaluate(TILES_JS)  # each tile a face and its map: twice as far apart
            position, x, y = tiles[1]
            page.mouse.click(x + 40, y)  # on the map half of the second tile
            page.get_by_role("dialog").get_by_text(f"Face #{position} of val").wait_for()
            page.screenshot(path=str(ARTIFACTS / "exports-confusions.png"), full_page=True)

            page.goto(f"{url}/saliency?run=shipped&split=val&idx={position}&method=gradcam")
            page.get_by_text("Read from the export in").wait_for()
            predicted = CLASSES[int(export.predictions[position])]
            page.get_by_text(f"Predicted {predicted}").first.wait_for()
            page.get_by_text("Over the face").first.wait_for()
            page.screenshot(path=str(ARTIFACTS / "exports-saliency.png"), full_page=True)
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "exports-failure.png"), full_page=True)
            raise
