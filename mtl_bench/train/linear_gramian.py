"""The Gramian of per-task gradients of a linear layer, without the gradients themselves.

For ``y = h W^T + b`` applied to ``M`` rows ``h`` (M x n_in; a batch, or a batch of sequences
flattened), task i's gradients are ``dL_i/dW = A_i^T h`` and ``dL_i/db = 1^T A_i`` with
``A_i = dL_i/dy`` (M x n_out). Their inner products need neither gradient:

    <dL_i/dW, dL_j/dW> = trace(h^T A_i A_j^T h) = <A_i, K A_j>,   K = h h^T  (M x M)
    <dL_i/db, dL_j/db> = (1^T A_i) . (1^T A_j)

(the identity behind Goodfellow's per-example gradient norms, "Efficient Per-Example Gradient
Computations", arXiv 1510.01799, 2015, applied to tasks instead of examples). It costs
``M^2 n_in + T M^2 n_out + T^2 M n_out`` multiply-adds against ``T M n_in n_out + T^2 n_in n_out``
for the T x (n_in n_out) rows and their products: four times fewer for a 128 x 128 layer on a
batch of 32 with 40 tasks, and more, not fewer, for MultiLeNet's 320 x 50 layer on a batch of 256
with 2 tasks. :func:`rows_cost` and :func:`identity_cost` let the gradient backend take the cheaper.
"""
from __future__ import annotations

import torch
from torch import nn


class LayerCalls:
    """Records the input and output of each call of ``layer`` while the context is open."""

    def __init__(self, layer: nn.Module):
        self.layer = layer
        self.calls: list[tuple[torch.Tensor, torch.Tensor, int] | None] = []

    def _record(self, module, inputs, output) -> None:
        ok = len(inputs) == 1 and isinstance(output, torch.Tensor)  # not called with keywords
        self.calls.append((inputs[0], output, output._version) if ok else None)

    def __enter__(self) -> "LayerCalls":
        self._handle = self.layer.register_forward_hook(self._record)
        return self

    def __exit__(self, *exc) -> None:
        self._handle.remove()

    def single_call(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(h, y)`` of the layer's one call, or None when it ran more or fewer times than once
        (a layer reused in the forward pass: its gradient sums over the calls), or when an
        in-place operation changed ``y`` since (``ReLU(inplace=True)``: ``y`` then holds the
        activation, and the gradient at it is not the gradient at the layer's output)."""
        if len(self.calls) != 1 or self.calls[0] is None:
            return None
        h, y, version = self.calls[0]
        return (h, y) if y._version == version else None


def trained_parts(layer: nn.Module) -> tuple[bool, bool] | None:
    """``(weight, bias)``: which of an ``nn.Linear``'s parameters are trained; None for other
    layers, a linear layer with no trained parameter, or one whose forward is changed by hooks
    or reparametrisation (the old ``weight_norm``: parameters ``weight_g``, ``weight_v``)."""
    if type(layer) is not nn.Linear:  # subclasses (and torch.nn.utils.parametrize) change the forward
        return None
    if layer._forward_pre_hooks or {name for name, _ in layer.named_parameters(recurse=False)} - {"weight", "bias"}:
        return None
    weight = layer.weight.requires_grad
    bias = layer.bias is not None and layer.bias.requires_grad
    return (weight, bias) if weight or bias else None


def rows_cost(rows: int, n_in: int, n_out: int, tasks: int) -> int:
    """Multiply-adds of the T rows ``A_i^T h`` and their T x T products."""
    return tasks * rows * n_in * n_out + tasks * tasks * n_in * n_out


def identity_cost(rows: int, n_in: int, n_out: int, tasks: int) -> int:
    """Multiply-adds of ``K = h h^T``, ``K A_j`` and the T x T products ``<A_i, K A_j>``."""
    return rows * rows * n_in + tasks * rows * rows * n_out + tasks * tasks * rows * n_out


def linear_gramian(h: torch.Tensor, A: torch.Tensor, weight: bool = True, bias: bool = True) -> torch.Tensor:
    """``G_ij = <dL_i/d(W, b), dL_j/d(W, b)>`` from the layer's input ``h`` (..., n_in) and the
    tasks' output gradients ``A`` (T, ..., n_out), over the trained parts only; symmetric."""
    T, n_out = A.shape[0], A.shape[-1]
    A = A.reshape(T, -1, n_out)
    gramian = A.new_zeros((T, T))
    if weight:
        h = h.reshape(-1, h.shape[-1]).to(A.dtype)
        K = h @ h.T                                                       # [M, M]
        gramian = A.reshape(T, -1) @ torch.matmul(K, A).reshape(T, -1).T  # <A_i, K A_j>
    if bias:
        sums = A.sum(dim=1)                                               # [T, n_out]
        gramian = gramian + sums @ sums.T
    return (gramian + gramian.T) / 2  # exactly symmetric, as the solvers expect
