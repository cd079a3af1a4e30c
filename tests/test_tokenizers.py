"""The discrete quantizers: exact inverses, the FSQ oracle, bf16 safety, GQ's memory and entropy loss."""

from __future__ import annotations

import ast
import math
import warnings
from collections import Counter
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from einops import rearrange
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from vtok.tokenizers import FSQ, GroupLFQ, QuantizerOutput

PACKAGE = Path(__file__).resolve().parents[1] / "vtok" / "tokenizers"


def latents(
    channels: int, seed: int = 0, shape: tuple[int, int, int, int] = (2, 3, 4, 5), scale: float = 2.0
) -> torch.Tensor:
    b, t, h, w = shape
    return scale * torch.randn(b, channels, t, h, w, generator=torch.Generator().manual_seed(seed))


def fsq_preimage(quantizer: FSQ, indices: torch.Tensor) -> torch.Tensor:
    """Latents that sit on the grid points of ``indices``: the paper's bound, inverted with atanh."""
    levels = torch.tensor(quantizer.levels, dtype=torch.float32).view(-1, 1, 1, 1)
    half_l = (levels - 1) * 1.001 / 2
    offset = (1 - levels % 2) * 0.5
    grid = quantizer.indices_to_codes(indices).unflatten(1, (quantizer.tokens_per_position, quantizer.dim))
    on_grid = grid * (levels // 2)  # level units: -(L//2) ... (L-1)//2
    z = torch.atanh((on_grid + offset) / half_l) - torch.atanh(offset / half_l)
    return z.flatten(1, 2)


def random_indices(quantizer: FSQ | GroupLFQ, count: int, seed: int = 0) -> torch.Tensor:
    shape = (1, quantizer.tokens_per_position, 1, 1, count)
    return torch.randint(0, quantizer.codebook_size, shape, generator=torch.Generator().manual_seed(seed))


def all_indices(quantizer: FSQ | GroupLFQ) -> torch.Tensor:
    """Every index in every token slot (the slots are independent, so one sweep covers them)."""
    sweep = torch.arange(quantizer.codebook_size).view(1, 1, 1, 1, -1)
    return sweep.expand(1, quantizer.tokens_per_position, 1, 1, -1).contiguous()


# --- exact inverses ---------------------------------------------------------------------------


@pytest.mark.parametrize("levels", [[8, 5, 5, 5], [8, 8, 8, 5, 5, 5], [3, 4], [4, 7]])
@pytest.mark.parametrize("tokens", [1, 2])
def test_fsq_indices_to_codes_reproduces_the_codes_exactly(levels: list[int], tokens: int) -> None:
    fsq = FSQ(levels, tokens_per_position=tokens)
    assert (fsq.dim, fsq.channels, fsq.codebook_size) == (len(levels), tokens * len(levels), math.prod(levels))
    assert fsq.bits_per_token == pytest.approx(math.log2(math.prod(levels)))
    out = fsq(latents(fsq.channels))
    assert isinstance(out, QuantizerOutput) and out.losses == {}
    assert out.indices.dtype == torch.int64 and out.indices.shape == (2, tokens, 3, 4, 5)
    assert int(out.indices.min()) >= 0 and int(out.indices.max()) < fsq.codebook_size
    codes = fsq.indices_to_codes(out.indices)
    assert codes.dtype == torch.float32
    assert torch.equal(codes, out.codes)
    assert out.codes.min() >= -1 and out.codes.max() <= 1


GQ_SHAPES = [(6, 2, False), (6, 2, True), (18, 3, False), (18, 3, True), (64, 8, False), (62, 31, True), (24, 2, True)]


@pytest.mark.parametrize(("bits", "groups", "single"), GQ_SHAPES)
def test_gq_indices_to_codes_reproduces_the_codes_exactly(bits: int, groups: int, single: bool) -> None:
    gq = GroupLFQ(bits, groups, single_token=single)
    assert gq.channels == bits and gq.group_bits == bits // groups
    assert gq.tokens_per_position == (1 if single else groups)
    assert gq.codebook_size == 2 ** (bits if single else bits // groups)
    assert gq.bits_per_token == math.log2(gq.codebook_size)
    z = latents(bits, seed=1).requires_grad_()
    out = gq(z)
    assert out.indices.dtype == torch.int64 and out.indices.shape == (2, gq.tokens_per_position, 3, 4, 5)
    assert set(out.codes.detach().unique().tolist()) == {-1.0, 1.0}
    assert torch.equal(out.codes.detach(), torch.where(z > 0, 1.0, -1.0))
    assert torch.equal(gq.indices_to_codes(out.indices), out.codes.detach())
    out.codes.sum().backward()  # straight-through: d codes / d z = 1
    assert torch.equal(z.grad, torch.ones_like(z))


# --- every index quantizes back to itself ------------------------------------------------------


@pytest.mark.parametrize(
    ("levels", "tokens", "exhaustive"),
    [([8, 5, 5, 5], 1, True), ([3, 4], 2, True), ([4, 3], 1, True)]
    + [([8, 8, 8, 5, 5, 5], 2, False), ([8] * 6, 1, False)],
)
def test_fsq_every_index_is_a_code_that_quantizes_to_itself(
    levels: list[int], tokens: int, exhaustive: bool
) -> None:
    fsq = FSQ(levels, tokens_per_position=tokens)
    indices = all_indices(fsq) if exhaustive else random_indices(fsq, 4096)
    codes = fsq.indices_to_codes(indices)
    out = fsq(fsq_preimage(fsq, indices))
    assert torch.equal(out.indices, indices)
    assert torch.equal(out.codes, codes)
    if exhaustive:  # distinct indices are distinct codes
        assert codes.flatten(2).transpose(1, 2).reshape(-1, fsq.dim).unique(dim=0).shape[0] == fsq.codebook_size


@pytest.mark.parametrize(
    ("bits", "groups", "single", "exhaustive"),
    [(6, 2, False, True), (6, 2, True, True), (18, 3, False, False), (64, 8, False, False), (62, 31, True, False)],
)
def test_gq_every_index_is_a_code_that_quantizes_to_itself(
    bits: int, groups: int, single: bool, exhaustive: bool
) -> None:
    gq = GroupLFQ(bits, groups, single_token=single)
    indices = all_indices(gq) if exhaustive else random_indices(gq, 2048)
    codes = gq.indices_to_codes(indices)
    out = gq(codes)
    assert torch.equal(out.indices, indices)
    assert torch.equal(out.codes, codes)


def test_gq_index_reads_the_channels_as_a_binary_number() -> None:
    bits = torch.tensor([1, 0, 0, 1, 1, 1])  # group 0: 100 = 4, group 1: 111 = 7; as one token 100111 = 39
    z = (bits.float() * 2 - 1).view(1, 6, 1, 1, 1)
    assert GroupLFQ(6, 2)(z).indices.flatten().tolist() == [4, 7]
    assert GroupLFQ(6, 2, single_token=True)(z).indices.flatten().tolist() == [39]


# --- FSQ: grid, gradient, oracle ---------------------------------------------------------------


@pytest.mark.parametrize("levels", [[8, 5, 5, 5], [3, 4, 6, 7]])
def test_fsq_error_is_at_most_half_a_step_and_the_gradient_reaches_z(levels: list[int]) -> None:
    fsq = FSQ(levels, tokens_per_position=2)
    z = latents(fsq.channels, seed=2).requires_grad_()
    out = fsq(z)
    level = torch.tensor(levels * 2, dtype=torch.float32).view(-1, 1, 1, 1)
    half_l, offset = (level - 1) * 1.001 / 2, (1 - level % 2) * 0.5
    bounded = torch.tanh(z.detach() + torch.atanh(offset / half_l)) * half_l - offset  # level units
    step = 1 / (level // 2)  # one grid step in code units
    assert ((out.codes.detach() - bounded * step).abs() <= step / 2 + 1e-6).all()
    out.codes.sum().backward()
    # the gradient is the bound's (straight through the rounding): a flipped sign kept every code and trained the
    # encoder against its own loss (found by a mutation review)
    through_the_bound = z.detach().clone().requires_grad_()
    (torch.tanh(through_the_bound + torch.atanh(offset / half_l)) * half_l * step).sum().backward()
    assert z.grad is not None and (z.grad > 0).all()
    torch.testing.assert_close(z.grad, through_the_bound.grad)


@pytest.mark.parametrize(
    ("levels", "tokens"), [([8, 5, 5, 5], 1), ([8, 8, 8, 5, 5, 5], 2), ([7, 5, 3], 3), ([8, 6, 4], 1)]
)
def test_fsq_agrees_with_vector_quantize_pytorch(levels: list[int], tokens: int) -> None:
    """Same bound, grid and index order as the oracle, to the bit.

    Intended differences, not exercised here: the oracle takes a level of 2 with its
    ``preserve_symmetry`` variant, vtok refuses it (see the test below); vtok clamps the digits, so
    inputs the oracle would round off the grid (bf16, levels above ~1000) stay in range; vtok's
    indices are int64 ``[B, K, T, H, W]`` where the oracle gives int32 ``[B, T, H, W(, K)]``; vtok
    disables autocast on any device, the oracle only on CUDA.
    """
    from vector_quantize_pytorch import FSQ as OracleFSQ

    fsq = FSQ(levels, tokens_per_position=tokens)
    oracle = OracleFSQ(levels=levels, num_codebooks=tokens)  # dim defaults to K*d: no projections
    assert not oracle.has_projections
    z = torch.cat([latents(fsq.channels, seed=3), latents(fsq.channels, seed=4, scale=0.3)])
    out = fsq(z)
    expected_codes, expected_indices = oracle(z)
    assert torch.equal(out.codes, expected_codes)
    layout = "b t h w -> b 1 t h w" if tokens == 1 else "b t h w k -> b k t h w"
    assert torch.equal(out.indices, rearrange(expected_indices, layout).long())
    assert torch.equal(fsq.indices_to_codes(out.indices), oracle.indices_to_codes(expected_indices))


@pytest.mark.parametrize("levels", [[2], [8, 2, 5], [2, 2, 2, 2]])
def test_fsq_refuses_a_level_of_two_whose_channel_would_be_dead(levels: list[int]) -> None:
    """With the half-step shift of even levels, L = 2 has its one boundary at z = -3.8: the channel
    would take one value for practically every input. Three levels use all of their values."""
    with pytest.raises(ValueError, match=r"level of 2 .*z = -3\.8.*use 3 or more"):
        FSQ(levels)
    digits = FSQ([3])(latents(1, seed=6, scale=1.0)).indices
    assert torch.bincount(digits.flatten(), minlength=3).min() > 0.2 * digits.numel()


# --- bf16 and autocast --------------------------------------------------------------------------


def extreme_latents(channels: int) -> torch.Tensor:
    z = latents(channels, seed=5, scale=50.0)
    z[:, :, 0] = 1e4
    z[:, :, 1] = -1e4
    z[0, :, 2] = torch.linspace(-3, 3, z[0, :, 2].numel()).view_as(z[0, :, 2])
    return z


@pytest.mark.parametrize(
    "quantizer",
    [FSQ([8, 8, 8, 5, 5, 5], 2), FSQ([4, 3, 1000, 1003]), GroupLFQ(18, 3), GroupLFQ(18, 3, single_token=True)],
    ids=repr,
)
def test_bf16_and_autocast_never_give_out_of_range_indices(quantizer: FSQ | GroupLFQ) -> None:
    z = extreme_latents(quantizer.channels)
    reference = quantizer(z)
    for name, run in {
        "bf16": lambda: quantizer(z.bfloat16()),
        "autocast": lambda: _under_autocast(quantizer, z),
        "bf16 under autocast": lambda: _under_autocast(quantizer, z.bfloat16()),
    }.items():
        out = run()
        quantizer.check_indices(out.indices)  # raises if any index is out of range
        assert out.codes.dtype == (torch.bfloat16 if "bf16" in name else torch.float32), name
        assert torch.isfinite(out.codes).all() and out.codes.abs().max() <= 1, name
        assert torch.equal(quantizer.indices_to_codes(out.indices).to(out.codes.dtype), out.codes), name
        for value in (*out.losses.values(), *out.stats.values()):
            assert value.dtype == torch.float32 and torch.isfinite(value), name
        if name == "autocast":  # autocast is switched off inside: the same result as fp32
            assert torch.equal(out.indices, reference.indices)


@pytest.mark.parametrize("quantizer", [FSQ([8, 5, 5]), FSQ([8, 8, 8, 5, 5, 5], 2), GroupLFQ(18, 3)], ids=repr)
def test_a_nan_latent_gives_in_range_indices_and_nan_codes(quantizer: FSQ | GroupLFQ) -> None:
    """A diverging step's NaN must not turn into indices far outside the codebook (FSQ gave -2^63)."""
    z = torch.randn(2, quantizer.channels, 2, 3, 3)
    z[0, 0, 0, 0, 0] = float("nan")
    out = quantizer(z)
    quantizer.check_indices(out.indices)
    assert out.codes[0, 0, 0, 0, 0].isnan() and out.codes[1].isfinite().all()


def _under_autocast(quantizer: FSQ | GroupLFQ, z: torch.Tensor) -> QuantizerOutput:
    with torch.autocast("cpu", dtype=torch.bfloat16):
        return quantizer(z)


# --- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "valid_range"),
    [
        (lambda: FSQ([8, 1, 5]), r"\[3, inf\)"),
        (lambda: FSQ([]), r"\[3, inf\)"),
        (lambda: FSQ([8, 5], tokens_per_position=0), r"\[1, inf\)"),
        (lambda: FSQ([2**16] * 4), r"\[3, 2\*\*62\]"),
        (lambda: GroupLFQ(0, 1), r"\[1, inf\)"),
        (lambda: GroupLFQ(18, 4), r"\[1, 18\]"),
        (lambda: GroupLFQ(18, 0), r"\[1, 18\]"),
        (lambda: GroupLFQ(34, 2), r"\[1, 16\]\): use 17 groups or more"),  # 3 (ceil(34 / 16)) does not divide 34
        (lambda: GroupLFQ(40, 2), r"\[1, 16\]\): use 4 groups or more"),
        (lambda: GroupLFQ(64, 8, single_token=True), r"\[1, 62\]"),
        (lambda: GroupLFQ(18, 3, temperature=0.0), r"\(0, inf\)"),
        (lambda: GroupLFQ(18, 3, temperature=-1.0), r"\(0, inf\)"),
    ],
)
def test_bad_arguments_raise_value_errors_naming_the_valid_range(make, valid_range: str) -> None:
    with pytest.raises(ValueError, match=valid_range):
        make()


@pytest.mark.parametrize(
    "quantizer", [FSQ([8, 5, 5, 5], 2), GroupLFQ(6, 2), GroupLFQ(6, 2, single_token=True)], ids=repr
)
def test_check_indices_rejects_out_of_range_float_and_misshapen_indices(quantizer: FSQ | GroupLFQ) -> None:
    valid = f"\\[0, {quantizer.codebook_size}\\)"
    good = all_indices(quantizer)
    quantizer.check_indices(good)
    quantizer.check_indices(good.int())
    too_many_slots = good[:, :1].expand(1, quantizer.tokens_per_position + 1, 1, 1, -1)
    for bad in (good - 1, good + 1, good.float(), too_many_slots, good[0]):
        with pytest.raises(ValueError, match=valid):
            quantizer.check_indices(bad)
    with pytest.raises(ValueError, match=valid):
        quantizer.indices_to_codes(good + quantizer.codebook_size)
    with pytest.raises(ValueError, match=f"\\[B, {quantizer.channels}, T, H, W\\]"):
        quantizer(torch.zeros(1, quantizer.channels + 1, 1, 2, 2))


# --- GQ: memory, statistics, entropy loss ------------------------------------------------------------


class ShapeRecorder(TorchDispatchMode):
    """Records the shape of every tensor any aten op returns (forward and backward)."""

    def __init__(self) -> None:
        super().__init__()
        self.shapes: list[tuple[str, tuple[int, ...]]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.shapes += [(str(func), tuple(t.shape)) for t in tree_leaves(out) if isinstance(t, torch.Tensor)]
        return out


def test_gq_losses_never_build_a_tensor_as_wide_as_the_codebook() -> None:
    gq = GroupLFQ(18, 3)
    z = latents(18, seed=6, shape=(1, 2, 8, 8)).requires_grad_()
    positions = 2 * 8 * 8
    with ShapeRecorder() as recorder:
        out = gq(z)
        forward_ops = len(recorder.shapes)
        (out.losses["entropy"] + out.losses["commitment"] + out.codes.sum()).backward()
    assert len(recorder.shapes) > forward_ops  # the backward pass was recorded too
    assert max(max(shape, default=0) for _, shape in recorder.shapes) < 2**18
    assert all(2**18 not in shape for _, shape in recorder.shapes)
    op, shape = max(recorder.shapes, key=lambda item: math.prod(item[1]))
    assert math.prod(shape) <= positions * 3 * 2**6, (op, shape)  # N * G * 2^(b/G)
    assert torch.isfinite(z.grad).all()


def brute_force_groups(z: torch.Tensor, groups: int) -> list[list[int]]:
    """Group indices per position, read bit by bit with Python loops."""
    b, c, t, h, w = z.shape
    width = c // groups
    rows = []
    for pos in [(i, j, k, l) for i in range(b) for j in range(t) for k in range(h) for l in range(w)]:
        row = []
        for g in range(groups):
            index = 0
            for ch in range(g * width, (g + 1) * width):
                index = 2 * index + (1 if float(z[pos[0], ch, pos[1], pos[2], pos[3]]) > 0 else 0)
            row.append(index)
        rows.append(row)
    return rows


@pytest.mark.parametrize("single", [False, True])
def test_gq_usage_and_perplexity_match_a_brute_force_count(single: bool) -> None:
    gq = GroupLFQ(18, 3, single_token=single)
    z = latents(18, seed=7, shape=(2, 2, 4, 4))
    z[:, :6] = z[:1, :6].abs() * torch.tensor([1, -1, 1, 1, -1, 1.0]).view(1, 6, 1, 1, 1)  # group 0 in one code
    out = gq(z)
    rows = brute_force_groups(z, 3)
    if single:
        expected = [(r[0] << 12) + (r[1] << 6) + r[2] for r in rows]
    else:
        expected = [value for r in rows for value in r]
    got = out.indices.permute(0, 2, 3, 4, 1).flatten().tolist()
    assert got == expected
    perplexities, usages = [], []
    for g in range(3):
        counts = Counter(r[g] for r in rows)
        probs = [n / len(rows) for n in counts.values()]
        perplexities.append(math.exp(-sum(p * math.log(p) for p in probs)))
        usages.append(len(counts) / 64)
    assert usages[0] == 1 / 64 and perplexities[0] == pytest.approx(1.0)
    assert out.stats["perplexity"].item() == pytest.approx(sum(perplexities) / 3, rel=1e-5)
    assert out.stats["batch_usage"].item() == pytest.approx(sum(usages) / 3, rel=1e-6)


def test_fsq_usage_and_perplexity_match_a_brute_force_count() -> None:
    fsq = FSQ([3, 4], tokens_per_position=2)
    out = fsq(latents(4, seed=8, shape=(2, 2, 3, 3)))
    perplexities, usages = [], []
    for k in range(2):
        counts = Counter(out.indices[:, k].flatten().tolist())
        total = sum(counts.values())
        perplexities.append(math.exp(-sum(n / total * math.log(n / total) for n in counts.values())))
        usages.append(len(counts) / 12)
    assert out.stats["perplexity"].item() == pytest.approx(sum(perplexities) / 2, rel=1e-5)
    assert out.stats["batch_usage"].item() == pytest.approx(sum(usages) / 2, rel=1e-6)


def test_gq_entropy_loss_favours_a_batch_that_uses_more_codes() -> None:
    gq = GroupLFQ(6, 2)
    generator = torch.Generator().manual_seed(9)
    collapsed = 0.01 + 0.002 * torch.randn(2, 6, 1, 8, 8, generator=generator)  # every position in code 7
    spread = 0.01 * torch.randn(2, 6, 1, 8, 8, generator=generator)
    low, high = gq(collapsed), gq(spread)
    assert low.stats["batch_usage"] == 1 / 8 and high.stats["batch_usage"] == 1
    assert low.stats["codebook_entropy"] < high.stats["codebook_entropy"]
    assert low.losses["entropy"] > high.losses["entropy"]
    assert high.stats["codebook_entropy"] <= 2 * math.log(8) + 1e-5  # summed over two groups
    # Following the loss's gradient from the collapsed batch spreads it over more codes.
    z = collapsed.clone().requires_grad_()
    optimizer = torch.optim.SGD([z], lr=1e-3)
    for _ in range(20):
        optimizer.zero_grad()
        gq(z).losses["entropy"].backward()
        optimizer.step()
    after = gq(z.detach())
    assert after.stats["codebook_entropy"] > 2 * low.stats["codebook_entropy"]
    assert after.stats["batch_usage"] > 0.5 and after.stats["perplexity"] > 1.5


def test_gq_agrees_with_vector_quantize_pytorch_lfq() -> None:
    """Same codes and indices as the oracle's LFQ with G codebooks; entropies G x the oracle's.

    The oracle averages both entropies over its codebooks (our groups) where vtok sums them, and
    floors every probability at 1e-5 inside the log (vtok: the exact per-sample entropy, a 1e-12
    floor for the codebook term): hence a relative tolerance.
    """
    from vector_quantize_pytorch import LFQ as OracleLFQ

    gq = GroupLFQ(18, 3, temperature=0.05)
    oracle = OracleLFQ(dim=18, codebook_size=2**6, num_codebooks=3, diversity_gamma=1.0).train()
    assert not oracle.has_projections
    for scale in (0.05, 1.0):
        z = latents(18, seed=12, scale=scale)
        out = gq(z)
        (codes, indices, _), breakdown = oracle(z, inv_temperature=1 / 0.05, return_loss_breakdown=True)
        assert torch.equal(out.codes, codes)
        assert torch.equal(out.indices, rearrange(indices, "b t h w g -> b g t h w"))
        per_sample, codebook = out.stats["per_sample_entropy"], out.stats["codebook_entropy"]
        torch.testing.assert_close(per_sample, 3 * breakdown.per_sample_entropy, rtol=2e-3, atol=1e-4)
        torch.testing.assert_close(codebook, 3 * breakdown.batch_entropy, rtol=2e-3, atol=1e-4)


def test_gq_commitment_is_the_mse_to_the_signs_and_pulls_the_latents_to_them() -> None:
    """Its gradient too: the MSE to the codes (the signs plus a straight-through term) kept the value and lost the
    pull toward +-1 (found by a mutation review)."""
    z = latents(6, seed=10).requires_grad_()
    commitment = GroupLFQ(6, 3)(z).losses["commitment"]
    signs = torch.where(z.detach() > 0, 1.0, -1.0)
    torch.testing.assert_close(commitment, (z.detach() - signs).square().mean())
    commitment.backward()
    torch.testing.assert_close(z.grad, 2 * (z.detach() - signs) / z.numel())


def _distributed_worker(rank: int, world: int, init_file: str, z: torch.Tensor, results: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        local = z.chunk(world)[rank].clone().requires_grad_()
        with warnings.catch_warnings():
            warnings.simplefilter("error", FutureWarning)  # no deprecated collective: a warning on every training step
            out = GroupLFQ(6, 2, temperature=0.05)(local)
            out.losses["entropy"].backward()
        with torch.no_grad():  # no gradient, no collective: rank-local statistics
            local_entropy = GroupLFQ(6, 2, temperature=0.05)(local).stats["codebook_entropy"]
        # a training step whose encoder and quantizer are frozen for good: latents need no gradient, all ranks run it
        frozen = GroupLFQ(6, 2, temperature=0.05)(local.detach()).stats["codebook_entropy"]
        evaluated = GroupLFQ(6, 2, temperature=0.05).eval()(local.detach()).stats["codebook_entropy"]  # rank-local
        saved = {"codebook_entropy": out.stats["codebook_entropy"], "grad": local.grad, "local": local_entropy,
                 "frozen": frozen, "evaluated": evaluated}  # fmt: skip
        torch.save(saved, f"{results}.{rank}")
    finally:
        dist.destroy_process_group()


def test_gq_codebook_entropy_uses_the_average_over_all_ranks(tmp_path: Path) -> None:
    z = 0.05 * latents(6, seed=11, shape=(4, 1, 4, 4))
    z[:2] = z[:2].abs()  # rank 0 holds only code 7: its own codebook entropy would be near 0
    z.requires_grad_()
    whole = GroupLFQ(6, 2, temperature=0.05)(z)
    whole.losses["entropy"].backward()
    results = str(tmp_path / "rank")
    # spawn, not fork: autograd's worker threads, started by the backward above, do not survive a fork
    args = (2, str(tmp_path / "init"), z.detach(), results)
    mp.start_processes(_distributed_worker, args=args, nprocs=2, start_method="spawn")
    for rank in range(2):
        got = torch.load(f"{results}.{rank}")
        torch.testing.assert_close(got["codebook_entropy"], whole.stats["codebook_entropy"])
        torch.testing.assert_close(got["frozen"], whole.stats["codebook_entropy"])
        # Each rank's loss averages over its half of the batch, and the all-reduce carries the
        # global term's gradient back to every rank: world_size x the single-process gradient,
        # which DDP's gradient averaging divides back out.
        torch.testing.assert_close(got["grad"], 2 * z.grad.chunk(2)[rank])
        with torch.no_grad():
            alone = GroupLFQ(6, 2, temperature=0.05)(z.chunk(2)[rank]).stats["codebook_entropy"]
        torch.testing.assert_close(got["local"], alone)
        torch.testing.assert_close(got["evaluated"], alone)
    assert not torch.isclose(alone, whole.stats["codebook_entropy"])


def test_the_tokenizers_package_imports_only_torch_einops_and_itself() -> None:
    allowed = {"__future__", "abc", "collections", "contextlib", "dataclasses", "math", "torch", "einops", "vtok"}
    for path in PACKAGE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert name.split(".")[0] in allowed, f"{path.name} imports {name}"
                assert not name.startswith("vtok.") or name.startswith("vtok.tokenizers"), f"{path.name} imports {name}"
