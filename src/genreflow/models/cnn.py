"""The source paper's CNN: five conv + max-pool blocks, then five linear layers.

Kept structurally faithful (block and layer counts are checked) so results compare with the
paper; only widths, dropout and BatchNorm come from ``params.yaml``.
"""

from __future__ import annotations

import torch
from torch import nn

from genreflow.core.config import ConfigError, TrainParams

N_CONV_BLOCKS = 5
N_HIDDEN_DENSE = 4


class InputNorm(nn.Module):
    """Base of the classifiers: standardises dB input with scalar statistics of the training
    split, and owns the weight initialisation.

    The statistics are buffers, so they travel inside ``state_dict`` and the served model
    normalises exactly as training did.
    """

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("input_mean", torch.zeros(()))
        self.register_buffer("input_std", torch.ones(()))

    def set_input_stats(self, mean: float, std: float) -> None:
        if not std > 0:
            raise ValueError(f"input std must be positive, got {std}")
        self.input_mean.fill_(float(mean))
        self.input_std.fill_(float(std))

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.input_mean) / self.input_std

    # A subclass builds ``self.classifier``: an ``nn.Sequential`` that ends in the output
    # Linear. What enters that Linear is the segment's *embedding* (the song vector's source):
    # ``forward(x) == head(embed(x))``, so logits and vectors come from one pass.
    @property
    def embedding_dim(self) -> int:
        """Width of :meth:`embed`'s output: the input features of the final Linear."""
        return int(self.classifier[-1].in_features)

    def head(self, embedding: torch.Tensor) -> torch.Tensor:
        """``(..., embedding_dim)`` -> logits: the final Linear alone.

        Linear, so the mean of segment logits equals the head of the mean embedding.
        """
        return self.classifier[-1](embedding)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``(B, n_mels, frames)`` dB -> ``(B, n_classes)`` logits (what training optimises)."""
        return self.head(self.embed(features))

    def embed(self, features: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def reset_parameters(self) -> None:
        """Variance-preserving init for conv + max-pool stacks.

        PyTorch's default (Kaiming-uniform, a=sqrt(5)) shrinks the signal about 2.4x per ReLU
        layer, so through the paper CNN's ten weight layers the logits start almost constant
        and plain SGD barely moves in a short CPU budget; Kaiming fan-in overshoots because
        each 2x2 max-pool also raises the activation scale. Kaiming *fan-out* for the convs
        (channels double per block) offsets the pooling gain and keeps activations about
        level; hidden linear layers get Kaiming fan-in, the output layer Xavier (it feeds no
        ReLU), biases zero. LSTMs keep their default.
        """
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d | nn.LSTM):
                m.reset_parameters()
        # the output layer feeds no ReLU: Xavier keeps the initial logits near uniform
        last = [m for m in self.modules() if isinstance(m, nn.Linear)][-1]
        nn.init.xavier_uniform_(last.weight)


def pool_kernel(height: int, width: int, pool_time: bool = True) -> tuple[int, int]:
    """2x2 pooling, except along a dim already collapsed to 1 (tiny test inputs)."""
    return (2 if height > 1 else 1, 2 if (pool_time and width > 1) else 1)


def conv_block(c_in: int, c_out: int, kernel: tuple[int, int], batch_norm: bool) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 3, padding=1, bias=not batch_norm)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(c_out))
    layers += [nn.ReLU(inplace=True), nn.MaxPool2d(kernel, ceil_mode=True)]
    return nn.Sequential(*layers)


def pooled_size(size: int, k: int) -> int:
    return -(-size // k)  # ceil_mode=True


class PaperCNN(InputNorm):
    """``(B, n_mels, frames)`` dB -> ``(B, n_classes)`` logits; :meth:`embed` gives the
    ``(B, dense[-1])`` penultimate layer."""

    def __init__(self, params: TrainParams, n_mels: int, n_frames: int, n_classes: int) -> None:
        super().__init__()
        if len(params.channels) != N_CONV_BLOCKS:
            raise ConfigError(
                f"arch cnn: channels must list {N_CONV_BLOCKS} widths (one per conv block), "
                f"got {list(params.channels)}"
            )
        if len(params.dense) != N_HIDDEN_DENSE:
            raise ConfigError(
                f"arch cnn: dense must list {N_HIDDEN_DENSE} hidden widths (the 5th linear "
                f"layer outputs the classes), got {list(params.dense)}"
            )
        blocks = []
        h, w, c_in = n_mels, n_frames, 1
        for c_out in params.channels:
            k = pool_kernel(h, w)
            blocks.append(conv_block(c_in, c_out, k, params.batch_norm))
            h, w, c_in = pooled_size(h, k[0]), pooled_size(w, k[1]), c_out
        self.features = nn.Sequential(*blocks)
        self.flat_features = c_in * h * w

        # as in the paper: one dropout between the conv stack and the linear layers
        head: list[nn.Module] = [nn.Flatten(), nn.Dropout(params.dropout)]
        width = self.flat_features
        for hidden in params.dense:
            head += [nn.Linear(width, hidden), nn.ReLU(inplace=True)]
            width = hidden
        head.append(nn.Linear(width, n_classes))
        self.classifier = nn.Sequential(*head)
        self.reset_parameters()

    def embed(self, features: torch.Tensor) -> torch.Tensor:
        """``(B, n_mels, frames)`` dB -> ``(B, dense[-1])``: the last hidden layer (after its
        ReLU), i.e. the input of the final Linear."""
        x = self.normalise(features).unsqueeze(1)
        return self.classifier[:-1](self.features(x))
