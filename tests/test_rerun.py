"""What a rerun does: nothing is lost, a moved or re-touched corpus changes nothing,
trained work is moved aside (never deleted), one run per work folder, preemption resumes."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from clustering.synthetic.corpus import make_corpus
from pipelines.cli import main
from pipelines.summary import summary
from pipelines.workdir import work_lock
from test_pipeline import ROOT, TINY

DEMO = str(ROOT / "pipelines" / "configs" / "demo.toml")


def run(work, audio, *extra, capsys=None):
    code = main(["run", DEMO, f"work_dir={work}", f"audio_dir={audio}", *TINY, *extra])
    return code, (capsys.readouterr() if capsys else None)


@pytest.fixture(scope="module")
def user_run(tmp_path_factory):
    """A finished tiny run over a folder of the user's audio (outside the work folder)."""
    base = tmp_path_factory.mktemp("user")
    make_corpus(base / "corpus", 0.02, ("en", "fr"), 0, 0.3)
    assert run(base / "work", base / "corpus" / "wav")[0] == 0
    return base


def copy_run(user_run, tmp_path):
    """A private copy (audio and work folder, times kept) a test may change."""
    shutil.copytree(user_run / "corpus", tmp_path / "corpus")
    shutil.copytree(user_run / "work", tmp_path / "work", symlinks=True)
    return tmp_path / "work", tmp_path / "corpus" / "wav"


def snapshot(folder):
    """{relative path: (bytes, mtime_ns)} of every file under `folder`."""
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_audio_inside_the_work_folder_is_refused_before_anything_is_touched(tmp_path, capsys):
    make_corpus(tmp_path / "w" / "data", 0.005, ("en",), 0, 0.3)
    before = snapshot(tmp_path / "w")
    capsys.readouterr()
    code, out = run(tmp_path / "w", tmp_path / "w" / "data" / "wav", capsys=capsys)
    assert code == 2
    assert out.err.strip() == (f"hubert run: error: audio_dir: {tmp_path}/w/data/wav lies inside work_dir "
                               f"{tmp_path}/w; stages rewrite their folders there, so keep your audio and "
                               "alignments outside it (move them, or choose another work_dir)")
    assert snapshot(tmp_path / "w") == before


def test_touched_and_moved_corpus_skips_every_stage_then_more_updates_continue(user_run, tmp_path, capsys):
    work, audio = copy_run(user_run, tmp_path)
    for path in audio.rglob("*.wav"):
        os.utime(path)  # same bytes, new modification time (cp, rsync, a restore)
    moved = tmp_path / "moved"
    audio.parent.rename(moved)
    capsys.readouterr()
    code, out = run(work, moved / "wav", capsys=capsys)
    assert code == 0
    stages = [line for line in out.out.splitlines() if line.startswith("[")]
    assert len(stages) == 11 and all(line.endswith("] done, skipped") for line in stages), stages
    assert (work / "data" / "train.tsv").read_text().splitlines()[0] == str((moved / "wav").resolve())
    assert not (work / "export" / "ctc").exists() and (work / "export" / "classification").is_dir()
    assert "no CTC head (no transcripts): add one with `hubert export" in out.out  # nothing invented
    more = [t.replace("max_updates=20", "max_updates=30") for t in TINY if t.startswith("iteration1.train")]
    code, out = run(work, moved / "wav", *more, "--until", "it1-train", capsys=capsys)
    log = out.out
    assert code == 0
    assert "schedule changed (max_updates 20 -> 30): continuing from the newest checkpoint" in log
    assert "resuming from update 20" in log and "max_updates 20 -> 30" in log
    assert (work / "it1-train" / "checkpoints" / "update_0000030.pt").exists()
    assert not (work / "superseded").exists()
    done = json.loads((work / "it1-train" / "DONE.json").read_text())
    assert [step["budget"] for step in done["extended_from"]] == [{"max_updates": 20}]
    assert done["output"] != done["hash"]  # a fresh 30-update run (hash alike) gives what follows other inputs
    main(["status", str(work)])
    assert "it1-train              done (extended: continues a finished run of max_updates 20)" in \
        capsys.readouterr().out
    assert "  extended: it continues a finished run of max_updates 20" in summary(work)


def test_a_rerun_reads_no_audio_and_a_touched_file_is_read_again_changing_nothing(user_run, tmp_path, capsys,
                                                                                 monkeypatch):
    from pipelines import fingerprint

    work, audio = copy_run(user_run, tmp_path)  # times kept, as `cp -a` keeps them
    real, read = fingerprint.file_digest, []
    monkeypatch.setattr(fingerprint, "file_digest", lambda path, *a: read.append(path.name) or real(path, *a))
    touched = sorted(audio.rglob("*.wav"))[3]
    for change in (None, touched):
        if change is not None:
            os.utime(change)  # same bytes, a new modification time
        capsys.readouterr()
        code, out = run(work, audio, capsys=capsys)
        stages = [line for line in out.out.splitlines() if line.startswith("[")]
        assert code == 0 and len(stages) == 11 and all(line.endswith("] done, skipped") for line in stages)
        assert read == ([] if change is None else [touched.name])  # the audio folder's cache in WORK_DIR
        read.clear()
    assert (work / fingerprint.CACHE_NAME).exists()


@pytest.mark.parametrize("change", [["iteration1.num_units=12"], ["--from", "it1-train"]])
def test_redone_training_moves_old_checkpoints_aside_untouched(user_run, tmp_path, capsys, change):
    work, audio = copy_run(user_run, tmp_path)
    before = snapshot(work / "it1-train")
    capsys.readouterr()
    code, out = run(work, audio, *change, "--until", "it1-train", capsys=capsys)
    log = out.out
    assert code == 0
    (aside,) = (work / "superseded").iterdir()
    assert aside.name.startswith("it1-train-") and snapshot(aside) == before
    why = "rerun from here (--from)" if "--from" in change else \
        "input it1-labels changed (it1-kmeans settings changed: num_units 20 -> 12)"
    assert f"[it1-train] {why}: moved the previous run to {aside}" in log
    main(["status", str(work)])
    assert aside.name in capsys.readouterr().out
    main(["prune", str(work)])
    assert not aside.exists() and (work / "it1-train" / "checkpoints").is_dir()


def test_a_second_run_on_a_busy_work_folder_is_refused(user_run, tmp_path, capsys):
    work, audio = copy_run(user_run, tmp_path)
    with work_lock(work):
        code, out = run(work, audio, capsys=capsys)
    assert code == 2 and f"{work}: in use by process {os.getpid()}" in out.err
    assert len(out.err.strip().splitlines()) == 1


TERM = """
import os, signal, sys
from pretrain import trainer
real, calls = trainer.hubert_loss, []
def loss_then_term(*args, **kwargs):
    calls.append(1)
    if len(calls) == 13 and os.environ.get("TERM_AT_LOSS"):  # SIGTERM in the middle of an update
        os.kill(os.getpid(), signal.SIGTERM)
    return real(*args, **kwargs)
trainer.hubert_loss = loss_then_term
from pipelines.cli import main
from pipelines.summary import summary
sys.exit(main(sys.argv[1:]))
"""


def test_sigterm_saves_a_checkpoint_and_the_rerun_resumes_from_it(user_run, tmp_path):
    work = tmp_path / "work"
    args = ["run", DEMO, f"work_dir={work}", f"audio_dir={user_run / 'corpus' / 'wav'}", *TINY,
            "--until", "it1-train"]
    env = {**os.environ, "TERM_AT_LOSS": "1"}
    stopped = subprocess.run([sys.executable, "-c", TERM, *args], capture_output=True, text=True, timeout=600,
                             env=env)
    assert stopped.returncode == 143, stopped.stderr[-3000:]
    last = stopped.stderr.strip().splitlines()[-1]
    found = re.fullmatch(r"hubert run: error: stopped by SIGTERM after update (\d+); checkpoint saved in "
                         r"(\S+); rerun the same command to continue", last)
    update = int(found.group(1))
    assert update % 10 and Path(found.group(2), f"update_{update:07d}.pt").exists()  # saved for SIGTERM
    resumed = subprocess.run([sys.executable, "-c", TERM, *args], capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0 and f"resuming from update {update}" in resumed.stdout, resumed.stderr[-3000:]
    assert (work / "it1-train" / "DONE.json").exists()


def test_two_torchrun_workers_both_rerun_training_from_it1_train(user_run, tmp_path):
    work, audio = copy_run(user_run, tmp_path)
    began = time.time()
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "pipelines.cli", "run", DEMO, f"work_dir={work}", f"audio_dir={audio}", *TINY,
         "--from", "it1-train"],
        capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]  # worker 0 waits in DDP for a worker that skips
    aside = sorted(re.sub(r"-\d{8}T\d{6}Z.*", "", p.name) for p in (work / "superseded").iterdir())
    assert aside == ["export", "it1-train", "it2-train"]  # trained and exported work is kept
    for stage in ("it1-train", "it2-labels", "it2-train", "quality"):
        assert (work / stage / "DONE.json").stat().st_mtime > began


def test_torchrun_workers_share_feature_and_label_stages_with_identical_labels(user_run, tmp_path):
    one, audio = copy_run(user_run, tmp_path / "one")
    two, _ = copy_run(user_run, tmp_path / "two")
    args = ["-m", "pipelines.cli", "run", DEMO, f"audio_dir={audio}", *TINY, "--from", "it1-features",
            "--until", "it1-labels"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    alone = subprocess.run([sys.executable, *args, f"work_dir={one}"], capture_output=True, text=True,
                           timeout=600, env=env)
    assert alone.returncode == 0, alone.stderr[-3000:]
    shared = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                             *args, f"work_dir={two}"], capture_output=True, text=True, timeout=600, env=env)
    assert shared.returncode == 0, shared.stderr[-3000:]
    assert sorted(p.name for p in (two / "it1-features").glob("train_*.npy")) == ["train_0_2.npy", "train_1_2.npy"]
    for split in ("train", "valid"):
        assert (two / "it1-labels" / f"{split}.km").read_bytes() == (one / "it1-labels" / f"{split}.km").read_bytes()
    assert not list((two / "it1-labels").glob("*_*_2.km"))  # shards merged, then removed


def test_sigterm_to_the_whole_process_group_saves_a_checkpoint_and_the_rerun_equals_an_uninterrupted_run(
        user_run, tmp_path):
    """What Slurm does on preemption: every process of the group, loader workers included, gets SIGTERM."""
    longer = [t.replace("max_updates=20", "max_updates=60") for t in TINY if t.startswith("iteration1.train")]
    args = [sys.executable, "-m", "pipelines.cli", "run", DEMO, f"audio_dir={user_run / 'corpus' / 'wav'}", *TINY,
            *longer, "iteration1.train.num_workers=2", "--until", "it1-train"]
    whole, _ = copy_run(user_run, tmp_path / "whole")
    assert subprocess.run([*args, f"work_dir={whole}"], capture_output=True, timeout=600).returncode == 0
    work, _ = copy_run(user_run, tmp_path / "stopped")
    with open(tmp_path / "stderr", "w") as log:  # a file, not a pipe: a full pipe would stall the run
        started = subprocess.Popen([*args, f"work_dir={work}"], stdout=subprocess.DEVNULL, stderr=log,
                                   start_new_session=True)
        checkpoint = work / "it1-train" / "checkpoints" / "update_0000030.pt"
        deadline = time.time() + 300
        while not checkpoint.exists() and started.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        os.killpg(started.pid, signal.SIGTERM)
        started.wait(timeout=300)
    err = (tmp_path / "stderr").read_text()
    assert started.returncode == 143, err[-3000:]
    found = re.search(r"stopped by SIGTERM after update (\d+); checkpoint saved in (\S+);", err)
    update = int(found.group(1))
    assert 30 <= update < 60 and Path(found.group(2), f"update_{update:07d}.pt").exists()
    resumed = subprocess.run([*args, f"work_dir={work}"], capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0 and f"resuming from update {update}" in resumed.stdout, resumed.stderr[-3000:]
    a = torch.load(work / "it1-train" / "checkpoints" / "update_0000060.pt", weights_only=True)["model"]
    b = torch.load(whole / "it1-train" / "checkpoints" / "update_0000060.pt", weights_only=True)["model"]
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-5
def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_two_nodes_over_one_work_folder_give_the_labels_and_weights_of_one_node(tmp_path):
    """README's many-node command, two nodes on this machine: two torchrun agents meet through a c10d
    rendezvous, one worker each, over one work folder; the same bytes as 2 workers on one node."""
    args = ["-m", "pipelines.cli", "run", DEMO, *TINY, "--until", "it1-train"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    port = free_port()
    node = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc_per_node=1", "--rdzv_backend=c10d",
            f"--rdzv_endpoint=127.0.0.1:{port}", f"--rdzv_id=nodes{port}", *args, f"work_dir={tmp_path / 'nodes'}"]
    agents = [subprocess.Popen(node, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
              for _ in range(2)]
    outputs = [agent.communicate(timeout=900) for agent in agents]
    assert [agent.returncode for agent in agents] == [0, 0], outputs[0][1][-3000:] + outputs[1][1][-3000:]
    one = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          *args, f"work_dir={tmp_path / 'one'}"], capture_output=True, text=True, timeout=900, env=env)
    assert one.returncode == 0, one.stderr[-3000:]
    for split in ("train", "valid"):
        labels = [(tmp_path / run / "it1-labels" / f"{split}.km").read_bytes() for run in ("nodes", "one")]
        assert labels[0] == labels[1] and labels[0]
    checkpoints = [tmp_path / run / "it1-train" / "checkpoints" / "update_0000020.pt" for run in ("nodes", "one")]
    import torch

    a, b = (torch.load(path, map_location="cpu", weights_only=True)["model"] for path in checkpoints)
    assert all(torch.equal(a[key], b[key]) for key in a)
