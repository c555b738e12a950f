"""Deployment: transformations from a trained model to a smaller or portable one.

* :mod:`serkit.deploy.export` — ONNX graphs of the neural families, optionally int8-quantised;
* :mod:`serkit.deploy.compress` — structured pruning, distillation into a small student,
  quantisation-aware fine-tuning (the channel surgery itself is :mod:`serkit.networks.pruning`).

This layer imports ``models``, never the reverse; the CLI reaches it through :mod:`serkit.api`
(``api.export``, ``api.compress``).
"""

from __future__ import annotations

__all__ = ["compress", "export"]
