"""Callbacks for other trainers: a 2-layer GPT-2 (random init, no download) trained 50 steps by
transformers.Trainer, and a tiny Lightning module, each recorded into a store as it trains."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lmscale import accounting
from lmscale.models.spec import ModelSpec
from lmscale.store import Store
from lmscale.training.plan import log_spaced_steps

torch = pytest.importorskip("torch")

N_CTX, BATCH = 32, 8


def text_ids(limit: int) -> torch.Tensor:
    """Bytes of real text: the standard library's json and email packages."""
    import email
    import json as json_module
    from pathlib import Path

    data = b"".join(p.read_bytes() for d in (json_module, email) for p in sorted(Path(d.__file__).parent.glob("*.py")))
    return torch.tensor(list(data[:limit]), dtype=torch.long)


def windows(ids: torch.Tensor, count: int) -> torch.Tensor:
    return ids[: count * N_CTX].view(count, N_CTX)


def check_curve(store, total_steps: int, n_expected: int, batch_tokens: int, distributions: set[str]) -> dict:
    with Store(store, create=False) as st:
        runs, curves, losses = st.runs(), st.curves(), st.distribution_losses()
    assert len(runs) == 1
    run = runs.iloc[0].to_dict()
    assert run["status"] == "finished"
    assert run["non_embedding_params"] == n_expected  # [K] table 1, counted on the model
    assert curves["step"].tolist() == list(log_spaced_steps(total_steps, 8))  # lmscale's own schedule
    assert curves["D"].tolist() == [s * batch_tokens for s in curves["step"]]  # tokens from the batches
    np.testing.assert_allclose(curves["C"], 6.0 * n_expected * curves["D"], rtol=1e-12)
    assert set(losses["distribution"]) == distributions
    assert curves["loss"].iloc[-1] < curves["loss"].iloc[0] - 0.5  # it learned
    assert curves["train_loss"].notna().all() and curves["lr"].notna().all()
    prov = json.loads(run["provenance_json"])
    assert prov["derived"] == ["C"] and "lmscale.accounting" in prov["fields"]["N"]
    return run


def test_transformers_trainer(tmp_path):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    from lmscale.integrations.hf import LmscaleTrainerCallback

    class Windows(torch.utils.data.Dataset):
        def __init__(self, rows):
            self.rows = rows

        def __len__(self):
            return len(self.rows)

        def __getitem__(self, i):
            return {"input_ids": self.rows[i], "labels": self.rows[i]}

    torch.manual_seed(0)
    ids = text_ids(60_000)
    train, code, prose = windows(ids, 1600), windows(ids[-4096:], 32), windows(ids[-8192:-4096], 32)
    config = transformers.GPT2Config(n_layer=2, n_embd=64, n_head=2, n_positions=N_CTX, vocab_size=256,
                                     bos_token_id=0, eos_token_id=0)
    model = transformers.GPT2LMHeadModel(config)
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"), max_steps=50, per_device_train_batch_size=BATCH,
        per_device_eval_batch_size=32, learning_rate=3e-3, report_to=[], save_strategy="no",
        logging_strategy="no", eval_strategy="no", disable_tqdm=True, use_cpu=True, seed=0,
    )
    store = tmp_path / "hf.sqlite"
    callback = LmscaleTrainerCallback(store, run_name="gpt2-2x64", group="hf")
    trainer = transformers.Trainer(model=model, args=args, train_dataset=Windows(train),
                                   eval_dataset={"json": Windows(code), "email": Windows(prose)},
                                   callbacks=[callback])
    trainer.train()
    spec = ModelSpec(n_layer=2, d_model=64, n_head=2, n_ctx=N_CTX, n_vocab=256)
    n = accounting.non_embedding_params(spec)
    assert n == accounting.exact_non_embedding_params(model, include_biases_and_norms=False) == 12 * 2 * 64**2
    run = check_curve(store, 50, n, BATCH * N_CTX, {"json", "email"})
    assert (run["source"], run["source_run_name"], run["group"], run["train_distribution"]) == \
        ("transformers", "gpt2-2x64", "hf", "json")
    assert run["embedding_params"] == (256 + N_CTX) * 64  # token and position embeddings, head tied


def test_lightning_module(tmp_path):
    pytest.importorskip("lightning")
    import lightning.pytorch as pl
    import torch.nn.functional as F

    from lmscale.integrations.lightning import LmscaleLightningCallback
    from lmscale.models import build_model

    spec = ModelSpec(n_layer=2, d_model=32, n_head=2, n_ctx=N_CTX, n_vocab=256)

    class TinyLM(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.model = build_model(spec)

        def loss(self, batch):
            x, y = batch
            return F.cross_entropy(self.model(x).flatten(0, 1), y.flatten())

        def training_step(self, batch, batch_idx):
            return self.loss(batch)

        def validation_step(self, batch, batch_idx):
            self.log("val_loss", self.loss(batch))  # logs, returns nothing: the callback reads the log

        def configure_optimizers(self):
            return torch.optim.AdamW(self.parameters(), lr=3e-3)

    torch.manual_seed(0)
    ids = text_ids(80_000)
    x, y = windows(ids, 2000), windows(ids[1:], 2000)
    train = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x[:1920], y[:1920]), batch_size=BATCH,
                                        shuffle=True, drop_last=True)
    val = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x[1920:], y[1920:]), batch_size=40)
    store = tmp_path / "pl.sqlite"
    callback = LmscaleLightningCallback(store, val_dataloaders={"text": val}, run_name="tiny")
    trainer = pl.Trainer(max_steps=40, callbacks=[callback], logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
                         limit_val_batches=0, default_root_dir=str(tmp_path))
    module = TinyLM()
    trainer.fit(module, train)
    n = accounting.non_embedding_params(spec)
    assert n == accounting.exact_non_embedding_params(module, include_biases_and_norms=False)
    run = check_curve(store, 40, n, BATCH * N_CTX, {"text"})
    assert (run["source"], run["source_run_name"]) == ("lightning", "tiny")
    assert run["exact_non_embedding_params"] == accounting.exact_non_embedding_params(spec)
