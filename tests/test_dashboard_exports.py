"""The pages read an export of the split (`python -m fer_core export`) instead of computing:
Confusions draws each face's map beside it and the cell's mean map from it, Saliency shows a
face's stored map; a damaged shard gets its message and the pages compute as without one."""

import shutil
from pathlib import Path

import apptest_helpers
import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from fer_core.cli.main import main
from fer_core.errors import ExportError
from fer_core.explain.export_files import load_export

DATA = "builtin:300"
RUN = "shipped"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def exported_root(tmp_path_factory) -> Path:
    """A checkpoints root holding the shipped builtin-cnn3 with an export of its val split."""
    root = tmp_path_factory.mktemp("export_root")
    shutil.copytree(ROOT / "checkpoints" / "builtin-cnn3", root / RUN)
    assert main(["export", "--checkpoint", str(root / RUN), "--data", DATA, "--split", "val",
                 "--methods", "gradcam,vanilla"]) == 0
    return root


@pytest.fixture
def root(exported_root, tmp_path, monkeypatch) -> Path:
    """A private copy (a test may damage it) that the dashboard serves."""
    copy = tmp_path / "checkpoints"
    shutil.copytree(exported_root, copy)
    return apptest_helpers.serve(monkeypatch, copy)


def export_folder(root: Path) -> Path:
    return next((root / RUN / "exports").iterdir())


def open_page(page: str, **query) -> AppTest:
    return apptest_helpers.open_page(f"views/{page}/page.py", data=DATA, run=RUN, **query)


def captions(at: AppTest) -> str:
    return "\n".join(c.value for c in at.caption)


def gallery_width(at: AppTest) -> int:
    return apptest_helpers.figure(at, "cm_gallery")["layout"]["width"]


def test_confusions_shows_the_exported_mean_map_and_each_face_map_beside_it(root):
    at = open_page("confusions")
    assert not at.warning, [w.value for w in at.warning]
    method = next(s for s in at.selectbox if s.key == "cm_export_method")
    assert method.options == ["Grad-CAM", "Vanilla gradient"]
    assert "read from the export in" in captions(at)
    assert "What turns" not in "\n".join(m.value for m in at.markdown)  # nothing computed
    narrow = gallery_width(at)
    next(t for t in at.toggle if t.key == "cm_export_maps").set_value(True).run()
    assert not at.exception, [e.value for e in at.exception]
    assert "its map of the predicted class" in captions(at)
    assert gallery_width(at) > narrow  # tiles twice as wide, half as many a row


def test_saliency_reads_a_stored_map_and_computes_what_the_export_lacks(root):
    at = open_page("saliency", split="val", idx="4", method="gradcam")
    assert "Read from the export in" in captions(at)
    at = open_page("saliency", split="val", idx="4", method="ig")
    assert "Computed in" in captions(at)


def test_a_stored_map_is_the_map_the_page_would_compute(root):
    """Within float16 rounding; with other parameters the export is not used."""
    from dashboard.views.saliency import maps
    from fer_core.data.readers import load_dataset
    from fer_core.explain.export import find_export
    from fer_core.models.checkpoint import load_checkpoint

    ckpt, dataset = load_checkpoint(root / RUN), load_dataset(DATA)
    forwards = []  # the page's model is shared: finding the stored map must not run it
    hook = ckpt.model.register_forward_hook(lambda *_: forwards.append(1))
    folders = {m: find_export(ckpt, dataset, "val", {m: {}}) for m in ("vanilla", "gradcam")}
    hook.remove()
    assert forwards == [] and set(folders.values()) == {export_folder(root)}
    export = load_export(export_folder(root), ["vanilla", "gradcam"])
    face = dataset.images[export.rows[4]]
    for method in folders:
        classes = ckpt.task.classes
        stored = maps.exported_map(export, 4, method, classes)
        computed = maps.face_map(ckpt.model, ("test", method), classes, face, None, method, "pred",
                                 ())
        np.testing.assert_allclose(stored.values, computed.values, rtol=1e-2,
                                   atol=1e-3 * np.abs(computed.values).max())
        np.testing.assert_allclose(stored.probs, computed.probs, atol=1e-5)
        assert stored.target == computed.target and stored.params == computed.params
    assert find_export(ckpt, dataset, "val", {"ig": {}}) is None
    assert find_export(ckpt, dataset, "val", {"gradcam": {"layer": "block2.relu"}}) is None


def test_only_the_asked_methods_maps_are_loaded(root):
    export = load_export(export_folder(root), ["gradcam"])
    assert export.methods == ["gradcam"] and len(export.maps["gradcam"]) == len(export)
    assert load_export(export_folder(root)).methods == ["gradcam", "vanilla"]
    with pytest.raises(ExportError, match="holds no ig maps"):
        load_export(export_folder(root), ["ig"])


@pytest.mark.parametrize("damage", ["truncate", "edit"])
def test_a_damaged_shard_gets_a_message_and_the_pages_compute(root, damage):
    shard = next(export_folder(root).glob("chunk-*.npz"))
    data = bytearray(shard.read_bytes())
    if damage == "truncate":
        shard.write_bytes(data[:len(data) // 2])
    else:
        data[-100] ^= 0xFF
        shard.write_bytes(bytes(data))
    at = open_page("confusions")
    warning = "\n".join(w.value for w in at.warning)
    assert "The export of this split is not used" in warning and shard.name in warning
    assert "What turns" in "\n".join(m.value for m in at.markdown) or "Where it looks" in \
        "\n".join(m.value for m in at.markdown)
    at = open_page("saliency", split="val", idx="4", method="gradcam")
    assert "The export of this split is not used" in "\n".join(w.value for w in at.warning)
    assert "Computed in" in captions(at)
