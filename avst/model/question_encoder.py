"""The LSTM question encoder shared by AVST, its baseline (and, in the original, every net)."""

from __future__ import annotations

import torch
from torch import nn

from engine.modules import run_in_fp32


class QstEncoder(nn.Module):
    """Embedding -> tanh -> LSTM over all tokens (pads included) -> tanh([h | c]) -> Linear.

    ``<pad>`` has no ``padding_idx``: it is a learned word like any other, as in the original.
    """

    def __init__(
        self,
        qst_vocab_size: int = 93,
        word_embed_size: int = 512,
        embed_size: int = 512,
        num_layers: int = 1,
        hidden_size: int = 512,
    ) -> None:
        super().__init__()
        self.word2vec = nn.Embedding(qst_vocab_size, word_embed_size)
        self.tanh = nn.Tanh()
        self.lstm = nn.LSTM(word_embed_size, hidden_size, num_layers)
        self.fc = nn.Linear(2 * num_layers * hidden_size, embed_size)

    def forward(self, question: torch.Tensor) -> torch.Tensor:
        """question [B, L] int64 -> [B, embed_size]."""
        words = self.tanh(self.word2vec(question)).transpose(0, 1)
        self.lstm.flatten_parameters()
        # Under AMP the 14-step LSTM stays in fp32 (cuDNN would run it in fp16, oneDNN may lack bf16).
        _, (hidden, cell) = run_in_fp32(self.lstm, words)
        state = torch.cat((hidden, cell), 2).transpose(0, 1).reshape(question.shape[0], -1)
        return self.fc(self.tanh(state))
