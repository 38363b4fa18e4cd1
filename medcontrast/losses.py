"""Contrastive objectives, written as logits + cross-entropy.

Our own rather than ``monai.losses.ContrastiveLoss``: that one builds a (2B, 2B, D) tensor
(about 160 times slower than a matrix product, see docs/benchmarks.md), never gathers negatives
across processes, and cannot mask false negatives. Logits are computed in float32 even under
bf16 autocast, so a temperature of 0.05 (logits up to 20) stays exact.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from medcontrast.distributed import gather_no_grad, gather_with_grad, rank_offset

_NEG = -1e9  # instead of -inf: a row whose negatives are all masked still has a finite loss


def nt_xent(
    z1: torch.Tensor,
    z2: torch.Tensor,
    temperature: float = 0.1,
    groups: torch.Tensor | None = None,
    mask_same_group: bool = False,
    gather: bool = True,
) -> torch.Tensor:
    """NT-Xent / InfoNCE of SimCLR (Chen et al., ICML 2020; Oord et al., 2018).

    Each of the 2B embeddings is pulled towards its partner view and pushed from the other 2N - 2
    embeddings of the global batch (N = B x world size when ``gather``).

    Args:
        z1, z2: (B, D) projections of the two views; normalised here.
        temperature: softmax temperature tau.
        groups: (B,) integer patient (or study) codes of the samples.
        mask_same_group: drop negatives from the same group: another image of the same patient is
            not a true negative (as in MICLe, Azizi et al., ICCV 2021).
        gather: gather embeddings across DDP processes, with gradients.

    Returns:
        Scalar mean loss over this process's 2B anchors.
    """
    b = z1.shape[0]
    local = F.normalize(torch.cat([z1, z2], 0).float(), dim=1)  # (2B, D)
    if gather:
        everything = gather_with_grad(torch.stack([local[:b], local[b:]], 0).transpose(0, 1))
        everything = everything.transpose(0, 1)  # (2, N, D): view, sample
        n = everything.shape[1]
        bank = everything.reshape(2 * n, -1)  # rows: all view-1 then all view-2
        off = rank_offset(b)
    else:
        n, bank, off = b, local, 0
    logits = local @ bank.t() / temperature  # (2B, 2N)
    rows = torch.arange(2 * b, device=local.device)
    own = torch.cat([torch.arange(b), torch.arange(b)]).to(local.device) + off  # sample index
    view = torch.cat([torch.zeros(b), torch.ones(b)]).long().to(local.device)
    self_col = own + view * n
    pos_col = own + (1 - view) * n
    mask = torch.zeros_like(logits, dtype=torch.bool)
    mask[rows, self_col] = True
    if mask_same_group and groups is not None:
        all_groups = gather_no_grad(groups) if gather else groups
        col_groups = torch.cat([all_groups, all_groups])  # (2N,)
        row_groups = torch.cat([groups, groups])  # (2B,)
        same = row_groups[:, None] == col_groups[None, :]
        same[rows, pos_col] = False
        mask |= same
    logits = logits.masked_fill(mask, _NEG)
    return F.cross_entropy(logits, pos_col)


def supcon(
    z1: torch.Tensor,
    z2: torch.Tensor,
    labels: torch.Tensor,
    temperature: float = 0.1,
    gather: bool = True,
) -> torch.Tensor:
    """Supervised contrastive loss, L_out (Khosla et al., NeurIPS 2020).

    Positives of an anchor: every other embedding with the same label (its other view included).

    Args:
        z1, z2: (B, D) projections of the two views.
        labels: (B,) integer class labels.
    """
    b = z1.shape[0]
    local = F.normalize(torch.cat([z1, z2], 0).float(), dim=1)
    if gather:
        bank = gather_with_grad(torch.stack([local[:b], local[b:]], 1)).reshape(-1, local.shape[1])
        bank_labels = gather_no_grad(labels).repeat_interleave(2)
        off = rank_offset(b)
    else:
        bank = torch.stack([local[:b], local[b:]], 1).reshape(-1, local.shape[1])
        bank_labels, off = labels.repeat_interleave(2), 0
    # bank rows: sample0-view1, sample0-view2, sample1-view1, ...
    logits = local @ bank.t() / temperature  # (2B, 2N)
    own = torch.cat([torch.arange(b), torch.arange(b)]).to(local.device) + off
    view = torch.cat([torch.zeros(b), torch.ones(b)]).long().to(local.device)
    self_col = own * 2 + view
    rows = torch.arange(2 * b, device=local.device)
    not_self = torch.ones_like(logits, dtype=torch.bool)
    not_self[rows, self_col] = False
    row_labels = torch.cat([labels, labels])
    positive = (row_labels[:, None] == bank_labels[None, :]) & not_self
    logits = logits.masked_fill(~not_self, _NEG)
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    mean_pos = (log_prob * positive).sum(1) / positive.sum(1).clamp_min(1)
    return -mean_pos.mean()


def moco_infonce(
    q: torch.Tensor,
    k: torch.Tensor,
    queue: torch.Tensor,
    temperature: float = 0.2,
    q_groups: torch.Tensor | None = None,
    queue_groups: torch.Tensor | None = None,
) -> torch.Tensor:
    """InfoNCE against a queue of negatives, MoCo v2 (He et al., CVPR 2020; Chen et al., 2020).

    Args:
        q: (B, D) queries from the online encoder.
        k: (B, D) keys of the other view from the momentum encoder (no gradient).
        queue: (K, D) normalised keys of earlier batches.
        q_groups / queue_groups: (B,) and (K,) patient codes; same-patient queue entries are
            masked out as false negatives when both are given.
    """
    q = F.normalize(q.float(), dim=1)
    k = F.normalize(k.float(), dim=1)
    pos = (q * k).sum(1, keepdim=True)
    neg = q @ queue.float().t()
    if q_groups is not None and queue_groups is not None:
        neg = neg.masked_fill(q_groups[:, None] == queue_groups[None, :], _NEG * temperature)
    logits = torch.cat([pos, neg], 1) / temperature
    target = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
    return F.cross_entropy(logits, target)


def byol_loss(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """BYOL regression loss 2 - 2 cos(p, z) (Grill et al., NeurIPS 2020); z carries no gradient.

    Shapes: (B, D), (B, D) -> scalar.
    """
    return (2 - 2 * F.cosine_similarity(p.float(), z.detach().float(), dim=1)).mean()


def vicreg_loss(
    z1: torch.Tensor,
    z2: torch.Tensor,
    sim_weight: float = 25.0,
    var_weight: float = 25.0,
    cov_weight: float = 1.0,
    eps: float = 1e-4,
    gather: bool = True,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """VICReg (Bardes, Ponce and LeCun, "VICReg: Variance-Invariance-Covariance Regularization
    for Self-Supervised Learning", ICLR 2022), with the paper's weights (25, 25, 1).

    invariance: mean squared distance of the two views' embeddings; variance: hinge
    ``relu(1 - sqrt(var + eps))`` on each dimension's standard deviation over the batch, averaged,
    for each view; covariance: sum of the squared off-diagonal covariances divided by D, for each
    view. Under DDP the embeddings are gathered (with gradients) first, so the variance and
    covariance are those of the global batch, not of each process's slice.

    Args:
        z1, z2: (B, D) expander outputs of the two views.

    Returns:
        The scalar weighted loss, and its three unweighted terms (for the log).
    """
    z1, z2 = z1.float(), z2.float()
    if gather:
        z1, z2 = gather_with_grad(z1), gather_with_grad(z2)
    n, d = z1.shape
    invariance = F.mse_loss(z1, z2)
    variance = z1.new_zeros(())
    covariance = z1.new_zeros(())
    for z in (z1, z2):
        z = z - z.mean(0)
        variance = variance + F.relu(1 - torch.sqrt(z.var(0) + eps)).mean() / 2
        cov = z.t() @ z / (n - 1)  # (D, D)
        off = cov - torch.diag_embed(torch.diagonal(cov))
        covariance = covariance + off.pow(2).sum() / d
    loss = sim_weight * invariance + var_weight * variance + cov_weight * covariance
    return loss, {"invariance": invariance, "variance": variance, "covariance": covariance}


def dino_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    center: torch.Tensor,
    student_temp: float,
    teacher_temp: float,
) -> torch.Tensor:
    """The self-distillation loss of DINO (Caron et al., "Emerging Properties in Self-Supervised
    Vision Transformers", ICCV 2021): cross-entropy between the centred, sharpened teacher
    distribution of each global crop and the student's distribution of every *other* crop,
    averaged over the (teacher crop, student crop) pairs and the batch.

    Args:
        student: (V, B, K) student logits of V crops (the 2 global crops first, then the local).
        teacher: (G, B, K) teacher logits of the G global crops (no gradient).
        center: (K,) or (1, K) running mean of the teacher logits, subtracted before sharpening.
        student_temp, teacher_temp: softmax temperatures (teacher's lower: sharpening).
    """
    log_p = F.log_softmax(student.float() / student_temp, dim=-1)  # (V, B, K)
    q = F.softmax((teacher.detach().float() - center.float()) / teacher_temp, dim=-1)  # (G, B, K)
    cross = -torch.einsum("gbk,vbk->gvb", q, log_p).mean(-1)  # (G, V): mean over the batch
    g, v = cross.shape
    other = ~torch.eye(g, v, dtype=torch.bool, device=cross.device)  # a crop never meets itself
    return cross[other].mean()
