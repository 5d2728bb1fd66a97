"""Which saliency maps to trust (fer_core.explain.trust): the cascading-randomization sanity check
tells a method that depends on the weights from one that ignores the model, deletion finds the
region a model decides on, localization measures the share on the expression parts, the report
is cached on disk, and the `trust` command writes it."""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from dataset_helpers import in_other_task
from torch import nn

from fer_core.cli.main import main
from fer_core.data.dataset import PART_BITS
from fer_core.data.readers import load_dataset
from fer_core.data.task import FER2013
from fer_core.errors import FerError
from fer_core.explain import trust
from fer_core.explain.attribution import METHODS, Method, Target, explain
from fer_core.models.architectures import build_model
from fer_core.models.checkpoint import load_checkpoint

SHIPPED = Path(__file__).resolve().parent.parent / "checkpoints" / "builtin-cnn3"


@pytest.fixture(scope="module")
def shipped():
    ckpt = load_checkpoint(SHIPPED)
    dataset = load_dataset("builtin:300")
    faces, parts = trust.probe_faces(dataset, "val", 4)
    return ckpt, faces, parts


def sobel_edges(scores, x, target, *, batch, seed):
    """A 'saliency method' that never looks at the model: the image's edge strength."""
    kernel = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]], device=x.device)
    gx = nn.functional.conv2d(x, kernel.view(1, 1, 3, 3), padding=1)
    gy = nn.functional.conv2d(x, kernel.t().reshape(1, 1, 3, 3), padding=1)
    return (gx ** 2 + gy ** 2).sqrt().detach()


def test_the_sanity_check_flags_a_method_that_ignores_the_model(shipped, monkeypatch):
    ckpt, faces, _ = shipped
    monkeypatch.setitem(METHODS, "edges", Method("edges", "Edges", False, False, sobel_edges))
    before = {k: v.clone() for k, v in ckpt.model.state_dict().items()}
    report = trust.trust_report(ckpt.model, ckpt.arch, ckpt.meta["arch_options"], faces,
                                methods=["vanilla", "edges"], task=ckpt.task)
    edges, vanilla = report.by_method()["edges"], report.by_method()["vanilla"]
    assert edges.randomization_spearman == pytest.approx([1.0] * 5)
    assert "sanity" in report.failed_checks(edges)
    assert vanilla.randomization_spearman[0] == 1.0
    assert vanilla.randomization_spearman[-1] < trust.FLAG_AT
    assert "sanity" not in report.failed_checks(vanilla)
    assert all(torch.equal(before[k], v) for k, v in ckpt.model.state_dict().items())


@pytest.mark.parametrize("arch, options, starts", [
    ("cnn3", {}, ["head.fc", "block3.conv", "block2.conv", "block1.conv"]),
    ("cnn3", {"head": "flat"}, ["head.fc", "head.hidden", "block3.conv", "block2.conv",
                                "block1.conv"]),
    ("resnet18", {}, ["resnet.fc", "resnet.layer4.1.conv2", "resnet.layer4.1.conv1",
                      "resnet.layer4.0.conv2"])])
def test_the_cascade_goes_from_the_head_down_and_covers_every_weight(arch, options, starts):
    model = build_model(arch, **options)
    groups = trust.cascade_groups(model, arch, options, FER2013)
    assert [group[0] for group in groups][:len(starts)] == starts
    assert groups[-1][0] == ("resnet.conv1" if arch == "resnet18" else "block1.conv")
    assert len(groups) == {"cnn3": 3 + (2 if options else 1), "resnet18": 18}[arch]
    grouped = sorted(name for group in groups for name in group)
    weighted = sorted(n for n, m in model.named_modules() if list(m.parameters(recurse=False)))
    assert grouped == weighted


def test_randomizing_a_layer_gives_its_construction_values():
    model = build_model("cnn3")
    nn.init.constant_(model.get_submodule("head.fc").weight, 0.5)
    fresh = trust.fresh_weights("cnn3", {}, FER2013)
    trust.randomize(model, ["head.fc"], fresh)
    assert torch.equal(model.get_submodule("head.fc").weight, fresh.get_submodule("head.fc").weight)


def test_spearman_of_rows():
    a = np.array([[1.0, 2, 3, 4], [1, 2, 3, 4], [1, 1, 1, 1]])
    b = np.array([[10.0, 20, 30, 40], [4, 3, 2, 1], [1, 2, 3, 4]])
    assert trust.spearman_rows(a, b) == pytest.approx([1.0, -1.0, 0.0])


class RegionModel(nn.Module):
    """Class 0's logit is 40 x (the mean brightness of a 12 x 12 square - 0.75); the others are
    0: a bright square means class 0, a blurred one does not."""

    def __init__(self):
        super().__init__()
        self.mask = nn.Parameter(torch.zeros(1, 48, 48), requires_grad=False)
        self.mask.data[0, 18:30, 18:30] = 1

    def forward(self, x):
        score = 40 * ((x * self.mask).flatten(1).sum(1) / self.mask.sum() - 0.75)
        return torch.nn.functional.pad(score[:, None], (0, 6))


def test_deleting_the_decisive_region_first_drops_the_probability_fastest():
    model = RegionModel()
    faces = torch.zeros(3, 1, 48, 48)
    faces[:, 0, 18:30, 18:30] = 1.0  # the region bright: class 0 nearly certain
    faces += torch.rand(3, 1, 48, 48, generator=torch.Generator().manual_seed(0)) * 0.1
    classes = torch.zeros(3, dtype=torch.int64)
    region_first = model.mask.expand(3, 48, 48)
    curves = trust.deletion_curves(model, faces, region_first, classes)
    random = trust.deletion_curves(model, faces, trust.random_maps((3, 48, 48), 0, "cpu"),
                                   classes)
    assert curves[:, 0] == pytest.approx(random[:, 0].tolist())
    assert (curves[:, 2] < random[:, 2]).all()  # 10% removed: most of the region already
    assert (trust.curve_area(curves) < trust.curve_area(random) - 0.2).all()


def test_localization_of_a_model_that_looks_at_the_mouth(shipped):
    _, faces, parts = shipped
    mouth = (parts[0] & PART_BITS["mouth"]) > 0  # the first probe face's mouth
    assert mouth.any()
    model = nn.Linear(48 * 48, 7, bias=False)
    model.weight.data = mouth.flatten().float().expand(7, -1).clone()  # sees only those pixels
    looker = nn.Sequential(nn.Flatten(), model)
    maps = explain(looker, faces[:1], "vanilla", Target("class", 0)).maps
    assert trust.parts_share(maps, parts[:1]) == pytest.approx(1.0)
    area = trust.parts_area(parts[:1])
    assert area == pytest.approx(float((parts[0] > 0).float().mean()))
    spread = torch.ones_like(maps)
    assert trust.parts_share(spread, parts[:1]) == pytest.approx(area, rel=1e-5)


def constructed(area: float | None = 0.25, **changes) -> trust.TrustReport:
    """A report of one method passing every check (random deletion 0.34, parts `area` of the
    image), with `changes` to that method."""
    method = trust.MethodTrust(method="guided", title="Guided Backprop",
                               randomization_spearman=[1.0, 0.6, 0.2], deletion_auc=0.2,
                               parts_share=None if area is None else 0.5)
    return trust.TrustReport([replace(method, **changes)], ["head.fc", "block1.conv"], 16,
                             random_deletion_auc=0.34, parts_area_share=area)


@pytest.mark.parametrize("changes, failed", [
    ({}, []),
    ({"deletion_auc": 0.52}, ["deletion"]),
    ({"deletion_auc": 0.34}, ["deletion"]),  # no better than random: lower must be lower
    ({"parts_share": 0.25}, ["localization"]),  # no more than an evenly spread map
    ({"randomization_spearman": [1.0, 0.9, 0.5]}, ["sanity"]),
    ({"randomization_spearman": [1.0, 0.9, 0.8], "deletion_auc": 0.4, "parts_share": 0.1},
     ["sanity", "deletion", "localization"]),
    ({"area": None, "deletion_auc": 0.4}, ["deletion"]),  # no parts: no localization check
])
def test_a_method_fails_each_check_it_does_no_better_on_than_the_baseline(changes, failed):
    report = constructed(**changes)
    assert report.failed_checks(report.methods[0]) == failed


def test_the_json_form_names_the_failed_checks_and_reads_back():
    report = constructed(deletion_auc=0.52)
    data = json.loads(json.dumps(report.as_dict()))
    assert data["methods"][0]["failed"] == ["deletion"]
    assert data["random_deletion_auc"] == 0.34 and data["parts_area_share"] == 0.25
    assert trust.TrustReport.from_dict(data) == report


def test_the_trust_table_says_which_checks_failed():
    from fer_core.cli.trust import table

    printed = table(constructed(deletion_auc=0.52, parts_share=0.1))
    line = next(row for row in printed.splitlines() if row.startswith("Guided Backprop"))
    assert line.endswith("FLAGGED: deletion worse than random, "
                         "localization no better than an even spread")
    assert "deletion      0.340, a random order's area" in printed
    assert "localization  25.0% on the parts" in printed
    assert table(constructed()).splitlines()[2].endswith("ok")


def test_the_report_is_cached_on_disk(shipped, tmp_path, monkeypatch):
    monkeypatch.setenv("FER_CACHE_DIR", str(tmp_path))
    ckpt, _, _ = shipped
    dataset = load_dataset("builtin:300")
    calls = []
    real = trust.trust_report

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **{**kwargs, "methods": ["vanilla", "gradcam"]})

    monkeypatch.setattr(trust, "trust_report", counted)
    first = trust.cached_trust_report(ckpt.model, ckpt.path, ckpt.arch, ckpt.meta["arch_options"],
                                      dataset, "val", 3, task=ckpt.task)
    again = trust.cached_trust_report(ckpt.model, ckpt.path, ckpt.arch, ckpt.meta["arch_options"],
                                      dataset, "val", 3, task=ckpt.task)
    assert len(calls) == 1 and again == first
    assert first.faces == 3 and first.methods[0].parts_share is not None
    trust.cached_trust_report(ckpt.model, ckpt.path, ckpt.arch, ckpt.meta["arch_options"],
                              dataset, "val", 2, task=ckpt.task)
    assert len(calls) == 2  # another probe size is another report


def test_a_colour_model_of_another_size_is_checked_without_localization(tmp_path, monkeypatch):
    """Colour 64-pixel faces with RAF-DB's classes have no part masks: sanity and deletion
    only. The model is untrained (its own cascade still starts from its head)."""
    monkeypatch.setenv("FER_CACHE_DIR", str(tmp_path))
    colour = in_other_task(load_dataset("builtin:300"))
    torch.manual_seed(0)
    model = build_model("cnn3", colour.task).eval()
    faces, parts = trust.probe_faces(colour, "val", 3)
    assert faces.shape == (3, 3, 64, 64) and parts is None
    report = trust.trust_report(model, "cnn3", {}, faces, methods=["vanilla", "occlusion"],
                                task=colour.task)
    assert report.parts_area_share is None and report.layers[0] == "head.fc"
    for m in report.methods:
        assert m.parts_share is None and 0 <= m.deletion_auc <= 1
        assert len(m.randomization_spearman) == 5
        assert np.isfinite(m.randomization_spearman).all()


def test_data_of_another_task_is_refused_naming_both(shipped):
    ckpt, _, _ = shipped
    colour = in_other_task(load_dataset("builtin:300"))
    with pytest.raises(FerError, match=r"7 classes, 48x48 grey, but .* 7 classes, 64x64 colour"):
        trust.cached_trust_report(ckpt.model, ckpt.path, ckpt.arch, ckpt.arch_options, colour,
                                  "val", 2, task=ckpt.task)


def test_the_trust_command_writes_the_report(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FER_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "trust.json"
    code = main(["trust", "--checkpoint", str(SHIPPED), "--data", "builtin:300", "--faces", "2",
                 "--json", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    assert [m["method"] for m in report["methods"]] == list(METHODS)
    assert 0 <= report["random_deletion_auc"] <= 1 and 0 < report["parts_area_share"] < 1
    for m in report["methods"]:
        assert m["randomization_spearman"][0] == 1.0 and len(m["randomization_spearman"]) == 5
        assert ("sanity" in m["failed"]) == (m["randomization_spearman"][-1] >= trust.FLAG_AT)
        assert ("deletion" in m["failed"]) == (m["deletion_auc"] >= report["random_deletion_auc"])
        assert 0 <= m["deletion_auc"] <= 1 and 0 <= m["parts_share"] <= 1
    printed = capsys.readouterr().out
    assert "Guided Backprop" in printed and "deletion" in printed


@pytest.mark.parametrize("args, message", [
    (["--faces", "0"], "1 to 256 faces"),
    (["--split", "nope"], "invalid choice: 'nope'"),
    (["--split", "test", "--data", "builtin:5"], "has no test split"),
    (["--param", "steps=0"], "steps must lie in [1, 512], got 0"),
    (["--param", "ig.window=4"], "no chosen method takes window"),
    (["--checkpoint", "/no/such/run"], "/no/such/run"),
])
def test_bad_trust_input_exits_2_with_one_line_and_no_file(tmp_path, capsys, args, message):
    out = tmp_path / "trust.json"
    base = {"--checkpoint": str(SHIPPED), "--data": "builtin:300", "--json": str(out)}
    for flag, value in zip(args[::2], args[1::2]):
        base[flag] = value
    try:
        code = main(["trust", *[item for pair in base.items() for item in pair]])
    except SystemExit as e:  # argparse's usage errors
        code = e.code
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1
    assert not out.exists()
