"""The genome's arithmetic against the built module, and the pretrained weights loading as torchvision's."""
import pytest
import torch

from host.errors import HostError
from host.evolve.genome import Genome
from host.evolve.model import SqueezeNet, load_pretrained
from tests.conftest import PRETRAINED, needs

SMALL = Genome(num_classes=5, conv1=12, fires=((4, 8, 12), (5, 6, 7), (8, 16, 8), (3, 5, 9),
                                               (6, 12, 12), (7, 9, 11), (8, 16, 24), (4, 8, 8)))


def measured_macs(model, image_size):
    """MACs counted from the real convs' output shapes, with forward hooks."""
    total = []

    def hook(module, inputs, output):
        k = module.kernel_size[0] * module.kernel_size[1]
        total.append(module.in_channels * module.out_channels * k * output.shape[2] * output.shape[3])

    for conv in model.named_layers().values():
        conv.register_forward_hook(hook)
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 3, image_size, image_size))
    return sum(total)


@pytest.mark.parametrize("genome", [Genome.squeezenet1_1(10), SMALL])
@pytest.mark.parametrize("image_size", [112, 224, 97])
def test_params_size_and_macs_match_the_module(genome, image_size):
    model = SqueezeNet(genome)
    counted = sum(p.numel() for p in model.parameters())
    assert genome.params == counted
    assert genome.size_bytes == 4 * counted
    assert genome.macs(image_size) == measured_macs(model, image_size)


def test_squeezenet_1_1_with_10_classes_has_the_papers_modification():
    genome = Genome.squeezenet1_1(10)
    # torchvision's squeezenet1_1 has 1,235,496 parameters with 1000 classes; conv10 is 512 -> N
    assert genome.params == 1_235_496 - 512 * 1000 - 1000 + 512 * 10 + 10
    assert SqueezeNet(genome)(torch.zeros(2, 3, 64, 64)).shape == (2, 10)


def test_named_layers_follow_the_paper():
    names = list(SqueezeNet(SMALL).named_layers())
    assert names[0] == "conv1" and names[-1] == "conv10"
    assert names[1:4] == ["fire2.squeeze", "fire2.expand1x1", "fire2.expand3x3"]
    assert len(names) == 2 + 8 * 3


def test_a_layer_without_filters_is_refused():
    with pytest.raises(HostError, match="fire2.squeeze has width 0"):
        Genome(num_classes=3, conv1=8, fires=((0, 8, 8),) + ((4, 8, 8),) * 7)


@needs(PRETRAINED)
def test_pretrained_loads_except_conv10():
    model = SqueezeNet(Genome.squeezenet1_1(10))
    before = model.conv10.weight.clone()
    load_pretrained(model, PRETRAINED)
    state = torch.load(PRETRAINED, map_location="cpu", weights_only=True)
    assert torch.equal(model.features[0].weight, state["features.0.weight"])
    assert torch.equal(model.features[12].expand3x3.bias, state["features.12.expand3x3.bias"])
    assert torch.equal(model.conv10.weight, before)


def test_pretrained_refuses_a_missing_file_and_a_wrong_layout(tmp_path):
    model = SqueezeNet(Genome.squeezenet1_1(10))
    with pytest.raises(HostError, match="no such file"):
        load_pretrained(model, tmp_path / "nope.pth")
    wrong = tmp_path / "small.pth"
    torch.save(SqueezeNet(SMALL).state_dict(), wrong)
    with pytest.raises(HostError, match="does not fit SqueezeNet v1.1"):
        load_pretrained(model, wrong)


def _v11_state():
    """A state_dict in SqueezeNet v1.1's layout, made here (random weights)."""
    return SqueezeNet(Genome.squeezenet1_1(1000)).state_dict()


@pytest.mark.parametrize("layout", ["dataparallel", "compiled", "dataparallel_compiled", "model_wrapper",
                                    "state_dict_wrapper", "lightning"])
def test_pretrained_unwraps_checkpoint_layouts(tmp_path, layout):
    state = _v11_state()
    saved = {
        "dataparallel": {"module." + k: v for k, v in state.items()},
        "compiled": {"_orig_mod." + k: v for k, v in state.items()},
        "dataparallel_compiled": {"module._orig_mod." + k: v for k, v in state.items()},
        "model_wrapper": {"model": state, "epoch": 3, "args": {"lr": 0.1}},
        "state_dict_wrapper": {"state_dict": state, "optimizer": {"lr": 0.1}},
        "lightning": {"state_dict": {"model." + k: v for k, v in state.items()}, "epoch": 1},
    }[layout]
    path = tmp_path / f"{layout}.pth"
    torch.save(saved, path)
    model = SqueezeNet(Genome.squeezenet1_1(10))
    how = load_pretrained(model, path)
    assert torch.equal(model.features[0].weight, state["features.0.weight"])
    assert torch.equal(model.features[12].expand1x1.weight, state["features.12.expand1x1.weight"])
    assert how  # says what it unwrapped or stripped


def test_pretrained_names_the_real_cause(tmp_path):
    model = SqueezeNet(Genome.squeezenet1_1(10))
    other = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7), "fc.weight": torch.zeros(1000, 512)}, other)
    with pytest.raises(HostError) as caught:
        load_pretrained(model, other)
    assert "conv1.weight" in str(caught.value) and "not 1.0" not in str(caught.value)
    v10 = tmp_path / "v10.pth"
    state = _v11_state()
    state["features.0.weight"] = torch.zeros(96, 3, 7, 7)
    torch.save(state, v10)
    with pytest.raises(HostError, match="not 1.0"):
        load_pretrained(model, v10)
    nothing = tmp_path / "meta.pth"
    torch.save({"epoch": 3, "arch": "squeezenet1_1"}, nothing)
    with pytest.raises(HostError, match="'epoch', 'arch'"):
        load_pretrained(model, nothing)
