"""``lmscale model describe``: the [K] table 1 numbers from the command line."""

import json
import subprocess
import sys

import pytest

from lmscale.cli import main

GPT2 = [
    "--n-layer",
    "12",
    "--d-model",
    "768",
    "--n-head",
    "12",
    "--n-ctx",
    "1024",
    "--n-vocab",
    "50257",
]


def _run(*argv):
    return subprocess.run(
        [sys.executable, "-m", "lmscale", "model", "describe", *argv],
        capture_output=True,
        text=True,
    )


def test_gpt2_small_json_in_subprocess():
    result = _run(*GPT2, "--no-logits", "--no-embedding", "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["non_embedding_params"] == 84_934_656
    assert info["forward_flops_per_token"] == 188_743_680
    assert info["kaplan_forward_flops_per_token"] == 188_743_680
    assert info["exact_non_embedding_weight_params"] == 84_934_656
    # biases and layer norms: 12 blocks x (6 d + 3 d_attn + d_ff) + final norm 2 d
    assert info["exact_non_embedding_params"] == 84_934_656 + 12 * (9 * 768 + 3072) + 2 * 768
    assert info["embedding_params"] == (50257 + 1024) * 768
    assert info["total_params"] == 124_439_808  # the familiar "124M" of GPT-2 small
    assert info["forward_flops_breakdown"] == {
        "qkv": 2 * 12 * 768 * 3 * 768,
        "attention_mask": 2 * 12 * 1024 * 768,
        "projection": 2 * 12 * 768 * 768,
        "feedforward": 2 * 12 * 2 * 768 * 3072,
    }
    assert info["switches"] == {"attention": True, "logits": False, "embedding": False}
    assert info["training_flops_per_token_6n"] == 6 * 84_934_656
    assert info["logits_share"] == pytest.approx(
        2 * 768 * 50257 / (188_743_680 + 2 * 768 * 50257 + 4 * 768)
    )
    assert "logits" not in info["counting"]["forward_flops_per_token"]


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["--d-model", "100", "--n-head", "3"], "d_model = 100"),
        (["--n-layer", "0"], "n_layer = 0"),
        (["--n-vocab", "-7"], "n_vocab = -7"),
        (["--arch", "gru"], "'gru'"),
        (["--target-params", "10"], "target_N = 10"),
    ],
)
def test_bad_input_exit_2_without_traceback(argv, needle):
    result = _run(*argv)
    assert result.returncode == 2
    assert needle in result.stderr
    assert "Traceback" not in result.stderr


def test_table_text(capsys):
    assert main(["model", "describe", *GPT2]) == 0
    out = capsys.readouterr().out
    for number in ("84,934,656", "85,056,000", "188,743,680", "39,383,808", "77,194,752"):
        assert number in out
    assert "attention share" in out and "formula" in out and "exact" in out


def test_target_params_and_lstm(capsys):
    assert main(["model", "describe", "--target-params", "2e6", "--n-ctx", "128", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert abs(info["non_embedding_params"] / 2e6 - 1) <= 0.10
    assert info["target_relative_error"] == pytest.approx(info["non_embedding_params"] / 2e6 - 1)
    assert info["spec"]["n_ctx"] == 128
    assert (
        main(["model", "describe", "--arch", "lstm", "--n-layer", "2", "--d-model", "64", "--json"])
        == 0
    )
    info = json.loads(capsys.readouterr().out)
    assert info["non_embedding_params"] == 2 * 8 * 64**2
    assert info["exact_non_embedding_params"] == 2 * 8 * 64**2 + 2 * 8 * 64
    assert set(info["forward_flops_breakdown"]) == {"embedding", "lstm", "logits"}
    assert info["attention_share"] == 0


def test_help_teaches(capsys):
    for argv in (["model", "--help"], ["model", "describe", "--help"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 0
        out = capsys.readouterr().out
        assert "lmscale model describe --n-layer 12" in out
    assert "--target-params" in out and "2N + 2 n_layer n_ctx d_attn" in out


def test_every_help_page_renders(capsys):
    """`lmscale --help` and every sub-command's help format without error
    (a bare % in a help string breaks argparse's formatting)."""
    import argparse

    from lmscale.cli import build_parser

    def walk(parser, path):
        yield path
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield from walk(sub, path + [name])

    pages = list(walk(build_parser(), []))
    assert len(pages) > 15
    for argv in pages:
        with pytest.raises(SystemExit) as exc:
            main(argv + ["--help"])
        assert exc.value.code == 0, argv
        out = capsys.readouterr().out
        assert out.startswith("usage: lmscale"), argv
        # argparse's "(default: ...)" only where it says something
        flat = " ".join(out.split())
        assert not any(f"(default: {v})" in flat for v in ("None", "False", "[]")), argv
