"""Relational knowledge distillation (Park, Kim, Lu & Cho, "Relational Knowledge Distillation", CVPR 2019)."""
import torch
import torch.nn.functional as F


def pairwise_distances(e, squared=False, eps=1e-12):
    """``D[i, j] = ‖e_i − e_j‖₂`` (``‖·‖₂²`` when ``squared``) for the rows of ``e`` (n × d); ``D[i, i] = 0``.

    The squared distance is expanded as ``‖e_i‖² + ‖e_j‖² − 2⟨e_i, e_j⟩`` and
    clamped below at ``eps`` before the square root (so its gradient stays
    finite); the diagonal is then set to exactly 0 (no gradient flows through it).
    """
    square = e.pow(2).sum(dim=1)
    dist = (square.unsqueeze(1) + square.unsqueeze(0) - 2 * e @ e.t()).clamp(min=eps)
    if not squared:
        dist = dist.sqrt()
    diagonal = torch.eye(e.shape[0], dtype=torch.bool, device=e.device)
    return dist.masked_fill(diagonal, 0.0)


def distance_potential(e, squared=False, eps=1e-12):
    """RKD's distance-wise potential ``ψ_D(e_i, e_j) = ‖e_i − e_j‖ / μ`` for all pairs (n × n).

    ``μ`` is the mean distance over the pairs with a positive distance (i ≠ j,
    duplicates excluded). Park et al. 2019, Sec. 3.2.1 ("distance-wise
    distillation loss"). ``squared``/``eps`` as in :func:`pairwise_distances`.
    """
    dist = pairwise_distances(e, squared, eps)
    return dist / dist[dist > 0].mean()


def angle_potential(e):
    """RKD's angle-wise potential ``ψ_A[i, j, k] = ⟨(e_j − e_i)/‖e_j − e_i‖, (e_k − e_i)/‖e_k − e_i‖⟩`` (n × n × n).

    The cosine of the angle at vertex ``e_i`` of the triangle (e_i, e_j, e_k);
    entries with j = i or k = i are 0 (a zero difference normalizes to 0).
    Park et al. 2019, Sec. 3.2.2 ("angle-wise distillation loss").
    """
    diff = F.normalize(e.unsqueeze(0) - e.unsqueeze(1), p=2, dim=2)
    return torch.bmm(diff, diff.transpose(1, 2))


def rkd_loss(feat_student, feat_teacher, squared=False, eps=1e-12, distance_weight=25.0, angle_weight=50.0):
    """``λ_D · mean huber(ψ_D(s), ψ_D(t)) + λ_A · mean huber(ψ_A(s), ψ_A(t))``.

    Park et al. 2019, Sec. 3.2.1-3.2.3: the distance-wise and angle-wise
    losses with the Huber loss (``F.smooth_l1_loss``, δ = 1) averaged over all
    n² pairs and n³ triplets (degenerate ones included) and weighted by
    ``distance_weight`` (λ_D) and ``angle_weight`` (λ_A).

    Arguments: ``feat_student``, ``feat_teacher``: batch-first tensors (flattened
    to n × d); the teacher's potentials are constants (no gradient);
    ``squared``/``eps``: see :func:`pairwise_distances`.
    """
    student = feat_student.reshape(feat_student.shape[0], -1)
    teacher = feat_teacher.reshape(feat_teacher.shape[0], -1)
    with torch.no_grad():
        t_dist = distance_potential(teacher, squared, eps)
        t_angle = angle_potential(teacher)
    loss_distance = F.smooth_l1_loss(distance_potential(student, squared, eps), t_dist)
    loss_angle = F.smooth_l1_loss(angle_potential(student).reshape(-1), t_angle.reshape(-1))
    return distance_weight * loss_distance + angle_weight * loss_angle
