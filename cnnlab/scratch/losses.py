"""Losses of the NumPy engine: each returns the mean loss and keeps what ``backward`` needs."""

from __future__ import annotations

import numpy as np

from ..errors import CnnlabError


class SoftmaxCrossEntropy:
    """Mean cross-entropy of softmax(logits) against integer labels.

    Stable: ``log softmax(z) = z - max(z) - log(sum(exp(z - max(z))))``. The gradient with
    respect to the logits is ``(softmax(z) - onehot(y)) / N``.
    """

    def forward(self, logits: np.ndarray, labels: np.ndarray) -> float:
        if logits.ndim != 2 or labels.shape != (logits.shape[0],):
            raise CnnlabError(
                f"cross-entropy expects N x classes logits and N labels, got {logits.shape} and "
                f"{labels.shape}"
            )
        if labels.min() < 0 or labels.max() >= logits.shape[1]:
            raise CnnlabError(
                f"labels range over {labels.min()}..{labels.max()}, "
                f"expected 0..{logits.shape[1] - 1}"
            )
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        self.probs, self.labels = np.exp(log_probs), labels
        return float(-log_probs[np.arange(len(labels)), labels].mean())

    __call__ = forward

    def backward(self) -> np.ndarray:
        grad = self.probs.copy()
        grad[np.arange(len(self.labels)), self.labels] -= 1
        return grad / len(self.labels)


class MSE:
    """Mean squared error over every element."""

    def forward(self, prediction: np.ndarray, target: np.ndarray) -> float:
        if prediction.shape != target.shape:
            raise CnnlabError(f"MSE needs equal shapes, got {prediction.shape} and {target.shape}")
        self.diff = prediction - target
        return float((self.diff**2).mean())

    __call__ = forward

    def backward(self) -> np.ndarray:
        return 2 * self.diff / self.diff.size
