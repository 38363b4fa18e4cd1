"""The settings of each command, as typed dataclasses: defaults live here and nowhere else.

A YAML file and ``key=value`` overrides are laid over them by :mod:`medcontrast.config.loading`.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Literal

from medcontrast.augment.params import AugmentParams, ViewsConfig
from medcontrast.checks import check_choices, check_device, check_ranges
from medcontrast.config.presets import DEFAULT_METHOD
from medcontrast.data.preprocessing import INTENSITY_MODES, RESIZE_MODES, PreprocessSpec
from medcontrast.errors import MedContrastError
from medcontrast.evaluation.finetune import FinetuneConfig
from medcontrast.evaluation.inits import InitConfig
from medcontrast.evaluation.metric_names import METRICS, parse_threshold
from medcontrast.methods import METHODS
from medcontrast.methods.base import check_settings, method_settings
from medcontrast.models.encoders import check_encoder_name
from medcontrast.models.heads import HeadSpec

# The ways an evaluation turns an encoder into a classifier (docs/evaluation.md).
PROTOCOLS = ("linear", "knn", "finetune")


@dataclass
class DataConfig:
    """Which rows of the manifest, and how they are turned into model-ready tensors."""

    manifest: str = ""
    ndim: int = 2  # 2 for images (C, H, W), 3 for volumes (C, D, H, W)
    modalities: list[str] = field(default_factory=list)  # e.g. [CR, DX]; empty keeps all
    splits: list[str] = field(
        default_factory=lambda: ["train", "val"]
    )  # pretraining never sees test
    size: list[int] = field(default_factory=lambda: [64, 64])  # one value per spatial axis
    spacing: list[float] | None = None  # resample to this voxel size (mm) before resizing (3D)
    # auto: window for CT, percentile otherwise
    intensity: Literal[INTENSITY_MODES] = "auto"
    window: list[float] = field(default_factory=lambda: [-1000.0, 1000.0])  # for "window"
    percentiles: list[float] = field(default_factory=lambda: [0.5, 99.5])  # for "percentile"
    resize: Literal[RESIZE_MODES] = "pad"  # pad: keep aspect ratio and pad; stretch: each axis
    cache: Literal["disk", "memory"] = "disk"  # disk: memory-mapped .npy
    cache_dir: str = ""  # default: ~/.cache/medcontrast
    max_samples: int = 0  # 0 keeps all; otherwise a seeded subset (quick runs)
    # processes for the one-off preprocessing into the cache; auto: one per CPU core
    workers: int | Literal["auto"] = "auto"
    # pretraining holds the cached set on the device as one tensor (on: batches by index, no
    # loader workers) or reads it with DataLoader workers (off); auto: on for a GPU when the
    # set takes at most device_share of its memory and views.path is batched
    on_device: Literal["auto", "on", "off"] = "auto"
    device_share: float = 0.25

    def __post_init__(self) -> None:
        check_choices("data", self)
        check_ranges("data", self, at_least={"max_samples": 0}, within={"device_share": (0, 1)})
        if self.workers != "auto":
            if isinstance(self.workers, bool) or not isinstance(self.workers, int):
                raise MedContrastError(
                    f"data.workers: {self.workers!r} is neither a number of processes nor auto"
                )
            check_ranges("data", self, at_least={"workers": 0})
        # the preprocessing contract checks its settings: now, at load
        PreprocessSpec.from_settings(self)


@dataclass
class ModelConfig:
    """The encoder. ``encoder`` is ``timm:<model>`` or ``monai:<name>`` (see docs)."""

    encoder: str = "timm:resnet18"
    in_channels: int = 1
    stem_stride: int = 2  # MONAI 3D ResNets: 2 halves the first convolution's output (faster)
    patch_size: int = 0  # vision transformers (timm ViTs, monai:vit): 0 keeps the model's own
    # A weights file to start from (continued, domain-adaptive pretraining): a timm checkpoint,
    # another tool's state dict, .safetensors, or a medcontrast run folder. Never downloaded.
    init: str = ""

    def __post_init__(self) -> None:
        check_ranges("model", self, at_least={"in_channels": 1, "stem_stride": 1, "patch_size": 0})


# Ranges of the settings methods share by name; each applies to the methods that take the key.
METHOD_RANGES: dict[str, dict] = {
    "above": {"temperature": 0},
    "at_least": {"queue_size": 1},
    "within": {"momentum": (0.0, 1.0)},
}


@dataclass
class MethodConfig:
    """The ``method:`` block: the objective ``name`` (docs/methods.md has the papers), its
    projection ``head``, and that method's own settings. Those are the keyword arguments of its
    constructor, with their types and defaults: :func:`method_config` adds them as fields, so the
    constructor is their one definition and a key it does not take is refused at load."""

    method: ClassVar[str] = ""  # the method whose settings a subclass holds

    name: str = DEFAULT_METHOD
    head: HeadSpec = field(default_factory=HeadSpec)

    def __post_init__(self) -> None:
        _method_class(self.name)
        if self.method and self.name.lower() != self.method:
            raise MedContrastError(
                f"method.name is {self.name!r} but the settings are those of {self.method}"
            )
        ranges = {
            kind: {k: v for k, v in table.items() if hasattr(self, k)}
            for kind, table in METHOD_RANGES.items()
        }
        check_ranges("method", self, **ranges)

    @classmethod
    def variant_for(cls, data: dict[str, Any]) -> type[MethodConfig]:
        """The class of a ``method:`` mapping: the one of the method it names (for the loader)."""
        return method_config(str(data.get("name", DEFAULT_METHOD)).lower())

    @classmethod
    def check_keys(cls, keys: list[str], prefix: str) -> None:
        """Refuse a key the method does not take, naming the keys it does (for the loader)."""
        if cls.method:
            own = [k for k in keys if k not in _SHARED]
            check_settings(cls.method, own, prefix=prefix)

    def settings(self) -> dict[str, Any]:
        """The method's own keyword arguments."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in _SHARED}


# The keys of every method block; the rest are the method's own.
_SHARED = frozenset(f.name for f in fields(MethodConfig))


def _method_class(name: str) -> type:
    """The registered method ``name``, or an error naming ``method.name``."""
    try:
        return METHODS.get(name)
    except MedContrastError as exc:
        raise MedContrastError(f"method.name: {exc}") from None


@functools.cache
def method_config(name: str) -> type[MethodConfig]:
    """:class:`MethodConfig` with method ``name``'s own settings as fields (see there)."""
    cls = _method_class(name)
    hints = typing.get_type_hints(cls.__init__)
    own = [(k, *_setting_field(hints[k], p.default)) for k, p in method_settings(name).items()]
    variant = dataclasses.make_dataclass(
        f"{cls.__name__}Config", own, bases=(MethodConfig,), namespace={"method": name.lower()}
    )
    variant.__module__ = __name__
    return variant


def _setting_field(hint: Any, default: Any) -> tuple[Any, Any]:
    """The config field of a constructor argument. A range the constructor takes as a tuple
    (``local_scale: tuple[float, float] = (0.25, 0.6)``) is a list in the config, as in YAML."""
    if typing.get_origin(hint) is tuple:
        item = typing.get_args(hint)[0]
        return list[item], field(default_factory=lambda d=default: list(d))
    return hint, field(default=default)


def __getattr__(name: str) -> type[MethodConfig]:
    """``SimCLRConfig`` and the like, made on first use: what pickle looks up by name."""
    for method in METHODS.names():
        if name == f"{METHODS.get(method).__name__}Config":
            return method_config(method)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass
class PairsConfig:
    """The ``pairs:`` block: where a sample's second view comes from. A data concern: the method
    sees two views either way."""

    # image: two views of one image; patient / study: view 2 from another image of the same
    # patient or study when there is one (MICLe, Azizi et al., ICCV 2021).
    positives: Literal["image", "patient", "study"] = "image"

    def __post_init__(self) -> None:
        check_choices("pairs", self)


@dataclass
class TrainConfig:
    """The optimisation loop."""

    epochs: int = 10
    max_steps: int = 0  # 0: epochs decide; otherwise stop after this many optimizer steps
    batch_size: int = 128  # per process
    optimizer: Literal["adamw", "lars", "sgd"] = "adamw"
    lr: float = 1e-3
    # linear: lr is for a global batch of 256, scaled by global batch / 256 (Goyal et al., 2017);
    # none: lr as given. A run folder's config.yaml holds the scaled lr and "none".
    lr_scaling: Literal["linear", "none"] = "linear"
    weight_decay: float = 1e-4
    warmup_epochs: float = 1.0
    min_lr_ratio: float = 0.01
    clip_grad: float = 3.0  # 0 disables
    precision: Literal["auto", "bf16", "fp32"] = "auto"  # auto: bf16 on a GPU, else fp32
    device: str = "auto"  # auto (a GPU when there is one) | cpu | cuda | cuda:N
    num_workers: int = 0
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 200  # optimizer steps; one is always written at the end
    # experiment trackers, each an optional extra: tensorboard, mlflow, wandb (offline)
    loggers: list[Literal["tensorboard", "mlflow", "wandb"]] = field(default_factory=list)
    experiment: str = "medcontrast"  # the MLflow experiment, the W&B project
    # MLflow's store: "" = MLFLOW_TRACKING_URI where set, else <out_dir>/mlruns (local SQLite)
    tracking_uri: str = ""
    # auto: on for 2D images on a GPU (+10% images/s at 64^2 on an H100), off elsewhere
    channels_last: Literal["auto", "on", "off"] = "auto"
    # AdamW's fused kernel; auto: on with adamw on a GPU (one kernel for every parameter)
    fused_optimizer: Literal["auto", "on", "off"] = "auto"
    # torch.compile the training step: +16% images/s at 64^2 on an H100 after ~90 s compiling
    compile: bool = False

    def __post_init__(self) -> None:
        check_choices("train", self)
        check_device("train.device", self.device)
        check_ranges(
            "train",
            self,
            above={"lr": 0},
            # Contrastive pairs need negatives: a batch of one has none.
            at_least={
                "epochs": 1,
                "max_steps": 0,
                "batch_size": 2,
                "weight_decay": 0,
                "warmup_epochs": 0,
                "clip_grad": 0,
                "num_workers": 0,
                "seed": 0,  # NumPy's generators take no negative seed
                "log_every": 1,
                "checkpoint_every": 1,
            },
            within={"min_lr_ratio": (0.0, 1.0)},
        )


@dataclass
class PretrainConfig:
    """``medcontrast pretrain``: everything a run needs, saved as config.yaml in its folder."""

    kind: ClassVar[str] = "pretrain"  # the folder of the shipped configs of this command

    out_dir: str = "runs"
    name: str = ""  # run folder name; default: <method>-<encoder>-<timestamp>
    data: DataConfig = field(default_factory=DataConfig)
    views: ViewsConfig = field(default_factory=ViewsConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    method: MethodConfig = field(default_factory=lambda: method_config(DEFAULT_METHOD)())
    pairs: PairsConfig = field(default_factory=PairsConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        AugmentParams.from_config(self.views, self.data.ndim, self.data.size)  # axes vs ndim
        try:
            check_encoder_name(self.model.encoder, self.data.ndim)
        except MedContrastError as exc:
            raise MedContrastError(f"model.encoder: {exc}") from None


@dataclass
class BudgetConfig:
    """Label budgets, sampled from the labeled training split only."""

    fractions: list[float] = field(default_factory=lambda: [0.01, 0.1, 1.0])
    shots: list[int] = field(default_factory=list)
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    group: Literal["patient", "none"] = "patient"  # keep all images of a patient together

    def __post_init__(self) -> None:
        check_choices("budgets", self)
        if not self.seeds:
            raise MedContrastError("budgets.seeds is empty: give at least one seed")
        if min(self.seeds) < 0:
            raise MedContrastError(f"budgets.seeds must be 0 or more, not {self.seeds}")
        if not self.fractions and not self.shots:
            raise MedContrastError("budgets.fractions and budgets.shots are both empty")
        if not all(0 < f <= 1 for f in self.fractions):
            raise MedContrastError(f"budgets.fractions must lie in (0, 1], not {self.fractions}")
        if not all(k >= 1 for k in self.shots):
            raise MedContrastError(f"budgets.shots must be 1 or more, not {self.shots}")


@dataclass
class LinearConfig:
    """The linear probe: L2-regularised logistic regression, C chosen on the validation split."""

    c_grid: list[float] = field(default_factory=lambda: [0.01, 0.1, 1.0, 10.0])
    max_iter: int = 2000

    def __post_init__(self) -> None:
        check_ranges("linear", self, at_least={"max_iter": 1})
        if not self.c_grid or not all(c > 0 for c in self.c_grid):
            raise MedContrastError(f"linear.c_grid must be values above 0, not {self.c_grid}")


@dataclass
class KNNConfig:
    """The weighted kNN probe on cosine similarity (Wu et al., 2018)."""

    k: int = 20
    temperature: float = 0.07

    def __post_init__(self) -> None:
        check_ranges("knn", self, above={"temperature": 0}, at_least={"k": 1})


@dataclass
class EvaluateConfig:
    """``medcontrast evaluate``: label-efficiency comparison of several initialisations."""

    kind: ClassVar[str] = "evaluate"  # the folder of the shipped configs of this command

    out_dir: str = "runs/eval"
    name: str = ""
    data: DataConfig = field(default_factory=DataConfig)
    views: ViewsConfig = field(default_factory=ViewsConfig)  # fine-tuning augmentation
    inits: list[InitConfig] = field(default_factory=list)
    # Fine-tuning is in the default protocols: a fine-tuned random initialisation is the
    # strongest baseline, and the report's headline needs it.
    protocols: list[Literal[PROTOCOLS]] = field(default_factory=lambda: list(PROTOCOLS))
    budgets: BudgetConfig = field(default_factory=BudgetConfig)
    linear: LinearConfig = field(default_factory=LinearConfig)
    knn: KNNConfig = field(default_factory=KNNConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    metrics: list[Literal[METRICS]] = field(default_factory=lambda: list(METRICS))
    headline_metric: str = "auroc"
    # Decision threshold of the hard-decision metrics, chosen per run on the validation split:
    # "youden" (max sensitivity + specificity - 1), "argmax" (0.5 for two classes) or a number.
    threshold: str = "youden"
    positive_class: str = ""  # the class sensitivity refers to; empty: the last in sorted order
    bootstrap: int = 1000
    batch_size: int = 256  # feature extraction
    device: str = "auto"
    embedding_plot: bool = True
    retrieval_queries: int = 6
    # When an initialisation's weights (a continued run) or the manifest changed since a
    # folder's results were computed: "recompute" what depends on them, or "refuse" to go on.
    on_change: Literal["recompute", "refuse"] = "recompute"
    # When data: would give a pretrained encoder other inputs than its pretraining did (size,
    # spacing, resize, intensity): "error" before anything is computed, or "warn" and go on (to
    # evaluate at another size on purpose). Harmless differences are always only warnings.
    preprocessing_check: Literal["error", "warn"] = "error"

    def __post_init__(self) -> None:
        check_choices("", self)
        check_device("device", self.device)
        check_ranges("", self, at_least={"batch_size": 1, "bootstrap": 0, "retrieval_queries": 0})
        AugmentParams.from_config(self.views, self.data.ndim, self.data.size)  # axes vs ndim
        if self.headline_metric not in self.metrics:
            raise MedContrastError(
                f"headline_metric: {self.headline_metric!r} is not one of metrics: "
                f"{', '.join(self.metrics)}"
            )
        parse_threshold(self.threshold)
