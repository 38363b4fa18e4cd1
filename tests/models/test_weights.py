"""Starting an encoder from a user's weights file: matched, partly matched, wrong shape,
other tools' prefixes, RGB first convolutions and ViT position embeddings of another size."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from medcontrast.errors import MedContrastError
from medcontrast.models.encoders import build_encoder
from medcontrast.models.weights import load_weights

# (encoder, ndim, size): a timm CNN, a timm ViT and a MONAI 3D network
ENCODERS = [
    ("timm:resnet10t", 2, [32, 32]),
    ("timm:vit_tiny_patch16_224", 2, [32, 32]),
    ("monai:resnet10", 3, [16, 16, 16]),
]


def _encoder(name: str, ndim: int, size: list[int], seed: int = 0):
    torch.manual_seed(seed)
    kwargs = {"patch_size": 8} if "vit" in name else {}
    return build_encoder(name, ndim, 1, size, 2, **kwargs)


def _save(state: dict, path: Path) -> Path:
    torch.save(state, path)
    return path


@pytest.mark.parametrize(("name", "ndim", "size"), ENCODERS)
def test_a_matching_file_loads_every_weight(tmp_path, name, ndim, size):
    source, target = _encoder(name, ndim, size, 1), _encoder(name, ndim, size, 2)
    # the layouts other tools save: a bare state dict, timm's {"state_dict"}, a DDP prefix,
    # a wrapper prefix of a self-supervised library
    state = source.backbone.state_dict()
    for i, wrapped in enumerate(
        [
            state,
            {"state_dict": state, "epoch": 3},
            {f"module.{k}": v for k, v in state.items()},
            {"model": {f"backbone.{k}": v for k, v in state.items()}},
        ]
    ):
        loaded = load_weights(target, _save(wrapped, tmp_path / f"w{i}.pth"))
        assert loaded.loaded == loaded.total and not loaded.missing and not loaded.unused
        for key, value in target.backbone.state_dict().items():
            torch.testing.assert_close(value, state[key], msg=key)


@pytest.mark.parametrize(("name", "ndim", "size"), ENCODERS)
def test_a_partly_matching_file_loads_what_fits_and_names_the_rest(tmp_path, name, ndim, size):
    source, target = _encoder(name, ndim, size, 1), _encoder(name, ndim, size, 2)
    before = {k: v.clone() for k, v in target.backbone.state_dict().items()}
    state = source.backbone.state_dict()
    kept = dict(list(state.items())[: len(state) // 2])
    kept["head.fc.weight"] = torch.zeros(10, 4)  # a classifier of the file's own
    loaded = load_weights(target, _save(kept, tmp_path / "half.pth"))
    assert loaded.loaded == len(kept) - 1
    assert set(loaded.missing) == set(state) - set(kept)
    assert loaded.unused == ["head.fc.weight"]
    text = "\n".join(loaded.summary())
    assert "left at their initialisation" in text and "head.fc.weight" in text
    now = target.backbone.state_dict()
    for key in state:
        torch.testing.assert_close(now[key], state[key] if key in kept else before[key])


def test_a_wrong_shape_or_another_architecture_is_refused_naming_file_and_key(tmp_path):
    target = _encoder("timm:resnet10t", 2, [32, 32])
    state = target.backbone.state_dict()
    key = "layer1.0.conv1.weight"
    bad = {**state, key: torch.zeros(3, 3, 3, 3)}
    with pytest.raises(MedContrastError, match=rf"bad\.pth: {key} has shape \(3, 3, 3, 3\)"):
        load_weights(target, _save(bad, tmp_path / "bad.pth"))
    other = _encoder("monai:resnet10", 3, [16, 16, 16]).backbone.state_dict()
    renamed = {f"net_{k}": v for k, v in other.items()}
    with pytest.raises(MedContrastError, match=r"none of its .* weight names match"):
        load_weights(target, _save(renamed, tmp_path / "other.pth"))
    (tmp_path / "junk.pth").write_text("not weights")
    with pytest.raises(MedContrastError, match=r"junk\.pth is not a weights file"):
        load_weights(target, tmp_path / "junk.pth")
    with pytest.raises(MedContrastError, match="does not exist"):
        load_weights(target, tmp_path / "absent.pth")


def test_imagenet_rgb_weights_and_vit_positions_are_adapted_as_timm_does(tmp_path):
    import timm

    rgb = timm.create_model("resnet10t", in_chans=3, num_classes=1000)
    target = _encoder("timm:resnet10t", 2, [32, 32])
    loaded = load_weights(target, _save(rgb.state_dict(), tmp_path / "rgb.pth"))
    assert not loaded.missing and "fc.weight" in loaded.unused
    assert any("3-channel weights adapted to 1" in n for n in loaded.notes)
    first = "conv1.0.weight"
    torch.testing.assert_close(
        target.backbone.state_dict()[first], rgb.state_dict()[first].sum(1, keepdim=True)
    )
    # a ViT saved at 224 px with patches of 16 (14 x 14 positions) into one at 32 px, patch 8
    big = timm.create_model("vit_tiny_patch16_224", in_chans=3, num_classes=0)
    vit = _encoder("timm:vit_tiny_patch16_224", 2, [32, 32])
    loaded = load_weights(vit, _save(big.state_dict(), tmp_path / "vit.pth"))
    assert not loaded.missing
    torch.testing.assert_close(
        vit.backbone.blocks[0].attn.qkv.weight, big.blocks[0].attn.qkv.weight
    )


def test_safetensors_and_a_run_folder_are_read(tmp_path):
    from safetensors.torch import save_file

    from medcontrast.export import export_encoder

    source, target = (
        _encoder("timm:resnet10t", 2, [32, 32], 1),
        _encoder("timm:resnet10t", 2, [32, 32], 2),
    )
    state = {k: v.contiguous() for k, v in source.backbone.state_dict().items()}
    save_file(state, str(tmp_path / "w.safetensors"))
    assert load_weights(target, tmp_path / "w.safetensors").loaded == len(state)
    export_encoder(source, tmp_path / "run")
    assert load_weights(target, tmp_path / "run").loaded == len(state)
