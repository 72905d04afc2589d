"""Backpropagation through a small CNN on real numbers, step by step, with the course's symbols.

The network is the one the course derives backprop on: one input map ``a^(l-1)`` (N x N), a
convolution layer ``l`` with one A x B filter written as a correlation (eq. 4)
``z_mn^l = sum_a sum_b w_ab^l a_(m+a)(n+b)^(l-1) + b^l``, its activation (eq. 6)
``a_mn^l = sigma(z_mn^l)``, a 2 x 2 pooling layer ``l+1`` (mean or max) indexed ``(o', p')``,
that map read as a vector with ``q = o' P + p'`` (eq. 7), and a fully connected output layer
(eq. 5) ``z_r^L = sum_q w_rq a~_q + b_r``. The cost is the squared error
``C = 1/2 sum_r (a_r^L - y_r)^2`` on ``a^L = sigma(z^L)``, or softmax cross-entropy.

The backward pass follows the four equations: (BP1/CBP1) ``delta_r^L = dC/da_r^L sigma'(z_r^L)``,
(BP2) ``delta_j^l = sum_k w_kj^(l+1) delta_k^(l+1) sigma'(z_j^l)``, (BP3) ``dC/db = delta``,
(BP4) ``dC/dw_jk = a_k^(l-1) delta_j``. Through the pooling layer the delta is up-sampled (the
derivative of a mean spreads it evenly, of a max sends it to the winner), and through the
convolution the input gradient is the delta map convolved with the filter rotated by 180
degrees, the filter gradient the input correlated with the delta map. Every number is computed
here in NumPy (float64) and :func:`walk` checks each gradient against torch autograd.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

ACTIVATIONS = ("sigmoid", "tanh", "relu")
POOLS = ("mean", "max")
COSTS = ("squared", "cross-entropy")


def _activate(kind: str, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``sigma(z)`` and ``sigma'(z)``."""
    if kind == "sigmoid":
        a = 1.0 / (1.0 + np.exp(-z))
        return a, a * (1.0 - a)
    if kind == "tanh":
        a = np.tanh(z)
        return a, 1.0 - a**2
    return np.maximum(z, 0.0), (z > 0).astype(np.float64)


def correlate(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Valid correlation (eq. 4 without its bias): ``out_mn = sum_ab k_ab image_(m+a)(n+b)``."""
    kh, kw = kernel.shape
    rows, cols = image.shape[0] - kh + 1, image.shape[1] - kw + 1
    out = np.zeros((rows, cols))
    for a in range(kh):
        for b in range(kw):
            out += kernel[a, b] * image[a : a + rows, b : b + cols]
    return out


@dataclass
class Network:
    """The numbers that define one walk: input, filter and bias, output weights and biases,
    the target class, and the kinds of activation, pooling and cost."""

    image: np.ndarray  # N x N
    kernel: np.ndarray  # A x B
    bias: float
    weights: np.ndarray  # R x Q
    biases: np.ndarray  # R
    target: int
    activation: str = "sigmoid"
    pool: str = "mean"
    cost: str = "squared"

    def __post_init__(self) -> None:
        from ..errors import CnnlabError

        side = self.image.shape[0] - self.kernel.shape[0] + 1
        if self.image.ndim != 2 or self.image.shape[0] != self.image.shape[1]:
            raise CnnlabError(f"input of shape {self.image.shape}: expected a square N x N map")
        if side < 2 or side % 2 or self.kernel.shape[0] != self.kernel.shape[1]:
            raise CnnlabError(
                f"input {self.image.shape[0]}x{self.image.shape[0]} with a "
                f"{self.kernel.shape[0]}x{self.kernel.shape[1]} filter gives a {side}x{side} map; "
                "2 x 2 pooling needs an even side of at least 2: use N = filter side + 1, + 3, ..."
            )
        pooled = (side // 2) ** 2
        if self.weights.shape[1] != pooled or self.biases.shape != (self.weights.shape[0],):
            raise CnnlabError(
                f"output weights {self.weights.shape}: expected R x {pooled} (the pooled map "
                "has that many values) and R biases"
            )
        if not 0 <= self.target < self.weights.shape[0]:
            raise CnnlabError(
                f"target {self.target}: expected a class 0..{self.weights.shape[0] - 1}"
            )
        for value, allowed, name in (
            (self.activation, ACTIVATIONS, "activation"),
            (self.pool, POOLS, "pool"),
            (self.cost, COSTS, "cost"),
        ):
            if value not in allowed:
                raise CnnlabError(f"--{name} {value!r}: expected one of {', '.join(allowed)}")


def example_network(
    size: int = 6,
    outputs: int = 2,
    seed: int = 0,
    activation: str = "sigmoid",
    pool: str = "mean",
    cost: str = "squared",
    target: int = 0,
    filter_side: int = 3,
) -> Network:
    """A network of readable random numbers (one or two decimals), fixed by ``seed``."""
    rng = np.random.default_rng(seed)
    pooled = ((size - filter_side + 1) // 2) ** 2
    return Network(
        image=np.round(rng.uniform(0, 1, (size, size)), 1) + 0.0,  # + 0.0: no "-0.0"
        kernel=np.round(rng.normal(0, 0.5, (filter_side, filter_side)), 2) + 0.0,
        bias=round(float(rng.normal(0, 0.1)), 2) + 0.0,
        weights=np.round(rng.normal(0, 0.5, (outputs, max(pooled, 1))), 2) + 0.0,
        biases=np.round(rng.normal(0, 0.1, outputs), 2) + 0.0,
        target=target,
        activation=activation,
        pool=pool,
        cost=cost,
    )


@dataclass
class Walk:
    """Every quantity of the forward and backward pass, and autograd's agreement."""

    network: Network
    values: dict[str, Any] = field(default_factory=dict)
    autograd_max_difference: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        def plain(value: Any) -> Any:
            return value.tolist() if isinstance(value, np.ndarray) else value

        net = self.network
        return {
            "network": {
                "activation": net.activation,
                "pool": net.pool,
                "cost": net.cost,
                "target": net.target,
                "input": net.image.tolist(),
                "filter": net.kernel.tolist(),
                "bias": net.bias,
                "output_weights": net.weights.tolist(),
                "output_biases": net.biases.tolist(),
            },
            "values": {k: plain(v) for k, v in self.values.items()},
            "autograd_max_difference": self.autograd_max_difference,
        }


def walk(net: Network) -> Walk:
    """Steps 0-5 of the course's derivation on ``net``, every gradient checked by autograd."""
    v: dict[str, Any] = {}
    # ---- step 0: the forward pass
    v["z_l"] = correlate(net.image, net.kernel) + net.bias  # eq. 4
    v["a_l"], v["sigma_prime_l"] = _activate(net.activation, v["z_l"])  # eq. 6
    side = v["a_l"].shape[0] // 2
    windows = v["a_l"].reshape(side, 2, side, 2).transpose(0, 2, 1, 3).reshape(side, side, 4)
    v["a_pool"] = windows.mean(-1) if net.pool == "mean" else windows.max(-1)
    v["a_flat"] = v["a_pool"].reshape(-1)  # q = o' P + p'  (eq. 7)
    v["z_L"] = net.weights @ v["a_flat"] + net.biases  # eq. 5
    y = np.zeros(len(net.biases))
    y[net.target] = 1.0
    v["y"] = y
    if net.cost == "squared":
        v["a_L"], v["sigma_prime_L"] = _activate(net.activation, v["z_L"])
        v["C"] = float(0.5 * np.sum((v["a_L"] - y) ** 2))
        # ---- step 1: CBP1, delta at the output
        v["dC_da_L"] = v["a_L"] - y
        v["delta_L"] = v["dC_da_L"] * v["sigma_prime_L"]
    else:
        shifted = np.exp(v["z_L"] - v["z_L"].max())
        v["a_L"] = shifted / shifted.sum()
        v["C"] = float(-np.log(v["a_L"][net.target]))
        v["delta_L"] = v["a_L"] - y  # softmax and cross-entropy together: dC/dz = a - y
    # ---- step 2: BP3 and BP4 for the output layer
    v["dC_db_L"] = v["delta_L"].copy()
    v["dC_dw_L"] = np.outer(v["delta_L"], v["a_flat"])
    # ---- step 3: back through the flatten (BP2 with no activation) and the pooling layer
    v["dC_da_flat"] = net.weights.T @ v["delta_L"]
    v["dC_da_pool"] = v["dC_da_flat"].reshape(side, side)
    if net.pool == "mean":
        share = np.full((side, side, 4), 0.25)
    else:
        share = np.zeros((side, side, 4))
        winners = windows.argmax(-1)
        np.put_along_axis(share, winners[..., None], 1.0, axis=-1)
    v["pool_share"] = share.reshape(side, side, 2, 2).transpose(0, 2, 1, 3).reshape(2 * side, -1)
    v["dC_da_l"] = v["pool_share"] * np.kron(v["dC_da_pool"], np.ones((2, 2)))  # up-sampling
    # ---- step 4: BP2 at the convolution's output
    v["delta_l"] = v["dC_da_l"] * v["sigma_prime_l"]
    # ---- step 5: BP3, BP4 and the input gradient of the convolution
    v["dC_db_l"] = float(v["delta_l"].sum())
    v["dC_dw_l"] = correlate(net.image, v["delta_l"])  # the input correlated with the deltas
    pad = net.kernel.shape[0] - 1
    v["kernel_rot180"] = net.kernel[::-1, ::-1].copy()
    v["dC_da_input"] = correlate(np.pad(v["delta_l"], pad), v["kernel_rot180"])  # full conv
    result = Walk(net, v)
    result.autograd_max_difference = _autograd_check(net, v)
    return result


def _autograd_check(net: Network, v: dict[str, Any]) -> dict[str, float]:
    """The same network in torch (float64); the largest difference per gradient."""

    def leaf(array: Any) -> torch.Tensor:
        return torch.tensor(np.asarray(array, dtype=np.float64), requires_grad=True)

    image, kernel, bias = leaf(net.image), leaf(net.kernel), leaf(net.bias)
    weights, biases = leaf(net.weights), leaf(net.biases)
    z = F.conv2d(image[None, None], kernel[None, None], bias.reshape(1))[0, 0]
    act = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu}[net.activation]
    pooled = (F.avg_pool2d if net.pool == "mean" else F.max_pool2d)(act(z)[None, None], 2)
    z_out = weights @ pooled.reshape(-1) + biases
    if net.cost == "squared":
        y = torch.zeros_like(z_out)
        y[net.target] = 1.0
        cost = 0.5 * ((act(z_out) - y) ** 2).sum()
    else:
        cost = F.cross_entropy(z_out[None], torch.tensor([net.target]))
    cost.backward()
    pairs = {
        "C": (cost.detach(), v["C"]),
        "dC_dw_L": (weights.grad, v["dC_dw_L"]),
        "dC_db_L": (biases.grad, v["dC_db_L"]),
        "dC_dw_l": (kernel.grad, v["dC_dw_l"]),
        "dC_db_l": (bias.grad, v["dC_db_l"]),
        "dC_da_input": (image.grad, v["dC_da_input"]),
    }
    return {
        name: float(np.max(np.abs(theirs.numpy() - np.asarray(ours))))
        for name, (theirs, ours) in pairs.items()
    }


def _matrix(array: np.ndarray, indent: str = "    ") -> list[str]:
    rows = np.atleast_2d(array)
    return [indent + " ".join(f"{value:9.4f}" for value in row) for row in rows]


def walk_lines(result: Walk) -> list[str]:
    """The walk as text: each step's equation, then its numbers."""
    net, v = result.network, result.values
    n, k = net.image.shape[0], net.kernel.shape[0]
    side, r = v["a_pool"].shape[0], len(net.biases)
    sig = {"sigmoid": "sigmoid", "tanh": "tanh", "relu": "ReLU"}[net.activation]
    lines = [
        f"Backprop, the course's way: input {n}x{n}, one {k}x{k} filter, {sig}, 2x2 "
        f"{net.pool} pooling, flatten, {r} outputs, "
        + ("squared-error cost" if net.cost == "squared" else "softmax cross-entropy cost"),
        "",
        "step 0  forward pass",
        "  input a^(l-1):",
        *_matrix(net.image),
        f"  filter w^l ({k}x{k}), bias b^l = {net.bias:.4f}",
        *_matrix(net.kernel),
        "  (eq.4) z_mn^l = sum_a sum_b w_ab^l a_(m+a)(n+b)^(l-1) + b^l:",
        *_matrix(v["z_l"]),
        f"  (eq.6) a_mn^l = {sig}(z_mn^l):",
        *_matrix(v["a_l"]),
        f"  pooling layer l+1, 2x2 {net.pool}: a_(o'p')^(l+1), {side}x{side}:",
        *_matrix(v["a_pool"]),
        f"  (eq.7) flatten q = o' P + p' (P = {side}): a~ =",
        *_matrix(v["a_flat"]),
        "  output weights w_rq and biases b_r:",
        *_matrix(net.weights),
        *_matrix(net.biases),
        "  (eq.5) z_r^L = sum_q w_rq a~_q + b_r:",
        *_matrix(v["z_L"]),
    ]
    if net.cost == "squared":
        lines += [
            f"  a_r^L = {sig}(z_r^L):",
            *_matrix(v["a_L"]),
            f"  target y (class {net.target}):",
            *_matrix(v["y"]),
            f"  C = 1/2 sum_r (a_r^L - y_r)^2 = {v['C']:.6f}",
            "",
            "step 1  (CBP1) delta_r^L = dC/da_r^L * sigma'(z_r^L), with dC/da_r^L = a_r^L - y_r:",
            *_matrix(v["dC_da_L"]),
            "  sigma'(z_r^L):",
            *_matrix(v["sigma_prime_L"]),
            "  delta^L:",
            *_matrix(v["delta_L"]),
        ]
    else:
        lines += [
            "  a^L = softmax(z^L):",
            *_matrix(v["a_L"]),
            f"  C = -log a_y^L (y = class {net.target}) = {v['C']:.6f}",
            "",
            "step 1  delta_r^L = dC/dz_r^L = a_r^L - y_r (softmax and cross-entropy together):",
            *_matrix(v["delta_L"]),
        ]
    lines += [
        "",
        "step 2  (BP3) dC/db_r = delta_r;  (BP4) dC/dw_rq = a~_q delta_r:",
        *_matrix(v["dC_db_L"]),
        *_matrix(v["dC_dw_L"]),
        "",
        "step 3  back through flatten and pooling",
        "  (BP2, no activation here) dC/da~_q = sum_r w_rq delta_r, read back as the "
        f"{side}x{side} map (o', p'):",
        *_matrix(v["dC_da_pool"]),
    ]
    if net.pool == "mean":
        lines.append(
            "  the mean's derivative is 1/4 for each of its window's inputs: every delta is "
            "spread evenly over its 2x2 window (up-sampling, by differentiation):"
        )
    else:
        lines.append(
            "  the max's derivative is 1 for the window's largest input, 0 for the others: each "
            "delta goes to its winner (which input won, 1 = winner):"
        )
        lines += _matrix(v["pool_share"])
    lines += [
        "  dC/da_mn^l:",
        *_matrix(v["dC_da_l"]),
        "",
        "step 4  (BP2) delta_mn^l = dC/da_mn^l * sigma'(z_mn^l)",
        "  sigma'(z^l):",
        *_matrix(v["sigma_prime_l"]),
        "  delta^l:",
        *_matrix(v["delta_l"]),
        "",
        "step 5  the convolution layer's gradients",
        f"  (BP3, the bias is shared) dC/db^l = sum_mn delta_mn^l = {v['dC_db_l']:.6f}",
        "  (BP4, the filter is shared) dC/dw_ab^l = sum_mn delta_mn^l a_(m+a)(n+b)^(l-1): the "
        "input correlated with the delta map:",
        *_matrix(v["dC_dw_l"]),
        "  dC/da^(l-1): the delta map, padded by "
        f"{k - 1}, correlated with the filter rotated by 180 degrees (a full convolution):",
        *_matrix(v["kernel_rot180"]),
        "  =",
        *_matrix(v["dC_da_input"]),
        "",
        "check  torch autograd on the same numbers (float64), largest difference:",
        "  "
        + ", ".join(f"{name} {diff:.1e}" for name, diff in result.autograd_max_difference.items()),
    ]
    return lines


__all__ = [
    "ACTIVATIONS",
    "COSTS",
    "POOLS",
    "Network",
    "Walk",
    "correlate",
    "example_network",
    "walk",
    "walk_lines",
]
