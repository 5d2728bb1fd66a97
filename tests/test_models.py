import pytest
import torch

from fer_core.errors import FerError
from fer_core.models import Normalize, build_model
from fer_core.summary import summarize


@pytest.mark.parametrize("arch,options", [("cnn3", {}), ("resnet18", {"small_input": True}),
                                          ("resnet18", {"small_input": False})])
def test_models_map_faces_to_seven_logits(arch, options):
    model = build_model(arch, **options).eval()
    with torch.no_grad():
        out = model(torch.rand(5, 1, 48, 48))
    assert out.shape == (5, 7)
    assert isinstance(model[0], Normalize)


def test_cnn3_summary_matches_the_architecture():
    summary = summarize(build_model("cnn3"))
    convs = [r for r in summary.rows if r.type == "Conv2d"]
    assert [r.output_shape for r in convs] == [(64, 48, 48), (128, 24, 24), (512, 12, 12)]
    pools = [r.output_shape for r in summary.rows if r.type == "MaxPool2d"]
    assert pools == [(64, 24, 24), (128, 12, 12), (512, 6, 6)]
    assert summary.rows[-1].output_shape == (7,)
    assert convs[1].params == 64 * 128 * 9
    assert summary.total_params == sum(r.params for r in summary.rows)
    assert summary.as_records()[1] == {"layer": "block1.conv", "type": "Conv2d",
                                       "output": "64 x 48 x 48", "params": 576}


def test_resnet18_small_stem_keeps_6x6_maps_at_layer4():
    small = summarize(build_model("resnet18", small_input=True))
    imagenet = summarize(build_model("resnet18", small_input=False))
    last_conv = lambda s: [r for r in s.rows if r.type == "Conv2d"][-1].output_shape  # noqa: E731
    assert last_conv(small) == (512, 6, 6)
    assert last_conv(imagenet) == (512, 2, 2)
    assert small.total_params == imagenet.total_params - 64 * (49 - 9)


def test_summary_leaves_model_state_and_hooks_untouched():
    model = build_model("cnn3").train()
    summarize(model)
    assert model.training
    assert all(not m._forward_hooks for m in model.modules())


def test_unknown_architecture_and_option_are_refused():
    with pytest.raises(FerError, match="unknown architecture 'vgg'"):
        build_model("vgg")
    with pytest.raises(FerError, match="unknown option.*width"):
        build_model("cnn3", width=3)
