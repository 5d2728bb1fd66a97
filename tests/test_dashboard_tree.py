"""The dashboard on a class-folder tree on disk (AppTest): colour 64-pixel faces with RAF-DB's
names. Every page opens without an exception or an error box, with a run trained on the tree and
with the shipped fer2013-cnn3 (its pages map the tree's classes to FER2013's by name, with one
note); the sidebar says what it found, and without ?run= the tree's own run is the default."""

import shutil
from pathlib import Path

import apptest_helpers
import pytest
from apptest_helpers import serve
from dataset_helpers import RAF_DB_NAMES, in_other_task, write_tree

from dashboard import sidebar
from dashboard.common.runs import RunInfo
from dashboard.views.embeddings.charts import class_colours
from fer_core.data.builtin import make_builtin_faces
from fer_core.data.task import FER2013

RUN = "tree-cnn3"
SHIPPED = Path(__file__).resolve().parents[1] / "checkpoints" / "fer2013-cnn3"
PAGES = ("views/home.py", "views/model.py", "views/training/page.py", "views/confusions/page.py",
         "views/saliency/page.py", "views/filters/page.py", "views/embeddings/page.py")
SCORING = {"views/model.py", "views/confusions/page.py", "views/saliency/page.py",
           "views/filters/page.py", "views/embeddings/page.py"}


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """builtin:300 as a colour 64-pixel JPEG tree with RAF-DB's emotion folders."""
    root = tmp_path_factory.mktemp("tree") / "raf-db"
    write_tree(root, in_other_task(make_builtin_faces(n=300, seed=0)), suffix=".jpg")
    return root


@pytest.fixture(scope="module")
def tree_root(tmp_path_factory, tree) -> Path:
    """A checkpoints root holding RUN (trained for an epoch on the tree, read from disk) and the
    shipped fer2013-cnn3."""
    from fer_core.data.readers import load_dataset
    from fer_core.training.config import TrainConfig
    from fer_core.training.trainer import train

    root = tmp_path_factory.mktemp("tree_checkpoints")
    train(TrainConfig(data=str(tree), epochs=1, batch_size=32, device="cpu"), root / RUN,
          load_dataset(tree))
    shutil.copytree(SHIPPED, root / SHIPPED.name)
    return root


@pytest.mark.parametrize("run", [RUN, SHIPPED.name])
@pytest.mark.parametrize("page", PAGES)
def test_every_page_opens_on_the_tree(tree, tree_root, monkeypatch, page, run):
    serve(monkeypatch, tree_root)
    at = apptest_helpers.open_page(page, data=str(tree), run=run)
    assert not at.error, [e.value for e in at.error]
    mapped = [i.value for i in at.main.info if "Shown as the model sees the data" in i.value]
    assert len(mapped) == (run == SHIPPED.name and page in SCORING)


def test_the_sidebar_says_what_it_found_and_defaults_to_the_trees_own_run(tree, tree_root,
                                                                        monkeypatch):
    serve(monkeypatch, tree_root)
    at = apptest_helpers.open_page("views/home.py", data=str(tree))
    [found] = [c.value for c in at.sidebar.caption if "classes (" in c.value]
    names = ", ".join(sorted(RAF_DB_NAMES))  # a tree's folders, in name order
    assert found == f"64x64 colour, 7 classes ({names}); train 243, val 27, test 30"
    assert at.session_state["selection"].run == RUN


def run_info(name: str, data: str | None, started: float) -> RunInfo:
    return RunInfo(name, Path(name), "finished", "cnn3", data, 1, 1, 0.5, started, None, True)


def test_the_default_run_of_a_folder_is_the_latest_trained_on_it(tmp_path):
    folder = tmp_path / "tree"
    folder.mkdir()
    runs = {r.name: r for r in [run_info("fer2013-cnn3", "fer2013.csv", 1.0),
                                run_info("old", str(folder), 2.0),
                                run_info("new", f"{tmp_path}/./tree", 3.0),
                                run_info("other", str(tmp_path / "elsewhere"), 4.0)]}
    assert sidebar.default_run(runs, str(folder), "cpu") == "new"
    assert sidebar.default_run(runs, str(tmp_path / "none"), "cpu") == "fer2013-cnn3"


def test_class_colours_follow_the_emotion_not_its_position():
    fer, raf = class_colours(FER2013.classes), class_colours(RAF_DB_NAMES)
    assert raf[RAF_DB_NAMES.index("happiness")] == fer[FER2013.classes.index("Happy")]
    assert raf[RAF_DB_NAMES.index("anger")] == fer[FER2013.classes.index("Angry")]
    assert len(set(class_colours(("a", "b", "c")))) == 3


def test_a_trees_stamp_is_looked_up_once_in_a_while_not_on_every_rerun(tree, monkeypatch):
    from dashboard.common import state

    looked, clock = [], [1000.0]
    monkeypatch.setattr(state, "source_stamp",
                        lambda spec: looked.append(spec) or ("folder", len(looked)))
    monkeypatch.setattr(state.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(state, "_STAMPS", {})
    assert state.data_stamp(str(tree)) == state.data_stamp(str(tree)) == ("folder", 1)
    clock[0] += state.STAMP_S
    assert state.data_stamp(str(tree)) == ("folder", 2) and len(looked) == 2


def test_a_dataset_of_any_size_the_reader_allows_is_kept_in_memory():
    from dashboard.common import state
    from fer_core.data.tree import memory_budget

    assert state.FACES.budget >= memory_budget() and state.ADAPTED.budget == state.FACES.budget


def test_home_names_the_tree_and_leaves_out_a_fer2013_figure(tree, tree_root, monkeypatch):
    serve(monkeypatch, tree_root)
    at = apptest_helpers.open_page("views/home.py", data=str(tree))
    assert [m.label for m in at.metric] == ["Dataset", "Faces", "Device"]
    assert at.metric[0].value == "raf-db"


def test_a_malformed_memory_budget_does_not_stop_the_dashboard(monkeypatch):
    from dashboard.common import state

    monkeypatch.setenv("FER_MEMORY_BUDGET", "lots")
    assert state._dataset_budget() == 384 * state.MB
