"""Encoders by name: ``timm:<any timm model>`` or ``monai:<resnet10|18|34|50|vit|swin>``.

Every encoder is an :class:`Encoder`: ``forward`` returns pooled features (B, D) and
``num_features`` is D; ``feature_map`` returns the spatial features before pooling (B, C, *grid),
for the decoders of restoration methods; vision transformers also give access to their patch
tokens (``patch_tokens``, for masked image modelling). The wrapped library module is
``encoder.backbone``; its ``state_dict`` is what we export, so timm and MONAI load it without
renaming keys (the accessors are plain functions of the backbone and hold no weights). Whether the
encoder is 2D or 3D is decided here, once, when it is built.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields

import torch
from torch import nn

from medcontrast.errors import MedContrastError
from medcontrast.registry import Registry


@dataclass
class EncoderSpec:
    """What is needed to rebuild an encoder (saved next to exported weights)."""

    name: str
    ndim: int
    in_channels: int = 1
    size: list[int] = field(default_factory=list)  # input size; ViT and Swin need it
    stem_stride: int = 2
    kwargs: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, info: dict) -> EncoderSpec:
        """From ``encoder.json``, whose other entries (``num_features``, ``preprocessing``) are
        not the spec's."""
        return cls(**{k: v for k, v in info.items() if k in {f.name for f in fields(cls)}})


FeatureMap = Callable[[nn.Module, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class PatchTokens:
    """A vision transformer's patch tokens, for masked image modelling (MAE).

    ``embed(backbone, x)``: (B, C, *size) -> (prefix (B, P, D), patches (B, N, D)), both with
    their position embedding added; the patches in row-major grid order (that of
    :func:`~medcontrast.methods.mae.patchify`). ``encode(backbone, tokens)``: the transformer
    blocks and final norm, (B, P + N', D) -> (B, P + N', D), for any subset N' of the patches.
    """

    patch_size: tuple[int, ...]
    embed: Callable[[nn.Module, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
    encode: Callable[[nn.Module, torch.Tensor], torch.Tensor]


class Encoder(nn.Module):
    """A backbone that maps (B, C, *size) to pooled features (B, D).

    ``feature_map`` and ``patch_tokens`` are functions of the backbone (not closures over it):
    a deep copy of the encoder (the EMA target of BYOL and DINO) then uses its own weights.
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_features: int,
        spec: EncoderSpec,
        pool: Callable[[object], torch.Tensor] | None = None,
        fixed_size: bool = False,
        feature_map: FeatureMap | None = None,
        patch_tokens: PatchTokens | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.num_features = num_features
        self.spec = spec
        self._pool = pool
        # Only inputs of spec.size are right, even where others run: MONAI's ViT adds its
        # position embedding by broadcasting, so a smaller input runs and is silently wrong.
        self.fixed_size = fixed_size
        self._feature_map = feature_map
        self.patch_tokens = patch_tokens

    @property
    def ndim(self) -> int:
        return self.spec.ndim

    @property
    def has_feature_map(self) -> bool:
        return self._feature_map is not None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.backbone(x)
        return self._pool(out) if self._pool is not None else out

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """Spatial features before pooling: (B, C, *size) -> (B, C', *grid), channels first
        (a CNN's last stage; a ViT's or Swin's last tokens laid out on their grid)."""
        if self._feature_map is None:
            raise MedContrastError(f"encoder {self.spec.name} exposes no spatial feature map")
        return self._feature_map(self.backbone, x)


MONAI_ENCODERS: Registry[Callable[[EncoderSpec], Encoder]] = Registry("MONAI encoder")


def build_encoder(
    name: str,
    ndim: int,
    in_channels: int = 1,
    size: list[int] | tuple[int, ...] = (),
    stem_stride: int = 2,
    **kwargs,
) -> Encoder:
    """Build an encoder by name. ``timm:`` models are 2D; ``monai:`` ones follow ``ndim``."""
    spec = EncoderSpec(
        name=name,
        ndim=ndim,
        in_channels=in_channels,
        size=list(size),
        stem_stride=stem_stride,
        kwargs=dict(kwargs),
    )
    return build_from_spec(spec)


def check_encoder_name(name: str, ndim: int) -> None:
    """Raise naming ``name`` when it names no encoder, or a 2D timm model for volumes."""
    family, _, model = name.partition(":")
    if family == "monai":
        MONAI_ENCODERS.get(model)
        return
    if family != "timm":
        raise MedContrastError(
            f"encoder {name!r} must start with 'timm:' (2D, any timm model) or 'monai:' "
            f"({', '.join(MONAI_ENCODERS.names())})"
        )
    import timm

    if model not in timm.list_models():
        close = difflib.get_close_matches(model, timm.list_models(), n=3)
        hint = f" Did you mean {', '.join('timm:' + c for c in close)}?" if close else ""
        raise MedContrastError(f"unknown timm model {model!r}.{hint}")
    if ndim != 2:
        raise MedContrastError(
            f"{name} is a 2D timm model but data.ndim is {ndim}; use a monai: encoder for volumes"
        )


def build_from_spec(spec: EncoderSpec) -> Encoder:
    check_encoder_name(spec.name, spec.ndim)
    family, _, model = spec.name.partition(":")
    if family == "timm":
        return _timm(spec, model)
    return MONAI_ENCODERS.get(model)(spec)


def _timm(spec: EncoderSpec, model: str) -> Encoder:
    import timm
    from timm.models.vision_transformer import VisionTransformer

    extra = {"img_size": spec.size[0]} if spec.size and takes_img_size(model) else {}
    kw = dict(pretrained=False, in_chans=spec.in_channels, num_classes=0, **extra, **spec.kwargs)
    net = None
    if extra:
        # Vision transformers that can take other input sizes (their position embedding
        # interpolated) do so: multi-crop's local crops are smaller. Same weights, same output at
        # the trained size; models without the option refuse it.
        with contextlib.suppress(TypeError):
            net = timm.create_model(model, **{"dynamic_img_size": True, **kw})
    net = net or timm.create_model(model, **kw)
    tokens = _timm_patch_tokens(net) if isinstance(net, VisionTransformer) else None
    return Encoder(
        net, int(net.num_features), spec, feature_map=_timm_feature_map, patch_tokens=tokens
    )


def _timm_feature_map(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = net.forward_features(x)
    if out.ndim == 3:  # a ViT's tokens (B, P + N, D): drop the class/register tokens
        out = out[:, getattr(net, "num_prefix_tokens", 0) :]
        return _on_grid(out, x.shape[2:], net.patch_embed.patch_size)
    if getattr(net, "output_fmt", "NCHW") == "NHWC":  # timm's Swin family
        return out.permute(0, 3, 1, 2)
    return out


def _on_grid(tokens: torch.Tensor, size, patch) -> torch.Tensor:
    """Patch tokens (B, N, D) in row-major grid order -> (B, D, *grid) for inputs of ``size``."""
    grid = [s // p for s, p in zip(size, patch, strict=True)]
    return tokens.transpose(1, 2).reshape(tokens.shape[0], -1, *grid)


def _timm_patch_tokens(net: nn.Module) -> PatchTokens:
    # timm's VisionTransformer.forward_features, split where MAE drops the masked tokens.
    def embed(net: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = net._pos_embed(net.patch_embed(x))  # (B, P + N, D), NHWC input flattened
        p = net.num_prefix_tokens
        return tokens[:, :p], tokens[:, p:]

    def encode(net: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
        return net.norm(net.blocks(net.norm_pre(tokens)))

    return PatchTokens(tuple(net.patch_embed.patch_size), embed, encode)


def takes_img_size(model: str) -> bool:
    # Vision transformers need the input size at construction; CNNs refuse the argument.
    return any(k in model for k in ("vit", "deit", "swin", "eva", "beit", "cait", "xcit"))


def _monai_resnet(depth: int) -> Callable[[EncoderSpec], Encoder]:
    def build(spec: EncoderSpec) -> Encoder:
        from monai.networks import nets

        factory = getattr(nets, f"resnet{depth}")
        net = factory(
            spatial_dims=spec.ndim,
            n_input_channels=spec.in_channels,
            conv1_t_stride=spec.stem_stride,
            feed_forward=False,
            **spec.kwargs,
        )
        width = 512 * (4 if depth >= 50 else 1)
        return Encoder(net, width, spec, feature_map=_monai_resnet_feature_map)

    return build


def _monai_resnet_feature_map(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    # MONAI's ResNet.forward up to its last stage (it has no forward_features).
    x = net.act(net.bn1(net.conv1(x)))
    if not net.no_max_pool:
        x = net.maxpool(x)
    return net.layer4(net.layer3(net.layer2(net.layer1(x))))


for _depth in (10, 18, 34, 50):
    MONAI_ENCODERS.register(f"resnet{_depth}")(_monai_resnet(_depth))


@MONAI_ENCODERS.register("vit")
def _monai_vit(spec: EncoderSpec) -> Encoder:
    """MONAI ViT (Dosovitskiy et al., 2021), small by default; features: mean of the tokens."""
    from monai.networks.nets import ViT

    if not spec.size:
        raise MedContrastError("monai:vit needs data.size")
    kw = dict(patch_size=8, hidden_size=384, mlp_dim=1536, num_layers=6, num_heads=6)
    kw.update(spec.kwargs)
    net = ViT(
        in_channels=spec.in_channels,
        img_size=spec.size,
        spatial_dims=spec.ndim,
        classification=False,
        **kw,
    )
    patch = _tuple(kw["patch_size"], spec.ndim)
    return Encoder(
        net,
        kw["hidden_size"],
        spec,
        pool=lambda out: out[0].mean(1),
        fixed_size=True,
        feature_map=functools.partial(_monai_vit_feature_map, patch=patch),
        patch_tokens=PatchTokens(patch, _monai_vit_embed, _monai_vit_encode),
    )


def _tuple(v: int | list[int] | tuple[int, ...], n: int) -> tuple[int, ...]:
    return tuple(v) if isinstance(v, list | tuple) else (int(v),) * n


def _monai_vit_feature_map(net: nn.Module, x: torch.Tensor, patch: tuple[int, ...]) -> torch.Tensor:
    return _on_grid(net(x)[0], x.shape[2:], patch)  # no class token (classification=False)


def _monai_vit_embed(net: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    tokens = net.patch_embedding(x)  # (B, N, D) with the position embedding
    return tokens[:, :0], tokens


def _monai_vit_encode(net: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    for block in net.blocks:  # MONAI's ViT.forward without the hidden-state list
        tokens = block(tokens)
    return net.norm(tokens)


@MONAI_ENCODERS.register("swin")
def _monai_swin(spec: EncoderSpec) -> Encoder:
    """The Swin transformer encoder of SwinUNETR (Hatamizadeh et al., 2022); features: mean of
    the last stage."""
    from monai.networks.nets.swin_unetr import SwinTransformer

    kw = dict(embed_dim=24, depths=(2, 2, 2, 2), num_heads=(3, 6, 12, 24))
    kw.update(spec.kwargs)
    nd = spec.ndim
    net = SwinTransformer(
        in_chans=spec.in_channels,
        window_size=(4,) * nd,
        patch_size=(2,) * nd,
        spatial_dims=nd,
        **kw,
    )
    width = kw["embed_dim"] * 2 ** len(kw["depths"])
    return Encoder(
        net,
        width,
        spec,
        pool=lambda out: out[-1].flatten(2).mean(-1),
        feature_map=lambda net, x: net(x)[-1],  # (B, C, *grid), channels first
    )
