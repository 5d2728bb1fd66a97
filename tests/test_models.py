import pytest
import torch

from fer_core.data.task import Task
from fer_core.errors import FerError
from fer_core.models.architectures import Normalize, build_model, last_conv_stage
from fer_core.models.layer_table import summarize


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


ARCHS = [("cnn3", {}), ("cnn3", {"head": "flat"}), ("resnet18", {"small_input": True}),
         ("resnet18", {"small_input": False})]


def test_resnet18_keeps_torchvision_state_dict_keys():
    from torchvision.models import resnet18

    keys = set(build_model("resnet18").state_dict())
    assert keys == {f"resnet.{k}" for k in resnet18(num_classes=7).state_dict()}


@pytest.mark.parametrize("arch,options", ARCHS)
def test_every_module_runs_once_and_nothing_runs_in_place(arch, options):
    """A hook on any layer keeps what it was handed: no module is called twice and no later
    operation rewrites a layer's output in place (so a hook on a BatchNorm sees negatives)."""
    model = build_model(arch, **options).eval()
    calls, seen, hooks = {}, [], []
    for name, module in model.named_modules():
        if not list(module.children()):
            def hook(_m, _i, out, name=name):
                calls[name] = calls.get(name, 0) + 1
                seen.append((name, out, out.clone()))
            hooks.append(module.register_forward_hook(hook))
    with torch.no_grad():
        model(torch.rand(2, 1, 48, 48))
    for h in hooks:
        h.remove()
    assert set(calls.values()) == {1}, {n: c for n, c in calls.items() if c != 1}
    changed = [name for name, out, copy in seen if not torch.equal(out, copy)]
    assert not changed
    bn = [out for name, out, _ in seen
          if isinstance(model.get_submodule(name), torch.nn.BatchNorm2d)]
    assert all(out.min() < 0 for out in bn)


def test_the_hook_safe_block_computes_what_torchvision_s_does():
    from torchvision.models.resnet import BasicBlock

    torch.manual_seed(0)
    model = build_model("resnet18").eval()
    block = model.resnet.layer2[0]  # has a downsampling shortcut
    x = torch.rand(2, 64, 48, 48)
    with torch.no_grad():
        assert torch.allclose(block(x), BasicBlock.forward(block, x.clone()), atol=1e-6)


def test_layer_registry_lists_conv_bn_relu_then_the_final_linear_in_forward_order():
    from fer_core.models.architectures import layer_registry

    layers = layer_registry("cnn3")
    assert [(x.name, x.channels, x.size) for x in layers[:3]] == [
        ("block1.conv", 64, (48, 48)), ("block1.bn", 64, (48, 48)), ("block1.relu", 64, (48, 48))]
    assert [x.kind for x in layers] == ["conv", "bn", "relu"] * 3 + ["linear"]
    assert layers[-1].name == "head.fc" and layers[-1].channels == 7 and layers[-1].size is None
    assert [x.size for x in layers if x.kind == "relu"] == [(48, 48), (24, 24), (12, 12)]
    assert layer_registry("cnn3", head="flat")[-1].name == "head.fc"
    resnet = layer_registry("resnet18")
    assert resnet[-1].name == "resnet.fc" and resnet[-2].name == "resnet.layer4.1.relu_out"
    assert resnet[-2].size == (6, 6) and len([x for x in resnet if x.kind == "conv"]) == 17


@pytest.mark.parametrize("arch,options", ARCHS)
def test_every_registered_layer_is_a_module_of_the_model(arch, options):
    from fer_core.models.architectures import layer_registry

    model = build_model(arch, **options)
    for layer in layer_registry(arch, **options):
        model.get_submodule(layer.name)


# Five of RAF-DB's classes, colour, 64 pixels: nothing about the models may be FER2013's.
FIVE_COLOUR = Task(("surprise", "fear", "happiness", "sadness", "anger"), 64, 3)


@pytest.mark.parametrize("arch,options", ARCHS)
def test_models_are_built_for_the_task_s_channels_size_and_classes(arch, options):
    model = build_model(arch, FIVE_COLOUR, **options).eval()
    with torch.no_grad():
        assert model(torch.rand(2, 3, 64, 64)).shape == (2, 5)
    with pytest.raises(RuntimeError):
        model(torch.rand(2, 1, 64, 64))


def test_the_layer_table_and_registry_take_the_task_s_face():
    from fer_core.models.architectures import layer_registry

    summary = summarize(build_model("cnn3", FIVE_COLOUR, head="flat"), FIVE_COLOUR)
    convs = [r for r in summary.rows if r.type == "Conv2d"]
    assert [r.output_shape for r in convs] == [(64, 64, 64), (128, 32, 32), (512, 16, 16)]
    assert convs[0].params == 3 * 64 * 9 and summary.rows[-1].output_shape == (5,)
    layers = layer_registry("cnn3", FIVE_COLOUR)
    assert layers[0].size == (64, 64) and layers[-1].channels == 5
    model = build_model("resnet18", FIVE_COLOUR).eval()
    assert last_conv_stage(model, FIVE_COLOUR.shape) == "resnet.layer4.1.relu_out"
