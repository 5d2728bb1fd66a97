"""Training under torchrun on CPUs (gloo): the helpers in a spawned 2-process group, refusals
before any group is joined, and four real 2-rank launches (about 6 s each): equivalence with
one process (without and with class weights), a stop and a resume on another number of ranks,
and a resume back on two."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import distributed_workers
import pytest
from dataset_helpers import write_ferplus
import torch
import torch.multiprocessing as mp

from fer_core.cli.main import main
from fer_core.data.builtin import make_builtin_faces
from fer_core.data.readers import load_dataset
from fer_core.errors import FerError
from fer_core.models.architectures import BatchDropout
from fer_core.models.checkpoint import load_checkpoint
from fer_core.training.augment import augment_batch, erase_batch
from fer_core.training.config import TrainConfig
from fer_core.training.mixing import mix_batch
from fer_core.training.runs import RunFolder, read_history
from fer_core.training.trainer import Trainer, train

ROOT = Path(__file__).resolve().parent.parent
DATA = "builtin:600"  # 480 training faces: whole batches of 32 and of 16, so plain runs and
# torchrun runs (which drop a partial last batch) take the same steps


def torchrun(*args: str, ranks: int = 2) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc_per_node={ranks}", "-m", "fer_core", *args]


def run_to_end(command: list[str], timeout: float = 240) -> subprocess.CompletedProcess:
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- the helpers, in a spawned 2-process group ------------------------------------------------

def test_the_helpers_sum_stop_share_and_agree_across_two_processes(tmp_path):
    mp.spawn(distributed_workers.check_helpers, args=(2, free_port(), str(tmp_path)), nprocs=2)
    seen = [json.loads((tmp_path / f"rank-{r}.json").read_text()) for r in (0, 1)]
    assert [s["rank"] for s in seen] == [0, 1] and {s["size"] for s in seen} == {2}
    assert [s["shard"] for s in seen] == [[0, 1, 2, 3], [4, 5, 6]]
    assert all(s["sums"] == [3.0, 30] for s in seen)
    assert all(s["any"] is True and s["none"] is False for s in seen)
    assert all(s["buffers"] == [5.0, 5.0, 5.0] for s in seen)  # rank 0's statistics everywhere
    for s in seen:
        assert s["disagreement"].startswith("the ranks disagree on the data's fingerprint")
        assert "rank 0: value-0, rank 1: value-1" in s["disagreement"]


def test_a_plain_run_is_alone():
    from fer_core.distributed import SOLO, launched_world

    assert launched_world() == SOLO and not SOLO.launched and SOLO.main
    assert list(SOLO.shard(5)) == [0, 1, 2, 3, 4]


# ---- refusals, before any process group is joined ---------------------------------------------

def test_a_batch_that_does_not_divide_among_the_ranks_is_refused(tmp_path, tiny_faces,
                                                                 monkeypatch):
    for name, value in {"RANK": "0", "WORLD_SIZE": "3", "LOCAL_RANK": "0"}.items():
        monkeypatch.setenv(name, value)
    config = TrainConfig(epochs=1, batch_size=32, device="cpu")
    with pytest.raises(FerError, match="global batch of 32 faces does not divide among 3 ranks"):
        Trainer(config, RunFolder(tmp_path / "run"), tiny_faces)


def test_sync_bn_on_a_cpu_is_refused_with_one_line(tmp_path, tiny_faces):
    config = TrainConfig(epochs=1, batch_size=32, device="cpu", sync_bn=True)
    with pytest.raises(FerError, match="--sync-bn needs CUDA GPUs"):
        Trainer(config, RunFolder(tmp_path / "run"), tiny_faces)


def test_a_malformed_torchrun_environment_is_refused(monkeypatch):
    from fer_core.distributed import launched_world

    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(FerError, match="rank 2 of a world of 2"):
        launched_world()


# ---- dropout masks ------------------------------------------------------------------------------

def test_the_ranks_drop_what_one_process_would():
    x = torch.randn(8, 5)
    whole = BatchDropout(0.5)
    torch.manual_seed(1)
    expected = whole(x)
    halves = []
    for rank in (0, 1):
        part = BatchDropout(0.5)
        part.share = (rank, 2)
        torch.manual_seed(1)
        halves.append(part(x[rank * 4:(rank + 1) * 4]))
    torch.testing.assert_close(torch.cat(halves), expected)
    assert (expected == 0).any() and (expected != 0).any()
    assert torch.equal(whole.eval()(x), x)


# ---- real launches ------------------------------------------------------------------------------

def one_process_reference(tmp_path: Path, config: TrainConfig) -> tuple[dict, dict]:
    """One process, one epoch: every step accumulates the gradients of the global batch's two
    halves (each half's loss weighed 1/2, as DDP averages two ranks' gradients), drawing the
    augmentation, mixing and the dropout mask of the whole batch, as each rank does. Returns
    the parameters before and after."""
    dataset = load_dataset(config.data)
    t = Trainer(config, RunFolder(tmp_path / "reference"), dataset)
    droppers = [m for m in t.model.modules() if isinstance(m, BatchDropout)]
    b, half = config.batch_size, config.batch_size // 2
    perm = t._epoch_permutation(1)
    targets = t.targets.for_epoch(1)
    before = {name: p.detach().clone() for name, p in t.model.named_parameters()}
    t.model.train()
    for step in range(len(t.train_data) // b):
        idx = perm[step * b:(step + 1) * b]
        x, y = t.train_data.batch(idx, channels_last=t.channels_last)
        x = erase_batch(augment_batch(x, t.augment, t.aug_gen), config.erase, t.aug_gen)
        x, mixed = mix_batch(x, t.mix, (config.seed, 1, step))
        target = targets[idx]
        partners = target.flip(0)
        t.optimizer.zero_grad()
        rng = torch.get_rng_state()
        for rank in (0, 1):
            torch.set_rng_state(rng)  # each rank holds the same state and draws the whole mask
            for m in droppers:
                m.share = (rank, 2)
            mine = slice(rank * half, (rank + 1) * half)
            logits = t.model(x[mine])
            if t.loss_fn.weight is None or t.targets.soft:  # a mean over the faces
                loss = mixed.loss(t.loss_fn, logits, target[mine], partners[mine]) / 2
            else:  # one process's weighted mean over the whole batch, not each half's
                loss = (mixed.loss(t.summed_loss, logits, target[mine], partners[mine])
                        / t.loss_fn.weight[y].sum())
            loss.backward()
        t.optimizer.step()
    return before, {name: p.detach() for name, p in t.model.named_parameters()}


@pytest.fixture(scope="module")
def ferplus_data(tmp_path_factory) -> str:
    """960 built-in faces as FER+ folders, 7/3 votes each: 480 training faces, every one kept
    by --labels crossentropy with two emotions in its target."""
    faces = make_builtin_faces(n=960, seed=3)
    votes = [[7 if k == label else 3 if k == (label + 1) % 8 else 0 for k in range(10)]
             for label in faces.labels]
    root = tmp_path_factory.mktemp("ferplus_ranks")
    write_ferplus(root, votes)
    return str(root)


@pytest.mark.parametrize("class_weights,labels", [("none", "majority"), ("balanced", "majority"),
                                                  ("balanced", "crossentropy")])
def test_two_ranks_reach_the_weights_of_one_process_accumulating_two_half_batches(
        tmp_path, ferplus_data, class_weights, labels):
    """Parameters are compared; batch-norm running statistics are not: under DDP they are rank
    0's (its half of each batch), in the reference both halves update them in turn.

    The reference runs on one thread, as torchrun runs each rank (OMP_NUM_THREADS=1): the CPU
    convolutions round differently on two threads, and 15 steps grow that one-ulp difference to
    about 1e-2 (measured). On one thread both sides add the same numbers in the same order
    (DDP adds the halves' gradients, each divided by 2; the reference accumulates the halves'
    losses, each halved), so the weights agree to the bit; 1e-6 leaves room for a gloo build
    that sums in another order. With class weights each half's summed loss is divided by the
    whole batch's weight (a mean per rank missed by 1e-2)."""
    settings = {"data": DATA if labels == "majority" else ferplus_data, "epochs": 1, "batch_size": 32, "device": "cpu",
                "precision": "fp32", "mixup": 0.4, "erase": 0.25, "seed": 3, "log_every": 5,
                "class_weights": class_weights, "labels": labels}
    run_to_end(torchrun("train", *[a for k, v in settings.items()
                                   for a in (f"--{k.replace('_', '-')}", str(v))],
                        "--out", str(tmp_path / "ranks")))
    ranks = load_checkpoint(tmp_path / "ranks" / "last.pt").model.state_dict()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        before, expected = one_process_reference(tmp_path, TrainConfig(**settings))
    finally:
        torch.set_num_threads(threads)
    worst = max((ranks[name] - value).abs().max().item() for name, value in expected.items())
    moved = min((value - before[name]).abs().max().item() for name, value in expected.items())
    assert worst < 1e-6, worst
    assert moved > 1e-3, moved  # every tensor trained well away from where it started
    assert len([r for r in read_history(tmp_path / "ranks" / "history.jsonl").records
                if r["kind"] == "epoch"]) == 1


def wait_for_step_record(history: Path, child: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if history.exists() and '"kind": "step"' in history.read_text():
            return
        assert child.poll() is None, child.communicate()
        time.sleep(0.05)
    raise AssertionError("the 2-rank run wrote no step record")


def test_a_two_rank_run_stops_resumes_on_one_process_then_on_two(tmp_path, capsys):
    out = tmp_path / "run"
    folder = RunFolder(out)
    args = ["train", "--data", DATA, "--epochs", "3", "--batch-size", "16", "--device", "cpu",
            "--precision", "fp32", "--log-every", "2", "--seed", "5", "--out", str(out)]
    child = subprocess.Popen(torchrun(*args), cwd=ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        wait_for_step_record(folder.history_path, child)
        folder.request_stop()
        stdout, stderr = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
    assert child.returncode == 0, stderr[-3000:]
    assert stdout.count("stopped:") == 1  # rank 0 alone prints
    status = folder.status()
    assert status["state"] == "stopped" and status["ranks"] == 2
    stopped_at = torch.load(folder.last_path, weights_only=False)["training_state"]["progress"]
    assert stopped_at is not None and 0 < stopped_at["step"] < 30  # mid-epoch, at a log point
    assert stopped_at["step"] % 2 == 0

    def stop_two_steps_later(record):  # resumed in one plain process, stopped again
        if record["step"] >= stopped_at["step"] + 4 or record["epoch"] > stopped_at["epoch"]:
            folder.request_stop()

    config = TrainConfig(**folder.config())
    config.precision_used = None
    assert train(config, out, load_dataset(DATA), resume=True,
                 on_step=stop_two_steps_later) == "stopped"
    run_to_end(torchrun("train", "--out", str(out), "--resume"))
    assert folder.status()["state"] == "finished"
    records = read_history(folder.history_path).records
    assert [r["epoch"] for r in records if r["kind"] == "epoch"] == [1, 2, 3]
    for epoch in (1, 2, 3):
        steps = [r["step"] for r in records if r["kind"] == "step" and r["epoch"] == epoch]
        assert steps == sorted(set(steps)) and steps[-1] == 30  # none lost, none repeated
    # the best checkpoint loads in one process, and its val accuracy (each rank scored half of
    # the faces; the hits were summed) is what one process measures
    val_acc = load_checkpoint(folder.best_path).meta["metrics"]["val_acc"]
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(folder.best_path), "--data", DATA,
                 "--split", "val"]) == 0
    assert f"accuracy = {val_acc:.4f}" in capsys.readouterr().out
