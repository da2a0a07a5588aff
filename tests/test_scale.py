"""Full-SAMRS scale (issue 20, target 5): SEP trains from streamed datasets with the map-style run's
proportional batches, and a 2-machine labeling launch (two processes on one host, distinct machine ranks)
writes what one process writes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from samrs_hf.sep.pretrain import SEPTrainer, TrainArgs
from samrs_hf.sep.streaming import StreamingBatchSampler, open_streams, shuffled, split_size
from samrs_hf.sep.synthetic import write_synthetic_subset

REPO = Path(__file__).resolve().parents[1]
SIZES = {"sota": 6, "sior": 9, "fast": 15}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("scale-data")
    return {s: str(write_synthetic_subset(root / s, s, num_train=n, num_val=4, size=48, seed=i))
            for i, (s, n) in enumerate(SIZES.items())}


def small_args(data, out, **kw) -> TrainArgs:
    base = dict(datasets=dict(data), output_dir=str(out), backbone="tiny-resnet", max_steps=3, batch_size=10,
                crop_size=32, hidden_size=8, num_workers=0, checkpoint_every=0, eval_every="0", eval_crop_size=32,
                log_every=1, batch_rounding="largest-remainder", cpu=True)
    base.update(kw)
    return TrainArgs(**base)


def test_split_sizes_come_from_the_files_without_reading_rows(data):
    assert {s: split_size(p, "train") for s, p in data.items()} == SIZES
    assert split_size(data["sota"], "validation") == 4
    with pytest.raises(ValueError, match="no split 'test'"):
        split_size(data["sota"], "test")


def test_streaming_sampler_draws_b_i_rows_per_subset_and_each_row_once_per_epoch(data):
    from samrs_hf.hub.repo import load

    subsets = {s: load(p, streaming=True)["train"] for s, p in data.items()}
    sizes = [2, 3, 5]  # largest remainder of 10 * (6, 9, 15) / 30
    streams = open_streams({s: ds.select_columns(["image", "semantic", "file_name"]) for s, ds in subsets.items()},
                           seed=0, buffer_size=4, rank=0, world_size=1)
    # open_streams keeps image/semantic only; the file names tell which rows were drawn
    named = [shuffled(ds.select_columns(["file_name"]), 0, 4) for ds in subsets.values()]
    batches = list(StreamingBatchSampler(named, sizes, num_steps=4))  # 1-2 epochs of each subset
    for batch in batches:
        assert [k[0] for k in batch] == [0] * 2 + [1] * 3 + [2] * 5  # grouped by subset, B_i each
        assert [k[3] for k in batch] == list(range(10))
    for i, (subset, n) in enumerate(SIZES.items()):
        drawn = [k[1]["file_name"] for b in batches for k in b if k[0] == i]
        assert all(name.startswith(subset) for name in drawn)
        for epoch in range(len(drawn) // n):  # every row once per epoch
            assert len(set(drawn[epoch * n:(epoch + 1) * n])) == n
    # the training streams hold the undecoded image and semantic map
    first = next(iter(StreamingBatchSampler(streams, sizes, num_steps=1)))
    assert set(first[0][1]) == {"image", "semantic"} and isinstance(first[0][1]["image"]["bytes"], bytes)
    # a resumed sampler replays the same keys
    resumed = list(StreamingBatchSampler(named, sizes, start_step=3, num_steps=1))
    assert [[(k[0], k[1]["file_name"], k[2]) for k in b] for b in resumed] == \
        [[(k[0], k[1]["file_name"], k[2]) for k in b] for b in batches[3:]]


def test_two_processes_stream_disjoint_rows(data):
    from samrs_hf.hub.repo import load

    ds = {"fast": load(data["fast"], streaming=True)["train"].select_columns(["file_name"])}
    parts = []
    for rank in (0, 1):
        from datasets.distributed import split_dataset_by_node

        stream = split_dataset_by_node(shuffled(ds["fast"], 0, 4), rank=rank, world_size=2)
        parts.append({r["file_name"] for r in stream})
    assert not parts[0] & parts[1] and len(parts[0] | parts[1]) == SIZES["fast"]


def test_streaming_run_trains_with_the_map_style_batch_composition(data, tmp_path, torch_one_thread):
    streamed = SEPTrainer(small_args(data, tmp_path / "stream", streaming=True, shuffle_buffer=8))
    mapped = SEPTrainer(small_args(data, tmp_path / "map"))
    assert streamed.lengths == mapped.lengths == list(SIZES.values())
    assert streamed.sizes == mapped.sizes == [2, 3, 5]
    got = [(b["subset_sizes"], tuple(b["pixel_values"].shape), tuple(b["labels"].shape)) for b in streamed.batches(0)]
    want = [(b["subset_sizes"], tuple(b["pixel_values"].shape), tuple(b["labels"].shape)) for b in mapped.batches(0)]
    assert got == want and len(got) == 3 and got[0][0] == [2, 3, 5]
    result = streamed.train()
    losses = [r["loss"] for r in result["history"] if "loss" in r]
    assert len(losses) == 3 and all(v == v and v > 0 for v in losses)
    run = json.loads((tmp_path / "stream" / "run_config.json").read_text())
    assert run["args"]["streaming"] and run["train_images"] == SIZES
    assert (tmp_path / "stream" / "model.safetensors").is_file()
    assert not list((tmp_path / "stream").rglob("*.arrow"))  # no local Arrow copy of the rows
    assert set(result["scores"]) == set(SIZES)  # validation from the first rows of the streams, in memory
    assert streamed.fingerprint()["streaming"] == {"shuffle_buffer": 8} and "streaming" not in mapped.fingerprint()


def test_streaming_option_on_the_command_line(data, tmp_path):
    from samrs_hf.sep.options import parse_args

    args = parse_args(TrainArgs, ["--dataset", f"sota={data['sota']}", "--output-dir", str(tmp_path),
                                  "--streaming", "--shuffle-buffer", "64"])
    assert args.streaming and args.shuffle_buffer == 64
    with pytest.raises(ValueError, match="--shuffle-buffer must be positive"):
        small_args(data, tmp_path, shuffle_buffer=0)


# -- 2-machine labeling launch ------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes()
            for d in ("images", "gray", "color", "ins") for p in sorted((out / d).iterdir())}


def test_two_machines_on_one_host_write_what_one_process_writes(tmp_path, torch_one_thread):
    import torch.distributed

    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        pytest.skip("torch.distributed with the gloo backend is not available in this torch build")
    from samrs_hf import cli
    from samrs_hf.sources.samples import write_dior_sample

    source = write_dior_sample(tmp_path / "dior")
    common = ["--source", str(source), "--model", "tiny-random", "--device", "cpu", "--no-progress"]
    one = tmp_path / "one"
    assert cli.main(["build", "sior", "--out", str(one), *common]) == 0

    two, port = tmp_path / "two", str(free_port())
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    procs = [subprocess.Popen(
        [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_machines", "2", "--machine_rank",
         str(rank), "--num_processes", "2", "--main_process_ip", "127.0.0.1", "--main_process_port", port,
         "--mixed_precision", "no", "--dynamo_backend", "no",
         str(REPO / "builders" / "build_sior.py"), "--out", str(two), *common],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env) for rank in (0, 1)]
    try:
        logs = [p.communicate(timeout=300)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in procs] == [0, 0], "\n".join(log[-2000:] for log in logs)

    assert build_files(two) == build_files(one)
    r1, r2 = (json.loads((d / "build.json").read_text()) for d in (one, two))
    assert r2["run"]["num_processes"] == 2 and len(r2["run"]["timings"]["per_process"]) == 2
    assert Counter(k for k in r1 if r1[k] != r2[k]) == Counter({"run": 1})  # only the run section differs
    assert not (two / ".samrs_parts").exists()
