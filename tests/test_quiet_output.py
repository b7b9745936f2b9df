"""What a normal run prints: results, no MXNet engine log lines, and a progress counter only
when stderr is a terminal (checked on a real pseudo-terminal and in a pipe).

MXNet's graph executor logs a line per bind when MXNET_SUBGRAPH_BACKEND=NONE and another when it
activates MKL-DNN; ssdconv runs MXNet through CachedOp, which does neither, so the same files
come out whatever the variable says.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from pathlib import Path

ZOO = "ssd_300_mobilenet0.25_voc"
# dmlc's log prefix ("[09:21:56] ../src/executor/graph_executor.cc:60: ...") and MXNet's words
MXNET_LOG = re.compile(r"^\[\d\d:\d\d:\d\d\] |MXNET_|[Ss]ubgraph backend", re.M)


def _env(**changes: str | None) -> dict[str, str]:
    env = dict(os.environ)
    for key, value in changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def _cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ssdconv", *args], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=600)


def test_convert_and_verify_print_no_mxnet_log_lines(tmp_path, sample_images):
    written = {}
    for backend in (None, "NONE", "MKLDNN"):  # unset: MXNet 1.9.1 would activate MKL-DNN
        out = f"out_{backend}"
        res = _cli("convert", ZOO, "--seed", "0", "--target", "all", "-o", out,
                   "--verify", sample_images[0], env=_env(MXNET_SUBGRAPH_BACKEND=backend),
                   cwd=tmp_path)
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
        assert "verdict: PASS" in res.stdout
        assert MXNET_LOG.findall(res.stdout + res.stderr) == [], res.stderr
        assert "\r" not in res.stderr and "images checked" not in res.stderr  # a pipe: no counter
        written[backend] = {p.name: p.read_bytes() for p in (tmp_path / out).iterdir()
                            if p.suffix in (".bin", ".caffemodel", ".param", ".prototxt")}
    assert len(written[None]) == 4
    assert written[None] == written["NONE"] == written["MKLDNN"], \
        "MXNET_SUBGRAPH_BACKEND changed the converted files"


def _on_terminal(args: list[str], cwd: Path) -> tuple[str, str, int]:
    """Run with stderr on a pseudo-terminal and stdout in a pipe: (terminal text, stdout, rc)."""
    master, slave = os.openpty()
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=slave, cwd=cwd)
    os.close(slave)
    stdout: list[bytes] = []
    reader = threading.Thread(target=lambda: stdout.append(proc.stdout.read()))
    reader.start()
    seen = b""
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:  # EIO: the child closed the terminal (it exited)
            break
        if not data:
            break
        seen += data
    rc = proc.wait(timeout=600)
    reader.join()
    os.close(master)
    return seen.decode(errors="replace"), stdout[0].decode(), rc


def test_verify_counts_images_on_a_terminal(tmp_path, sample_images):
    images = sample_images[:3]
    seen, out, rc = _on_terminal([sys.executable, "-m", "ssdconv", "verify", ZOO, "--seed", "0",
                                  "--target", "caffe", *images], tmp_path)
    assert rc == 0, out + seen
    for done in range(1, len(images) + 1):
        assert f"\r  {done}/{len(images)} images checked" in seen, repr(seen)
    assert seen.rstrip(" ").endswith("\r"), repr(seen[-80:])  # the counter line is erased
    assert MXNET_LOG.findall(seen) == []
    assert "verdict: PASS" in out and "\r" not in out  # results on stdout, without the counter


def test_eval_counts_images_on_a_terminal_and_not_in_a_pipe(tmp_path):
    seen, out, rc = _on_terminal([sys.executable, "-m", "ssdconv", "eval", "-n", "2"], tmp_path)
    assert rc == 0, out + seen
    assert "\r  1/2 images evaluated" in seen and "\r  2/2 images evaluated" in seen, repr(seen)
    assert "VOC07 mAP@0.5 on 2 held-out" in out and "\r" not in out

    res = _cli("eval", "-n", "2", env=_env(), cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "images evaluated" not in res.stderr and "\r" not in res.stderr, res.stderr
    assert res.stdout == out  # the same results either way
