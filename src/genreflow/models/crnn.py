"""Convolutional-recurrent classifier (the source paper's section 4.2 proposal).

The conv front pools mostly the frequency axis (time only in the first two blocks) so the
LSTM still sees a real sequence of frames; the recurrent part models how a 3-s excerpt
evolves rather than only which local textures it contains.
"""

from __future__ import annotations

import torch
from torch import nn

from genreflow.core.config import ConfigError, TrainParams
from genreflow.models.cnn import InputNorm, conv_block, pool_kernel, pooled_size

TIME_POOLED_BLOCKS = 2


class CRNN(InputNorm):
    """``(B, n_mels, frames)`` dB -> ``(B, n_classes)`` logits; :meth:`embed` gives the input
    of the final Linear (see :class:`~genreflow.models.cnn.InputNorm`).

    ``params.channels``: one conv block per entry (any count >= 1). ``params.dense``: hidden
    widths of the head on top of the LSTM summary (may be empty).
    """

    def __init__(self, params: TrainParams, n_mels: int, n_frames: int, n_classes: int) -> None:
        super().__init__()
        if not params.channels:
            raise ConfigError("arch crnn: channels must list at least one conv width")
        if params.lstm_hidden < 1 or params.lstm_layers < 1:
            raise ConfigError(
                f"arch crnn: lstm_hidden and lstm_layers must be >= 1, got "
                f"{params.lstm_hidden} and {params.lstm_layers}"
            )
        blocks = []
        h, w, c_in = n_mels, n_frames, 1
        for i, c_out in enumerate(params.channels):
            k = pool_kernel(h, w, pool_time=i < TIME_POOLED_BLOCKS)
            blocks.append(conv_block(c_in, c_out, k, params.batch_norm))
            h, w, c_in = pooled_size(h, k[0]), pooled_size(w, k[1]), c_out
        self.features = nn.Sequential(*blocks)
        self.seq_features = c_in * h
        self.seq_len = w
        self.pooling = params.pooling
        self.bidirectional = params.bidirectional
        self.dropout = nn.Dropout(params.dropout)
        self.lstm = nn.LSTM(
            input_size=self.seq_features,
            hidden_size=params.lstm_hidden,
            num_layers=params.lstm_layers,
            batch_first=True,
            bidirectional=params.bidirectional,
            dropout=params.dropout if params.lstm_layers > 1 else 0.0,
        )
        width = params.lstm_hidden * (2 if params.bidirectional else 1)
        head: list[nn.Module] = []
        for hidden in params.dense:
            head += [nn.Linear(width, hidden), nn.ReLU(inplace=True), nn.Dropout(params.dropout)]
            width = hidden
        head.append(nn.Linear(width, n_classes))
        self.classifier = nn.Sequential(*head)
        self.reset_parameters()

    def embed(self, features: torch.Tensor) -> torch.Tensor:
        """``(B, n_mels, frames)`` dB -> the input of the final Linear: the last hidden dense
        layer, or the LSTM summary when ``dense`` is empty."""
        x = self.features(self.normalise(features).unsqueeze(1))  # (B, C, F', T')
        b, c, f, t = x.shape
        seq = self.dropout(x.permute(0, 3, 1, 2).reshape(b, t, c * f))
        # the LSTM runs in float32 even under bf16 autocast: it is small, and cuDNN's
        # reduced-precision RNN support varies between versions
        with torch.autocast(device_type=seq.device.type, enabled=False):
            out, (h_n, _) = self.lstm(seq.float())
        if self.pooling == "mean":
            summary = out.mean(dim=1)
        elif self.bidirectional:
            # forward direction's state after the last frame, backward's after the first
            summary = torch.cat([h_n[-2], h_n[-1]], dim=1)
        else:
            summary = h_n[-1]
        return self.classifier[:-1](self.dropout(summary))
