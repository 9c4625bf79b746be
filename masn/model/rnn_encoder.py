"""Bidirectional LSTM question encoder (original: HGA's ``SentenceEncoderRNN`` with ``rnn_cell='lstm'``).

Output length is the longest question in the batch (pack/pad), padded positions are zero.
``compress_hn_layers`` is never used by MASN (always bidirectional) but is a state_dict key; it and
the unused one of ``compress_hn_layers_bi`` / ``compress_hn_bi`` are listed in ``unused``. The LSTM
runs in fp32 under autocast (``engine.modules.run_in_fp32``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from engine.modules import run_in_fp32


class SentenceEncoderRNN(nn.Module):
    def __init__(self, hidden_size: int, n_layers: int = 1, dropout_p: float = 0.0) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.n_layers = n_layers
        self.dropout = nn.Dropout(p=dropout_p)
        self.compress_hn_layers = nn.Linear(n_layers * hidden_size, hidden_size, bias=False)
        self.compress_hn_layers_bi = nn.Linear(n_layers * 2 * hidden_size, hidden_size, bias=False)
        self.compress_hn_bi = nn.Linear(2 * hidden_size, hidden_size, bias=False)
        self.compress_output = nn.Linear(2 * hidden_size, hidden_size, bias=False)
        self.rnn = nn.LSTM(hidden_size, hidden_size, n_layers, batch_first=True, bidirectional=True,
                           dropout=dropout_p if n_layers > 1 else 0.0)
        self.unused = ("compress_hn_layers", "compress_hn_bi" if n_layers > 1 else "compress_hn_layers_bi")

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, W, H), lengths (B,) >= 1 -> output (B, max(lengths), H), hidden (B, H).

        ``lengths`` may be on the CPU already (pack_padded_sequence needs them there), which spares a
        device sync that would wait for everything queued before it."""
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        output, (hidden, _) = run_in_fp32(self.rnn, packed)
        output, _ = pad_packed_sequence(output, batch_first=True)
        output = self.dropout(F.relu(self.compress_output(output)))
        hidden = hidden.transpose(0, 1).reshape(x.size(0), -1)
        compress = self.compress_hn_layers_bi if self.n_layers > 1 else self.compress_hn_bi
        return output, self.dropout(F.relu(compress(hidden)))
