"""The machine a run executes on: device, threads, matmul peaks, memory.

MFU needs the machine's real matmul peak, not a datasheet number: it is
measured once per (device, threads, dtype, torch version) and cached as
JSON in ``$LMSCALE_CACHE`` (default ``~/.cache/lmscale``), file
``peak_flops.json``: the fp32 and the bf16 peak, which also decide what
``precision = "auto"`` means here (:mod:`lmscale.training.precision`).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lmscale.errors import LmscaleError
from lmscale.files import write_text_atomic

#: OpenMP settings for a CPU shared with other processes: threads that wait
#: for work sleep instead of spinning. A spinning thread steals the core from
#: the one doing the work whenever the machine is oversubscribed; on a busy
#: 2-core machine this made training steps 1.5-2x slower.
OPENMP_ENV = {"OMP_WAIT_POLICY": "PASSIVE"}


def prefer_passive_openmp() -> bool:
    """Apply :data:`OPENMP_ENV` (without overriding the user's) if torch is not loaded yet.

    OpenMP reads these at start-up, so this only works before ``import torch``;
    returns whether it could.
    """
    import sys

    if "torch" in sys.modules:
        return False
    os.environ.update(openmp_env())
    return True


def openmp_env() -> dict[str, str]:
    """:data:`OPENMP_ENV` under the user's own settings (theirs win): for processes started elsewhere."""
    return {key: os.environ.get(key, value) for key, value in OPENMP_ENV.items()}


def cache_dir() -> Path:
    """Where lmscale caches per-machine measurements."""
    return Path(os.environ.get("LMSCALE_CACHE") or Path.home() / ".cache" / "lmscale")


def available_cpus() -> int:
    """CPUs this process may run on (affinity-aware)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def machine_busy_seconds() -> float | None:
    """CPU-seconds every process on this machine has used since boot (Linux ``/proc/stat``; None elsewhere)."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
        ticks = [int(v) for v in fields[1:]]
        idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle and iowait
        return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


#: Shortest work whose CPU share :func:`others_cpu_share` measures.
MIN_SHARE_SECONDS = 0.2


def others_cpu_share(work: Callable[[], Any]) -> tuple[Any, float]:
    """``(work(), share)``: the share of this machine's CPUs that *other* processes used while it ran.

    The machine's busy CPU-seconds over the interval, less this process's
    own (every thread's), over wall time x CPUs; 0.0 where ``/proc/stat``
    cannot be read or the work took under :data:`MIN_SHARE_SECONDS` (the
    kernel counts in ticks of 10 ms). A timing trial that other processes
    shared the CPUs with measures them as much as itself.
    """
    busy0, own0, wall0 = machine_busy_seconds(), time.process_time(), time.perf_counter()
    result = work()
    busy1, own1, wall1 = machine_busy_seconds(), time.process_time(), time.perf_counter()
    if busy0 is None or busy1 is None or wall1 - wall0 < MIN_SHARE_SECONDS:
        return result, 0.0
    others = (busy1 - busy0) - (own1 - own0)
    return result, max(0.0, others / ((wall1 - wall0) * (os.cpu_count() or 1)))


#: Share of the CPUs other processes may use while a timing trial runs; above it the trial
#: measured them as much as itself, and its answer is not cached (:func:`quiet_trial`).
BUSY_SHARE = 0.2


class BusyTrial(Exception):
    """A timing trial shared the CPUs with other processes (``share`` of them); ``value`` is what
    it measured, good for the run at hand at most, not for a cache."""

    def __init__(self, share: float, value: float):
        super().__init__(f"other processes used {share:.0%} of the CPUs during the trial")
        self.share, self.value = share, value


def quiet_trial(measure: Callable[[], float]) -> float:
    """``measure()``, or :class:`BusyTrial` when other processes used more than :data:`BUSY_SHARE`
    of the CPUs meanwhile (inside :func:`cached_json_value`, nothing is cached then)."""
    value, share = others_cpu_share(measure)
    if share > BUSY_SHARE:
        raise BusyTrial(share, value)
    return value


def cached_trial(path: Path, key: str, field: str, measure: Callable[[], float]) -> tuple[float, BusyTrial | None]:
    """``(value, None)``: ``table[key][field]`` of the cache ``path``, measured by a :func:`quiet_trial` of
    ``measure`` on first use; ``(value, busy)`` where that trial shared the CPUs with other processes:
    what it measured, not cached, and why."""
    try:
        return cached_json_value(path, key, field, lambda: quiet_trial(measure)), None
    except BusyTrial as busy:
        return busy.value, busy


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def resolve_device(name: str) -> Any:
    """``auto`` -> CUDA if available else CPU; ``cuda`` without a GPU is an error."""
    import torch

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise LmscaleError("device = 'cuda': no CUDA device is available (use device = 'cpu' or 'auto')")
    if name == "cuda" and os.environ.get("LOCAL_RANK") is not None:
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return torch.device(name)


#: glibc ``mallopt`` parameters (``malloc.h``) and the values a training process sets.
#: By default glibc serves blocks of 128 KiB or more (an activation of a small
#: model: 2048 x 80 floats is 640 KiB) with ``mmap`` and returns them on
#: ``free`` (its threshold adapts, within limits), and trims the heap's free
#: top, so later steps ask the kernel for their activations again and fault in
#: and zero their pages: a 200k-token run at 4/80 took 149k to 298k page
#: faults. Served from the heap and kept there, the same blocks are reused
#: step after step: 101k to 103k, those of the first steps and evaluations
#: (the whole process 0.96-0.97x the wall time, README "Memory").
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
#: Blocks up to this size come from the heap (glibc's largest allowed value on 64-bit).
KEEP_BLOCKS_BELOW = 32 << 20
#: Free memory the heap keeps at its top before giving it back.
KEEP_FREE_HEAP = 512 << 20


def on_glibc() -> bool:
    """Whether this process runs on Linux with glibc (whose ``mallopt`` :func:`keep_freed_memory` calls)."""
    return platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


@functools.cache
def keep_freed_memory() -> bool:
    """Let glibc's malloc keep and reuse freed blocks instead of returning them to the kernel.

    Process-wide, set once per process; returns whether it applied (glibc only: elsewhere, as it was).
    """
    import ctypes

    if not on_glibc():
        return False
    try:
        libc = ctypes.CDLL(None)  # the process's own symbols: glibc's mallopt, no library search
        return bool(libc.mallopt(M_MMAP_THRESHOLD, KEEP_BLOCKS_BELOW)
                    and libc.mallopt(M_TRIM_THRESHOLD, KEEP_FREE_HEAP))
    except (OSError, AttributeError):
        return False


def configure_threads(threads: int | None, world_size: int = 1) -> int:
    """Set torch's intra-op threads (the CPUs of this process, shared among local ranks), and let
    malloc keep freed blocks (:func:`keep_freed_memory`): the set-up of every process that trains
    or times training steps."""
    import torch

    n = threads if threads is not None else max(1, available_cpus() // max(1, world_size))
    keep_freed_memory()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


@contextlib.contextmanager
def torch_threads(threads: int | None):
    """Run the block on ``threads`` torch threads (``None``: as they are), then restore the count."""
    import torch

    before = torch.get_num_threads()
    if threads is not None and threads != before:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def describe_device(device: Any) -> str:
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads, {cpu_model()})"


#: Matmul dtypes whose peak can be measured.
PEAK_DTYPES = ("fp32", "bf16")


def default_peak_dtype(device: Any) -> str:
    """The dtype MFU is quoted against when a run does not say: bf16 on CUDA, fp32 on CPU."""
    return "bf16" if device.type == "cuda" else "fp32"


def _peak_key(device: Any, dtype: str) -> str:
    import torch

    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}|{dtype}|torch={torch.__version__}"
    return _cpu_peak_key(torch.get_num_threads(), dtype, torch.__version__)


def _cpu_peak_key(threads: int, dtype: str, torch_version: str) -> str:
    return f"cpu:{cpu_model()}|threads={threads}|{dtype}|torch={torch_version}"


def cached_cpu_peak(threads: int, dtype: str) -> float | None:
    """The cached CPU matmul peak at ``threads`` threads in ``dtype``, read without importing
    torch; ``None`` if not measured yet or not plausible (:func:`cpu_peak_check`)."""
    version = installed_torch_version()
    if version is None:
        return None
    value, floor = cpu_peak_check(threads, dtype, version)
    return value if floor is None else None


def cpu_peak_check(threads: int, dtype: str, torch_version: str) -> tuple[float | None, float | None]:
    """``(cached peak, floor)`` of this CPU at ``threads`` in ``dtype``; the floor is ``None``
    unless the cached peak is implausible (one read of the cache).

    The floor is the highest cached peak at fewer threads. A large square
    matmul is never slower on more threads of an idle machine, so a cached
    peak below it was likely measured while other processes held the cores:
    one such measurement (a 2-thread bf16 peak of 210 GFLOP/s beside a
    1-thread one of 979) would make ``precision = "auto"`` choose fp32 on every
    later run and quote MFU above 100%. :func:`matmul_peak` measures it once
    more, keeps the higher value and marks it checked against the floor
    (``checked_floor``): a host slower than the one the floor came from
    measures once, not at every run.
    """
    table = read_json_table(cache_dir() / "peak_flops.json")

    def flops(t: int) -> float:
        entry = table.get(_cpu_peak_key(t, dtype, torch_version))
        value = entry.get("flops", 0) if isinstance(entry, dict) else 0
        return float(value) if isinstance(value, int | float) and value > 0 else 0.0

    value = flops(threads)
    if not value:
        return None, None
    floor = max((flops(t) for t in range(1, threads)), default=0.0)
    checked = table[_cpu_peak_key(threads, dtype, torch_version)].get("checked_floor", 0.0)
    if value >= floor or (isinstance(checked, int | float) and checked >= floor):
        return value, None
    return value, floor


def installed_torch_version() -> str | None:
    """The installed torch's version from the package metadata (torch is not imported)."""
    from importlib import metadata

    try:
        return metadata.version("torch")
    except metadata.PackageNotFoundError:
        return None


def cached_value(path: Path, key: str, field: str) -> float | None:
    """``table[key][field]`` of the JSON cache ``path`` if it holds a positive number, else ``None``."""
    entry = read_json_table(path).get(key)
    return float(entry[field]) if isinstance(entry, dict) and entry.get(field, 0) > 0 else None


def measure_matmul_peak(device: Any, seconds: float = 1.5, dtype: str | None = None) -> float:
    """Best FLOP/s of one square matmul in ``dtype`` (default: fp32 on CPU, bf16 on CUDA),
    over many timed tries.

    The maximum over short tries is what the hardware can do: on a machine
    shared with other processes, some tries run while the cores are free.
    """
    import torch

    dtype = dtype or default_peak_dtype(device)
    if dtype not in PEAK_DTYPES:
        raise LmscaleError(f"matmul peak dtype {dtype!r}: expected one of {', '.join(PEAK_DTYPES)}")
    torch_dtype = torch.bfloat16 if dtype == "bf16" else torch.float32
    sizes = (8192,) if device.type == "cuda" else (1024, 2048)
    gen = torch.Generator(device="cpu").manual_seed(0)
    mats = []
    for n in sizes:
        a = torch.randn(n, n, generator=gen).to(device=device, dtype=torch_dtype)
        b = torch.randn(n, n, generator=gen).to(device=device, dtype=torch_dtype)
        out = torch.empty(n, n, device=device, dtype=torch_dtype)
        torch.mm(a, b, out=out)
        mats.append((n, a, b, out))
    best = 0.0
    _sync(device)
    deadline = time.perf_counter() + seconds
    tries = 0
    while time.perf_counter() < deadline or tries < 3 * len(mats):
        n, a, b, out = mats[tries % len(mats)]
        t0 = time.perf_counter()
        torch.mm(a, b, out=out)
        _sync(device)
        best = max(best, 2.0 * n**3 / (time.perf_counter() - t0))
        tries += 1
    return best


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(device: Any, *, refresh: bool = False, dtype: str | None = None, seconds: float = 1.5) -> float:
    """The cached matmul peak of this machine in ``dtype`` (FLOP/s), measured on first use.

    ``dtype`` is ``fp32`` or ``bf16`` (default: fp32 on CPU, bf16 on CUDA).
    ``refresh`` measures again (for ``seconds``) and keeps the higher of the
    two values (a refresh during a busy spell keeps the better one). A cached
    CPU peak below the one at fewer threads (:func:`cpu_peak_check`) is
    measured again, once for that floor.
    """
    dtype = dtype or default_peak_dtype(device)
    extra = None
    if device.type == "cpu" and not refresh:
        import torch

        _, floor = cpu_peak_check(torch.get_num_threads(), dtype, torch.__version__)
        if floor is not None:
            refresh, extra = True, {"checked_floor": floor}  # once more, the higher kept
    return cached_json_value(cache_dir() / "peak_flops.json", _peak_key(device, dtype), "flops",
                             lambda: measure_matmul_peak(device, seconds=seconds, dtype=dtype),
                             refresh=refresh, better=max, extra=extra)


def cached_json_value(path: Path, key: str, field: str, measure: Callable[[], float], *,
                      refresh: bool = False, better: Callable[[float, float], float] | None = None,
                      extra: dict[str, Any] | None = None) -> float:
    """``table[key][field]`` of the JSON cache ``path``, from ``measure()`` on first use.

    The measurement holds a lock on the cache, so processes starting
    together measure one at a time (not against each other) and the later
    ones read the value. ``refresh`` measures again; ``better(old, new)``
    then says which value is kept; ``extra`` fields are stored with it. A
    cache that cannot be written (a read-only home) is not a reason to fail:
    the value is returned.
    """
    cached = None if refresh else cached_value(path, key, field)
    if cached is not None:
        return cached
    with _cache_lock(path):
        table = read_json_table(path)
        old = table.get(key) if isinstance(table.get(key), dict) else {}
        if not refresh and old.get(field, 0) > 0:  # measured by another process meanwhile
            return float(old[field])
        value = float(measure())
        if better is not None and old.get(field, 0) > 0:
            value = float(better(float(old[field]), value))
        if value != old.get(field) or extra:
            table[key] = {**old, **(extra or {}), field: value}
            if value != old.get(field):
                table[key]["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%S")
            try:
                write_text_atomic(path, json.dumps(table, indent=1, sort_keys=True))
            except OSError:
                pass
    return value


def read_json_table(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``; ``{}`` if it is missing, unreadable or not an object."""
    try:
        table = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return table if isinstance(table, dict) else {}


@contextlib.contextmanager
def _cache_lock(path: Path) -> Any:
    """An exclusive ``flock`` on ``<path>.lock`` (nothing if the cache is not writable)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(path.with_name(path.name + ".lock"), "a+")
    except OSError:
        yield
        return
    try:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield
    finally:
        fh.close()


def available_memory(device: Any) -> int:
    """Bytes free for a run: free GPU memory, or MemAvailable (cgroup-limited) on CPU."""
    import torch

    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    avail = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                avail = int(line.split()[1]) * 1024
    except OSError:
        pass
    if avail is None:
        avail = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            raw = Path(limit_file).read_text().strip()
            used = int(Path(usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if raw.isdigit() and int(raw) - used < avail:
            avail = max(0, int(raw) - used)
    return int(avail)
