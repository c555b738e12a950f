"""Channel surgery for structured pruning: the channel groups of a network and how to remove channels.

A :class:`Group` is the set of channels one convolution (+ batch norm + ReLU) produces and the next
layer(s) read; removing a channel slices the producer and every consumer. A prunable network
(``prunable = True``, :class:`serkit.networks.blocks.BlockwiseNet`) lists its groups in
``channel_groups()``, built with :func:`soundnet8_groups` / :func:`soundnet_res_groups`; the
pruning policy (which channels go, fine-tuning) is :mod:`serkit.deploy.compress`. A pruned network
is rebuilt at its smaller widths by its constructor (``channels=``), so nothing here runs at load time.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import ConfigError, ModelError

__all__ = ["Group", "channel_groups", "count_parameters", "soundnet8_groups", "soundnet_res_groups", "STD_EPS"]

#: variance floor of serkit's masked standard deviation (``masked_std``, attention pooling): a constant channel pools to sqrt of it
STD_EPS = 1e-5


def channel_groups(net) -> list[Group]:
    """The prunable channel groups of a network, lowest first (the network declares them)."""
    if not getattr(net, "prunable", False):
        raise ConfigError(f"cannot prune a {type(net).__name__}; only the soundnet and soundnet-res families prune")
    return net.channel_groups()


def soundnet8_groups(net) -> list[Group]:
    """SoundNet8 blocks ``conv1`` … ``convN``: each block's output channels (read by the next
    block's convolution, the last by the head)."""
    groups = []
    for i, (name, block) in enumerate(zip(net.block_names, net.blocks)):
        if i + 1 < len(net.blocks):
            consumers = [_conv_consumer(net.blocks[i + 1], "conv")]
        else:
            consumers = [_head_consumer(net.head)]
        groups.append(
            Group(
                name, lambda b=block: b.conv, lambda c, b=block: setattr(b, "conv", c), lambda b=block: b.bn, consumers
            )
        )
    return groups


def soundnet_res_groups(encoder) -> list[Group]:
    """SoundNetRes: ``blockJ.reduce`` and ``blockJ.pointwise``, the two bottleneck widths inside
    every residual block; the residual stream itself is tied across blocks and the front
    convolution is tiny, so they are left whole."""
    groups = []
    for j, rb in enumerate(encoder.blocks):
        groups.append(
            Group(
                f"block{j + 1}.reduce",
                lambda r=rb: r.reduce[0],
                lambda c, r=rb: r.reduce.__setitem__(0, c),
                lambda r=rb: r.reduce[1],
                [_depthwise_consumer(rb)],
            )
        )
        groups.append(
            Group(
                f"block{j + 1}.pointwise",
                lambda r=rb: r.pointwise[0],
                lambda c, r=rb: r.pointwise.__setitem__(0, c),
                lambda r=rb: r.pointwise[1],
                [_pointwise_consumer(rb.expand)],
            )
        )
    return groups


class Group:
    """Channels produced by one convolution (+ batch norm + ReLU) and read by the next layer(s).

    ``importance()`` scores each channel; ``shrink(keep, compensate)`` keeps the channels ``keep``
    (sorted indices) in the producer and every consumer. With ``compensate`` a removed channel's
    constant part (what it outputs when its filter is ~0: ``relu`` of its folded bias) is added to
    the consumers' biases, so removing a channel whose filter is exactly zero changes nothing.
    """

    def __init__(self, name, conv_get, conv_set, bn, consumers):
        self.name = name
        self._conv_get, self._conv_set, self.bn = conv_get, conv_set, bn
        self.consumers = consumers  # callables (keep, removed, const) -> None

    @property
    def conv(self):
        return self._conv_get()

    @property
    def size(self) -> int:
        return self.conv.out_channels

    def folded(self):
        """BN-folded weights [C, ...] and bias [C] of the producer (conv → BN, eval-mode statistics)."""
        conv, bn = self.conv, self.bn()
        scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
        bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
        return conv.weight * scale[:, None, None], (bias - bn.running_mean) * scale + bn.bias

    def importance(self):
        w, _ = self.folded()
        return w.detach().abs().flatten(1).sum(1)

    def shrink(self, keep, compensate: bool = True) -> None:
        keep = torch.as_tensor(keep, dtype=torch.long)
        removed = torch.as_tensor(sorted(set(range(self.size)) - set(keep.tolist())), dtype=torch.long)
        with torch.no_grad():
            const = torch.relu(self.folded()[1]).detach() if compensate else None
            for consumer in self.consumers:
                consumer(keep, removed, const)
            self._conv_set(_slice_conv(self.conv, out_idx=keep))
            _slice_bn(self.bn(), keep)


def _slice_conv(conv, *, out_idx=None, in_idx=None):
    """A new Conv1d with the output channels ``out_idx`` / input channels ``in_idx`` of ``conv`` (depthwise aware)."""
    w = conv.weight.detach()
    depthwise = conv.groups > 1
    if depthwise and conv.groups != conv.in_channels:
        raise ModelError("grouped convolutions other than depthwise ones cannot be pruned")
    if depthwise:
        idx = out_idx if out_idx is not None else in_idx
        w = w[idx]
        cin = cout = groups = len(idx)
    else:
        if out_idx is not None:
            w = w[out_idx]
        if in_idx is not None:
            w = w[:, in_idx]
        cout, cin, groups = w.shape[0], w.shape[1], 1
    new = nn.Conv1d(
        cin,
        cout,
        conv.kernel_size[0],
        conv.stride[0],
        conv.padding[0],
        dilation=conv.dilation[0],
        groups=groups,
        bias=conv.bias is not None,
    )
    new.weight.data.copy_(w)
    if conv.bias is not None:
        b = conv.bias.detach()
        new.bias.data.copy_(b[out_idx] if out_idx is not None else b)
    return new.to(conv.weight.device)


def _slice_bn(bn, idx) -> None:
    """Keep the entries ``idx`` of a BatchNorm in place (parameters and running statistics)."""
    bn.weight = nn.Parameter(bn.weight.detach()[idx].clone())
    bn.bias = nn.Parameter(bn.bias.detach()[idx].clone())
    bn.running_mean = bn.running_mean[idx].clone()
    bn.running_var = bn.running_var[idx].clone()
    bn.num_features = len(idx)


def _conv_consumer(owner, attr):
    """The next convolution reads the channels: drop its input columns, fold constants into its bias."""

    def consume(keep, removed, const):
        conv = getattr(owner, attr)
        if const is not None and len(removed) and conv.bias is not None:
            conv.bias.data += (conv.weight.detach()[:, removed].sum(-1) * const[removed]).sum(1)
        setattr(owner, attr, _slice_conv(conv, in_idx=keep))

    return consume


def _pointwise_consumer(seq):
    """A bias-free 1×1 convolution + BN (``seq[0]``, ``seq[1]``) reads the channels: constants go into the BN mean."""

    def consume(keep, removed, const):
        conv, bn = seq[0], seq[1]
        if const is not None and len(removed):
            bn.running_mean -= (conv.weight.detach()[:, removed].sum(-1) * const[removed]).sum(1)
        seq[0] = _slice_conv(conv, in_idx=keep)

    return consume


def _depthwise_consumer(rb):
    """A residual block's depthwise convolution (one filter per channel) and then its pointwise convolution + BN."""
    pointwise = _pointwise_consumer(rb.pointwise)

    def consume(keep, removed, const):
        dw = rb.depthwise
        # a constant channel leaves the depthwise filter as constant * sum(filter) (away from the edges)
        pointwise(keep, removed, None if const is None else const * dw.weight.detach()[:, 0].sum(-1))
        rb.depthwise = _slice_conv(dw, out_idx=keep)

    return consume


def _head_consumer(head):
    """The pooling head (:class:`NormedHead`) reads the last block's channels: pooled dims k and C + k go.

    A removed constant channel ``c`` pools to ``c`` (mean, max) or ``sqrt(1e-5)`` (std); after
    speaker normalisation it is 0. Its batch-normed value times the linear layer's column is added
    to the linear bias.
    """

    def consume(keep, removed, const):
        inner = head.head
        c_old = inner.in_dim
        pool = inner.pool
        second_is_std = type(pool).__name__ in ("MeanStdPool", "AttentionPool")
        if type(pool).__name__ == "AttentionPool":
            first = pool.score[0]
            if const is not None and len(removed):
                first.bias.data += (first.weight.detach()[:, removed, 0] * const[removed]).sum(1)
            pool.score[0] = _slice_conv(first, in_idx=keep)
            pool.score[2] = _slice_conv(pool.score[2], out_idx=keep)
        dims_keep = torch.cat([keep, keep + c_old])
        dims_gone = torch.cat([removed, removed + c_old])
        norm, linear = head.norm, inner.linear
        if const is not None and len(removed):
            if head.speaker_norm:
                v = torch.zeros(len(dims_gone))
            else:
                second = torch.full((len(removed),), math.sqrt(STD_EPS)) if second_is_std else const[removed]
                v = torch.cat([const[removed], second])
            o = (v - norm.running_mean[dims_gone]) * torch.rsqrt(norm.running_var[dims_gone] + norm.eps)
            o = o * norm.weight.detach()[dims_gone] + norm.bias.detach()[dims_gone]
            linear.bias.data += linear.weight.detach()[:, dims_gone] @ o
        new = nn.Linear(len(dims_keep), linear.out_features).to(linear.weight.device)
        new.weight.data.copy_(linear.weight.detach()[:, dims_keep])
        new.bias.data.copy_(linear.bias.detach())
        inner.linear = new
        _slice_bn(norm, dims_keep)
        if head.speaker_norm:
            head.global_mean = head.global_mean[dims_keep].clone()
            head.global_std = head.global_std[dims_keep].clone()
        inner.in_dim = len(keep)

    return consume


def count_parameters(net) -> int:
    """Trainable-parameter count of a network (batch-norm running statistics not included)."""
    return int(sum(p.numel() for p in net.parameters()))
