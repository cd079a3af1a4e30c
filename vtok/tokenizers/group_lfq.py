"""Group-wise lookup-free quantization, "GQ" (WeTok, 2508.05599), after LFQ (MAGVIT-v2, 2310.05737).

Each of ``b`` channels is quantized to its sign, so the codebook (``2^b`` codes) is implicit. The
entropy loss that keeps all codes in use is computed per group of ``b/G`` channels over
``2^(b/G)`` codes, so its memory is ``N * G * 2^(b/G)`` rather than ``N * 2^b``.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from einops import einsum, rearrange

from vtok.tokenizers.autocast import without_autocast
from vtok.tokenizers.base import DiscreteQuantizer
from vtok.tokenizers.output import QuantizerOutput

MAX_GROUP_BITS = 16
MAX_SINGLE_TOKEN_BITS = 62
# Floor under the batch-averaged probabilities before the log: exact zeros (common at
# temperature 0.01) would give an infinite gradient through p * log(p).
PROB_FLOOR = 1e-12


def mean_over_ranks(t: torch.Tensor, in_training_step: bool) -> torch.Tensor:
    """Average ``t`` over all distributed ranks in a training step, which every rank runs (differentiably: each
    rank's loss then depends on every rank's input); also when ``t`` needs no gradient (an encoder and quantizer
    frozen for good, as in stage 2: the batch entropy logged was rank 0's alone).

    Elsewhere (validation, evaluation, a callback running on rank 0 alone) ``t`` stays rank-local: a collective
    there would hang as soon as one rank did not take part (validation skips a rank's batch of padding only).
    """
    if not (in_training_step and dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return t
    return _SumOverRanks.apply(t) / dist.get_world_size()


class _SumOverRanks(torch.autograd.Function):
    """Sum over ranks whose gradient is the sum of every rank's incoming gradient: each rank's loss
    depends on every rank's input. torch's own ``torch.distributed.nn.functional.all_reduce`` does
    the same but is deprecated (a FutureWarning on every step), and the functional collective it
    points to has no gradient in older torch versions; this works on every torch vtok supports."""

    @staticmethod
    def forward(ctx: object, t: torch.Tensor) -> torch.Tensor:
        total = t.clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total

    @staticmethod
    def backward(ctx: object, grad: torch.Tensor) -> torch.Tensor:
        total = grad.contiguous().clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total


class GroupLFQ(DiscreteQuantizer):
    """Sign quantizer for latents ``[B, bits, T, H, W]`` with a group-wise entropy loss.

    Codes are ``+1`` where the latent is positive and ``-1`` elsewhere (straight-through
    gradient). Channels ``g*bits/G ... (g+1)*bits/G - 1`` form group ``g``; a group's index reads
    its bits (``+1`` -> 1) with the first channel as the most significant bit, as in
    vector-quantize-pytorch's LFQ. With ``single_token`` the ``G`` group indices are joined, group
    0 most significant, into one ``bits``-wide index: the same number as reading all channels in
    order.

    Losses (unweighted float32 scalars):
    ``entropy`` = per-sample entropy - codebook entropy, each **summed over groups**. For each
    group the soft assignment over its ``2^(bits/G)`` codes is ``softmax(2 z_g . c / temperature)``
    (``softmax(-||z_g - c||^2 / temperature)`` without the per-row constant). Per-sample entropy is
    the mean over positions of each position's entropy; codebook entropy is the entropy of the
    position-averaged assignment, averaged over all distributed ranks first (with an autograd-aware
    all-reduce) whenever a gradient is being recorded; under ``torch.no_grad`` it is rank-local,
    so evaluation on one rank cannot hang. With independent groups, the sum over groups is what the full ``2^bits``
    codebook's entropies would be. ``commitment`` = MSE between the latent and its codes.

    Args:
        bits: channels of the latent, one bit each (``b``).
        groups: number of groups ``G``; must divide ``bits``, with ``bits / G <= 16``.
        single_token: one ``bits``-wide token per position (``bits <= 62``) instead of ``G``
            tokens of ``bits / G`` bits.
        temperature: temperature of the soft assignment in the entropy loss (> 0).
    """

    def __init__(self, bits: int, groups: int, single_token: bool = False, temperature: float = 0.01) -> None:
        super().__init__()
        if bits < 1:
            raise ValueError(f"bits must be >= 1 (range [1, inf)), got {bits}")
        if groups < 1 or bits % groups != 0:
            raise ValueError(f"groups must divide bits={bits} (range [1, {bits}], a divisor of bits), got {groups}")
        if bits // groups > MAX_GROUP_BITS:
            raise ValueError(
                f"bits / groups = {bits // groups} exceeds {MAX_GROUP_BITS} (range [1, {MAX_GROUP_BITS}]): "
                f"use {min(g for g in range(1, bits + 1) if bits % g == 0 and bits // g <= MAX_GROUP_BITS)} groups "
                "or more (a divisor of bits)"
            )  # the fewest that divide bits: ceil(bits / 16) (3 for 34 bits) was refused next, as no divisor
        if single_token and bits > MAX_SINGLE_TOKEN_BITS:
            raise ValueError(
                f"single_token needs bits in [1, {MAX_SINGLE_TOKEN_BITS}] to fit an int64 index, got {bits}; "
                "use single_token=False"
            )
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0 (range (0, inf)), got {temperature}")
        self.bits = int(bits)
        self.groups = int(groups)
        self.group_bits = self.bits // self.groups
        self.single_token = bool(single_token)
        self.temperature = float(temperature)
        weights = 2 ** torch.arange(self.group_bits - 1, -1, -1, dtype=torch.int64)
        codes = (torch.arange(2**self.group_bits).unsqueeze(1) & weights).ne(0).float() * 2 - 1
        self.register_buffer("_weights", weights, persistent=False)
        self.register_buffer("_codebook", codes, persistent=False)  # [2^group_bits, group_bits], small

    @property
    def channels(self) -> int:
        """Latent channels the quantizer takes: one sign bit each."""
        return self.bits

    @property
    def tokens_per_position(self) -> int:
        """Tokens per latent position: one per group, or one of all the bits with ``single_token``."""
        return 1 if self.single_token else self.groups

    @property
    def codebook_size(self) -> int:
        """The vocabulary of one token: ``2^group_bits``, or ``2^bits`` with ``single_token``."""
        return 2 ** (self.bits if self.single_token else self.group_bits)

    def extra_repr(self) -> str:
        options = f"single_token={self.single_token}, temperature={self.temperature}"
        return f"bits={self.bits}, groups={self.groups}, {options}"

    def forward(self, z: torch.Tensor, with_losses: bool = True) -> QuantizerOutput:
        """Codes and indices of ``z``; with ``with_losses`` (training, validation) also the losses and
        statistics, whose entropy terms build ``[N, G, 2^(bits/G)]`` float32 tensors over the whole
        latent; inference passes ``False`` and gets empty ``losses`` and ``stats``."""
        self._check_latents(z)
        with without_autocast(z.device.type):
            x = z.float()
            quantized = (x > 0).float() * 2 - 1
            codes = quantized + (x - x.detach())
            bits = rearrange(x.detach() > 0, "b (g c) t h w -> b g c t h w", g=self.groups).long()
            group_indices = (bits * self._weights.view(-1, 1, 1, 1)).sum(2)
        indices = self._join(group_indices) if self.single_token else group_indices
        if not with_losses:
            return QuantizerOutput(codes=codes.to(z.dtype), indices=indices)
        with without_autocast(z.device.type):
            per_sample, codebook = self._entropies(x)
            losses = {"entropy": per_sample - codebook, "commitment": F.mse_loss(x, quantized)}
        stats = self.usage(indices)
        stats.update(per_sample_entropy=per_sample.detach(), codebook_entropy=codebook.detach())
        return QuantizerOutput(codes=codes.to(z.dtype), indices=indices, losses=losses, stats=stats)

    def _entropies(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample and codebook entropy, summed over groups; tensors stay ``[N, G, 2^(bits/G)]``."""
        z = rearrange(x, "b (g c) t h w -> (b t h w) g c", g=self.groups)
        logits = einsum(z, self._codebook.float(), "n g c, k c -> n g k") * (2 / self.temperature)
        log_probs = logits.log_softmax(-1)
        probs = log_probs.exp()
        per_sample = -(probs * log_probs).sum(-1).mean(0).sum()
        average = mean_over_ranks(probs.mean(0), in_training_step=self.training and torch.is_grad_enabled())
        codebook = -(average * average.clamp_min(PROB_FLOOR).log()).sum()
        return per_sample, codebook

    def _shifts(self, device: torch.device) -> torch.Tensor:
        """Bit offsets of the groups inside a single token, group 0 most significant, ``[G, 1, 1, 1]``."""
        return torch.arange(self.groups - 1, -1, -1, device=device).mul(self.group_bits).view(-1, 1, 1, 1)

    def _join(self, group_indices: torch.Tensor) -> torch.Tensor:
        return (group_indices << self._shifts(group_indices.device)).sum(1, keepdim=True)

    def _split(self, indices: torch.Tensor) -> torch.Tensor:
        """``[B, K, T, H, W]`` tokens -> ``[B, G, T, H, W]`` group indices."""
        if not self.single_token:
            return indices.long()
        return (indices.long() >> self._shifts(indices.device)) & (2**self.group_bits - 1)

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """The exact inverse of the quantizer's indices.

        Args:
            indices: integer ``[B, K, T, H, W]`` in ``[0, codebook_size)``.

        Returns:
            float32 codes ``[B, bits, T, H, W]`` in ``{-1, +1}``.
        """
        self.check_indices(indices)
        bits = (self._split(indices).unsqueeze(2) & self._weights.view(-1, 1, 1, 1)).ne(0)
        return rearrange(bits.float() * 2 - 1, "b g c t h w -> b (g c) t h w")

    def token_groups(self, indices: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Indices as ``[N, G]`` group indices (single tokens are split) and the vocabulary of a group.

        Args:
            indices: ``[B, K, T, H, W]`` as returned by the forward pass.
        """
        return rearrange(self._split(indices), "b g t h w -> (b t h w) g"), 2**self.group_bits
