"""Hostile and broken input, one real ``cli.py`` process each: exit status 2, exactly one line on
stderr (no warnings or log lines before it, no traceback), nothing on stdout, and the study the
command names left as it was (its storage file's bytes, its trials, the files in its output
directory), and nothing created in the working directory.

Search cases name an existing study (``--storage/--study/--out`` of a real two-trial search), so a
command that got as far as the study before failing would show up as a changed fingerprint.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import shutil
import socket
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import save_file

from evaluators.latency_model import FEATURES, VERSION
from spaces import build_model, reference

PASSWORD = "s3cret-pw"


@dataclass
class Kept:
    """An existing study and the bad files the cases point at."""

    root: Path
    url: str
    out: Path
    space: Path
    cwd: Path
    before: str = ""
    flawed_url: str = ""  # a study with a failed trial (0) and a rejected one
    rejected_trial: int = -1
    runs: Path | None = None  # trained run directories: good, corrupt (checkpoint), mismatch (weights)
    bad_before: dict = None

    def search(self, *extra: str) -> list[str]:
        """A search on the kept study with ``extra`` flags (later flags override earlier ones)."""
        return ["search", "--space", str(self.space), "--storage", self.url, "--study", "kept", "--out", str(self.out),
                "--objectives", "flops,params", "--subset", "300", "--input-size", "16", "--no-baselines",
                "--no-progress", "--trials", "2", *extra]  # fmt: skip

    def __truediv__(self, name: str) -> str:
        return str(self.root / name)

    def bad_files(self) -> dict[str, tuple]:
        """Every entry under the folder of bad files: its kind and, for a regular file, its bytes."""
        return {
            str(p.relative_to(self.root)): (stat.S_IFMT(p.lstat().st_mode), p.read_bytes() if p.is_file() and not p.is_symlink() else b"")
            for p in sorted(self.root.rglob("*"))
            if self.cwd not in (p, *p.parents) and not p.name.endswith(("-wal", "-shm"))  # SQLite's, while a reader is open
        }  # fmt: skip

    def fingerprint(self, snapshot) -> str:
        digest = hashlib.sha256()
        extra = [Path(self.flawed_url.removeprefix("sqlite:///")), *self.runs.rglob("*")] if self.runs else []
        for path in sorted(p for p in [Path(self.url.removeprefix("sqlite:///")), *self.out.rglob("*"), *extra] if p.is_file()):
            digest.update(str(path).encode() + hashlib.sha256(path.read_bytes()).digest())
        digest.update(snapshot(self.url, "kept").checksum().encode())
        return digest.hexdigest()


def _png(size: int, seed: int) -> bytes:
    rng = random.Random(seed)
    image = Image.frombytes("RGB", (size, size), bytes(rng.randrange(256) for _ in range(size * size * 3)))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _write_bad_files(root: Path, tiny_space: Path) -> None:
    def folder(name: str, classes: dict[str, list[bytes]]) -> None:
        for cls, images in classes.items():
            (root / name / cls).mkdir(parents=True)
            for i, data in enumerate(images):
                (root / name / cls / f"{i}.png").write_bytes(data)

    (root / "empty").mkdir()
    folder("one-class", {"cat": [_png(16, i) for i in range(4)]})
    folder("not-images", {"cat": [b"GIF? no, plain text\n"] * 3, "dog": [b"%PDF-1.4 not an image\n"] * 3})
    whole = _png(64, 99)
    folder("truncated", {"cat": [_png(64, i) for i in range(3)], "dog": [_png(64, 10), whole[: len(whole) * 2 // 3]]})
    (root / "a-file").write_text("a regular file: nothing can be created under it\n")

    (root / "not-yaml.yaml").write_text("trials: [1, 2\nsampler: tpe\n")
    (root / "binary.yaml").write_bytes(b"\x00\x01\x02\xff\xfe binary junk")
    (root / "wrong-type.yaml").write_text("trials: three\n")
    (root / "unknown-key.yaml").write_text("trails: 3\n")
    (root / "epochs-huge.yaml").write_text("epochs: 1001\n")
    (root / "not-json.json").write_text('{"cfgs": [[3, 16, 16, 0, 1]], "width": }')
    (root / "wrong-type.json").write_text('{"cfgs": [[["three", 16, 16, 0, 1]]], "width": 1.0}')

    # A well-formed latency model, but for 32 px (the kept study searches at 16 px).
    profile = {
        "format": "ghostnas-latency-model", "version": VERSION, "settings": {"preset": "cifar", "input_size": 32, "batch_size": 1},
        "fingerprint": {"cpu": "ARM Cortex-A76"}, "fit": {"coef": [0.0] * len(FEATURES), "mode": "blocks"}, "correction": {"slope": 1.0, "per_unit": 0.0},
        "units": {}, "reference_ms": 10.0, "kernels": {},
    }  # fmt: skip
    (root / "profile-32px.json").write_text(json.dumps(profile))

    space = yaml.safe_load(tiny_space.read_text())

    def variant(name: str, change) -> None:
        data = yaml.safe_load(yaml.safe_dump(space))
        change(data)
        (root / name).write_text(yaml.safe_dump(data))

    variant("space-range.yaml", lambda s: s["stages"][0].update(exp={"low": 40, "high": 16, "step": 8}))
    variant("space-empty.yaml", lambda s: s.update(width={"choices": []}))
    variant("space-unknown.yaml", lambda s: s.update(colour="blue"))
    variant("space-kernel-huge.yaml", lambda s: s["stages"][1].update(kernel={"choices": [3, 99999]}))
    variant("space-type.yaml", lambda s: s["stages"][0].update(depth="deep"))
    (root / "space-not-yaml.yaml").write_text("stages: [ {depth: 1\n")
    variant("space-block.yaml", lambda s: s["stages"][3].update(block={"choices": ["ghost", "ghostv4"]}))
    (root / "block-type.json").write_text('{"cfgs": [[[3, 16, 16, 0, 1]]], "width": 1.0, "block_types": ["ghostv4"]}')
    (root / "yolov5-se.json").write_text('{"cfgs": [[[3, 16, 16, 0.25, 1]]], "width": 1.0, "module": "yolov5", "dw_size": 5}')

    # issue 13: data misread, settings checked only when used, hostile nesting, huge dimensions
    folder("one-per-class", {"cat": [_png(16, 1)], "dog": [_png(16, 2)]})
    for name, member in (("absolute", "/abs/path/x.png"), ("climbing", "data/../../evil.png")):
        with tarfile.open(root / f"{name}.tar.gz", "w:gz") as tar:
            for cls in ("cat", "dog"):
                for i in range(3):
                    _add(tar, f"data/{cls}/{i}.png", _png(16, i))
            _add(tar, member, _png(16, 9))
    (root / "preset-foo.yaml").write_text("preset: foo\n")
    (root / "backend-unused.yaml").write_text("latency_backend: tensorrt\nobjectives: [flops, params]\n")
    (root / "objectives-ints.yaml").write_text("objectives: [1, 2]\n")
    (root / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (root / "kernel-99999.json").write_text('{"cfgs": [[[99999, 16, 16, 0, 2]]], "width": 1.0}')
    (root / "empty.db").write_bytes(b"")
    os.mkfifo(root / "fifo")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(root / "socket"))
    (root / "dangling").symlink_to(root / "missing-folder" / "front.md")


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


@pytest.fixture(scope="module")
def kept(h, tiny_space, small_study, tmp_path_factory) -> Kept:
    kept = Kept(root=tmp_path_factory.mktemp("bad-input"), url=small_study.url, out=small_study.out, space=tiny_space, cwd=Path())
    kept.cwd = kept.root / "cwd"
    kept.cwd.mkdir()
    _write_bad_files(kept.root, tiny_space)
    _make_train_inputs(h, kept)
    kept.before = kept.fingerprint(h.snapshot)
    kept.bad_before = kept.bad_files()
    return kept


TRAIN_RUN = ["train", "--reference", "ghostnet-0.35x", "--input-size", "8", "--subset", "200", "--epochs", "1", "--batch-size", "32", "--no-progress"]


def _make_train_inputs(h, kept: Kept) -> None:
    """What the train and eval --run cases point at: a study with a failed and a rejected trial
    (a real cost-only search, its first evaluation made to raise), and real trained runs, one
    with its checkpoint cut short and one with another config's weights."""
    kept.flawed_url = h.sqlite_url(kept.root / "flawed.db")
    result = h.cli(
        "search", "--storage", kept.flawed_url, "--study", "flawed", "--out", kept.root / "flawed", "--objectives", "flops,params",
        "--max-params", "2M", "--trials", "3", "--no-progress", faults="0=raise",
    )  # fmt: skip
    assert result.rc == 0, result.err
    trials = h.snapshot(kept.flawed_url, "flawed").trials
    assert trials[0].state.name == "FAIL"
    kept.rejected_trial = next(t.number for t in trials if t.user_attrs.get("rejected"))
    kept.runs = kept.root / "runs"
    result = h.cli(*TRAIN_RUN, "--out", kept.runs / "good")
    assert result.rc == 0, result.err
    shutil.copytree(kept.runs / "good", kept.runs / "corrupt")
    checkpoint = kept.runs / "corrupt" / "checkpoint.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:5000])
    shutil.copytree(kept.runs / "good", kept.runs / "mismatch")
    other = build_model(reference("ghostnet-0.5x", preset="cifar", input_size=8))
    save_file({k: v.contiguous() for k, v in other.state_dict().items()}, str(kept.runs / "mismatch" / "model.safetensors"))


# (id, argv from the Kept paths, what the one line must say)
CASES = [
    # unknown flags and values
    ("unknown-flag", lambda k: k.search("--bogus"), "unrecognized arguments: --bogus"),
    ("unknown-command", lambda k: ["frobnicate"], "invalid choice: 'frobnicate'"),
    ("not-a-number", lambda k: k.search("--trials", "three"), "invalid int value: 'three'"),
    ("unknown-device", lambda k: k.search("--device", "tpu"), "invalid choice: 'tpu'"),
    ("unknown-sampler", lambda k: k.search("--sampler", "cmaes"), "unknown sampler 'cmaes'"),
    ("unknown-objective", lambda k: k.search("--objectives", "accuracy,speed"), "unknown objective speed"),
    ("unknown-format", lambda k: ["export", "--study", "kept", "--storage", k.url, "--format", "xls"], "invalid choice: 'xls'"),
    # malformed limits, negative and zero counts
    ("limit-10Q", lambda k: k.search("--max-flops", "10Q"), "--max-flops must be a number"),
    ("trials-0", lambda k: k.search("--trials", "0"), "--trials must be an integer in [1, 100000], got 0"),
    ("workers-minus-1", lambda k: k.search("--workers", "-1"), "--workers must be an integer in [1, "),
    ("prefilter-0", lambda k: k.search("--prefilter", "0"), "--prefilter must be an integer in [1, 64], got 0"),
    ("prefilter-no-accuracy", lambda k: k.search("--prefilter", "4", "--objectives", "latency_ms,flops"), "--prefilter ranks candidates by predicted accuracy: it needs accuracy among the --objectives"),
    ("prefilter-score-unknown", lambda k: k.search("--prefilter", "4", "--prefilter-score", "flops"), "argument --prefilter-score: invalid choice: 'flops'"),
    ("accuracy-estimator-unknown", lambda k: k.search("--accuracy-estimator", "synflow"), "argument --accuracy-estimator: invalid choice: 'synflow'"),
    ("accuracy-estimator-with-prefilter", lambda k: k.search("--accuracy-estimator", "ridge", "--prefilter", "4", "--objectives", "accuracy,flops"), "with --accuracy-estimator ridge nothing is trained"),
    ("timeout-0", lambda k: k.search("--timeout", "0"), "--timeout must be a positive number"),
    ("input-size-huge", lambda k: k.search("--input-size", "100000"), "input_size must be an integer in [8, 1024]"),
    ("bad-study-name", lambda k: k.search("--study", "../../etc"), "study name must be"),
    # config and space files: not YAML/JSON, wrong types, unknown keys, impossible ranges, empty choices
    ("config-not-yaml", lambda k: k.search("--config", k / "not-yaml.yaml"), "is not valid YAML"),
    ("config-binary", lambda k: k.search("--config", k / "binary.yaml"), "is not a text file (not UTF-8)"),
    ("config-wrong-type", lambda k: k.search("--config", k / "wrong-type.yaml"), "trials has the wrong type (str: 'three'); it takes an integer"),
    ("config-unknown-key", lambda k: k.search("--config", k / "unknown-key.yaml"), "unknown setting(s) trails"),
    ("space-not-yaml", lambda k: k.search("--space", k / "space-not-yaml.yaml"), "is not valid YAML"),
    ("space-impossible-range", lambda k: k.search("--space", k / "space-range.yaml"), "impossible range low=40 high=16"),
    ("space-empty-choices", lambda k: k.search("--space", k / "space-empty.yaml"), "choices must be a non-empty list"),
    ("space-unknown-key", lambda k: k.search("--space", k / "space-unknown.yaml"), "unknown key(s) colour"),
    ("space-wrong-type", lambda k: k.search("--space", k / "space-type.yaml"), "got 'deep'"),
    ("space-binary", lambda k: k.search("--space", k / "binary.yaml"), "is not a text file (not UTF-8)"),
    ("cfg-not-json", lambda k: ["eval", "--cfg", k / "not-json.json", "--skip-accuracy", "--skip-latency"], "is not valid JSON"),
    ("cfg-wrong-type", lambda k: ["eval", "--cfg", k / "wrong-type.json", "--skip-accuracy", "--skip-latency"], "kernel must be a positive odd integer up to 15, got 'three'"),
    ("cfg-binary", lambda k: ["eval", "--cfg", k / "binary.yaml", "--skip-accuracy", "--skip-latency"], "is not a text file (not UTF-8)"),
    ("space-block-type", lambda k: k.search("--space", k / "space-block.yaml"), "stages[3].block: values must be among ghost, ghostv2"),
    ("cfg-block-type", lambda k: ["eval", "--cfg", k / "block-type.json", "--skip-accuracy", "--skip-latency"], "stage 0 block type must be one of"),
    ("cfg-yolov5-se", lambda k: ["eval", "--cfg", k / "yolov5-se.json", "--skip-accuracy", "--skip-latency"], "module yolov5 fixes ratio 2, dw_size 5, no SE"),
    # latency-model files: missing, not JSON, not a profile, for another input size or preset; profile flags
    ("latency-model-missing", lambda k: k.search("--latency-model", k / "nope.json"), "cannot read latency model"),
    ("latency-model-not-json", lambda k: k.search("--latency-model", k / "not-json.json"), "is not JSON"),
    ("latency-model-not-a-profile", lambda k: k.search("--latency-model", k / "wrong-type.json"), "is not a ghostnas profile"),
    ("latency-model-other-size", lambda k: k.search("--latency-model", k / "profile-32px.json"), "profiled for preset cifar at 32 px, not cifar at 16 px"),
    ("eval-latency-model-other-preset", lambda k: ["eval", "--reference", "ghostnet-1.0x", "--skip-accuracy", "--latency-model", k / "profile-32px.json"], "not imagenet at 224 px"),
    ("profile-models-0", lambda k: ["profile", "--out", k / "device.json", "--models", "0"], "--models must be an integer in [3, 1000], got 0"),
    ("profile-out", lambda k: ["profile", "--out", k / "a-file/device.json"], "is not a directory"),
    # data paths: missing, empty, one class, not images, truncated images
    ("data-missing", lambda k: k.search("--dataset", k / "nope"), "neither a known name"),
    ("data-empty", lambda k: k.search("--dataset", k / "empty"), "contains no images"),
    ("data-one-class", lambda k: k.search("--dataset", k / "one-class"), "only one class folder"),
    ("data-not-images", lambda k: k.search("--dataset", k / "not-images"), "not in a format PIL can identify"),
    ("data-truncated", lambda k: k.search("--dataset", k / "truncated"), "dog/1.png"),
    # storage URLs: unreachable (with a password), malformed, in memory, unwritable
    ("pg-unreachable", lambda k: k.search("--storage", f"postgresql://u:{PASSWORD}@127.0.0.1:1/x"), "Connection refused"),
    ("pg-malformed", lambda k: k.search("--storage", f"postgresql://u:{PASSWORD}@[::1/x"), "not a database URL"),
    ("sqlite-in-memory", lambda k: k.search("--storage", "sqlite:///"), "give SQLite a file"),
    ("storage-not-a-db", lambda k: ["show", "--study", "kept", "--storage", f"sqlite:///{k / 'not-yaml.yaml'}"], "not-yaml.yaml is not an SQLite database, not an Optuna study database"),
    ("storage-unwritable", lambda k: k.search("--storage", f"journal:{k / 'a-file'}/study.log"), "cannot create"),
    # a study that does not exist
    ("show-no-study", lambda k: ["show", "--study", "nope", "--storage", k.url], "study 'nope' does not exist"),
    ("export-no-study", lambda k: ["export", "--study", "nope", "--storage", k.url], "study 'nope' does not exist"),
    ("plot-no-study", lambda k: ["plot", "--study", "nope", "--storage", k.url], "study 'nope' does not exist"),
    ("show-no-storage", lambda k: ["show", "--study", "nope"], "no SQLite storage at runs/nope/study.db"),
    ("confirm-no-study", lambda k: ["confirm", "--study", "nope", "--storage", k.url], "study 'nope' does not exist"),
    ("confirm-no-accuracy", lambda k: ["confirm", "--study", "kept", "--storage", k.url], "does not optimise accuracy: there is nothing to confirm"),
    ("confirm-runs-1", lambda k: ["confirm", "--study", "kept", "--storage", k.url, "--runs", "1"], "--runs must be an integer in [2, 100] (the search's run included), got 1"),
    # an output directory that is not writable (under a regular file: root ignores permissions)
    ("search-out", lambda k: k.search("--out", k / "a-file/run"), "Not a directory"),
    ("export-out", lambda k: ["export", "--study", "kept", "--storage", k.url, "--out", k / "a-file/front.csv"], "cannot write"),
    ("plot-out", lambda k: ["plot", "--study", "kept", "--storage", k.url, "--out", k / "a-file/plots"], "Not a directory"),
    # train: choosing the model, the run directory, the checkpoint; eval --run
    ("train-trial-missing", lambda k: ["train", "--study", "kept", "--storage", k.url, "--trial", "99"], "trial 99 is not in study 'kept' (it has trials 0 to 1)"),
    ("train-member-out-of-range", lambda k: ["train", "--study", "kept", "--storage", k.url, "--member", "5"], "member 5 is out of range: the front of study 'kept' has members 0 to"),
    ("train-budget-none-fits", lambda k: ["train", "--study", "kept", "--storage", k.url, "--max-flops", "1k"], "fits --max-flops 1000; the smallest budget that fits one is --max-flops "),
    ("train-budget-unmeasured", lambda k: ["train", "--study", "kept", "--storage", k.url, "--max-latency-ms", "5"], "has no front member with a measured latency_ms"),
    ("train-failed-trial", lambda k: ["train", "--study", "flawed", "--storage", k.flawed_url, "--trial", "0"], "trial 0 of study 'flawed' has no result to train (fail: RuntimeError: injected fault"),
    ("train-rejected-trial", lambda k: ["train", "--study", "flawed", "--storage", k.flawed_url, "--trial", str(k.rejected_trial)], "was rejected by a limit (params"),
    ("train-no-choice", lambda k: ["train", "--study", "kept", "--storage", k.url], "--study needs one of --trial, --member"),
    ("train-trial-no-study", lambda k: ["train", "--reference", "ghostnet-0.5x", "--trial", "1"], "--trial needs --study"),
    ("train-ema-out-of-range", lambda k: [*TRAIN_RUN, "--ema", "1.5", "--out", k.runs / "new"], "ema decay must lie strictly between 0 and 1"),
    ("train-out-other-run", lambda k: [*TRAIN_RUN, "--epochs", "2", "--out", k.runs / "good"], "holds a run of another command (it differs in: recipe)"),
    ("train-out-not-a-run", lambda k: [*TRAIN_RUN, "--out", k / "one-class"], "exists and holds no GhostNAS run"),
    ("train-corrupt-checkpoint", lambda k: [*TRAIN_RUN, "--out", k.runs / "corrupt"], "checkpoint.pt is unreadable"),
    ("eval-run-not-a-run", lambda k: ["eval", "--run", k / "empty"], "is not a finished training run (missing model.safetensors"),
    ("eval-run-wrong-weights", lambda k: ["eval", "--run", k.runs / "mismatch", "--skip-latency"], "model.safetensors does not fit the config in config.json (0 missing, 12 unexpected, 389 wrongly shaped tensors"),
    # issue 13: seeds that overflow, settings invalid though unused, bounds on every dimension
    ("seed-2**32", lambda k: k.search("--seed", str(2**32)), "--seed must be an integer in [0, 2147483647], got 4294967296"),
    ("seed-2**64", lambda k: k.search("--seed", str(2**64)), "--seed must be an integer in [0, 2147483647], got 18446744073709551616"),
    ("config-preset-foo", lambda k: k.search("--config", k / "preset-foo.yaml"), "--preset must be one of imagenet, cifar, got 'foo'"),
    ("config-backend-unused", lambda k: k.search("--config", k / "backend-unused.yaml"), "--latency-backend must be one of torch, onnxruntime, got 'tensorrt'"),
    ("config-objectives-ints", lambda k: ["search", "--config", k / "objectives-ints.yaml", "--storage", k.url, "--study", "kept", "--out", k.out], "--objectives: unknown objective 1, 2: choose from accuracy"),
    ("cfg-deep-json", lambda k: ["eval", "--cfg", k / "deep.json", "--skip-accuracy", "--skip-latency"], "is nested too deeply"),
    ("space-kernel-huge", lambda k: k.search("--space", k / "space-kernel-huge.yaml"), "stages[1].kernel: values must be odd integers in [1, 15], got 99999"),
    ("cfg-kernel-99999", lambda k: ["eval", "--cfg", k / "kernel-99999.json", "--skip-accuracy", "--skip-latency"], "kernel must be a positive odd integer up to 15, got 99999"),
    # runaway resources
    ("workers-1000", lambda k: k.search("--workers", "1000", "--trials", "2"), "--workers must be an integer in [1, "),
    ("threads-100000", lambda k: k.search("--threads", "100000"), "--threads must be an integer in [1, "),
    ("profile-threads-100000", lambda k: ["profile", "--out", k / "device.json", "--threads", "100000"], "--threads must be an integer in [1, "),
    ("profile-models-huge", lambda k: ["profile", "--out", k / "device.json", "--models", "1000000"], "--models must be an integer in [3, 1000], got 1000000"),
    ("profile-holdout-0", lambda k: ["profile", "--out", k / "device.json", "--holdout", "0"], "--holdout must be an integer in [1, 1000], got 0"),
    ("profile-holdout-huge", lambda k: ["profile", "--out", k / "device.json", "--holdout", "1000000"], "--holdout must be an integer in [1, 1000], got 1000000"),
    ("profile-seed-2**64", lambda k: ["profile", "--out", k / "device.json", "--seed", str(2**64)], "--seed must be an integer in [0, 2147483647], got 18446744073709551616"),
    ("profile-input-size-0", lambda k: ["profile", "--out", k / "device.json", "--input-size", "0"], "--input-size must be an integer in [8, 1024], got 0"),
    ("profile-out-fifo", lambda k: ["profile", "--out", k / "fifo", "--models", "3", "--holdout", "1"], "it is a FIFO, not a regular file"),
    ("train-epochs-huge", lambda k: [*TRAIN_RUN, "--epochs", "1000000000", "--out", k.runs / "new"], "epochs must be an integer in [1, 10000], got 1000000000"),
    ("train-seed-2**64", lambda k: [*TRAIN_RUN, "--seed", str(2**64), "--out", k.runs / "new"], "seed must be an integer in [0, 2147483647], got 18446744073709551616"),
    ("train-seed-minus-1", lambda k: [*TRAIN_RUN, "--seed", "-1", "--out", k.runs / "new"], "seed must be an integer in [0, 2147483647], got -1"),
    ("train-lr-infinite", lambda k: [*TRAIN_RUN, "--lr", "inf", "--out", k.runs / "new"], "lr must be a finite number, got inf"),
    ("train-weight-decay-nan", lambda k: [*TRAIN_RUN, "--weight-decay", "nan", "--out", k.runs / "new"], "weight_decay and warmup_epochs must be finite numbers >= 0, got nan"),
    ("train-optimizer-adam", lambda k: [*TRAIN_RUN, "--optimizer", "adam", "--out", k.runs / "new"], "argument --optimizer: invalid choice: 'adam'"),
    ("train-val-fraction-1.5", lambda k: [*TRAIN_RUN, "--val-fraction", "1.5", "--out", k.runs / "new"], "--val-fraction must be a number between 0 and 1 (both excluded), got 1.5"),
    ("train-input-size-0", lambda k: [*TRAIN_RUN, "--input-size", "0", "--out", k.runs / "new"], "--input-size must be an integer in [8, 1024], got 0"),
    ("train-out-fifo", lambda k: [*TRAIN_RUN, "--out", k / "fifo"], "fifo exists and holds no GhostNAS run"),
    ("train-out-under-a-file", lambda k: [*TRAIN_RUN, "--out", k / "a-file/run"], "a-file is not a directory"),
    ("trials-10**12", lambda k: k.search("--trials", str(10**12)), "--trials must be an integer in [1, 100000], got 1000000000000"),
    ("epochs-10**12", lambda k: k.search("--epochs", str(10**12)), "--epochs must be an integer in [1, 1000], got 1000000000000"),
    ("config-epochs-huge", lambda k: k.search("--config", k / "epochs-huge.yaml"), "--epochs must be an integer in [1, 1000], got 1001"),
    ("eval-epochs-10**12", lambda k: ["eval", "--reference", "ghostnet-0.35x", "--preset", "cifar", "--skip-latency", "--epochs", str(10**12)], "--epochs must be an integer in [1, 1000], got 1000000000000"),
    ("confirm-runs-huge", lambda k: ["confirm", "--study", "kept", "--storage", k.url, "--runs", str(10**12)], "--runs must be an integer in [2, 100] (the search's run included), got 1000000000000"),
    ("search-train-input-size-4", lambda k: k.search("--train-input-size", "4"), "--train-input-size must be an integer in [8, 1024], got 4"),
    ("eval-train-input-size-4096", lambda k: ["eval", "--reference", "ghostnet-0.35x", "--preset", "cifar", "--skip-latency", "--train-input-size", "4096"], "--train-input-size must be an integer in [8, 1024], got 4096"),
    ("eval-threads-0", lambda k: ["eval", "--reference", "ghostnet-0.35x", "--skip-accuracy", "--threads", "0"], "--threads must be an integer in [1, "),
    # files that are not regular files, storage a read-only command must not create or change
    ("export-out-fifo", lambda k: ["export", "--study", "kept", "--storage", k.url, "--out", k / "fifo"], "it is a FIFO, not a regular file"),
    ("export-out-socket", lambda k: ["export", "--study", "kept", "--storage", k.url, "--format", "json", "--out", k / "socket"], "it is a socket, not a regular file"),
    ("export-out-dangling-link", lambda k: ["export", "--study", "kept", "--storage", k.url, "--out", k / "dangling"], "whose folder does not exist"),
    ("show-empty-db", lambda k: ["show", "--study", "kept", "--storage", f"sqlite:///{k / 'empty.db'}"], "empty.db is an empty file, not an Optuna study database"),
    ("export-empty-db", lambda k: ["export", "--study", "kept", "--storage", f"sqlite:///{k / 'empty.db'}"], "is an empty file"),
    ("plot-empty-db", lambda k: ["plot", "--study", "kept", "--storage", f"sqlite:///{k / 'empty.db'}", "--out", k / "plots-empty"], "is an empty file"),
    # data that would be misread
    ("archive-absolute-member", lambda k: k.search("--dataset", k / "absolute.tar.gz"), "member '/abs/path/x.png' is absolute or climbs out"),
    ("archive-climbing-member", lambda k: k.search("--dataset", k / "climbing.tar.gz"), "member 'data/../../evil.png' is absolute or climbs out"),
    ("data-one-per-class", lambda k: k.search("--dataset", k / "one-per-class"), "is too small: class 'cat' has 1 image(s)"),
    ("data-too-small", lambda k: ["eval", "--reference", "ghostnet-0.35x", "--preset", "cifar", "--skip-latency", "--dataset", k / "one-per-class"], "one-per-class is too small: class 'cat' has 1 image(s); a search needs at least 2 images per class"),
    ("eval-num-classes", lambda k: ["eval", "--reference", "ghostnet-0.35x", "--preset", "cifar", "--skip-latency", "--num-classes", "5"], "--num-classes 5 differs from the 10 classes of digits"),
    # messages that named the wrong thing
    ("limit-infinite", lambda k: k.search("--max-flops", "1e999"), "--max-flops must be a finite number"),
    ("limit-negative", lambda k: k.search("--max-flops", "-5M"), "--max-flops must be positive (like 100M or 2.5M), got '-5M'"),
    ("objectives-stray-comma", lambda k: k.search("--objectives", "flops,params,"), "--objectives 'flops,params,' has an empty name (a stray comma?)"),
    ("timeout-infinite", lambda k: k.search("--timeout", "1e999"), "--timeout must be a finite number, got inf"),
    ("val-fraction-1.5", lambda k: k.search("--val-fraction", "1.5"), "--val-fraction must be a number between 0 and 1"),
]
if not torch.cuda.is_available():  # what a machine without CUDA says to --device cuda
    CASES += [
        ("search-cuda", lambda k: k.search("--device", "cuda", "--out", k / "cuda-run"), "--device cuda: torch sees no CUDA device on this machine"),
        ("eval-cuda", lambda k: ["eval", "--reference", "ghostnet-0.35x", "--skip-accuracy", "--device", "cuda"], "--device cuda: torch sees no CUDA device"),
        ("eval-cuda-skip-latency", lambda k: ["eval", "--reference", "ghostnet-0.35x", "--skip-latency", "--device", "cuda"], "--device cuda: torch sees no CUDA device"),
        ("confirm-cuda", lambda k: ["confirm", "--study", "kept", "--storage", k.url, "--device", "cuda"], "--device cuda: torch sees no CUDA device"),
    ]


@pytest.mark.parametrize(("argv", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_the_study_untouched(h, kept, argv, message):
    result = h.cli(*argv(kept), cwd=kept.cwd)
    h.record_bad_input(result)
    lines = result.err.splitlines()
    assert result.rc == 2, result.err
    assert len(lines) == 1 and lines[0].startswith("ghostnas: error: "), result.err
    assert message in lines[0]
    assert result.out == ""
    assert PASSWORD not in result.err
    assert kept.fingerprint(h.snapshot) == kept.before, "the study or its outputs changed"
    assert not list(kept.cwd.iterdir()), "the command left files in the working directory"
    assert kept.bad_files() == kept.bad_before, "a bad input file (or what a link points to) was changed or added to"


def test_export_with_standard_output_closed_is_one_line(h, kept):
    """``export >&-``: nowhere to put the data is a clear error, not an AttributeError."""
    import subprocess
    import sys

    done = subprocess.run(
        ["bash", "-c", 'exec "$@" >&-', "bash", sys.executable, str(Path(__file__).with_name("faulty_cli.py")),
         "export", "--study", "kept", "--storage", kept.url],
        capture_output=True, text=True, cwd=kept.cwd, stdin=subprocess.DEVNULL, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == ["ghostnas: error: standard output is closed: nothing can be printed (give --out FILE, or keep stdout open)"]
    assert kept.fingerprint(h.snapshot) == kept.before
