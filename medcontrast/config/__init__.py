"""Typed configuration: defaults in dataclasses, a YAML file over them, ``key=value`` over that.

Every section is a dataclass (:mod:`.schema`), so defaults live in one place and each run folder
stores the fully resolved result (``config.yaml``). :mod:`.loading` lays a YAML file and
overrides over the defaults; unknown keys are errors that name the key and suggest the closest
known one; a config is a YAML file or the name of one shipped in ``medcontrast/configs/``.
:mod:`.presets` holds the augmentation presets; :mod:`.resolve` fills every ``auto``. Code below the command line receives
plain arguments, never these objects (except the training and evaluation entry points, which
unpack them).
"""

from medcontrast.config.loading import (
    from_dict,
    load_config,
    parse_overrides,
    save_config,
    to_dict,
    views_preset,
)
from medcontrast.config.presets import VIEW_PRESETS, with_preset
from medcontrast.config.schema import (
    BudgetConfig,
    DataConfig,
    EvaluateConfig,
    FinetuneConfig,
    InitConfig,
    KNNConfig,
    LinearConfig,
    MethodConfig,
    ModelConfig,
    PretrainConfig,
    TrainConfig,
    ViewsConfig,
)
from medcontrast.configs import shipped_configs

__all__ = [
    "VIEW_PRESETS",
    "BudgetConfig",
    "DataConfig",
    "EvaluateConfig",
    "FinetuneConfig",
    "InitConfig",
    "KNNConfig",
    "LinearConfig",
    "MethodConfig",
    "ModelConfig",
    "PretrainConfig",
    "TrainConfig",
    "ViewsConfig",
    "from_dict",
    "load_config",
    "parse_overrides",
    "save_config",
    "shipped_configs",
    "to_dict",
    "views_preset",
    "with_preset",
]
