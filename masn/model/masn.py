"""MASN: motion-appearance synergistic networks (Seo et al., ACL 2021), faithful to ``model/masn.py``.

Same constructor, same ``model(task, *batch)`` call and return triple, same state_dict (names,
shapes, order), same eval-mode numbers. Differences that change no number: a batch of one works;
Action/Trans run the video branch once per sample instead of once per candidate (the 5 candidate
sentences go through the text encoder, BAN and fusion as one batch, with the per-candidate padding
length of the original's five passes reproduced in the fusion keys).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from engine.modules import freeze_unused
from masn.model.ban import BAN
from masn.model.fusion import AttFlat, MotionApprFusion
from masn.model.gcn import GCN, VideoAdjLearner
from masn.model.linear_weightdrop import WeightDropLinear
from masn.model.position_embedding import PositionEncoding
from masn.model.rnn_encoder import SentenceEncoderRNN

TASKS = ("Count", "Action", "Trans", "FrameQA", "MS-QA")


def make_mask(width: int, lengths: torch.Tensor) -> torch.Tensor:
    """(B, width) float mask, 1 before min(width - 1, length): the last position is always masked
    (original quirk: the 20th frame of a 20-frame video and the 20th token are never attended)."""
    limit = lengths.clamp(max=width - 1).unsqueeze(1)
    return (torch.arange(width, device=lengths.device) < limit).float()


def _local_proj(linear: nn.Linear, obj: torch.Tensor, bbox: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """linear([obj || bbox || pos broadcast over objects]) without building the concatenation; the
    feature part gets no input gradient (its compressor is frozen), the position part runs per frame."""
    d, k = obj.size(-1), bbox.size(-1)
    out = F.linear(obj, linear.weight[:, :d]) + F.linear(bbox, linear.weight[:, d:d + k])
    return out + F.linear(pos, linear.weight[:, d + k:], linear.bias).unsqueeze(2)


def _local_global(linear: nn.Linear, local: torch.Tensor, glob: torch.Tensor) -> torch.Tensor:
    """linear([local || glob broadcast over objects]), with the global half applied once per frame."""
    d = local.size(-1)
    return F.linear(local, linear.weight[:, :d]) + F.linear(glob, linear.weight[:, d:], linear.bias)


class MASN(nn.Module):
    def __init__(self, vocab_size: int, s_layers: int, s_embedding: np.ndarray | None, resnet_input_size: int,
                 i3d_input_size: int, hidden_size: int, dropout_p: float = 0.0, gcn_layers: int = 2,
                 answer_vocab_size: int | None = None, q_max_len: int = 35, v_max_len: int = 80,
                 ablation: str = "none") -> None:
        super().__init__()
        self.ablation = ablation
        self.q_max_len = q_max_len
        self.v_max_len = v_max_len
        self.hidden_size = hidden_size

        self.compress_appr_local = WeightDropLinear(resnet_input_size, hidden_size, False, dropout_p)
        self.compress_motion_local = WeightDropLinear(i3d_input_size, hidden_size, False, dropout_p)
        self.compress_appr_global = WeightDropLinear(resnet_input_size, hidden_size, False, dropout_p)
        self.compress_motion_global = WeightDropLinear(i3d_input_size, hidden_size, False, dropout_p)

        embedding_dim = s_embedding.shape[1] if s_embedding is not None else hidden_size
        self.glove = nn.Embedding(vocab_size, embedding_dim, padding_idx=0)
        if s_embedding is not None:
            if s_embedding.shape[0] != vocab_size:
                raise ValueError(f"embedding matrix has {s_embedding.shape[0]} rows, "
                                 f"vocab_size is {vocab_size}")
            self.glove.weight = nn.Parameter(torch.from_numpy(np.asarray(s_embedding)).float())
        self.glove.weight.requires_grad = False
        self.embedding_proj = nn.Sequential(nn.Dropout(p=dropout_p),
                                            nn.Linear(embedding_dim, hidden_size, bias=False))
        self.sentence_encoder = SentenceEncoderRNN(hidden_size, n_layers=s_layers, dropout_p=dropout_p)

        self.bbox_location_encoding = nn.Linear(6, 64)
        self.pos_location_encoding = PositionEncoding(n_filters=64, max_len=v_max_len)
        self.appr_local_proj = nn.Linear(hidden_size + 128, hidden_size)
        self.motion_local_proj = nn.Linear(hidden_size + 128, hidden_size)
        self.pos_enc = PositionEncoding(n_filters=hidden_size, max_len=v_max_len)
        self.appr_v = nn.Linear(hidden_size * 2, hidden_size)
        self.motion_v = nn.Linear(hidden_size * 2, hidden_size)

        self.appr_adj = VideoAdjLearner(hidden_size, hidden_size)
        self.appr_gcn = GCN(hidden_size, hidden_size, hidden_size, num_layers=gcn_layers)
        self.motion_adj = VideoAdjLearner(hidden_size, hidden_size)
        self.motion_gcn = GCN(hidden_size, hidden_size, hidden_size, num_layers=gcn_layers)

        self.appr_vq_interact = BAN(hidden_size, glimpse=4)
        self.motion_vq_interact = BAN(hidden_size, glimpse=4)
        self.motion_appr_fusion = MotionApprFusion(hidden_size, hidden_size, n_layer=1)
        self.attflat = AttFlat(hidden_size, hidden_size, 1, hidden_size)
        self.fc = nn.Linear(hidden_size, answer_vocab_size if answer_vocab_size is not None else 1)
        freeze_unused(self, [f"sentence_encoder.{name}" for name in self.sentence_encoder.unused])

    def forward(self, task: str, *batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns (scores, predictions, answers) like the original:
        Count (B,) regression, predictions clamp(round, 1, 10); Action/Trans (B, 5) scores;
        FrameQA / MS-QA (B, n_answers) logits; predictions = argmax."""
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
        n_inputs = 10 if task in ("Action", "Trans", "FrameQA") else 9
        if len(batch) != n_inputs:
            raise ValueError(f"task {task} takes {n_inputs} batch tensors, got {len(batch)}")
        video, tokens, lengths, answers = batch[:6], batch[6], batch[7], batch[8]
        if task in ("Action", "Trans"):
            out = self.scores(*video, tokens, lengths)[..., 0]
            return out, out.argmax(1), answers
        out = self.scores(*video, tokens.unsqueeze(1), lengths.unsqueeze(1))[:, 0]
        if task == "Count":
            out = out[:, 0]
            return out, torch.clamp(torch.round(out), min=1, max=10).long(), answers
        return out, out.argmax(1), answers

    def encode_video(self, res_avg: torch.Tensor, i3d_avg: torch.Tensor, res_obj: torch.Tensor,
                     bbox: torch.Tensor, i3d_obj: torch.Tensor, video_len: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Object graphs of both streams: (X_appr, X_motion) (B, T*N, d) and the node mask (B, T*N)."""
        bsz, v_len, obj_num = res_obj.shape[:3]
        d = self.hidden_size
        v_mask = make_mask(v_len, video_len)

        res_obj = self.compress_appr_local(res_obj)
        i3d_obj = self.compress_motion_local(i3d_obj)
        res_avg = self.compress_appr_global(res_avg)
        i3d_avg = self.compress_motion_global(i3d_avg)

        bbox = self.bbox_location_encoding(bbox)
        pos = self.pos_location_encoding(v_len).unsqueeze(0) * v_mask.unsqueeze(2)  # B, T, 64
        frames = (bsz * v_len, obj_num, d)
        appr_local = _local_proj(self.appr_local_proj, res_obj, bbox, pos).view(frames)
        motion_local = _local_proj(self.motion_local_proj, i3d_obj, bbox, pos).view(frames)

        pe = self.pos_enc(v_len)
        appr_v = _local_global(self.appr_v, appr_local, (pe + res_avg).reshape(bsz * v_len, 1, d))
        motion_v = _local_global(self.motion_v, motion_local, (pe + i3d_avg).reshape(bsz * v_len, 1, d))
        appr_v = appr_v.view(bsz, v_len * obj_num, d)
        motion_v = motion_v.view(bsz, v_len * obj_num, d)
        node_mask = v_mask.unsqueeze(2).expand(bsz, v_len, obj_num).reshape(bsz, v_len * obj_num)

        appr = self.appr_gcn(appr_v, self.appr_adj(appr_v, node_mask))
        motion = self.motion_gcn(motion_v, self.motion_adj(motion_v, node_mask))
        return appr, motion, node_mask

    def scores(self, res_avg: torch.Tensor, i3d_avg: torch.Tensor, res_obj: torch.Tensor, bbox: torch.Tensor,
               i3d_obj: torch.Tensor, video_len: torch.Tensor, tokens: torch.Tensor,
               lengths: torch.Tensor) -> torch.Tensor:
        """tokens (B, C, W), lengths (B, C): C sentences per video -> fc outputs (B, C, n_out).

        Each sentence gets the numbers the original's ``model_block`` gives it in a pass over
        sentence c of every sample (question length padded to the longest sentence c of the batch).
        """
        bsz, n_cand, width = tokens.shape
        lengths = lengths.reshape(bsz * n_cand)
        host_lengths = lengths.cpu()  # before the video branch is queued, so this sync waits for little
        appr, motion, node_mask = self.encode_video(res_avg, i3d_avg, res_obj, bbox, i3d_obj, video_len)

        tokens = tokens.reshape(bsz * n_cand, width)
        q_mask = make_mask(width, lengths)
        q_emb = F.relu(self.embedding_proj(self.glove(tokens)))
        q_output, q_hidden = self.sentence_encoder(q_emb, host_lengths)
        q_len = q_output.size(1)
        q_mask = q_mask[:, :q_len]

        shape = (bsz, n_cand, q_len)
        appr_vq, _ = self.appr_vq_interact(appr, q_output.view(*shape, -1), node_mask, q_mask.view(shape))
        motion_vq, _ = self.motion_vq_interact(motion, q_output.view(*shape, -1), node_mask,
                                               q_mask.view(shape))

        U = torch.cat([appr_vq, motion_vq], dim=2).view(bsz * n_cand, 2 * q_len, -1)
        q_mask2 = torch.cat([q_mask, q_mask], dim=1)
        U_mask = q_mask2.unsqueeze(2) * q_mask2.unsqueeze(1)
        key_len = None
        if n_cand > 1:
            key_len = lengths.view(bsz, n_cand).amax(dim=0).repeat(bsz)
        fused = self.motion_appr_fusion(U, q_hidden, U_mask, key_len)
        return self.fc(self.attflat(fused, q_mask2)).view(bsz, n_cand, -1)
