"""``lmscale train`` end to end on shards prepared from real text."""

import json
import sysconfig
from pathlib import Path

import pytest

pytest.importorskip("torch")
data_mod = pytest.importorskip("lmscale.data")

from lmscale.cli import main  # noqa: E402
from lmscale.training import RunRecord  # noqa: E402

STDLIB = Path(sysconfig.get_paths()["stdlib"])


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    out = tmp_path_factory.mktemp("shards") / "bytes"
    data_mod.prepare([f"code=glob:{STDLIB}/a*.py", f"email=glob:{STDLIB}/email/*.py"], out,
                     tokenizer="byte", progress=False, min_test_tokens=4096)
    return out


ARGS = ["--n-layer", "1", "--d-model", "32", "--n-head", "2", "--n-ctx", "32",
        "--batch-tokens", "256", "--threads", "1", "--no-progress", "--lr", "3e-3"]


def test_train_json_and_record(shards, tmp_path, capsys):
    out = tmp_path / "run.json"
    code = main(["train", "--data", str(shards), "--steps", "30", "--eval-tokens", "2048",
                 "--out", str(out), "--json", *ARGS])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["status"] == "finished" and summary["steps"] == 30
    assert summary["tokens_per_second"] > 0 and 0 < summary["mfu"] < 1.5
    assert set(summary["final_test_loss"]) == {"code", "email"}
    assert summary["final_test_loss"]["code"] < 5.0  # below ln(256) = 5.55 after 30 steps
    record = RunRecord.from_dict(json.loads(out.read_text()))
    assert record.config["model"]["n_vocab"] == 256  # the data's vocabulary by default
    assert record.final_test_loss == summary["final_test_loss"]
    assert len(record.per_position_loss) == 32


def test_train_text_output_and_resume(shards, tmp_path, capsys):
    argv = ["train", "--data", str(shards), "--tokens", "2560", "--eval-tokens", "1024",
            "--checkpoint-dir", str(tmp_path / "ck"), *ARGS]
    assert main(argv) == 0
    first = capsys.readouterr().out
    assert "finished after 10 steps" in first and "tokens/s" in first
    assert main(argv) == 0  # the finished run's record comes back from its checkpoint
    assert capsys.readouterr().out.splitlines()[:2] == first.splitlines()[:2]


@pytest.mark.parametrize("extra, message", [
    (["--n-vocab", "100", "--steps", "5"], "n_vocab = 100"),
    (["--tokens", "100"], "smaller than one step"),
    (["--steps", "5", "--n-layer", "200", "--d-model", "16384", "--n-head", "128"], "needs about"),
    (["--steps", "5", "--out", "/"], "/: is a folder; give a file name to write the run record to"),
    (["--steps", "5", "--out", "/proc/none/run.json"], "cannot write the run record there"),
])
def test_bad_input_exits_2_before_training(shards, capsys, extra, message):
    args = list(ARGS)
    for flag in ("--n-layer", "--d-model", "--n-head"):
        if flag in extra:
            i = args.index(flag)
            del args[i:i + 2]
    code = main(["train", "--data", str(shards), *args, *extra])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err


def test_missing_data_dir(tmp_path, capsys):
    code = main(["train", "--data", str(tmp_path / "nowhere"), "--steps", "5", *ARGS])
    assert code == 2 and "nowhere" in capsys.readouterr().err
