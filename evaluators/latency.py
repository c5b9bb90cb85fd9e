"""On-device latency probe: how long one forward pass of a built model takes here.

The objective is the median of repeated timed forward passes. A shared machine is noisy (other
processes, frequency changes), so every probe also times a fixed reference model, GhostNet 1.0x
at the same input size, interleaved with the candidate: the ratio candidate/reference is kept
beside the absolute median, and it survives slow load changes that move both alike.

Models run in ``eval()`` mode under ``torch.inference_mode()``. CPU timings use a fixed, recorded
thread count (default 1), the timing thread's CPU time at one thread (time waiting for a core
held by another process is not the model's; ``clock``), flush-denormal, and one memory format chosen once per machine by timing
NCHW against channels_last on the reference model (cached on disk). CUDA timings use
``cudnn.benchmark`` and CUDA events around each run. The optional ``onnxruntime`` backend exports
the model to ONNX and times an ``InferenceSession`` instead.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import gc
import json
import logging
import math
import os
import platform
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from evaluators._denormals import flush_denormals
from evaluators._device import check_device
from spaces import GhostNASError, GhostNetConfig, build_model, check_choice, check_int, check_number, reference, write_atomic

__all__ = ["LatencyProbe", "LatencyResult", "LatencySettings", "cpu_model", "default_cache_dir"]

log = logging.getLogger(__name__)

DEVICES = ("cpu", "cuda")
BACKENDS = ("torch", "onnxruntime")
MEMORY_FORMATS = ("auto", "nchw", "channels_last")
CLOCKS = ("auto", "wall", "cpu")
REFERENCE_NAME = "ghostnet-1.0x"
_FORMAT_CACHE_FILE = "latency_memory_format.json"

Runner = Callable[[], object]


@dataclass(frozen=True)
class LatencySettings:
    """How a probe times a model. The defaults are tuned in docs/BENCHMARKS.md ("Latency probe").

    ``max_seconds`` caps the timed runs of one probe (candidate and reference together) once
    ``min_runs`` are done; timing stops earlier when the ratio candidate/reference is known to
    about ``target_spread / 4`` (or, timing one model alone, when its IQR/median falls below
    ``target_spread``).
    """

    device: str = "cpu"
    # One thread: on a shared 2-core machine a second thread fights other work for the other
    # core, and medians stop meaning anything.
    threads: int = 1
    batch_size: int = 1
    input_size: int | None = None
    # Only the first forward pass after a build is slow (allocator, oneDNN primitive creation).
    warmup: int = 3
    # In calm moments the spread falls below 5% by ten pairs (a probe then takes under 1 s);
    # under load timing runs to the cap, where 2 s (~35 pairs of cifar models) kept the reference
    # ratio within 2-6% between processes. See docs/BENCHMARKS.md, "Latency probe".
    min_runs: int = 10
    max_runs: int = 200
    max_seconds: float = 2.0
    target_spread: float = 0.05
    backend: str = "torch"
    memory_format: str = "auto"
    reference: bool = True
    # What a run's time is: "wall" (perf_counter), or "cpu", the timing thread's CPU time
    # (CLOCK_THREAD_CPUTIME_ID), which leaves out the time the run waited for a core while other
    # processes had it. "auto": cpu for one CPU thread (the whole run is on the calling thread),
    # wall otherwise; CUDA always uses CUDA events. docs/BENCHMARKS.md, "Calibrated latency".
    clock: str = "auto"

    def __post_init__(self) -> None:
        _check_choice("device", self.device, DEVICES)
        _check_choice("backend", self.backend, BACKENDS)
        _check_choice("memory_format", self.memory_format, MEMORY_FORMATS)
        _check_choice("clock", self.clock, CLOCKS)
        _check_int("threads", self.threads, low=1, high=os.cpu_count() or 1, why="(the cores of this machine)")
        _check_int("batch_size", self.batch_size, low=1)
        if self.input_size is not None:
            _check_int("input_size", self.input_size, low=8)
        _check_int("warmup", self.warmup, low=0)
        # Quartiles of fewer than 5 runs are not a spread worth stopping on.
        _check_int("min_runs", self.min_runs, low=5)
        _check_int("max_runs", self.max_runs, low=self.min_runs, why="(at least min_runs)")
        _check_positive("max_seconds", self.max_seconds)
        _check_positive("target_spread", self.target_spread)
        if not isinstance(self.reference, bool):
            raise GhostNASError(f"latency reference must be true or false, got {self.reference!r}")
        if self.backend == "onnxruntime" and self.device != "cpu":
            raise GhostNASError("latency backend 'onnxruntime' times on device 'cpu' only")
        if self.clock == "cpu" and (self.device != "cpu" or self.threads != 1):
            raise GhostNASError("latency clock 'cpu' needs device 'cpu' and 1 thread (other threads' time is not the caller's)")

    @property
    def resolved_clock(self) -> str:
        if self.device == "cuda":
            return "cuda-events"
        if self.clock == "auto":
            return "cpu" if self.threads == 1 else "wall"
        return self.clock


@dataclass(frozen=True)
class LatencyResult:
    """One probe's statistics, in milliseconds.

    ``ratio_to_reference`` is the median of the per-pair ratios candidate/reference over runs
    timed back to back, so load that changes slower than one pair cancels out of it. The search
    objective is ``calibrated_ms`` (see ``evaluators.calibration``); ``median_ms`` is the raw figure.
    """

    median_ms: float
    p10_ms: float
    p90_ms: float
    spread: float  # IQR / median of the candidate's timed runs
    runs: int
    unstable: bool  # spread still >= target_spread when timing stopped at a cap
    reference_median_ms: float | None
    ratio_to_reference: float | None
    env: dict[str, Any]
    times_ms: tuple[float, ...] = field(repr=False)
    reference_times_ms: tuple[float, ...] = field(repr=False)
    # Set by a Calibration: ratio_to_reference x the study's stored reference latency.
    calibrated_ms: float | None = None
    calibration_reference_ms: float | None = None

    def to_dict(self, *, include_times: bool = False) -> dict[str, Any]:
        """JSON-ready; the raw per-run times only when asked (they are long)."""
        data = dataclasses.asdict(self)
        if include_times:
            data["times_ms"], data["reference_times_ms"] = list(self.times_ms), list(self.reference_times_ms)
        else:
            del data["times_ms"], data["reference_times_ms"]
        return data


def default_cache_dir() -> Path:
    """Where per-machine choices are kept: ``$XDG_CACHE_HOME/ghostnas`` or ``~/.cache/ghostnas``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "ghostnas"


class LatencyProbe:
    """Times configs on one device with one set of settings; build it once per search.

    It keeps the reference model (per input size, layout and class count) and the memory-format
    choice, so each ``measure`` builds and times only the candidate.
    """

    def __init__(self, *, settings: LatencySettings | None = None, cache_dir: Path | None = None) -> None:
        self.settings = settings or LatencySettings()
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        check_device(self.settings.device)
        self._ort = _import_onnxruntime() if self.settings.backend == "onnxruntime" else None
        self._formats: dict[str, str] = {}
        self._references: dict[tuple[int, int, int, str], Runner] = {}

    def measure(self, config: GhostNetConfig) -> LatencyResult:
        """Time ``config``'s forward pass (interleaved with the reference model's)."""
        s = self.settings
        if s.input_size is not None:
            config = config.replace(input_size=s.input_size)  # validated: too small is a ConfigError
        size = config.input_size
        with self._timing_context():
            fmt = self._memory_format(config, size)
            runners = [self._runner(config, size, fmt)]
            if s.reference:
                runners.append(self._reference_runner(config, size, fmt))
            times = _time_interleaved(runners, timer=self._timer, settings=s)
        result = _summarise(times, target_spread=s.target_spread, env=self._env(size, fmt))
        log.debug(
            "latency %s: median %.3f ms, spread %.3f over %d runs, ratio %s",
            config.id, result.median_ms, result.spread, result.runs, result.ratio_to_reference,
        )
        if result.unstable:
            log.info("latency %s: spread %.3f stayed above %.3f", config.id, result.spread, s.target_spread)
        return result

    def measure_module(self, module: nn.Module, input_shape: tuple[int, ...], *, like: GhostNetConfig) -> LatencyResult:
        """Time any module (a building block) on an input of ``input_shape`` (batch first),
        interleaved with the reference model of ``like``'s layout and input size."""
        s = self.settings
        size = s.input_size or like.input_size
        with self._timing_context():
            fmt = self._memory_format(like, size)
            x = torch.randn(s.batch_size, *input_shape[1:], generator=torch.Generator().manual_seed(0))
            runners = [self._module_runner(module.eval(), x, fmt), self._reference_runner(like, size, fmt)]
            times = _time_interleaved(runners, timer=self._timer, settings=s)
        return _summarise(times, target_spread=s.target_spread, env=self._env(size, fmt))

    def reference_latency(self, like: GhostNetConfig, *, seconds: float) -> LatencyResult:
        """The reference model for ``like``'s layout timed alone, for up to ``seconds``, until its
        spread is below half the target (at least 3x ``min_runs`` runs)."""
        s = self.settings
        long = dataclasses.replace(
            s, min_runs=3 * s.min_runs, max_runs=max(s.max_runs, 10_000), max_seconds=seconds, target_spread=s.target_spread / 2
        )
        size = s.input_size or like.input_size
        with self._timing_context():
            fmt = self._memory_format(like, size)
            times = _time_interleaved([self._reference_runner(like, size, fmt)], timer=self._timer, settings=long)
        return _summarise(times, target_spread=long.target_spread, env=self._env(size, fmt))

    def fingerprint(self, like: GhostNetConfig) -> dict[str, Any]:
        """What a latency figure for ``like``'s layout depends on: device, versions, threads,
        batch, input size, memory format and the reference model. Equal fingerprints: comparable."""
        size = self.settings.input_size or like.input_size
        with self._timing_context():
            fmt = self._memory_format(like, size)
        ref = self._reference_config(like, size)
        return {**self._env(size, fmt), "reference": REFERENCE_NAME, "stem_stride": ref.stem_stride, "num_classes": ref.num_classes}

    # -- device state -----------------------------------------------------------------------

    @contextlib.contextmanager
    def _timing_context(self) -> Iterator[None]:
        """Fixed threads, flush-denormal, cudnn autotuning and no GC pauses while probing.

        The previous thread count, denormal mode and cudnn flag come back afterwards, so a
        trainer in the same process keeps its own.
        """
        previous_threads = torch.get_num_threads()
        previous_benchmark = torch.backends.cudnn.benchmark
        gc_was_enabled = gc.isenabled()
        torch.set_num_threads(self.settings.threads)
        torch.backends.cudnn.benchmark = True
        gc.disable()  # a collection inside one timed run is an outlier we can avoid
        try:
            with flush_denormals():
                yield
        finally:
            if gc_was_enabled:
                gc.enable()
            torch.backends.cudnn.benchmark = previous_benchmark
            torch.set_num_threads(previous_threads)

    def _timer(self, run: Runner) -> float:
        if self.settings.device == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            run()
            end.record()
            end.synchronize()
            return start.elapsed_time(end)
        clock = time.thread_time_ns if self.settings.resolved_clock == "cpu" else time.perf_counter_ns
        start_ns = clock()
        run()
        return (clock() - start_ns) / 1e6

    def _env(self, size: int, fmt: str) -> dict[str, Any]:
        s = self.settings
        env: dict[str, Any] = {
            "device": s.device,
            "backend": s.backend,
            "cpu": cpu_model(),
            "threads": s.threads,
            "clock": s.resolved_clock,
            "memory_format": fmt,
            "dtype": "float32",
            "batch_size": s.batch_size,
            "input_size": size,
            "torch": torch.__version__,
        }
        if s.device == "cuda":
            env["gpu"] = torch.cuda.get_device_name()
        if self._ort is not None:
            env["onnxruntime"] = self._ort.__version__
        return env

    # -- models -----------------------------------------------------------------------------

    def _runner(self, config: GhostNetConfig, size: int, fmt: str) -> Runner:
        # Building draws random initial weights; keep the caller's RNG stream (a trainer seeds
        # per trial) untouched. Weight values do not change the speed of dense float kernels.
        with torch.random.fork_rng(devices=[]):
            model = build_model(config, deploy=True)  # eval mode, ghostv3 blocks fused
        x = torch.randn(self.settings.batch_size, 3, size, size, generator=torch.Generator().manual_seed(0))
        return self._module_runner(model, x, fmt)

    def _module_runner(self, model: nn.Module, x: torch.Tensor, fmt: str) -> Runner:
        if self._ort is not None:
            return _onnx_runner(self._ort, model, x, threads=self.settings.threads)
        model, x = model.to(self.settings.device), x.to(self.settings.device)
        if fmt == "channels_last":
            model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
        return functools.partial(model, x)

    def _reference_config(self, config: GhostNetConfig, size: int) -> GhostNetConfig:
        # Configs carry no preset name: a stride-1 stem is what the cifar preset makes.
        preset = "cifar" if config.stem_stride == 1 else "imagenet"
        return reference(REFERENCE_NAME, preset=preset, num_classes=config.num_classes, input_size=size)

    def _reference_runner(self, config: GhostNetConfig, size: int, fmt: str) -> Runner:
        key = (size, config.stem_stride, config.num_classes, fmt)
        if key not in self._references:
            self._references[key] = self._runner(self._reference_config(config, size), size, fmt)
        return self._references[key]

    # -- memory format ----------------------------------------------------------------------

    def _memory_format(self, config: GhostNetConfig, size: int) -> str:
        """The settings' format, or for ``auto`` the faster one on the reference model."""
        s = self.settings
        if s.backend == "onnxruntime":
            return "nchw"  # ONNX graphs are NCHW; ORT picks its internal layouts itself
        if s.memory_format != "auto":
            return s.memory_format
        key = self._format_key(size, config.stem_stride)
        if key not in self._formats:
            cached = self._read_format_cache().get(key)
            if cached in ("nchw", "channels_last"):
                self._formats[key] = cached
            else:
                self._formats[key] = self._choose_format(config, size, key)
        return self._formats[key]

    def _format_key(self, size: int, stem_stride: int) -> str:
        s = self.settings
        device = torch.cuda.get_device_name() if s.device == "cuda" else cpu_model()
        return (
            f"{s.device}:{device}|torch {torch.__version__}|threads {s.threads}|batch {s.batch_size}"
            f"|input {size}|stem stride {stem_stride}"
        )

    def _choose_format(self, config: GhostNetConfig, size: int, key: str) -> str:
        ref = self._reference_config(config, size)
        runners = [self._runner(ref, size, "nchw"), self._runner(ref, size, "channels_last")]
        nchw, channels_last = _time_interleaved(runners, timer=self._timer, settings=self.settings)
        ratio = float(np.median(np.divide(channels_last, nchw)))  # paired, as in measure()
        choice = "channels_last" if ratio < 1 else "nchw"
        log.info("latency memory format for %s: %s (channels_last/nchw %.3f)", key, choice, ratio)
        entry = {
            "memory_format": choice,
            "nchw_ms": float(np.median(nchw)),
            "channels_last_ms": float(np.median(channels_last)),
            "channels_last_ratio": ratio,
            "measured": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        self._write_format_cache(key, entry)
        return choice

    def _read_format_cache(self) -> dict[str, str]:
        path = self.cache_dir / _FORMAT_CACHE_FILE
        try:
            data = json.loads(path.read_text())
            return {k: v["memory_format"] for k, v in data.items()}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            log.warning("ignoring unreadable latency cache %s (%s); measuring again", path, exc)
            return {}

    def _write_format_cache(self, key: str, entry: dict[str, Any]) -> None:
        path = self.cache_dir / _FORMAT_CACHE_FILE
        try:
            data = json.loads(path.read_text()) if path.exists() else {}
        except (OSError, ValueError) as exc:
            log.warning("replacing unreadable latency cache %s (%s)", path, exc)
            data = {}
        if not isinstance(data, dict):
            data = {}
        data[key] = entry
        try:  # write then rename: workers of one search may share the file
            write_atomic(path, json.dumps(data, indent=2, sort_keys=True))
        except GhostNASError as exc:
            log.warning("cannot write latency cache %s (%s); the choice holds for this process only", path, exc)


# -- timing and statistics --------------------------------------------------------------------


Timer = Callable[[Runner], float]


def _time_interleaved(runners: Sequence[Runner], *, timer: Timer, settings: LatencySettings) -> list[list[float]]:
    """Per-runner times (ms): warm-up discarded, then rounds of one run each until stable or capped."""
    with torch.inference_mode():
        for _ in range(settings.warmup):
            for run in runners:
                run()
        return _timed_rounds(runners, timer=timer, settings=settings)


def _timed_rounds(runners: Sequence[Runner], *, timer: Timer, settings: LatencySettings) -> list[list[float]]:
    times: list[list[float]] = [[] for _ in runners]
    started = time.perf_counter()
    while True:
        # Alternate who goes first, so no model always runs on the caches the other left.
        order = range(len(runners)) if len(times[0]) % 2 == 0 else reversed(range(len(runners)))
        for i in order:
            times[i].append(timer(runners[i]))
        runs = len(times[0])
        if runs < settings.min_runs:
            continue
        if _settled(times, settings.target_spread):
            return times
        if runs >= settings.max_runs or time.perf_counter() - started >= settings.max_seconds:
            return times


def _settled(times: list[list[float]], target: float) -> bool:
    """Enough runs: for a pair (candidate and reference) once their per-pair ratio, the figure
    kept, is known to about ``target / 4`` (its IQR/median over sqrt(pairs)); for one model once
    its own spread is below ``target``. A candidate's spread alone fell below 5 % at 10 pairs in
    half the probes under load, where the ratio's median still moved 2 % between processes."""
    if len(times) == 2:
        return _spread(np.divide(times[0], times[1])) / math.sqrt(len(times[0])) < target / 4
    return all(_spread(t) < target for t in times)


def _spread(times: Sequence[float]) -> float:
    q25, q50, q75 = np.percentile(times, [25, 50, 75])
    return float((q75 - q25) / q50)


def _summarise(times: list[list[float]], *, target_spread: float, env: dict[str, Any]) -> LatencyResult:
    candidate = times[0]
    p10, median, p90 = (float(v) for v in np.percentile(candidate, [10, 50, 90]))
    spread = _spread(candidate)
    ref = times[1] if len(times) > 1 else []
    return LatencyResult(
        median_ms=median,
        p10_ms=p10,
        p90_ms=p90,
        spread=spread,
        runs=len(candidate),
        unstable=spread >= target_spread,
        reference_median_ms=float(np.median(ref)) if ref else None,
        ratio_to_reference=float(np.median(np.divide(candidate, ref))) if ref else None,
        env=env,
        times_ms=tuple(candidate),
        reference_times_ms=tuple(ref),
    )


# -- onnxruntime --------------------------------------------------------------------------------


def _import_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise GhostNASError("latency backend 'onnxruntime' needs onnxruntime: pip install 'ghostnas[onnx]'") from None
    return onnxruntime


def _onnx_runner(ort: Any, model: nn.Module, x: torch.Tensor, *, threads: int) -> Runner:
    """An InferenceSession for ``model`` at ``x``'s static shape, on fixed CPU threads."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: ORT warns about every unused initializer
    with tempfile.TemporaryDirectory(prefix="ghostnas-onnx-") as tmp:
        path = Path(tmp) / "model.onnx"
        # The TorchScript exporter takes ~1 s on a GhostNet where the dynamo one takes ~8-15 s on
        # this class of CPU, and the graph of a static-shape CNN is the same; its deprecation
        # warning is not the user's to act on.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(model, (x,), str(path), dynamo=False, input_names=["input"], output_names=["logits"])
        session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    return functools.partial(session.run, None, {"input": x.numpy()})


# -- helpers ------------------------------------------------------------------------------------


@functools.cache
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        log.debug("no /proc/cpuinfo; naming the CPU by platform")
    return platform.processor() or platform.machine() or "unknown"


def _check_int(name: str, value: Any, *, low: int, high: int | None = None, why: str = "") -> None:
    check_int(f"latency {name}", value, low=low, high=high, why=why)


def _check_positive(name: str, value: Any) -> None:
    check_number(f"latency {name}", value, low=0, low_open=True)


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    check_choice(f"latency {name}", value, choices)
