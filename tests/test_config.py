import inspect
import pickle
import re
from pathlib import Path

import pytest
import yaml

from medcontrast.config import (
    EvaluateConfig,
    PretrainConfig,
    load_config,
    save_config,
    to_dict,
    views_preset,
)
from medcontrast.config.presets import DEFAULT_METHOD, METHOD_PRESETS
from medcontrast.config.renamed import upgrade_saved
from medcontrast.config.resolve import resolve_pretrain
from medcontrast.config.schema import method_config
from medcontrast.errors import MedContrastError
from medcontrast.methods import METHODS, build_method
from medcontrast.models.encoders import build_encoder
from medcontrast.runs import check_resumable


def test_yaml_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  lr: 0.5\n  epochs: 3\ndata:\n  size: [32, 32]\n")
    cfg = load_config(PretrainConfig, path, ["train.lr=0.1", "method.name=moco"])
    assert cfg.train.lr == 0.1 and cfg.train.epochs == 3
    assert cfg.data.size == [32, 32] and cfg.method.name == "moco"


def test_unknown_key_names_the_key_and_suggests():
    with pytest.raises(MedContrastError, match=r"train\.lrr.*did you mean train\.lr"):
        load_config(PretrainConfig, None, ["train.lrr=0.1"])


def test_wrong_type_is_an_error():
    with pytest.raises(MedContrastError, match=r"train\.lr: expected a number"):
        load_config(PretrainConfig, None, ["train.lr=fast"])


@pytest.mark.parametrize("value", ["on", "off", "graphs", "auto"])
def test_on_and_off_stay_words_though_yaml_reads_them_as_booleans(tmp_path, value):
    cfg = load_config(PretrainConfig, None, [f"views.compile={value}"])
    path = tmp_path / "c.yaml"
    path.write_text(f"views:\n  compile: {value}\n")
    assert cfg.views.compile == load_config(PretrainConfig, path).views.compile == value


def test_preset_fills_only_unset_view_keys():
    cfg = load_config(PretrainConfig, None, ["views.preset=none", "views.flip_prob=0.5"])
    assert cfg.views.flip_prob == 0.5  # explicit, although equal to the default
    assert cfg.views.crop_prob == 0.0  # from the preset
    assert views_preset("mask").rot90_prob == 0.5


def test_unknown_preset():
    with pytest.raises(MedContrastError, match="preset"):
        load_config(PretrainConfig, None, ["views.preset=xray"])


def test_a_config_pickles_whatever_its_method(tmp_path):
    """Worker processes receive configs by pickle; a method block's class is made on first use."""
    cfg = load_config(PretrainConfig, None, ["method.name=MoCo", "method.queue_size=64"])
    assert pickle.loads(pickle.dumps(cfg)) == cfg
    assert cfg.method == load_config(PretrainConfig, None, ["method.name=moco"]).method.__class__(
        name="MoCo", queue_size=64
    )


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config(PretrainConfig, None, ["views.preset=ct", "train.seed=7"])
    save_config(cfg, tmp_path / "config.yaml")
    again = load_config(PretrainConfig, tmp_path / "config.yaml")
    assert again == cfg


# (config kinds it applies to, override, the message's start): each used to pass the loader and
# fail later (a traceback after preprocessing, or a silent wrong run) or not at all.
EVAL, PRE, BOTH = (EvaluateConfig,), (PretrainConfig,), (PretrainConfig, EvaluateConfig)
BAD = [
    (EVAL, "finetune.mode=lpf", "finetune.mode: 'lpf' is not one of both, lpft, plain"),
    (EVAL, "finetune.precision=fp16", "finetune.precision: 'fp16' is not one of auto, bf16, fp32"),
    (EVAL, "finetune.epochs=0", "finetune.epochs must be 1 or more, not 0"),
    (EVAL, "finetune.steps=0", "finetune.steps must be 1 or more, not 0"),
    (EVAL, "finetune.lr_factors=[]", "finetune.lr_factors must hold one or more values above 0"),
    (EVAL, "finetune.parallel=0", "finetune.parallel must be 1 or more, not 0"),
    (EVAL, "finetune.lr=-1", "finetune.lr must be above 0, not -1.0"),
    (EVAL, "finetune.layer_decay=0", "finetune.layer_decay must be above 0, not 0.0"),
    (EVAL, "finetune.layer_decay=1.5", "finetune.layer_decay must lie in [0.0, 1.0], not 1.5"),
    (EVAL, "finetune.wise_alphas=[0.5,1.5]", "finetune.wise_alphas must lie in"),
    (EVAL, "protocols=[linear,probe]", "protocols: 'probe' is not one of linear, knn, finetune"),
    (EVAL, "metrics=[auroc,f2]", "metrics: 'f2' is not one of auroc, accuracy"),
    (EVAL, "headline_metric=f1", "headline_metric: 'f1' is not one of metrics: auroc"),
    (EVAL, "budgets.seeds=[]", "budgets.seeds is empty"),
    (EVAL, "budgets.group=site", "budgets.group: 'site' is not one of patient, none"),
    (EVAL, "threshold=2", "threshold: '2' is not youden, argmax or a number in (0, 1)"),
    (EVAL, "on_change=ask", "on_change: 'ask' is not one of recompute, refuse"),
    (BOTH, "data=5", "data: expected a mapping of settings, got 5"),
    (PRE, "train.epochs=2.5", "train.epochs: expected a whole number, got 2.5"),
    (PRE, "train.tensorboard=maybe", "train.tensorboard: expected true or false, got 'maybe'"),
    (EVAL, "finetune.lrr=0.1", "unknown config key 'finetune.lrr' (did you mean finetune.lr?)"),
    (EVAL, "inits=[{name: a, sorce: random}]", "unknown config key 'inits[0].sorce' (did you"),
    (PRE, "model.encoder=timm:resnet19", "model.encoder: unknown timm model 'resnet19'. Did you"),
    (PRE, "model.encoder=resnet18", "model.encoder: encoder 'resnet18' must start with 'timm:'"),
    (PRE, "model.encoder=monai:resnet11", "model.encoder: unknown MONAI encoder 'resnet11'"),
    (PRE, "train.device=gpu", "train.device: 'gpu' is not one of auto, cpu, cuda, cuda:N"),
    (EVAL, "device=gpu", "device: 'gpu' is not one of auto, cpu, cuda, cuda:N"),
    (BOTH, "views.flip_axes=[2]", "views.flip_axes [2] must be spatial axes below 2"),
    (EVAL, "knn.k=0", "knn.k must be 1 or more, not 0"),
    (EVAL, "linear.c_grid=[0]", "linear.c_grid must be values above 0, not [0.0]"),
    (EVAL, "budgets.fractions=[0]", "budgets.fractions must lie in (0, 1], not [0.0]"),
    (EVAL, "budgets.shots=[0]", "budgets.shots must be 1 or more, not [0]"),
    (EVAL, "batch_size=0", "batch_size must be 1 or more, not 0"),
    (BOTH, "data.workers=-1", "data.workers must be 0 or more, not -1"),
    (BOTH, "views.path=gpu", "views.path: 'gpu' is not one of auto, monai, batched"),
    (BOTH, "data.size=64", "data.size must be 2 whole numbers of 1 or more"),
    (BOTH, "data.size=[0,0]", "data.size must be 2 whole numbers of 1 or more"),
    (BOTH, "data.ndim=4", "data.ndim must be 2 or 3, got 4"),
    (BOTH, "data.window=400", "data.window must be two values [low, high]"),
    (BOTH, "data.percentiles=[99,1]", "data.percentiles must be [low, high] with 0 <= low"),
    (BOTH, "data.resize=crop", "data.resize: 'crop' is not one of pad, stretch"),
    (BOTH, "data.cache=ram", "data.cache: 'ram' is not one of disk, memory"),
    (PRE, "train.checkpoint_every=0", "train.checkpoint_every must be 1 or more, not 0"),
    (PRE, "train.log_every=0", "train.log_every must be 1 or more, not 0"),
    (PRE, "train.max_steps=-5", "train.max_steps must be 0 or more, not -5"),
    (PRE, "train.lr=-1", "train.lr must be above 0, not -1.0"),
    (PRE, "train.batch_size=1", "train.batch_size must be 2 or more, not 1"),
    (PRE, "train.optimizer=adam", "train.optimizer: 'adam' is not one of adamw, lars, sgd"),
    (PRE, "train.min_lr_ratio=1.5", "train.min_lr_ratio must lie in [0.0, 1.0], not 1.5"),
    (PRE, "pairs.positives=site", "pairs.positives: 'site' is not one of image, patient, study"),
    (PRE, "method.name=simclrr", "method.name: unknown method 'simclrr'. Did you mean 'simclr'?"),
    (PRE, "method.queue_size=8192", "method.queue_size is not a setting of method simclr (a"),
    (PRE, "method.temperatur=0.2", "method.temperatur is not a setting of method simclr (did you"),
    (PRE, "method.head.dim=0", "method.head.dim must be 1 or more, not 0"),
    (PRE, "method.head.width=8", "unknown config key 'method.head.width'"),
    (PRE, "model.stem_stride=0", "model.stem_stride must be 1 or more, not 0"),
    (PRE, "method.temperature=0", "method.temperature must be above 0, not 0.0"),
    (PRE, "views.noise_prob=1.5", "views.noise_prob must lie in [0.0, 1.0], not 1.5"),
    (PRE, "views.crop_scale=[0.8,0.5]", "views.crop_scale must be 0 < low <= high <= 1"),
    (PRE, "views.crop_scale=0.5", "views.crop_scale needs two values [low, high]"),
    (PRE, "views.gamma=[0,1]", "views.gamma must be 0 < low <= high, not [0.0, 1.0]"),
    (PRE, "views.rot90_axes=[1,1]", "views.rot90_axes must be two different spatial axes"),
    (PRE, "views.elastic_sigma=0", "views.elastic_sigma must be above 0, not 0.0"),
    (PRE, "views.noise_std=-1", "views.noise_std must be 0 or more, not -1.0"),
    (PRE, "views.rotate_deg=-5", "views.rotate_deg must be 0 or more, not -5.0"),
    (PRE, "views.scale=1.5", "views.scale must lie in [0.0, 0.99], not 1.5"),
    (PRE, "train.seed=-1", "train.seed must be 0 or more, not -1"),
    (PRE, "train.lr=.inf", "train.lr: expected a finite number, got inf"),
    (PRE, "train.lr=.nan", "train.lr: expected a finite number, got nan"),
    (EVAL, "budgets.seeds=[0,-1]", "budgets.seeds must be 0 or more, not [0, -1]"),
]


@pytest.mark.parametrize(
    ("schema", "override", "message"),
    [(schema, o, m) for kinds, o, m in BAD for schema in kinds],
    ids=lambda v: v.__name__ if isinstance(v, type) else None,
)
def test_bad_settings_are_refused_at_load(schema, override, message):
    """One line naming the key, the value and what is allowed, when the config is loaded (views
    on top of a preset, so that the preset's values are checked too)."""
    with pytest.raises(MedContrastError, match=re.escape(message)):
        load_config(schema, None, ["views.preset=radiograph", override])


def test_a_key_of_another_method_names_the_keys_this_one_takes():
    with pytest.raises(MedContrastError) as err:
        load_config(PretrainConfig, None, ["method.name=byol", "method.temperature=0.2"])
    assert str(err.value) == (
        "method.temperature is not a setting of method byol (a setting of moco, restoration, simclr, "
        "supcon); "
        "byol takes: momentum (besides method.name and method.head)"
    )


@pytest.mark.parametrize("name", ["vicreg", "dino", "byol"])
def test_naming_another_method_drops_the_files_method_settings(tmp_path, name):
    """``method.name=vicreg`` on a SimCLR config trains VICReg with its defaults: SimCLR's
    temperature is no setting of it. The head is kept; the same method keeps every setting."""
    path = tmp_path / "c.yaml"
    path.write_text("method: {name: simclr, temperature: 0.3, head: {dim: 64}}\n")
    cfg = load_config(PretrainConfig, path, [f"method.name={name}"])
    assert cfg.method.name == name and cfg.method.head.dim == 64
    assert cfg.method.settings() == method_config(name)(name=name).settings()
    same = load_config(PretrainConfig, path, ["method.name=SimCLR"])
    assert same.method.temperature == 0.3
    with pytest.raises(MedContrastError, match="not a setting of method"):
        load_config(PretrainConfig, path, [f"method.name={name}", "method.temperature=0.3"])


@pytest.mark.parametrize("name", METHODS.names())
def test_a_method_block_holds_its_constructors_settings(name):
    """The defaults of a method's block are those of its constructor, and every one reaches it."""
    cfg = load_config(PretrainConfig, None, [f"method.name={name}"])
    params = inspect.signature(METHODS.get(name).__init__).parameters
    # A range the constructor takes as a tuple is a list in the config, as YAML writes it.
    assert cfg.method.settings() == {
        k: list(p.default) if isinstance(p.default, tuple) else p.default
        for k, p in params.items()
        if k not in ("self", "encoder", "head")
    }
    yaml.safe_dump(to_dict(cfg))  # every setting can be saved in the run folder
    vit = {"name": "timm:vit_tiny_patch16_224", "patch_size": 8}  # MAE masks a ViT's patches
    encoder = build_encoder(
        **(vit if name == "mae" else {"name": "timm:resnet10t"}), ndim=2, size=[32, 32]
    )
    method = build_method(name, encoder, cfg.method.head, **cfg.method.settings())
    assert isinstance(method, METHODS.get(name))
    with pytest.raises(MedContrastError, match="is not a setting of method"):
        build_method(name, encoder, cfg.method.head, frobnicate=1)


@pytest.mark.parametrize(
    ("old", "new", "value"),
    [
        (["model.proj_dim=64"], "method.head.dim", 64),
        (["model.pred_hidden=256"], "method.head.pred_hidden", 256),
        (["method.patient_positives=true"], "pairs.positives", "patient"),
        (
            ["method.patient_positives=true", "method.positive_group=study"],
            "pairs.positives",
            "study",
        ),
        (["method.patient_positives=false"], "pairs.positives", "image"),
    ],
)
def test_keys_of_the_last_release_still_work_with_a_warning(old, new, value):
    with pytest.warns(FutureWarning, match=f"is now {re.escape(new)}"):
        cfg = load_config(PretrainConfig, None, old)
    section, *keys = new.split(".")
    node = getattr(cfg, section)
    for key in keys:
        node = getattr(node, key)
    assert node == value


def test_a_run_of_the_last_release_resumes_without_changes():
    """Its checkpoint saved every method's settings under method: and the head under model:."""
    now = load_config(PretrainConfig, None, ["model.encoder=timm:resnet10t"])
    old = to_dict(now)
    old["model"].update(proj_hidden=512, proj_dim=128, proj_layers=2, pred_hidden=512)
    del old["method"]["head"], old["pairs"]
    old["method"].update(queue_size=4096, momentum=0.99, patient_positives=False)
    old["method"]["positive_group"] = "patient"
    saved = upgrade_saved(old)
    assert check_resumable(Path("run"), saved, to_dict(now), to_dict(PretrainConfig())) == {}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("train: [1, 2\n", "is not valid YAML"),
        ("- train\n- data\n", "must hold a mapping of settings"),
    ],
)
def test_a_config_file_that_is_not_a_yaml_mapping_is_named(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(MedContrastError, match=rf"config file {re.escape(str(path))} {message}"):
        load_config(PretrainConfig, path)


def test_an_override_without_equals_is_refused():
    with pytest.raises(
        MedContrastError, match=r"override 'train\.lr' is not of the form key=value"
    ):
        load_config(PretrainConfig, None, ["train.lr"])


@pytest.mark.parametrize("preset", ["radiograph", "ct", "mri", "mask", ""])
def test_a_config_naming_no_method_takes_its_modalitys(tmp_path, preset):
    """The views preset picks the method where the config names none; a named method wins, and
    the method's settings may be given without its name."""
    volume = preset in ("ct", "mri", "mask")
    data = ["data.ndim=3", "data.size=[8,8,8]", "model.encoder=monai:resnet10"] if volume else []
    views = [f"views.preset={preset}"] if preset else []
    cfg = load_config(PretrainConfig, None, [*data, *views])
    assert cfg.method.name == METHOD_PRESETS.get(preset, DEFAULT_METHOD)
    assert PretrainConfig().method.name == DEFAULT_METHOD
    named = load_config(PretrainConfig, None, [*data, *views, "method.name=moco"])
    assert named.method.name == "moco"
    path = tmp_path / "c.yaml"
    path.write_text("method: {head: {dim: 64}}\n")
    assert load_config(PretrainConfig, path, [*data, *views]).method.head.dim == 64


@pytest.mark.parametrize(
    ("cuda", "extra", "want"),
    [
        (False, [], ("off", "off")),
        (True, [], ("on", "on")),  # 2D on a GPU: both
        (
            True,
            ["data.ndim=3", "data.size=[16,16,16]", "model.encoder=monai:resnet10"],
            ("off", "on"),
        ),
        (True, ["train.optimizer=lars"], ("on", "off")),  # only AdamW has the fused kernel here
        (True, ["train.channels_last=off", "train.fused_optimizer=false"], ("off", "off")),
        (False, ["train.channels_last=true"], ("on", "off")),  # YAML's true is "on"
    ],
)
def test_gpu_speed_defaults_resolve_from_the_device(cuda, extra, want):
    from medcontrast.config.resolve import resolve_pretrain

    cfg = resolve_pretrain(load_config(PretrainConfig, None, extra), cuda, 1, "t")
    assert (cfg.train.channels_last, cfg.train.fused_optimizer) == want


@pytest.mark.parametrize(
    ("override", "key", "value"),
    [
        ("train.lr=1e-4", "lr", 1e-4),
        ("train.weight_decay=5E-2", "weight_decay", 0.05),
        ("train.max_steps=1e3", "max_steps", 1000),
        ("train.lr=-2e+3", None, None),  # a number still, refused for its sign
    ],
)
def test_numbers_in_exponent_form_are_numbers(override, key, value):
    """YAML 1.1 reads 1e-4 as text (a number needs a dot there): read as the number it is."""
    if key is None:
        with pytest.raises(
            MedContrastError, match=re.escape("train.lr must be above 0, not -2000.0")
        ):
            load_config(PretrainConfig, None, [override])
        return
    cfg = load_config(PretrainConfig, None, [override])
    assert getattr(cfg.train, key) == value and type(getattr(cfg.train, key)) is type(value)


def test_a_learning_rate_the_linear_rule_breaks_names_the_value_typed():
    cfg = load_config(PretrainConfig, None, ["train.lr=1e308", "train.batch_size=512"])
    with pytest.raises(MedContrastError, match=r"train.lr=1e\+308 scaled by the linear rule"):
        resolve_pretrain(cfg, cuda=False, world_size=1, stamp="now")
