"""The dashboard's pages run headless (AppTest): every page renders, the sidebar choice persists
across pages and lives in the URL, and bad input shows the reader's message, never a traceback."""

import re
from pathlib import Path

import pytest
import torch
from apptest_helpers import array, figure
from streamlit.testing.v1 import AppTest

from fer_core.data.readers import load_dataset
from fer_core.errors import DataError
from fer_core.evaluation.confusion import confusion_counts
from fer_core.evaluation.predict import predict_split
from fer_core.models.checkpoint import load_checkpoint
from fer_core.training.runs import RunFolder

APP = str(Path(__file__).resolve().parent.parent / "dashboard" / "app.py")
PAGES = ("views/home.py", "views/model.py", "views/training/page.py")
TIMEOUT = 120  # the first run imports torch and draws the built-in faces on a slow CPU


def app(**query) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params.update(query)
    return at.run()


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def params(arch: str, **options) -> str:
    """The parameter count the Model page should show, as it formats it."""
    from fer_core.models.architectures import build_model
    from fer_core.models.layer_table import summarize

    return f"{summarize(build_model(arch, **options)).total_params:,}"


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_on_builtin_faces_and_a_checkpoint(dashboard_root, page):
    at = app(data="builtin:300")
    at.switch_page(page).run()
    assert_clean(at)
    assert at.title[0].value


def test_home_shows_dataset_counts_faces_checkpoints_and_device(dashboard_root):
    at = app(data="builtin:300")
    assert metric(at, "Faces") == "300"
    assert metric(at, "Device") == "CPU"
    assert any("synthetic stand-ins" in i.value and "FER_DATA" in i.value for i in at.info)
    counts = at.dataframe[0].value
    assert counts.loc["all", "total"] == 300 and list(counts.index) == ["train", "val", "test", "all"]
    assert len(at.image) == 1 and len(at.image[0].value) == 1  # one composed grid image
    runs = at.dataframe[1].value
    assert set(runs["name"]) == {"tiny-a", "tiny-b"}
    assert any("CPU" in c.value for c in at.sidebar.caption)


def test_sidebar_choice_persists_across_pages_and_lives_in_the_url(dashboard_root):
    at = app()
    at.sidebar.radio(key="data_kind").set_value("Dataset path").run()
    at.sidebar.text_input(key="data_path").input("builtin:300")
    at.sidebar.selectbox(key="ckpt").select("tiny-b")
    at.run()
    assert at.query_params["data"] == "builtin:300" and at.query_params["run"] == "tiny-b"
    for page in ("views/model.py", "views/training/page.py", "views/home.py"):
        at.switch_page(page).run()
        assert_clean(at)
        assert at.sidebar.selectbox(key="ckpt").value == "tiny-b"
        assert at.sidebar.text_input(key="data_path").value == "builtin:300"
        assert at.query_params["data"] == "builtin:300" and at.query_params["run"] == "tiny-b"
    assert metric(at, "Faces") == "300"


def test_the_checkpoint_box_is_short_and_its_caption_says_the_rest(dashboard_root):
    at = app(data="builtin:300")
    options = at.sidebar.selectbox(key="ckpt").options
    assert len(options) == 2
    assert all(re.fullmatch(r"tiny-[ab] \u00b7 (\d+\.\d%|\u2014)", o) for o in options), options
    captions = [c.value for c in at.sidebar.caption]
    assert any(re.fullmatch(r"cnn3 trained on (the built-in faces|`.+`)", c) for c in captions), \
        captions


def test_a_copied_link_opens_the_same_view(dashboard_root):
    at = app(data="builtin:300", run="tiny-b", arch="resnet18")
    at.switch_page("views/model.py").run()
    assert_clean(at)
    assert at.sidebar.selectbox(key="ckpt").value == "tiny-b"
    assert at.segmented_control(key="model_source").value == "resnet18"
    assert metric(at, "Parameters") == params("resnet18")


def test_a_bad_typed_path_shows_the_readers_error(dashboard_root, tmp_path):
    bad = tmp_path / "faces.csv"
    bad.write_text("a,b,c\n1,2,3\n")
    at = app(data="builtin:300")
    assert at.sidebar.radio(key="data_kind").value == "Built-in faces"  # builtin:N is built-in
    at.sidebar.radio(key="data_kind").set_value("Dataset path").run()
    for path in (tmp_path / "missing.csv", bad):
        with pytest.raises(DataError) as reader:
            load_dataset(path)
        at.sidebar.text_input(key="data_path").input(str(path)).run()
        assert_clean(at)
        assert at.sidebar.error[0].value == str(reader.value)
        assert at.query_params["data"] == "builtin:300"  # still showing the last good dataset
        assert metric(at, "Faces") == "300"


def test_a_link_to_some_built_in_faces_keeps_their_number(dashboard_root):
    at = app(data="builtin:300")
    assert_clean(at)
    assert at.sidebar.radio(key="data_kind").value == "Built-in faces"
    assert not at.sidebar.text_input  # no path box for built-in faces
    assert metric(at, "Faces") == "300" and at.query_params["data"] == "builtin:300"


def test_a_bad_startup_path_falls_back_to_the_builtin_faces(dashboard_root, monkeypatch):
    monkeypatch.setenv("FER_DATA", "/nowhere/fer2013.csv")
    at = app()
    assert_clean(at)
    assert "/nowhere/fer2013.csv" in at.sidebar.error[0].value
    assert metric(at, "Dataset") == "Built-in faces"


def test_model_page_shows_the_checkpoint_table_and_metadata(dashboard_root):
    at = app(data="builtin:300", run="tiny-a")
    at.switch_page("views/model.py").run()
    layers = at.dataframe[0].value
    assert layers["layer"].iloc[-1] == "total"
    assert layers["params"].iloc[-1] == layers["params"].iloc[:-1].sum() == 669_127
    assert "512 x 12 x 12" in set(layers["output"])
    checkpoint = dict(zip(*at.dataframe[1].value.T.values))
    assert checkpoint["architecture"] == "cnn3" and checkpoint["epoch"] == "1"
    config = dict(zip(*at.dataframe[2].value.T.values))
    assert config["batch_size"] == "32"


def test_model_page_shows_the_runs_curves_and_its_confusion_matrix(dashboard_root):
    at = app(data="builtin:300", run="tiny-a")
    at.switch_page("views/model.py").run()
    assert_clean(at)
    epochs = RunFolder(dashboard_root / "tiny-a").epochs()
    validation = [array(t["y"]).tolist() for t in figure(at, "model_curves")["data"]
                  if t["name"] == "validation"]
    assert validation == [[e["val_loss"] for e in epochs], [e["val_acc"] for e in epochs]]
    ckpt = load_checkpoint(dashboard_root / "tiny-a", torch.device("cpu"))
    preds = predict_split(ckpt.model, load_dataset("builtin:300"), "val", torch.device("cpu"))
    expected = confusion_counts(preds.labels, preds.predicted, ckpt.task.classes)
    matrix = figure(at, "model_matrix")["data"]
    assert len(matrix) == 1  # shown, not clickable: no overlay
    shown = [[int(text.split("<br>")[0]) for text in row] for row in matrix[0]["text"]]
    assert shown == expected.tolist()
    assert any(f"accuracy {preds.accuracy():.1%}" in c.value for c in at.caption)


def test_model_page_without_checkpoints_shows_an_architecture(run_root):
    at = app(data="builtin:300")
    at.switch_page("views/model.py").run()
    assert_clean(at)
    assert at.segmented_control(key="model_source").value == "cnn3"
    assert any("No checkpoints" in c.value for c in at.sidebar.caption)
    at.segmented_control(key="model_source").set_value("resnet18").run()
    assert metric(at, "Parameters") == params("resnet18")
    at.toggle[0].set_value(True).run()  # the ImageNet stem shrinks the maps, not the weights
    assert "512 x 2 x 2" in set(at.dataframe[0].value["output"])


def test_a_missing_device_falls_back_with_a_warning(dashboard_root, monkeypatch):
    import torch

    from dashboard.common import state

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    monkeypatch.setenv("FER_DEVICE", "cuda")
    state._device_choice.clear()
    try:
        at = app(data="builtin:300")
        assert_clean(at)
        assert "CUDA is not available" in at.sidebar.warning[0].value
        assert metric(at, "Device") == "CPU"
    finally:
        state._device_choice.clear()


SHIPPED = Path(__file__).resolve().parent.parent / "checkpoints" / "builtin-cnn3"
CHECKPOINT_PAGES = ("views/model.py", "views/confusions/page.py", "views/saliency/page.py",
                    "views/filters/page.py", "views/embeddings/page.py")


@pytest.fixture
def truncated_run(tmp_path, monkeypatch):
    """A checkpoints root with the shipped builtin-cnn3 and 'cut', a copy whose best.pt lost its
    second half (a copy interrupted half way)."""
    import shutil

    root = tmp_path / "checkpoints"
    shutil.copytree(SHIPPED, root / "builtin-cnn3")
    shutil.copytree(SHIPPED, root / "cut")
    best = root / "cut" / "best.pt"
    best.write_bytes(best.read_bytes()[:best.stat().st_size // 2])
    monkeypatch.setenv("FER_CHECKPOINTS_DIR", str(root))
    monkeypatch.delenv("FER_DATA", raising=False)
    return root


@pytest.mark.parametrize("page", CHECKPOINT_PAGES)
def test_a_truncated_checkpoint_gives_one_message_on_every_page_that_loads_it(truncated_run,
                                                                              page):
    at = app(data="builtin:300")
    at.switch_page(page).run()
    at.sidebar.selectbox(key="ckpt").set_value("cut").run()
    assert_clean(at)
    why = f"{truncated_run / 'cut' / 'best.pt'}: not a PyTorch checkpoint (truncated, or " \
          f"another kind of file)"
    [message] = [e.value for e in at.main.error]
    assert message.startswith(why)
    assert [e.value for e in at.sidebar.error] == [
        f"{why}. The pages that score faces cannot use it; Model shows what its folder still "
        f"holds."]


def test_model_confusions_and_embeddings_predict_the_split_once(dashboard_root, monkeypatch):
    """The three pages show one checkpoint on one split: one forward pass over its faces, the
    features taken in the pass that predicts (fresh memory stores, so no earlier test helps)."""
    import apptest_helpers

    from dashboard.common import state
    from dashboard.common.memo import MB, Memo
    from dashboard.views.embeddings import store
    from fer_core.evaluation import predict

    monkeypatch.setattr(state, "PREDICTIONS", Memo("predictions", budget=128 * MB, heavy=True))
    monkeypatch.setattr(store, "EMBEDDINGS", Memo("embeddings", budget=192 * MB, heavy=True))
    passes, real = [], predict.predict_split

    def counted(model, dataset, split, *args, **kwargs):
        passes.append(split)
        return real(model, dataset, split, *args, **kwargs)

    monkeypatch.setattr(predict, "predict_split", counted)
    for page in ("views/model.py", "views/confusions/page.py", "views/embeddings/page.py"):
        apptest_helpers.open_page(page, data="builtin:300", run="tiny-a")
    assert passes == ["val"]
