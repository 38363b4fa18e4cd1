"""Pretraining: every method and encoder family trains, resume is exact, failures are clear."""

from __future__ import annotations

import copy
import json
import re

import pandas as pd
import pytest
import torch
import yaml
from torch.utils._pytree import tree_map_only

from medcontrast.config import PretrainConfig, load_config
from medcontrast.data.preprocessing import PreprocessSpec
from medcontrast.encoder_input import input_spec
from medcontrast.errors import MedContrastError
from medcontrast.export import load_encoder
from medcontrast.methods import METHODS
from medcontrast.pretrain import pretrain
from medcontrast.runs import flatten


def _overrides(manifest, tmp_path, name, *extra) -> list[str]:
    return [
        f"data.manifest={manifest}",
        "data.modalities=[CR,DX]",
        "data.size=[32,32]",
        f"data.cache_dir={tmp_path / 'cache'}",
        f"out_dir={tmp_path / 'runs'}",
        f"name={name}",
        "model.encoder=timm:resnet10t",
        "method.head.hidden=64",
        "method.head.dim=32",
        "train.batch_size=8",
        "train.max_steps=2",
        "train.log_every=1",
        "views.preset=radiograph",
        *extra,
    ]


def _cfg(manifest, tmp_path, name, *extra) -> PretrainConfig:
    return load_config(PretrainConfig, None, _overrides(manifest, tmp_path, name, *extra))


# Small phantom volumes: the 3D settings several tests share (each adds its encoder).
VOLUMES = [
    "data.ndim=3",
    "data.modalities=[CT,MR]",
    "data.size=[16,16,16]",
    "views.preset=mri",
    "views.flip_axes=[0]",
    "train.batch_size=4",
]

# What a method needs beside the tests' settings: a small queue, a vision transformer.
METHOD_EXTRA = {
    "moco": ["method.queue_size=64"],
    "mae": ["model.encoder=timm:vit_tiny_patch16_224", "model.patch_size=8"],
}


@pytest.mark.parametrize("method", METHODS.names())
def test_every_method_trains(phantom_manifest, tmp_path, method):
    extra = METHOD_EXTRA.get(method, [])
    run = pretrain(
        _cfg(phantom_manifest, tmp_path, method, f"method.name={method}", *extra),
        progress=False,
    )
    metrics = pd.read_csv(run / "metrics.csv")
    assert list(metrics["step"]) == [1, 2] and metrics["loss"].notna().all()
    for name in (
        "config.yaml",
        "versions.json",
        "data.json",
        "encoder.pth",
        "encoder.json",
        "config.json",  # timm's metadata
        "checkpoints/last.pt",
    ):
        assert (run / name).exists(), name
    encoder = load_encoder(run)
    assert encoder(torch.rand(2, 1, 32, 32)).shape == (2, encoder.num_features)
    data = yaml.safe_load((run / "config.yaml").read_text())["data"]
    assert input_spec(run) == PreprocessSpec.from_record(data)  # the run's, in encoder.json
    assert "preprocessing" in json.loads((run / "encoder.json").read_text())


@pytest.mark.parametrize(
    "encoder,extra",
    [
        ("monai:resnet10", []),
        ("monai:vit", ["method.head.hidden=32"]),
        ("monai:swin", []),
    ],
)
def test_3d_encoders_train(phantom_manifest, tmp_path, encoder, extra):
    cfg = _cfg(
        phantom_manifest,
        tmp_path,
        encoder.replace(":", "-"),
        "data.ndim=3",
        "data.modalities=[CT,MR]",
        "data.size=[32,32,32]",
        f"model.encoder={encoder}",
        "train.batch_size=4",
        "data.splits=[train,val,test]",
        "views.preset=mri",
        "views.flip_axes=[0]",
        "views.path=batched",
        *extra,
    )
    run = pretrain(cfg, progress=False)
    assert torch.isfinite(torch.tensor(pd.read_csv(run / "metrics.csv")["loss"].to_numpy())).all()
    enc = load_encoder(run)
    assert enc(torch.rand(2, 1, 32, 32, 32)).shape == (2, enc.num_features)


@pytest.mark.parametrize("path", ["monai", "batched", "batched-on-device"])
def test_kill_and_resume_reproduces_the_uninterrupted_run(phantom_manifest, tmp_path, path):
    extra = [
        "train.max_steps=6",
        "train.checkpoint_every=3",
        f"views.path={path.removesuffix('-on-device')}",
        f"data.on_device={'on' if path.endswith('on-device') else 'off'}",
        "method.name=moco",
        "train.seed=4",
    ]
    full = pretrain(_cfg(phantom_manifest, tmp_path, "full", *extra), progress=False)
    cut = pretrain(_cfg(phantom_manifest, tmp_path, "cut", *extra), stop_after=3, progress=False)
    assert not (cut / "encoder.pth").exists()
    with pytest.raises(MedContrastError, match="already exists"):
        pretrain(_cfg(phantom_manifest, tmp_path, "cut", *extra), progress=False)
    pretrain(_cfg(phantom_manifest, tmp_path, "cut", *extra), resume=True, progress=False)
    a, b = torch.load(full / "encoder.pth"), torch.load(cut / "encoder.pth")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    qa = torch.load(full / "checkpoints" / "last.pt", weights_only=False)["model"]["queue"]
    qb = torch.load(cut / "checkpoints" / "last.pt", weights_only=False)["model"]["queue"]
    assert torch.equal(qa, qb)
    assert list(pd.read_csv(cut / "metrics.csv")["step"]) == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize("method", METHODS.names())
def test_every_method_resumes_exactly(phantom_manifest, tmp_path, method):
    """Killed after its second step and resumed, every method ends where the uninterrupted run
    does: weights and every buffer (MoCo's queue, DINO's centre and teacher temperature)."""
    extra = [
        f"method.name={method}",
        "train.max_steps=4",
        "train.checkpoint_every=2",
        "train.seed=2",
        "views.path=batched",
        *METHOD_EXTRA.get(method, []),
    ]
    full = pretrain(_cfg(phantom_manifest, tmp_path, "full", *extra), progress=False)
    cut = pretrain(_cfg(phantom_manifest, tmp_path, "cut", *extra), stop_after=2, progress=False)
    pretrain(_cfg(phantom_manifest, tmp_path, "cut", *extra), resume=True, progress=False)
    a = torch.load(full / "checkpoints" / "last.pt", weights_only=False)["model"]
    b = torch.load(cut / "checkpoints" / "last.pt", weights_only=False)["model"]
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    if method == "dino":
        assert float(a["teacher_temp"]) > 0.04 and a["center"].abs().sum() > 0


@pytest.mark.parametrize(
    "extra",
    [
        ["model.encoder=timm:vit_tiny_patch16_224", "method.head.hidden=32"],  # a 2D ViT
        [*VOLUMES, "model.encoder=monai:resnet10"],
    ],
    ids=["timm-vit-2d", "monai-resnet-3d"],
)
def test_dino_multi_crop_trains_vits_and_volumes(phantom_manifest, tmp_path, extra):
    cfg = _cfg(
        phantom_manifest,
        tmp_path,
        "dino",
        "method.name=dino",
        "method.local_crops=2",
        "views.path=batched",
        *extra,
    )
    run = pretrain(cfg, progress=False)
    metrics = pd.read_csv(run / "metrics.csv")
    assert metrics["loss"].notna().all() and (metrics["teacher_entropy"] <= 1).all()


VIT_3D = [
    *VOLUMES,
    "model.encoder=monai:vit",
    "method.name=dino",
    "method.head.hidden=32",
]


def test_local_crops_an_encoder_cannot_take_are_refused_before_training(phantom_manifest, tmp_path):
    """MONAI's ViT has a fixed position embedding: 8^3 local crops of 16^3 volumes are refused,
    naming the setting, before a step is trained; without local crops DINO trains it."""
    cfg = _cfg(phantom_manifest, tmp_path, "vit3d", *VIT_3D)
    with pytest.raises(MedContrastError, match=r"method.local_size=0.5 .*monai:vit.*local_crops=0"):
        pretrain(cfg, progress=False)
    assert not (tmp_path / "runs" / "vit3d").exists()
    fixed = _cfg(phantom_manifest, tmp_path, "vit3d-global", *VIT_3D, "method.local_crops=0")
    assert (pretrain(fixed, progress=False) / "encoder.pth").exists()


def test_resume_restores_random_states_that_were_loaded_off_the_cpu(
    phantom_manifest, tmp_path, monkeypatch
):
    """On a GPU, a loader that maps tensors to the device broke every resume (RNG state must be a
    ByteTensor). Here every tensor outside the weights and optimizer comes back on ``meta``, the
    CPU's stand-in for another device, and resume must still match the uninterrupted run."""
    extra = ["train.max_steps=4", "train.checkpoint_every=2", "train.seed=3"]
    full = pretrain(_cfg(phantom_manifest, tmp_path, "full", *extra), progress=False)
    cut = pretrain(_cfg(phantom_manifest, tmp_path, "cut", *extra), stop_after=2, progress=False)
    real_load = torch.load

    def off_the_cpu(*args, **kwargs):
        state = real_load(*args, **kwargs)
        placed = ("model", "optimizer", "scheduler")
        return {
            k: v if k in placed else tree_map_only(torch.Tensor, lambda t: t.to("meta"), v)
            for k, v in state.items()
        }

    monkeypatch.setattr(torch, "load", off_the_cpu)
    pretrain(_cfg(phantom_manifest, tmp_path, "cut", *extra), resume=True, progress=False)
    monkeypatch.undo()
    a, b = torch.load(full / "encoder.pth"), torch.load(cut / "encoder.pth")
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_no_half_written_checkpoint(tmp_path, monkeypatch):
    from medcontrast import checkpoint

    checkpoint.atomic_save({"step": 1}, tmp_path / "last.pt")

    def broken(obj, fh):
        fh.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken)
    with pytest.raises(MedContrastError, match=r"could not write .*last\.pt \(disk full\)"):
        checkpoint.atomic_save({"step": 2}, tmp_path / "last.pt")
    monkeypatch.undo()
    assert checkpoint.load(tmp_path / "last.pt")["step"] == 1
    assert not (tmp_path / "last.pt.tmp").exists()


def test_nan_loss_stops_with_a_clear_message(phantom_manifest, tmp_path, monkeypatch):
    import medcontrast.methods.simclr as simclr

    real, calls = simclr.nt_xent, {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        loss = real(*args, **kwargs)
        return loss * float("nan") if calls["n"] >= 3 else loss

    monkeypatch.setattr(simclr, "nt_xent", flaky)
    cfg = _cfg(phantom_manifest, tmp_path, "nan", "train.max_steps=4", "train.checkpoint_every=2")
    with pytest.raises(MedContrastError, match=r"NaN.*step 3.*last good checkpoint"):
        pretrain(cfg, progress=False)
    assert (
        torch.load(tmp_path / "runs" / "nan" / "checkpoints" / "last.pt", weights_only=False)[
            "step"
        ]
        == 2
    )


def test_bad_settings_are_clear(phantom_manifest, tmp_path):
    with pytest.raises(MedContrastError, match=r"larger than the .* training samples"):
        pretrain(_cfg(phantom_manifest, tmp_path, "big", "train.batch_size=100000"), progress=False)
    with pytest.raises(MedContrastError, match="unknown method"):
        pretrain(_cfg(phantom_manifest, tmp_path, "m", "method.name=simsam"), progress=False)
    with pytest.raises(MedContrastError, match="no usable"):
        pretrain(_cfg(phantom_manifest, tmp_path, "x", "data.modalities=[MG]"), progress=False)


def test_exported_weights_load_into_timm_and_monai(phantom_manifest, tmp_path):
    import timm
    from monai.networks.nets import resnet10

    run = pretrain(_cfg(phantom_manifest, tmp_path, "exp"), progress=False)
    ours = load_encoder(run).eval()
    model = timm.create_model(
        "resnet10t",
        in_chans=1,
        num_classes=0,
        pretrained=True,
        pretrained_cfg_overlay=dict(file=str(run / "encoder.pth")),
    ).eval()
    x = torch.rand(2, 1, 32, 32)
    torch.testing.assert_close(model(x), ours(x))
    run3 = pretrain(
        _cfg(
            phantom_manifest,
            tmp_path,
            "exp3",
            "data.ndim=3",
            "data.modalities=[CT,MR]",
            "data.size=[16,16,16]",
            "model.encoder=monai:resnet10",
            "train.batch_size=4",
            "data.splits=[train,val,test]",
            "views.preset=mri",
            "views.flip_axes=[0]",
        ),
        progress=False,
    )
    net = resnet10(spatial_dims=3, n_input_channels=1, feed_forward=False, conv1_t_stride=2)
    net.load_state_dict(torch.load(run3 / "encoder.pth"))  # strict: no renaming needed
    torch.testing.assert_close(net.eval()(torch.rand(1, 1, 16, 16, 16)).shape, torch.Size([1, 512]))


def test_patient_positives_need_partners(phantom_manifest, tmp_path, capsys):
    # Every image its own patient: nothing to pair with, an error naming the setting.
    alone = tmp_path / "alone.csv"
    t = pd.read_csv(phantom_manifest, dtype=str, keep_default_na=False)
    t["patient"] = t["sample_id"]
    t.to_csv(alone, index=False)
    alone.with_suffix(".json").write_text(phantom_manifest.with_suffix(".json").read_text())
    with pytest.raises(MedContrastError, match=r"pairs\.positives=patient.*no patient has two"):
        pretrain(_cfg(alone, tmp_path, "a", "pairs.positives=patient"), progress=False)
    # The phantoms' patients have several radiographs: trained, and the share is said.
    pretrain(_cfg(phantom_manifest, tmp_path, "p", "pairs.positives=patient"), progress=False)
    assert "images have another image of the same patient" in capsys.readouterr().err


def _autos(tree: dict) -> list[str]:
    """The keys still ``auto``, but data.intensity: a per-image rule (CT windowed, other
    modalities by percentiles), fixed by the config and the data, not by the machine."""
    return [k for k, v in flatten(tree).items() if v == "auto" and k != "data.intensity"]


def test_a_run_folder_holds_its_resolved_config_and_reruns_to_it(phantom_manifest, tmp_path):
    cfg = _cfg(phantom_manifest, tmp_path, "", "train.max_steps=0", "train.epochs=1")
    given = copy.deepcopy(cfg)
    run = pretrain(cfg, progress=False)
    assert cfg == given  # nothing changed in place, not even the name
    assert re.fullmatch(r"simclr-timm-resnet10t-\d{8}-\d{6}", run.name)
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert _autos(saved) == []
    train = saved["train"]
    assert (train["device"], train["precision"], saved["views"]["path"]) == ("cpu", "fp32", "monai")
    assert (train["lr"], train["lr_scaling"]) == (pytest.approx(1e-3 * 8 / 256), "none")
    steps = pd.read_csv(run / "metrics.csv")["step"]
    assert train["max_steps"] == steps.max() > 1 and saved["name"] == run.name
    # The saved config, run again elsewhere, resolves to itself.
    again = load_config(PretrainConfig, run / "config.yaml", [f"out_dir={tmp_path / 'again'}"])
    rerun = pretrain(again, progress=False)
    assert yaml.safe_load((rerun / "config.yaml").read_text()) == {
        **saved,
        "out_dir": str(tmp_path / "again"),
    }


def test_restoration_trains_volumes_with_a_contrastive_term(phantom_manifest, tmp_path):
    """Models Genesis on a 3D MONAI ResNet with the SwinUNETR-style contrastive term: both terms
    are logged, and the exported encoder is the backbone alone (no decoder)."""
    cfg = _cfg(
        phantom_manifest,
        tmp_path,
        "genesis3d",
        *VOLUMES,
        "model.encoder=monai:resnet10",
        "method.name=restoration",
        "method.contrastive_weight=0.1",
    )
    run = pretrain(cfg, progress=False)
    metrics = pd.read_csv(run / "metrics.csv")
    assert metrics[["loss", "restoration", "contrastive"]].notna().all().all()
    assert not any("decoder" in k for k in torch.load(run / "encoder.pth"))


def test_mae_on_a_cnn_or_a_patch_size_for_one_is_refused_before_training(
    phantom_manifest, tmp_path
):
    with pytest.raises(
        MedContrastError, match=r"model\.patch_size=4: model\.encoder=timm:resnet10t"
    ):
        pretrain(_cfg(phantom_manifest, tmp_path, "p", "model.patch_size=4"), progress=False)
    with pytest.raises(MedContrastError, match=r"method\.name=mae .*restoration"):
        pretrain(_cfg(phantom_manifest, tmp_path, "m", "method.name=mae"), progress=False)
    assert not (tmp_path / "runs" / "m").exists()  # refused before a folder was written


def test_model_init_starts_from_a_weights_file_and_a_misfit_is_refused_first(
    phantom_manifest, tmp_path
):
    import json

    import timm

    from medcontrast.pretrain import method_from_config

    # "ImageNet" weights the test makes itself: RGB stem, a classifier, timm's layout
    imagenet = timm.create_model("resnet10t", in_chans=3, num_classes=1000)
    path = tmp_path / "imagenet.pth"
    torch.save({"state_dict": imagenet.state_dict()}, path)
    cfg = _cfg(phantom_manifest, tmp_path, "init", f"model.init={path}")
    said: list[str] = []
    method = method_from_config(cfg, said)
    state = method.encoder.backbone.state_dict()
    torch.testing.assert_close(state["layer1.0.conv1.weight"], imagenet.layer1[0].conv1.weight)
    assert any("adapted to 1" in line for line in said)
    run = pretrain(cfg, progress=False)
    record = json.loads((run / "init.json").read_text())
    assert record["path"] == str(path.resolve()) and len(record["sha256"]) == 64
    assert any("not used" in line for line in record["loaded"])  # the classifier
    # continued pretraining from a finished run folder
    again = pretrain(_cfg(phantom_manifest, tmp_path, "init2", f"model.init={run}"), progress=False)
    assert json.loads((again / "init.json").read_text())["path"].endswith("encoder.pth")
    wrong = tmp_path / "wrong.pth"
    torch.save({**imagenet.state_dict(), "layer1.0.conv1.weight": torch.zeros(1, 1, 1, 1)}, wrong)
    with pytest.raises(MedContrastError, match=r"wrong\.pth: layer1\.0\.conv1\.weight has shape"):
        pretrain(_cfg(phantom_manifest, tmp_path, "w", f"model.init={wrong}"), progress=False)
    assert not (tmp_path / "runs" / "w").exists()  # refused before a folder was written


def test_a_set_on_the_device_trains_as_the_loader_does_and_makes_no_loader(
    phantom_manifest, tmp_path, monkeypatch, capsys
):
    """data.on_device=on: the same batches (partners included) as the DataLoader path, so the
    same weights, over several epochs, and no DataLoader iterated (no workers to restart). The
    loader path, with workers, makes one iterator for the whole run, not one per epoch."""
    extra = ["views.path=batched", "pairs.positives=patient", "train.seed=3"]
    extra += ["train.batch_size=16", "train.max_steps=12"]  # 91 images: 5 steps an epoch
    iterated = []
    real_iter = torch.utils.data.DataLoader.__iter__
    monkeypatch.setattr(
        torch.utils.data.DataLoader,
        "__iter__",
        lambda self: iterated.append(self.num_workers) or real_iter(self),
    )
    workers = ["train.num_workers=2", "data.on_device=off"]
    loader = pretrain(_cfg(phantom_manifest, tmp_path, "loader", *extra, *workers), progress=False)
    assert iterated == [2]  # one iterator over 3 epochs
    iterated.clear()
    capsys.readouterr()
    cfg = _cfg(phantom_manifest, tmp_path, "device", *extra, "data.on_device=on")
    device = pretrain(cfg, progress=False)
    assert not iterated
    assert "samples on the device (data.on_device=on)" in capsys.readouterr().err
    steps = pd.read_csv(device / "metrics.csv")
    assert steps["epoch"].nunique() == 3, "the test must cross epoch boundaries"
    a, b = torch.load(loader / "encoder.pth"), torch.load(device / "encoder.pth")
    for k in a:
        assert torch.equal(a[k], b[k]), k
    saved = yaml.safe_load((device / "config.yaml").read_text())
    assert saved["data"]["on_device"] == "on"


def test_on_device_auto_and_its_refusals(tmp_path):
    from medcontrast.data.resident import choose_placement

    cpu = torch.device("cpu")
    assert choose_placement("auto", "batched", cpu, 10, 0.25)[0] == "off"
    assert choose_placement("auto", "monai", cpu, 10, 0.25)[0] == "off"
    assert choose_placement("on", "batched", cpu, 10, 0.25) == ("on", "data.on_device=on")
    with pytest.raises(MedContrastError, match=r"data\.on_device=on needs views\.path=batched"):
        choose_placement("on", "monai", cpu, 10, 0.25)
    with pytest.raises(MedContrastError, match="device_share"):
        _cfg("m.csv", tmp_path, "x", "data.device_share=1.5")


def test_the_fused_optimizer_trains_and_resumes_on_a_cpu_too(phantom_manifest, tmp_path):
    extra = ["train.fused_optimizer=on", "train.max_steps=4", "train.checkpoint_every=2"]
    extra += ["views.path=batched", "train.seed=5"]
    full = pretrain(_cfg(phantom_manifest, tmp_path, "full", *extra), progress=False)
    pretrain(_cfg(phantom_manifest, tmp_path, "cut", *extra), stop_after=2, progress=False)
    cut = pretrain(_cfg(phantom_manifest, tmp_path, "cut", *extra), resume=True, progress=False)
    a, b = torch.load(full / "encoder.pth"), torch.load(cut / "encoder.pth")
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert yaml.safe_load((full / "config.yaml").read_text())["train"]["fused_optimizer"] == "on"
