"""Two Accelerate CPU processes write exactly the files one process writes.

``accelerate launch --cpu`` starts several processes only through mpirun, so the two CPU
processes are started the torchrun way (``--multi_gpu --num_processes 2``) with ``--device cpu``;
the build then runs them on the gloo backend. The build report must say 2 processes, proving the
work really was split (image i -> process i % 2).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from samrs_hf import cli
from samrs_hf.sources.samples import write_dior_sample

REPO = Path(__file__).resolve().parents[1]


def files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes()
            for d in ("images", "gray", "color", "ins") for p in sorted((out / d).iterdir())}



def test_two_processes_equal_one(tmp_path, torch_one_thread, free_port):
    # torchrun gives each of the 2 processes one intra-op thread (OMP_NUM_THREADS=1); the
    # 1-process build uses the same, since CPU float reductions may differ with the thread count.
    source = write_dior_sample(tmp_path / "dior")
    common = ["--source", str(source), "--model", "tiny-random", "--device", "cpu", "--no-progress", "--pkl"]
    one = tmp_path / "one"
    assert cli.main(["build", "sior", "--out", str(one), *common]) == 0

    two = tmp_path / "two"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port),
           str(REPO / "builders" / "build_sior.py"), "--out", str(two), *common]
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]

    assert files(two) == files(one)
    r1 = json.loads((one / "build.json").read_text())
    r2 = json.loads((two / "build.json").read_text())
    assert r2["run"]["num_processes"] == 2 and r1["run"]["num_processes"] == 1
    assert len(r2["run"]["timings"]["per_process"]) == 2
    # build.json differs only in the run section (process count, timings).
    r1.pop("run"), r2.pop("run")
    assert r1 == r2
    assert not (two / ".samrs_parts").exists()
