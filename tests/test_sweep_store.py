"""The sweep folder store (`multimodal_dln.sweeps._store`): one writer, no symbolic link
followed, nothing replaced without a flag, resume checks, torn-write recovery, one-line errors.

Crashes and concurrent writers are real (a subprocess killed with SIGKILL, a second process);
a full disk and, when running as root, a read-only folder are simulated by patching `os`.
"""

import errno
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from multimodal_dln._io import fmt_cell
from multimodal_dln.sweeps import _store
from multimodal_dln.sweeps._store import FORMAT, Store, SweepError

COLS = ("seed", "lr", "name", "ok")
KEYS = ("seed", "lr")
CFG = {"depth": 2, "u0": 1e-12, "method": "flow"}
REPO = Path(__file__).resolve().parents[1]


def store(out, mode="new", config=CFG, columns=COLS):
    return Store(out, columns=columns, key_columns=KEYS, config=config, mode=mode)


def chunk(start, n=3):
    return [
        {"seed": i, "lr": 0.1 * i, "name": f'm{i}, "q"\nline 2', "ok": i % 2 == 0}
        for i in range(start, start + n)
    ]


def written(rows):
    return [{c: fmt_cell(r.get(c)) for c in COLS} for r in rows]


def check_message(err, path):
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg, msg
    return msg


def run_python(code, *args, **kw):
    env = {**os.environ, "PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu"}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


# ------------------------------------------------------------------------------------------------
# Round trip, files
# ------------------------------------------------------------------------------------------------
def test_round_trip_and_files(tmp_path):
    out = tmp_path / "a" / "b"  # parents created
    odd = [
        {"seed": 7, "lr": np.float32(0.1), "name": None, "ok": np.bool_(True)},
        {"seed": 8, "lr": 1e-300, "name": "", "ok": False},
        {"seed": 9, "lr": math.nan, "name": "x", "ok": None},
    ]
    with store(out) as st:
        assert st.rows == [] and st.done == set()
        st.append(chunk(0))
        st.append(odd)
        assert len(st.done) == 6
    assert sorted(p.name for p in out.iterdir()) == [".lock", "config.json", "results.csv"]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg == {**CFG, "format": FORMAT, "columns": list(COLS)}
    with store(out, "resume") as st:
        assert st.rows == written(chunk(0) + odd)
        assert st.done == {(r["seed"], r["lr"]) for r in written(chunk(0) + odd)}
        assert float(st.rows[3]["lr"]) == float(np.float32(0.1))  # exact round trip
        assert float(st.rows[4]["lr"]) == 1e-300 and st.rows[5]["lr"] == ""
        assert [r["ok"] for r in st.rows[3:]] == ["True", "False", ""]
        assert st.rows[0]["name"] == 'm0, "q"\nline 2'


def test_append_refuses_duplicates_and_unknown_columns(tmp_path):
    with store(tmp_path) as st:
        st.append(chunk(0))
        before = st.results_path.read_bytes()
        with pytest.raises(ValueError, match="already stored"):
            st.append(chunk(2))  # member 2 again
        with pytest.raises(ValueError, match="already stored"):
            st.append(chunk(5, 1) * 2)  # twice in one chunk
        with pytest.raises(ValueError, match="columns the store does not have"):
            st.append([{"seed": 5, "lr": 0.5, "extra": 1}])
        with pytest.raises(ValueError, match="lacks the key columns"):
            st.append([{"seed": 5}])
        assert st.results_path.read_bytes() == before
    with pytest.raises(ValueError, match="closed"):
        st.append(chunk(10))


# ------------------------------------------------------------------------------------------------
# Rule 1: one writer
# ------------------------------------------------------------------------------------------------
def test_lock_in_process(tmp_path):
    first = store(tmp_path)
    assert (tmp_path / ".lock").read_text().strip() == str(os.getpid())
    with pytest.raises(SweepError) as err:
        store(tmp_path, "resume")
    msg = check_message(err, tmp_path)
    assert "another sweep" in msg and f"pid {os.getpid()}" in msg
    first.close()
    first.close()  # harmless
    store(tmp_path, "resume").close()  # the lock is free again


def test_lock_across_processes(tmp_path):
    code = """
        import sys
        from multimodal_dln.sweeps._store import Store, SweepError
        try:
            Store(sys.argv[1], columns=["seed", "lr"], key_columns=["seed"], config={},
                  mode="resume")
        except SweepError as err:
            print(err)
            sys.exit(3)
    """
    with store(tmp_path):
        proc = run_python(code, tmp_path)
        stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 3, stderr
    msg = stdout.strip()
    assert "another sweep is writing to" in msg and str(tmp_path) in msg
    assert f"pid {os.getpid()}" in msg and "\n" not in msg


def test_sigkill_mid_sweep_then_resume(tmp_path):
    code = """
        import sys, time
        from multimodal_dln.sweeps._store import Store
        cols = ["seed", "lr", "name", "ok"]
        with Store(sys.argv[1], columns=cols, key_columns=["seed", "lr"], config={"d": 2}) as st:
            print("open", flush=True)
            i = 0
            while True:
                st.append([{"seed": j, "lr": 0.1 * j, "name": f'm{j}, "q"\\nline 2', "ok": True}
                           for j in range(i, i + 5)])
                i += 5
                time.sleep(0.002)
    """
    proc = run_python(code, tmp_path)
    try:
        assert proc.stdout.readline().strip() == "open", proc.stderr.read()
        results = tmp_path / "results.csv"
        deadline = time.monotonic() + 60
        while results.read_text().count("line 2") < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    with store(tmp_path, "resume", config={"d": 2}) as st:  # the lock died with the process
        n = len(st.rows)
        assert n >= 2 and n % 5 == 0  # whole chunks only
        assert [r["seed"] for r in st.rows] == [str(j) for j in range(n)]
        assert all(r["name"] == f'm{j}, "q"\nline 2' for j, r in enumerate(st.rows))
        st.append([{"seed": n, "lr": 0.1 * n, "name": "after", "ok": False}])
    with store(tmp_path, "resume", config={"d": 2}) as st:
        assert len(st.rows) == n + 1


# ------------------------------------------------------------------------------------------------
# Rule 2: no symbolic link followed
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["new", "resume", "overwrite"])
@pytest.mark.parametrize("name", ["results.csv", "config.json", ".lock"])
def test_symlink_refused(tmp_path, name, mode):
    out, target = tmp_path / "out", tmp_path / "outside.txt"
    out.mkdir()
    target.write_text("precious\n")
    (out / name).symlink_to(target)
    with pytest.raises(SweepError) as err:
        store(out, mode)
    assert "symbolic link" in check_message(err, out / name)
    assert target.read_text() == "precious\n"
    assert (out / name).is_symlink()


def test_config_temp_file_is_unique(tmp_path):
    target = tmp_path / "outside.txt"
    target.write_text("precious\n")
    out = tmp_path / "out"
    out.mkdir()
    for tmp in ("config.json.tmp", ".config.json.tmp"):
        (out / tmp).symlink_to(target)
    store(out).close()
    assert target.read_text() == "precious\n"
    names = sorted(p.name for p in out.iterdir())
    assert names == [".config.json.tmp", ".lock", "config.json", "config.json.tmp", "results.csv"]


# ------------------------------------------------------------------------------------------------
# Rule 3: nothing deleted or replaced without a flag
# ------------------------------------------------------------------------------------------------
def test_new_refuses_an_existing_sweep(tmp_path):
    with store(tmp_path) as st:
        st.append(chunk(0))
    files = {p: p.read_bytes() for p in (tmp_path / "results.csv", tmp_path / "config.json")}
    for config in (CFG, {**CFG, "depth": 3}):
        with pytest.raises(SweepError) as err:
            store(tmp_path, config=config)
        msg = check_message(err, tmp_path)
        assert "already holds a sweep (3 rows)" in msg and "resume" in msg
    assert {p: p.read_bytes() for p in files} == files


def test_new_refuses_another_config_without_rows(tmp_path):
    store(tmp_path).close()
    store(tmp_path).close()  # same config, no row: nothing to lose
    with pytest.raises(SweepError, match=r"already holds a sweep \(0 rows\)"):
        store(tmp_path, config={**CFG, "depth": 3})
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(SweepError, match="already holds a sweep"):
        store(tmp_path)
    (tmp_path / "config.json").unlink()
    (tmp_path / "results.csv").write_text("other,header\n")  # not this sweep's file
    with pytest.raises(SweepError, match=r"already holds a sweep \(0 rows\)"):
        store(tmp_path)
    assert (tmp_path / "results.csv").read_text() == "other,header\n"


def test_overwrite_moves_the_old_sweep_aside(tmp_path):
    with store(tmp_path) as st:
        st.append(chunk(0))
    old = {n: (tmp_path / n).read_bytes() for n in ("results.csv", "config.json")}
    with store(tmp_path, "overwrite", config={**CFG, "depth": 3}) as st:
        assert st.rows == [] and st.done == set()
        st.append(chunk(10, 1))
    (aside,) = tmp_path.glob("replaced-*")
    assert {n: (aside / n).read_bytes() for n in old} == old
    with store(tmp_path, "resume", config={**CFG, "depth": 3}) as st:
        assert st.rows == written(chunk(10, 1))
    with store(tmp_path, "overwrite") as st:  # a second replacement gets its own folder
        pass
    assert len(list(tmp_path.glob("replaced-*"))) == 2


def test_overwrite_and_new_on_a_file_that_is_not_csv(tmp_path):
    (tmp_path / "results.csv").write_bytes(b"\xff\xfe binary\n")
    with pytest.raises(SweepError, match=r"already holds a sweep \(0 rows\)"):
        store(tmp_path)
    with pytest.raises(SweepError) as err:
        store(tmp_path, "resume")
    assert "not UTF-8" in check_message(err, tmp_path / "results.csv")
    store(tmp_path, "overwrite").close()
    (aside,) = tmp_path.glob("replaced-*")
    assert (aside / "results.csv").read_bytes() == b"\xff\xfe binary\n"


def test_out_dir_is_a_file_or_under_one(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    for out in (f, f / "sub"):
        with pytest.raises(SweepError) as err:
            store(out)
        assert "cannot create" in check_message(err, out)
    assert f.read_text() == "x"


# ------------------------------------------------------------------------------------------------
# Rule 4: resume checks the settings
# ------------------------------------------------------------------------------------------------
def test_resume_refuses_another_config(tmp_path):
    with store(tmp_path) as st:
        st.append(chunk(0))
    for config, key in (({**CFG, "u0": 1.0000000000000002e-12}, "u0"), ({**CFG, "x": 1}, "x")):
        with pytest.raises(SweepError) as err:
            store(tmp_path, "resume", config=config)
        msg = check_message(err, tmp_path)
        assert f"{key} = " in msg and "this run has" in msg
    with pytest.raises(SweepError) as err:
        store(tmp_path, "resume", config={**CFG, "u0": 2e-12})
    assert "u0 = 1e-12, this run has u0 = 2e-12" in str(err.value)
    with pytest.raises(SweepError, match="depth = 2, this run has depth = True"):
        store(tmp_path, "resume", config={**CFG, "depth": True})
    store(tmp_path, "resume", config={**CFG, "depth": 2.0}).close()  # equal value


def test_resume_refuses_other_columns(tmp_path):
    with store(tmp_path) as st:
        st.append(chunk(0))
    for cols, where in (
        (("seed", "lr", "label", "ok"), "column 3 is 'name', this sweep's is 'label'"),
        (COLS + ("extra",), "column 5 is '(none)', this sweep's is 'extra'"),
    ):
        with pytest.raises(SweepError) as err:
            store(tmp_path, "resume", columns=cols)
        assert where in check_message(err, tmp_path)


def test_resume_without_config_json(tmp_path):
    with store(tmp_path) as st:
        st.append(chunk(0))
    (tmp_path / "config.json").unlink()
    with store(tmp_path, "resume", config={**CFG, "depth": 5}) as st:
        assert st.rows == written(chunk(0))
    assert json.loads((tmp_path / "config.json").read_text())["depth"] == 5


def test_resume_on_an_empty_or_missing_folder(tmp_path):
    for out in (tmp_path / "missing", tmp_path):
        with store(out, "resume") as st:
            assert st.rows == [] and st.done == set()
            st.append(chunk(0))
        assert (out / "results.csv").read_text().startswith("seed,lr,name,ok\n")


# ------------------------------------------------------------------------------------------------
# Rule 5: torn writes
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["resume", "overwrite"])
def test_torn_last_row_is_dropped(tmp_path, mode):
    with store(tmp_path) as st:
        st.append(chunk(0))
    results = tmp_path / "results.csv"
    whole = results.read_bytes()
    torn = b'3,0.30000000000000004,"m3, ""q""\nli'  # cut inside a quoted cell after its line end
    results.write_bytes(whole + torn)
    with pytest.warns(UserWarning, match=f"dropped {len(torn)} bytes"):
        st = store(tmp_path, mode)
    with st:
        if mode == "resume":
            assert st.rows == written(chunk(0))
            assert results.read_bytes() == whole
            st.append(chunk(3))
        else:
            (aside,) = tmp_path.glob("replaced-*")
            assert (aside / "results.csv").read_bytes() == whole
    if mode == "resume":
        with store(tmp_path, "resume") as st:
            assert st.rows == written(chunk(0) + chunk(3))


@pytest.mark.parametrize("mode", ["new", "resume"])
def test_torn_header_is_rewritten(tmp_path, mode):
    store(tmp_path).close()
    results = tmp_path / "results.csv"
    results.write_bytes(b"seed,l")
    with pytest.warns(UserWarning, match="dropped 6 bytes"):
        st = store(tmp_path, mode)
    with st:
        assert st.rows == []
        assert results.read_bytes() == b"seed,lr,name,ok\n"
        st.append(chunk(0))
    with store(tmp_path, "resume") as st:
        assert st.rows == written(chunk(0))


# ------------------------------------------------------------------------------------------------
# Rule 7: I/O failures are one line and lose nothing
# ------------------------------------------------------------------------------------------------
def test_full_disk_mid_append(tmp_path, monkeypatch):
    st = store(tmp_path)
    st.append(chunk(0))
    first = st.results_path.read_bytes()
    real_write, calls = os.write, []

    def write(fd, data):
        calls.append(len(data))
        if len(calls) == 1:
            return real_write(fd, bytes(data)[: len(data) // 2])  # part of the chunk lands
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(_store.os, "write", write)
    with pytest.raises(SweepError) as err:
        st.append(chunk(3))
    msg = check_message(err, st.results_path)
    assert "No space left on device" in msg and "the 3 rows written before are kept" in msg
    assert len(calls) == 2 and st.results_path.read_bytes() == first
    monkeypatch.undo()
    st.append(chunk(6))  # the store goes on where it was
    st.close()
    with store(tmp_path, "resume") as st:
        assert st.rows == written(chunk(0) + chunk(6))


def test_read_only_folder(tmp_path, monkeypatch):
    with store(tmp_path) as st:
        st.append(chunk(0))
    before = (tmp_path / "results.csv").read_bytes()
    os.chmod(tmp_path, 0o500)
    try:
        if os.access(tmp_path, os.W_OK):  # root: simulate what the kernel would refuse
            real_open = os.open

            def fake_open(path, flags, *args, **kw):
                writes = flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
                if writes and Path(path).parent == tmp_path:
                    raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
                return real_open(path, flags, *args, **kw)

            monkeypatch.setattr(_store.os, "open", fake_open)
        for mode in ("resume", "new"):
            with pytest.raises(SweepError) as err:
                store(tmp_path, mode)
            msg = check_message(err, tmp_path)
            assert "Permission denied" in msg
    finally:
        monkeypatch.undo()
        os.chmod(tmp_path, 0o700)
    assert (tmp_path / "results.csv").read_bytes() == before


def test_write_refused_after_an_outside_change(tmp_path):
    with store(tmp_path) as st:
        st.append(chunk(0))
        with open(st.results_path, "a") as fh:
            fh.write("9,0.9,x,True\n")
        with pytest.raises(SweepError) as err:
            st.append(chunk(3))
        assert "changed outside the sweep" in check_message(err, st.results_path)


def test_bad_arguments():
    with pytest.raises(ValueError, match="mode"):
        store("unused", mode="append")
    with pytest.raises(ValueError, match="key_columns"):
        Store("unused", columns=COLS, key_columns=("nope",), config={})
    with pytest.raises(ValueError, match="own keys"):
        store("unused", config={"columns": 1})
