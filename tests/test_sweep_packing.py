"""The sweep executor packs runs of one shape, and the plan says so."""

from __future__ import annotations

from pathlib import Path

from lmscale.store import Store
from lmscale.sweeps import load_study, run_sweep
from lmscale.sweeps.local import plan_tasks
from lmscale.sweeps.packing import MAX_PACK, plan_packs

ROOT = Path(__file__).resolve().parents[1]

SEEDS = """
[study]
name = "seeds"
data = { sources = ["python-stdlib", "python-docs"], vocab_size = 512, max_mb_per_source = 1 }
[study.defaults]
n_ctx = 32
batch_tokens = 1024
eval_tokens = 2048
tokens = 20480
shape = { n_layer = 1, d_model = 16, n_head = 2 }
[[group]]
name = "seeds"
seed = [0, 1, 2]
[[group]]
name = "lstm"
architecture = "lstm"
shape = { n_layer = 1, d_model = 16 }
"""


def test_kaplan_cpu_packs_runs_of_one_shape_and_batch():
    study = load_study(ROOT / "studies" / "kaplan-cpu.toml")
    packs = plan_packs(study.runs)
    assert sum(len(p) for p in packs) == len(study.runs)
    for pack in packs:
        assert len(pack) <= MAX_PACK
        assert len({r.config.pack_key() for r in pack}) == 1
        if len(pack) > 1:  # one Transformer shape and batch; budgets, dataset sizes and rules differ
            assert all(r.config.model.architecture == "transformer" for r in pack)
            assert len({(r.config.model, r.config.batch_tokens) for r in pack}) == 1
    by_shape = sorted(((p[0].config.model.n_layer, p[0].config.model.d_model), len(p)) for p in packs if len(p) > 1)
    # the data group's dataset sizes join the sizes group's two learning rates and the IsoFLOP runs
    # of their shape; the sizes scored on all the test text (d 32, 48, 80: a longer final
    # evaluation) pack apart from the other runs of their shape
    assert by_shape == [((2, 4), 2), ((2, 6), 3), ((2, 8), 3), ((2, 12), 4), ((2, 16), 4), ((2, 24), 8),
                        ((2, 28), 2), ((2, 32), 2), ((2, 32), 2), ((2, 40), 2), ((2, 48), 2), ((2, 48), 7),
                        ((2, 64), 8), ((2, 80), 2), ((2, 80), 2)]
    sizes_64 = next(p for p in packs if any(r.group == "sizes" and r.config.model.d_model == 64 for r in p))
    assert sorted(r.config.lr_scale for r in sizes_64 if r.group == "sizes") == [4.0, 8.0]
    data_packs = [p for p in packs if any(r.group == "data" for r in p)]
    assert all(len({r.group for r in p}) > 1 for p in data_packs)
    assert all(len(p) == 1 for p in packs if p[0].config.model.architecture == "lstm")
    # packing pays with several threads per task or on a GPU, not for one-thread CPU workers
    assert plan_tasks(study.runs, 2, None, None, 0) == ([[r] for r in study.runs], 2, 1)
    assert plan_tasks(study.runs, 2, None, None, 0, pack=True)[0] == packs
    assert plan_tasks(study.runs, 8, 2, None, 0)[0] == packs  # 4 threads per worker
    assert plan_tasks(study.runs, 8, None, None, 1)[0] == packs  # one GPU


def test_sweep_trains_packs(tmp_path):
    study_file = tmp_path / "seeds.toml"
    study_file.write_text(SEEDS)
    result = run_sweep(study_file, tmp_path / "seeds.sqlite", workers=1, progress=False, pack=True)
    assert result.counts == {"finished": 4}
    runs = Store(tmp_path / "seeds.sqlite").runs().set_index("run_id")
    study = load_study(study_file)
    packed = {r.run_id: runs.loc[r.run_id, "packed_with"] for r in study.runs}
    assert sorted(packed.values()) == [1, 3, 3, 3]  # three seeds in one pack, the LSTM alone
    assert set(runs["precision"]) == {"fp32"}  # d_model 16: too narrow for bf16 on any CPU
