"""Files written whole or not at all (lmscale.files): permissions, failures, concurrent writers."""

from __future__ import annotations

import json
import os
import stat
import threading
from pathlib import Path

import pytest

from lmscale.files import atomic_path, write_text_atomic
from lmscale.laws.result import dump_json


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_written_file_has_the_permissions_of_any_new_file(tmp_path, umask_022):
    # tempfile.mkstemp would leave 0600: a record a colleague cannot read
    write_text_atomic(tmp_path / "run.json", "{}")
    dump_json({"a": 1}, tmp_path / "fits.json")
    with atomic_path(tmp_path / "table.csv") as tmp:
        tmp.write_text("N,loss\n1,2\n")
    for name in ("run.json", "fits.json", "table.csv"):
        assert mode(tmp_path / name) == 0o644, name
    os.umask(0o077)
    write_text_atomic(tmp_path / "private.json", "{}")
    assert mode(tmp_path / "private.json") == 0o600


def test_a_failed_write_keeps_the_old_content_and_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "fits.json"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="half way"):
        with atomic_path(target) as tmp:
            tmp.write_text("new, half")
            raise RuntimeError("half way")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fits.json"]


def test_parent_folders_are_made_and_durable_writes_land(tmp_path):
    target = tmp_path / "a" / "b" / "record.json"
    write_text_atomic(target, "x" * 10_000, durable=True)
    assert target.read_text() == "x" * 10_000


def test_two_writers_of_one_path_do_not_write_into_each_other(tmp_path):
    # a fixed temporary name ("fits.json.tmp") let one writer rename the other's half-written file
    target = tmp_path / "fits.json"
    texts = [dump_json({"law": str(i) * 200_000}) for i in range(8)]
    errors: list[BaseException] = []

    def write(text: str) -> None:
        try:
            for _ in range(5):
                dump_json(json.loads(text), target)
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(t,)) for t in texts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert target.read_text() in texts  # one writer's text, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fits.json"]


def test_a_path_that_cannot_be_written_is_said_so_not_a_traceback(tmp_path, capsys):
    from lmscale.cli import main
    from lmscale.errors import LmscaleError
    from lmscale.files import writable

    folder = tmp_path / "results"
    folder.mkdir()
    with pytest.raises(LmscaleError, match="results: is a folder; give a file name to write the record to"):
        write_text_atomic(folder, "{}", what="the record")
    with pytest.raises(LmscaleError, match=r"/proc/none/x.json: cannot write it \("):
        write_text_atomic("/proc/none/x.json", "{}")
    with pytest.raises(LmscaleError, match="is a folder"):
        writable(folder)
    with pytest.raises(LmscaleError, match="cannot write the run record there"):
        writable("/proc/none/x.json", "the run record")
    assert writable(tmp_path / "new" / "run.json") == tmp_path / "new" / "run.json"  # its folder is made
    assert (tmp_path / "new").is_dir() and list(folder.iterdir()) == []

    runs = tmp_path / "runs.csv"
    runs.write_text("N,D,loss\n" + "\n".join(f"{n:g},{20 * n:g},{2 + 400 / n**0.3 + 400 / (20 * n)**0.3:.6f}"
                                              for n in (1e6, 3e6, 1e7, 3e7, 1e8)) + "\n")
    code = main(["fit", str(runs), "--law", "kaplan_n", "--bootstrap", "0", "--out", str(folder)])
    err = capsys.readouterr().err
    assert code == 2 and "is a folder; give a file name" in err and "Traceback" not in err


def test_a_folder_a_command_cannot_make_is_an_error_with_its_path(capsys):
    from lmscale.cli import main

    study = Path(__file__).resolve().parents[1] / "studies" / "smoke.toml"
    code = main(["sweep", "run", str(study), "--store", "/proc/none/s.sqlite", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.startswith("lmscale sweep: error: /proc/none: No such file or directory (a path this command had to")
