"""The prototypical-network embedding head (Snell, Swersky & Zemel 2017) and its distance maths.

A small MLP maps a fixed-length representation (the frozen backbone's standardised features) to an
embedding; a class is its prototype, the mean embedding of its examples, and a clip's class
scores are ``-||f(x) - c_k||²`` (squared Euclidean distance, as in the paper), so
``softmax(-d²)`` gives its probabilities.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ProtoHead", "squared_distances", "class_prototypes", "prototypical_loss"]


class ProtoHead(nn.Module):
    """``Linear → ReLU → Dropout → Linear``: [shape=(n, in_dim)] → [shape=(n, dim)].

    Parameters
    ----------
    in_dim : int
        Width of the input rows.
    hidden : int
        Width of the hidden layer.
    dim : int
        Width of the embedding (where prototypes live).
    dropout : float
        Dropout after the hidden layer, in [0, 1).
    """

    def __init__(self, in_dim: int, *, hidden: int = 256, dim: int = 64, dropout: float = 0.2):
        super().__init__()
        self.in_dim, self.hidden, self.dim = int(in_dim), int(hidden), int(dim)
        self.net = nn.Sequential(
            nn.Linear(self.in_dim, self.hidden), nn.ReLU(), nn.Dropout(float(dropout)), nn.Linear(self.hidden, self.dim)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def squared_distances(x: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    """[shape=(n, k)] squared Euclidean distance of every row of ``x`` [n, d] to every prototype [k, d].

    >>> squared_distances(torch.tensor([[0.0, 0.0]]), torch.tensor([[3.0, 4.0], [0.0, 1.0]])).tolist()
    [[25.0, 1.0]]
    """
    diff = x[:, None, :] - prototypes[None, :, :]
    return (diff * diff).sum(-1)


def class_prototypes(embeddings: torch.Tensor, targets: torch.Tensor, n_classes: int) -> torch.Tensor:
    """[shape=(n_classes, d)] mean embedding of each class (``targets`` are class indices; every class present)."""
    one_hot = torch.nn.functional.one_hot(targets.long(), n_classes).to(embeddings.dtype)
    return (one_hot.T @ embeddings) / one_hot.sum(0)[:, None]


def prototypical_loss(support: torch.Tensor, query: torch.Tensor, query_targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of ``softmax(-d²)`` of the queries to the episode's prototypes.

    Parameters
    ----------
    support : Tensor [shape=(n_classes, shots, d)]
        Embeddings of the support clips, class by class; a class's prototype is their mean.
    query : Tensor [shape=(n_queries, d)]
        Embeddings of the query clips.
    query_targets : Tensor [shape=(n_queries,), int]
        The class index of each query.
    """
    return nn.functional.cross_entropy(-squared_distances(query, support.mean(1)), query_targets.long())
