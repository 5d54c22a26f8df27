"""Packing several short samples into one row without letting them see each other.

Two paths, both padding-free inside a row (each sample's position ids restart at 0, no
attention mask), and both checked before training by ``check_isolation``:

- flash-attention 2 (CUDA): TRL's own padding-free collator flattens the batch into one row;
  the varlen kernel attends within each sample only.
- ``segment_sdpa`` (CPU, or CUDA without flash-attn): an attention function registered with
  transformers that cuts each row at its position-id restarts and runs causal SDPA on each
  sample alone, so a sample costs what it costs unpacked. (transformers' own SDPA would also
  keep samples apart, with a block-diagonal mask built from the position ids, but computes the
  whole row-by-row square and repeats the GQA key/value heads: on the bench's tiny Llama,
  rows of 512 tokens trained 1.19x faster than unpacked that way against 1.44x this way, and
  rows of 1024 lost to unpacked.) The rows of a batch stay separate (``trainers.PackedCollator``).

Samples are packed whole, best-fit decreasing (TRL's ``bfd``): none is cut across rows.
"""
from __future__ import annotations

from curate.config import ConfigError

# the second sample's logits may move by at most this share of what seeing the first moves them
LEAK_TOLERANCE = 0.01


def pack(rows: list[dict], max_length: int) -> list[dict]:
    """Rows of input_ids/labels -> packed rows with ``seq_lengths``, each at most max_length."""
    from datasets import Dataset
    from datasets.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars
    from trl.data_utils import pack_dataset

    if not rows:
        return []
    quiet = are_progress_bars_disabled()
    disable_progress_bars()  # a "Map" bar per call, in the middle of the run's own report
    try:
        return pack_dataset(Dataset.from_list(rows), max_length, strategy="bfd").to_list()
    finally:
        if not quiet:
            enable_progress_bars()


def fill(rows: list[dict]) -> float:
    """Share of the packed rows' token slots that hold a sample (the rest is padding)."""
    longest = max((len(r["input_ids"]) for r in rows), default=0)
    return sum(len(r["input_ids"]) for r in rows) / max(1, longest * len(rows))


def position_ids(seq_lengths: list[int]) -> list[int]:
    return [i for n in seq_lengths for i in range(n)]


SEGMENT_ATTENTION = "segment_sdpa"


def segment_attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None,
                      position_ids=None, **kwargs):
    """Causal SDPA per packed sample: query (batch, heads, length, dim) -> (batch, length, heads, dim).
    Samples are the runs of a row between position-id restarts. Without position ids (a model
    whose layers do not pass them on) it attends across the row, and check_isolation refuses."""
    import torch
    import torch.nn.functional as F

    unsupported = [k for k in ("softcap", "s_aux", "sinks") if kwargs.get(k) is not None]
    if unsupported:
        raise ConfigError(f"packing: true without flash-attention supports plain causal attention; this model's "
                          f"attention uses {', '.join(unsupported)}; set packing: false")
    window = kwargs.get("sliding_window")
    batch, _, length, _ = query.shape
    gqa = query.shape[1] != key.shape[1]
    if position_ids is None:
        position_ids = torch.arange(length, device=query.device)[None]
    restarts = (position_ids.expand(batch, -1) == 0).cpu()
    rows = []
    for b in range(batch):
        starts = restarts[b].nonzero().flatten().tolist()
        if not starts or starts[0] != 0:
            starts = [0] + starts
        cuts = list(zip(starts, starts[1:] + [length]))
        if window and any(e - s > window for s, e in cuts):
            raise ConfigError(f"packing: true without flash-attention cannot apply this model's sliding window "
                              f"({window} tokens) to a longer sample; set packing: false or max_length <= {window}")
        rows.append(torch.cat([
            F.scaled_dot_product_attention(query[b:b + 1, :, s:e], key[b:b + 1, :, s:e], value[b:b + 1, :, s:e],
                                           is_causal=True, dropout_p=dropout, scale=scaling, enable_gqa=gqa)
            for s, e in cuts], dim=2))
    return torch.cat(rows).transpose(1, 2).contiguous(), None


def check_window(config, max_length: int | None) -> None:
    """Refuse segment attention for a model config with sliding-window layers whose window is
    shorter than max_length: from the config alone, so before any weight is read (and in --dry-run)."""
    config = config.get_text_config()
    window = getattr(config, "sliding_window", None)
    layer_types = getattr(config, "layer_types", None)
    windowed = ("sliding_attention" in layer_types) if layer_types else getattr(config, "use_sliding_window", True)
    if window and windowed and max_length and max_length > window:
        raise ConfigError(f"packing: true without flash-attention cannot apply this model's sliding window "
                          f"({window} tokens) to samples of up to max_length {max_length}; set packing: false "
                          f"or max_length <= {window}")


def use_segment_attention(model, max_length: int | None = None) -> str:
    """Switch a loaded model to ``segment_sdpa`` (registered with transformers on first use).
    A model with sliding-window layers is refused here when a sample can outgrow the window."""
    from transformers import AttentionInterface

    check_window(model.config, max_length)
    AttentionInterface.register(SEGMENT_ATTENTION, segment_attention)
    model.set_attn_implementation(SEGMENT_ATTENTION)
    return SEGMENT_ATTENTION


def check_isolation(model, attention: str) -> float:
    """Two random samples A and C, packed in one row: C's logits must equal C's logits alone.
    Returns the leak (max change of C's logits as a share of the change when C does see A);
    refuses the run when it exceeds LEAK_TOLERANCE. Called the way training calls the model
    (no KV cache, no attention mask), so it checks the attention path that will train."""
    import torch

    vocab = model.get_input_embeddings().num_embeddings
    device = model.get_input_embeddings().weight.device
    g = torch.Generator().manual_seed(0)
    a, c = (torch.randint(0, vocab, (1, 16), generator=g).to(device) for _ in range(2))
    both = torch.cat([a, c], dim=1)
    restart = torch.cat([torch.arange(16), torch.arange(16)])[None].to(device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            alone = model(input_ids=c, use_cache=False).logits.float()
            packed = model(input_ids=both, position_ids=restart, use_cache=False).logits[:, 16:].float()
            joined = model(input_ids=both, use_cache=False).logits[:, 16:].float()
    finally:
        model.train(was_training)
    scale = (joined - alone).abs().max().item()
    leak = (packed - alone).abs().max().item() / scale if scale > 0 else 0.0
    if not leak <= LEAK_TOLERANCE:  # also refuses NaN
        raise ConfigError(f"packing: true is refused: with attention '{attention}' this model lets packed samples "
                          f"attend to each other (checked: a sample's logits moved {leak:.0%} as much as when it "
                          "follows another unpacked); set packing: false")
    return leak
