"""Training-step throughput of lmscale's models on CPU, against torch's own layers.

Baseline, measured in the same run: the same shape built from
``torch.nn.TransformerEncoder`` (pre-LN, GELU, causal mask). Prints tokens/s
of forward + backward for each model (round-robin, median), the ratio to the baseline (higher is
better), and a final JSON line.

    .venv/bin/python benchmarks/bench_models.py
"""

from __future__ import annotations

import json
import statistics
import time

import torch
from torch import nn

from lmscale.models import ModelSpec, build_model

SPEC = ModelSpec(n_layer=4, d_model=128, n_head=4, n_ctx=128, n_vocab=4096)
BATCH = 8
REPEATS = 7
ARCHS = ("transformer", "universal", "lstm")


class TorchEncoderLM(nn.Module):
    """The baseline: the same shape out of torch.nn layers."""

    def __init__(self, spec: ModelSpec):
        super().__init__()
        self.wte = nn.Embedding(spec.n_vocab, spec.d_model)
        self.wpe = nn.Embedding(spec.n_ctx, spec.d_model)
        layer = nn.TransformerEncoderLayer(
            spec.d_model,
            spec.n_head,
            spec.d_ff,
            dropout=0.0,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, spec.n_layer, enable_nested_tensor=False)
        self.ln_f = nn.LayerNorm(spec.d_model)
        self.lm_head = nn.Linear(spec.d_model, spec.n_vocab, bias=False)
        self.lm_head.weight = self.wte.weight
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(spec.n_ctx))

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        t = idx.shape[1]
        x = self.wte(idx) + self.wpe.weight[:t]
        x = self.encoder(x, mask=self.mask[:t, :t], is_causal=True)
        return self.lm_head(self.ln_f(x))


def _step(model: nn.Module, idx: torch.Tensor, n_vocab: int) -> float:
    """Seconds of one forward + cross-entropy + backward."""
    start = time.perf_counter()
    logits = model(idx)
    loss = nn.functional.cross_entropy(logits.view(-1, n_vocab), idx.view(-1))
    loss.backward()
    model.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def main() -> None:
    torch.manual_seed(0)
    specs = {"baseline": SPEC}
    specs.update({a: ModelSpec(**{**SPEC.to_dict(), "architecture": a}) for a in ARCHS})
    models = {"baseline": TorchEncoderLM(SPEC)}
    models.update({a: build_model(specs[a]) for a in ARCHS})
    idx = torch.randint(0, SPEC.n_vocab, (BATCH, SPEC.n_ctx))
    times: dict[str, list[float]] = {name: [] for name in models}
    # Round-robin, so that a change of load on a shared machine hits every model alike.
    for i in range(REPEATS + 1):
        for name, model in models.items():
            seconds = _step(model.train(), idx, SPEC.n_vocab)
            if i:  # the first round warms up
                times[name].append(seconds)
    tps = {name: BATCH * SPEC.n_ctx / statistics.median(t) for name, t in times.items()}
    base = tps["baseline"]
    print(f"baseline torch.nn.TransformerEncoder: {base:,.0f} tokens/s (median of {REPEATS})")
    results = {}
    for arch in ARCHS:
        results[arch] = {
            "tokens_per_s": round(tps[arch]),
            "ratio_to_baseline": round(tps[arch] / base, 3),
        }
        print(f"{arch:<12} {tps[arch]:>10,.0f} tokens/s   x{tps[arch] / base:.2f} of baseline")
    shape = {k: SPEC.to_dict()[k] for k in ("n_layer", "d_model", "n_head", "n_ctx", "n_vocab")}
    print(
        json.dumps(
            {
                "bench": "models",
                "threads": torch.get_num_threads(),
                "batch": BATCH,
                "shape": shape,
                "baseline_tokens_per_s": round(base),
                **results,
            }
        )
    )


if __name__ == "__main__":
    main()
