"""Real browser: the whole user story, page after page, the way a newcomer would walk it.

On the built-in faces: Home, Model, Training (start a 2-epoch run, watch its curves gain points
and the probe strip show the first epoch's maps, see it finish), Confusions (click an
off-diagonal cell, see its gallery, open a face and follow "Explain this face"), Saliency (the map, another method, an uploaded photo and its prediction),
Filters (16 steps of the first 16 filters, the grid), Embeddings (click a point, see its face).
Then the same on FER2013 with the shipped fer2013-cnn3 when FER2013_CSV is set, without training,
and on a colour 100x100 tree with RAF-DB's emotion names and a model trained on it.

Every page is saved as test-artifacts/walk_<data>_<page>.png. With FER_TOUR_DIR set, each is also
saved there, small, as <page>.png (the tree's Confusions and Saliency as tree_<page>.png): the
README's tour (see the README for the command).
"""

import os
import re
import shutil
import time
from pathlib import Path

import pytest
from browser_helpers import (
    ARTIFACTS,
    CURVE_POINTS_JS,
    IMAGES_JS,
    REPO,
    TILES_JS,
    click_at,
    expected_prediction,
    filters_done,
    loneliest,
    scatter_points,
    start_run,
    streamlit_server,
)
from PIL import Image

from fer_core.data.classes import CLASSES
from fer_core.data.matching import for_model
from fer_core.data.readers import load_dataset
from fer_core.evaluation.confusion import confusion_counts, ranked_pairs
from fer_core.evaluation.predict import predict_split
from fer_core.models.checkpoint import load_checkpoint

VIEWPORT = {"width": 1400, "height": 1000}
TOUR_WIDTH = 1000  # pixels: the README's screenshots, scaled down from the 1400-wide window
MAP_CAPTION = re.compile(r"explaining .* Computed in \d+ ms")
STRIP_CAPTION = re.compile(r"^Epoch (\d+): \d+ val faces")
FILTERS, STEPS = 16, 16


class Walk:
    """One browser page walking the app at `url`, saving a screenshot of each page it visits;
    `classes`: the checkpoint's, in its output order; `tour`: the README's name of each page
    shot for its tour (default: the page's own name)."""

    def __init__(self, page, url: str, data_name: str, classes=CLASSES, tour=None):
        self.page, self.url, self.data_name, self.classes = page, url, data_name, classes
        self.tour = tour

    def open(self, link: str, slug: str) -> None:
        """Go to another page through the sidebar's navigation, as a user does."""
        self.page.get_by_role("link", name=link, exact=True).click()
        self.page.wait_for_url(re.compile(rf"/{slug}(\?|$)"))

    def shoot(self, name: str, tour: bool = True) -> None:
        """Save the page down to the end of its content (the window may be taller), once the
        script has finished; with FER_TOUR_DIR set and `tour`, a small copy for the README."""
        self.page.mouse.move(0, 0)  # no hover label over the picture
        time.sleep(1)  # the running indicator shows only after a moment
        self.page.locator('[data-testid="stStatusWidget"]').wait_for(state="detached",
                                                                     timeout=120_000)
        main = self.page.locator('[data-testid="stMainBlockContainer"]').first.bounding_box()
        height = min(max(main["y"] + main["height"] + 24, VIEWPORT["height"]),
                     self.page.viewport_size["height"])
        path = ARTIFACTS / f"walk_{self.data_name}_{name}.png"
        clip = {"x": 0, "y": 0, "width": VIEWPORT["width"], "height": height}
        self.page.screenshot(path=str(path), clip=clip)
        tour_name = name if self.tour is None else self.tour.get(name)
        if tour and tour_name and (folder := os.environ.get("FER_TOUR_DIR")):
            save_small(path, Path(folder) / f"{tour_name}.png")

    def tall(self, height: int) -> None:
        """A window tall enough for the whole page: Streamlit scrolls its main area itself."""
        self.page.set_viewport_size({"width": VIEWPORT["width"], "height": height})


def save_small(source: Path, target: Path) -> None:
    """A copy of `source` TOUR_WIDTH wide in 256 colours: a few hundred KB for the repository."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(source) as image:
        height = round(image.height * TOUR_WIDTH / image.width)
        small = image.convert("RGB").resize((TOUR_WIDTH, height), Image.LANCZOS)
    small.quantize(256, method=Image.Quantize.MEDIANCUT).save(target, optimize=True)


def home(walk: Walk, dataset_text: str) -> None:
    page = walk.page
    page.goto(walk.url)
    page.get_by_text("Sample faces").first.wait_for()
    page.locator('[data-testid="stMetric"]').filter(has_text=dataset_text).first.wait_for()
    page.wait_for_function(f"() => ({IMAGES_JS})('').some(i => i.colours > 1)")
    walk.shoot("home")


def model(walk: Walk, run: str) -> None:
    walk.open("Model", "model")
    walk.page.get_by_text("Layers").first.wait_for()
    walk.page.locator('[data-testid="stDataFrame"]').first.wait_for()
    assert f"run={run}" in walk.page.url
    walk.shoot("model")


def training(walk: Walk) -> None:
    """Start a 2-epoch run on 4,000 built-in faces (400 steps: several seconds even on a fast CPU,
    so the page polls it while it runs), watch its curves gain points and the probe strip show
    the first epoch's maps while the second trains, see it finish with the second's."""
    page = walk.page
    walk.tall(1700)
    walk.open("Training", "training")
    page.get_by_text("Start a new run").click()  # an expander, once there are runs
    start_run(page, "walk-run", "builtin:4000", epochs=2)
    chart = page.locator(".st-key-curves-walk-run .js-plotly-plot").last
    chart.wait_for()  # the page follows the new run: the Status below is its own
    finished = page.locator('[data-testid="stMetric"]').filter(has_text="Status").filter(
        has_text="finished")
    strip = page.get_by_text(STRIP_CAPTION)
    seen, live, deadline = set(), set(), time.monotonic() + 300
    while not finished.count():
        assert time.monotonic() < deadline, f"the run did not finish; points seen: {seen}"
        if chart.count():
            seen.add(chart.evaluate(CURVE_POINTS_JS))
        live.update(STRIP_CAPTION.match(text).group(1) for text in strip.all_inner_texts())
        time.sleep(0.5)
    assert len(seen - {0}) >= 2, f"the curves did not grow while the run went: {seen}"
    assert "1" in live, f"the probe strip showed no epoch while the run went: {live}"
    page.get_by_text(re.compile(r"^Epoch 2: 8 val faces")).wait_for()
    walk.shoot("training")


def confusions(walk: Walk, cell: tuple[int, int], faces: int | None) -> int:
    """Click the (true, predicted) cell, see its gallery, open its first face and follow
    "Explain this face". Returns the face's position in the split."""
    page = walk.page
    walk.tall(1500)
    walk.open("Confusions", "confusions")
    t, p = cell
    k = len(walk.classes)
    click_at(page, ".st-key-cm_matrix", (p + 0.5) / k, (t + 0.5) / k)
    count = str(faces) if faces is not None else r"[\d,]+"
    title = re.compile(rf"True {walk.classes[t]}, predicted {walk.classes[p]}: {count} faces")
    page.get_by_text(title).first.wait_for()
    page.wait_for_url(lambda u: f"true={t}" in u and f"pred={p}" in u, timeout=30_000)
    page.locator(".st-key-cm_gallery .nsewdrag").first.wait_for()
    page.get_by_text("Mean gradient of logit").first.wait_for(timeout=120_000)  # the cell map
    walk.shoot("confusions")
    position, x, y = page.evaluate(TILES_JS)[0]  # the most confident mistake
    height = page.viewport_size["height"]
    if y > height - 80:  # a tree's larger faces push it below the window: scroll it up
        page.mouse.move(x, height / 2)
        page.mouse.wheel(0, y - height / 2)
        time.sleep(1)
        position, x, y = page.evaluate(TILES_JS)[0]
    page.mouse.click(x, y)
    dialog = page.get_by_role("dialog")
    dialog.get_by_text(f"Face #{position} of val").wait_for()
    walk.shoot("confusions_face", tour=False)
    dialog.get_by_role("link", name="Explain this face").click()
    page.wait_for_url(lambda u: "/saliency?" in u and f"idx={position}" in u, timeout=30_000)
    return position


def map_source(page) -> str:
    """The map's image URL, once the browser has loaded and drawn it (its caption comes first)."""
    drawn = page.wait_for_function(
        f"() => (({IMAGES_JS})('').find(i => i.caption === 'The map' && i.colours > 1) || {{}})"
        ".src", timeout=30_000)
    return drawn.json_value()


def saliency(walk: Walk, position: int, run_dir: Path, photo: Path) -> None:
    """The face's map, then Grad-CAM's, then an uploaded photo's prediction and map."""
    page = walk.page
    walk.tall(2300)
    page.get_by_text(f"Face #{position} of val").first.wait_for()
    page.get_by_text(MAP_CAPTION).first.wait_for()
    first = map_source(page)
    page.locator(".st-key-sa_method").click()
    page.get_by_role("option", name="Grad-CAM", exact=True).click()
    page.wait_for_url(lambda u: "method=gradcam" in u, timeout=30_000)
    page.get_by_text(MAP_CAPTION).first.wait_for()
    deadline = time.monotonic() + 30
    while map_source(page) == first:
        assert time.monotonic() < deadline, "the map did not change with the method"
        time.sleep(0.25)
    name, percent, _ = expected_prediction(run_dir, photo.read_bytes())
    page.locator(".st-key-sa_source").get_by_role("radio", name="Upload a photo").click()
    page.locator(".st-key-sa_upload input[type=file]").set_input_files(photo)
    page.get_by_text("1 face found").first.wait_for()
    page.get_by_text(f"Predicted {name} ({percent:.1f}%)").first.wait_for()
    page.get_by_text(MAP_CAPTION).first.wait_for()
    map_source(page)
    page.locator(".st-key-sa_deletion .main-svg").first.wait_for()  # the trust section, last
    walk.shoot("saliency")


def filters(walk: Walk) -> None:
    """The first 16 filters of the default layer, 16 steps, Run, the finished grid."""
    page = walk.page
    walk.tall(1500)
    walk.open("Filters", "filters")
    page.get_by_text("Choose a layer and filters, then Run").first.wait_for()
    page.locator(".st-key-fi_first16").get_by_role("button").click()
    box = page.locator(".st-key-fi_filters").get_by_role("textbox", name="Filters")
    page.wait_for_function("(el) => el.value === '0-15'", arg=box.element_handle())
    thumb = page.locator(".st-key-fi_steps").get_by_role("slider", name="Steps")
    thumb.focus()
    thumb.press("Home")  # 8
    thumb.press("ArrowRight")  # 16
    page.locator('.st-key-fi_steps [data-testid="stSliderThumbValue"]').filter(
        has_text=re.compile(rf"^{STEPS}$")).first.wait_for()
    page.locator(".st-key-fi_run").get_by_role("button", name="Run").click()
    done = filters_done(FILTERS, STEPS)
    page.get_by_text(done).first.wait_for(timeout=240_000)
    page.locator('[data-testid="stDataFrame"]').first.wait_for()
    page.wait_for_function(f"() => ({IMAGES_JS})('[role=\"tabpanel\"]:not([hidden])')"
                           f".some(i => i.height > 600 && i.colours > 50)")
    walk.shoot("filters")


def embeddings(walk: Walk) -> None:
    """Click the loneliest point of the val split's scatter and see its face."""
    page = walk.page
    walk.tall(1500)
    walk.open("Embeddings", "embeddings")
    position, x, y = loneliest(scatter_points(page))
    page.mouse.click(x, y)
    page.get_by_text(f"Face #{position} of val").first.wait_for()
    page.get_by_text("Cosine similarity, nearest first").first.wait_for()
    assert f"idx={position}" in page.url
    walk.shoot("embeddings")


def walk_every_page(walk: Walk, dataset_text: str, run_dir: Path, cell, faces, photo,
                    train: bool) -> None:
    failure = ARTIFACTS / f"walk_{walk.data_name}-failure.png"
    failure.unlink(missing_ok=True)
    try:
        walk.page.set_viewport_size(VIEWPORT)
        home(walk, dataset_text)
        model(walk, run_dir.name)
        if train:
            training(walk)
        position = confusions(walk, cell, faces)
        saliency(walk, position, run_dir, photo)
        filters(walk)
        embeddings(walk)
    except Exception:
        walk.page.screenshot(path=str(failure), full_page=True)
        raise


def most_confused(run_dir: Path, data: str) -> tuple[tuple[int, int], int]:
    """The off-diagonal cell with the most val faces, and their number."""
    ckpt = load_checkpoint(run_dir)
    preds = predict_split(ckpt.model, for_model(load_dataset(data), ckpt.task), "val", "cpu")
    known = preds.labelled
    counts = confusion_counts(preds.labels[known], preds.predicted[known], ckpt.task.classes)
    top = ranked_pairs(counts, ckpt.task.classes)[0]
    return (top["true"], top["pred"]), top["count"]


def test_walk_the_built_in_faces(shipped_root, astronaut, tmp_path, browser_page):
    data = "builtin:2000"
    cell, faces = most_confused(shipped_root / "builtin-cnn3", data)
    with streamlit_server(tmp_path / "streamlit.log", FER_CHECKPOINTS_DIR=str(shipped_root),
                          FER_DATA=data, FER_CACHE_DIR=str(tmp_path / "cache")) as url:
        walk_every_page(Walk(browser_page, url, "builtin"), "Built-in faces",
                        shipped_root / "builtin-cnn3", cell, faces, astronaut, train=True)


@pytest.fixture
def fer2013_root(tmp_path):
    """A checkpoints root holding the shipped fer2013-cnn3 (its best.pt only)."""
    root = tmp_path / "checkpoints"
    shutil.copytree(REPO / "checkpoints" / "fer2013-cnn3", root / "fer2013-cnn3",
                    ignore=shutil.ignore_patterns("last.pt", "*.md"))
    return root


def test_walk_fer2013(fer2013_root, astronaut, tmp_path, browser_page):
    data = os.environ.get("FER2013_CSV")
    if not data:
        pytest.skip("FER2013_CSV is not set")
    fear_as_sad = (CLASSES.index("Fear"), CLASSES.index("Sad"))  # FER2013's commonest mix-up
    with streamlit_server(tmp_path / "streamlit.log", FER_CHECKPOINTS_DIR=str(fer2013_root),
                          FER_DATA=data, FER_CACHE_DIR=str(tmp_path / "cache")) as url:
        walk_every_page(Walk(browser_page, url, "fer2013"), "FER2013",
                        fer2013_root / "fer2013-cnn3", fear_as_sad, None, astronaut,
                        train=False)


@pytest.fixture
def tree_root(tmp_path):
    """A colour 100x100 JPEG tree with RAF-DB's emotion folders (1,200 built-in faces, tinted),
    and a checkpoints root holding a cnn3 trained on it for 3 epochs (read from disk)."""
    from dataset_helpers import in_other_task, write_tree

    from fer_core.data.builtin import make_builtin_faces
    from fer_core.training.config import TrainConfig
    from fer_core.training.trainer import train

    tree = tmp_path / "raf-db"
    write_tree(tree, in_other_task(make_builtin_faces(n=1200, seed=1), size=100), suffix=".jpg")
    root = tmp_path / "checkpoints"
    train(TrainConfig(data=str(tree), epochs=3, batch_size=64, device="cpu"),
          root / "raf-cnn3", load_dataset(tree))
    return tree, root


def test_walk_a_colour_tree(tree_root, astronaut, tmp_path, browser_page):
    tree, root = tree_root
    run = root / "raf-cnn3"
    cell, faces = most_confused(run, str(tree))
    with streamlit_server(tmp_path / "streamlit.log", FER_CHECKPOINTS_DIR=str(root),
                          FER_DATA=str(tree), FER_CACHE_DIR=str(tmp_path / "cache")) as url:
        walk = Walk(browser_page, url, "tree", load_checkpoint(run).task.classes,
                    tour={"confusions": "tree_confusions", "saliency": "tree_saliency"})
        walk_every_page(walk, "raf-db", run, cell, faces, astronaut, train=False)


@pytest.fixture
def imported_root(tmp_path):
    """A checkpoints root holding the report's model: torchvision's resnet18 with its ImageNet
    stem, the built-in grey faces repeated into 3 channels, ImageNet's normalization, trained
    for 2 epochs in plain PyTorch, saved as a state dict and imported."""
    import torch
    import torch.nn.functional as F
    import torchvision

    from fer_core.cli.main import main

    faces = load_dataset("builtin:2000")
    rows = faces.indices("train")
    x = torch.from_numpy(faces.images[rows]).float().div(255).expand(-1, 3, -1, -1)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    y = torch.from_numpy(faces.labels[rows])
    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None)
    net.fc = torch.nn.Linear(512, 7)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    for _ in range(2):
        for batch in torch.randperm(len(x)).split(64):
            optimizer.zero_grad()
            F.cross_entropy(net((x[batch] - mean) / std), y[batch]).backward()
            optimizer.step()
    torch.save(net.eval().state_dict(), tmp_path / "model.pt")
    root = tmp_path / "checkpoints"
    assert main(["import-model", "--out", str(root / "report-resnet18"), "--classes",
                 ",".join(CLASSES), "--torchvision", "resnet18", "--weights",
                 str(tmp_path / "model.pt"), "--size", "48", "--mean", "0.485,0.456,0.406",
                 "--std", "0.229,0.224,0.225", "--data", "builtin:2000"]) == 0
    return root


def test_walk_an_imported_torchvision_resnet18(imported_root, astronaut, tmp_path, browser_page):
    data = "builtin:2000"
    run = imported_root / "report-resnet18"
    cell, faces = most_confused(run, data)
    with streamlit_server(tmp_path / "streamlit.log", FER_CHECKPOINTS_DIR=str(imported_root),
                          FER_DATA=data, FER_CACHE_DIR=str(tmp_path / "cache")) as url:
        walk_every_page(Walk(browser_page, url, "imported"), "Built-in faces", run, cell, faces,
                        astronaut, train=False)
