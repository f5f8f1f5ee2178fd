"""N vLLM servers on one GPU: how many fit side by side, their memory shares and CPU placement,
a staggered start, and one stop for all of them.

Side by side, every backend's measured runs can be interleaved (A B C, A B C, ...) so that drift
of the machine hits each backend alike, and the starts overlap. Each server must still hold the
KV cache its load needs, or vLLM would queue or preempt requests and the run would measure that:

    KV bytes per token = 2 (K and V) x layers x kv_heads x head_dim x dtype bytes
    need per server    = weights + tokens in flight x KV bytes per token + OVERHEAD_GIB
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from attnbench.backends.registry import Backend
from attnbench.serving.server import ServerFailed, ServerSpec, VllmServer, wait_gpu_released

GIB = 2**30
OVERHEAD_GIB = 4.0  # activations of the profile run, CUDA graphs, CUDA context (measured: 2-4 GiB)
USABLE = 0.90  # of the GPU's memory, shared by the servers (vLLM's default for one server)
CLIENT_CORES = 4  # cores kept for the load generator when the machine has SPLIT_CORES or more
SPLIT_CORES = 8  # below this, servers and client share every core, and vLLM's frontend is not split
# vLLM API-server processes per server. With one, that process (every stream's detokenizing and
# SSE) sets the pace at 256 streams: on the H200, fa3 with Qwen3-0.6B at 1000:1000 x 256 gave
# 11.8k out tok/s with one (the process at 87-99% of a core, engine TPOT 12.9 ms, client TPOT 20.8)
# and 18.6k with four (client TPOT 12.9 ms = engine's), run-to-run half-range 6% -> 1%.
API_SERVERS = 4
# Logged once a server has sized and allocated its KV cache; the next one may start profiling then.
# (Two servers profiling at once can see each other's memory come and go and refuse to start.)
MEMORY_TAKEN = re.compile(r"GPU KV cache size|Available KV cache memory|KV cache memory")
MEMORY_FLAG = "--gpu-memory-utilization"  # vLLM's: the fraction of the GPU's memory a server may take
# vLLM's: a KV cache of this size; the server then skips memory profiling (and ignores the fraction),
# so servers that all have one can start at the same time
KV_BYTES_FLAG = "--kv-cache-memory-bytes"


def compile_cache_cold(env: dict | None = None) -> bool:
    """No vLLM compile cache on this machine yet: a fresh one, whose first server also JIT-compiles
    the Triton kernels of vLLM's post-capture warm-up (torch.compile's cache is per attention
    backend; those kernels are shared). On a fresh H200, two servers with a fixed KV cache were
    ready together after 266 s when started at once (each warm-up 122-124 s), and after 245 s with
    the second started once the first had taken its memory (the first's warm-up 108 s, the
    second's 10 s, its whole start 103 s)."""
    env = os.environ if env is None else env
    root = env.get("VLLM_CACHE_ROOT") or os.path.join(env.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "vllm")
    cache = os.path.join(root, "torch_compile_cache")
    return not (os.path.isdir(cache) and any(os.scandir(cache)))


def start_together(specs: list[ServerSpec]) -> bool:
    """Every server has a fixed KV cache, so none profiles free memory and none need wait for another's."""
    return all(flag_value(spec.extra_args, KV_BYTES_FLAG) is not None for spec in specs)


def first_alone(specs: list[ServerSpec]) -> bool:
    """Whether running() starts the first server alone: servers that could all start together,
    on a fresh machine."""
    return len(specs) > 1 and start_together(specs) and compile_cache_cold()


def dtype_bytes(dtype: str | None) -> int:
    d = str(dtype or "bfloat16").lower()
    return 4 if "32" in d else 1 if "8" in d else 2


def kv_bytes_per_token(shape: dict) -> int:
    return 2 * int(shape["num_hidden_layers"]) * int(shape["num_key_value_heads"]) * int(shape["head_dim"]) \
        * dtype_bytes(shape.get("dtype"))


def weight_bytes(cfg: dict) -> int:
    """Parameters of a dense decoder from its config.json, times the dtype's size."""
    cfg = cfg.get("text_config", cfg)
    h, layers, vocab = int(cfg["hidden_size"]), int(cfg["num_hidden_layers"]), int(cfg["vocab_size"])
    heads = int(cfg["num_attention_heads"])
    kv = int(cfg.get("num_key_value_heads", heads))
    hd = int(cfg.get("head_dim") or h // heads)
    inter = int(cfg.get("intermediate_size", 4 * h))
    per_layer = h * hd * (2 * heads + 2 * kv) + 3 * h * inter
    embed = vocab * h * (1 if cfg.get("tie_word_embeddings", False) else 2)
    return (layers * per_layer + embed) * dtype_bytes(cfg.get("torch_dtype") or cfg.get("dtype"))


def gpu_memory_gib() -> float | None:
    """The first GPU's memory: $ATTNBENCH_GPU_MEMORY_GIB, else what nvidia-smi reports; None where neither."""
    from attnbench import provenance

    if os.environ.get("ATTNBENCH_GPU_MEMORY_GIB"):
        return float(os.environ["ATTNBENCH_GPU_MEMORY_GIB"])
    gpus = provenance.gpus()
    try:
        return float(gpus[0]["memory_mib"]) / 1024 if gpus else None
    except (KeyError, ValueError):
        return None


@dataclass
class Plan:
    waves: list[list[Backend]]  # servers that run side by side, wave after wave
    memory_share: float | None  # --gpu-memory-utilization per server; None: vLLM's default
    reason: str  # why this many side by side, for the terminal and summary.md
    # side by side, when what a server holds besides its KV cache is known: the KV cache each gets
    # (its share less that), given as --kv-cache-memory-bytes so that the servers start together
    kv_cache_gib: float | None = None

    @property
    def side_by_side(self) -> bool:
        return any(len(w) > 1 for w in self.waves)


def plan(backends: list[Backend], need_gib: float | None, total_gib: float | None,
         parallel: bool | None = None, serve_args: list[str] = (), outside_gib: float = 0.0,
         resident_gib: float | None = None) -> Plan:
    """How many servers share the GPU at once. `parallel` False: one at a time; True or None: as
    many as fit (True insists and says when none fit beside another). `outside_gib`: what each
    server takes beyond its --gpu-memory-utilization share (memory vLLM does not profile, such
    as parity's full-vocabulary prompt logits); it is left free beside the shares.
    `resident_gib`: what a server holds besides its KV cache (resident_gib()); given, side-by-side
    servers get a fixed KV cache (their share less it) and start together, unless `serve_args`
    fix one themselves."""
    one = [[b] for b in backends]
    if len(backends) < 2:
        return Plan(one, None, "one backend")
    if parallel is False:
        return Plan(one, None, "one server at a time (--no-parallel-start)")
    if flag_value(list(serve_args), MEMORY_FLAG) is not None:
        return Plan(one, None, f"one server at a time: --serve-arg sets {MEMORY_FLAG} itself")
    if need_gib is None or total_gib is None:
        what = "the model's KV cache size" if need_gib is None else "the GPU's memory"
        return Plan(one, None, f"one server at a time: {what} is unknown")
    fit = int(USABLE * total_gib // (need_gib + outside_gib))
    beside = f" + {outside_gib:.1f} GiB beside its share" if outside_gib else ""
    if fit < 2:
        return Plan(one, None, f"one server at a time: each needs {need_gib:.1f} GiB{beside} of the GPU's "
                               f"{total_gib:.0f} GiB (x{USABLE:.2f} usable)")
    k = min(fit, len(backends))
    waves = [backends[i:i + k] for i in range(0, len(backends), k)]
    share = round(USABLE / k - outside_gib / total_gib, 3)
    reason = (f"{k} servers side by side, {share:.3f} of the GPU's {total_gib:.0f} GiB each "
              f"(each needs {need_gib:.1f} GiB{beside})")
    kv = None
    if resident_gib is not None and flag_value(list(serve_args), KV_BYTES_FLAG) is None:
        kv = math.floor(10 * (share * total_gib - resident_gib)) / 10
        reason += f", a {kv:.1f} GiB KV cache each ({KV_BYTES_FLAG}, so none profiles memory)"
    return Plan(waves, share, reason, kv)


def unmet(layout: Plan, parallel: bool | None) -> str | None:
    """The notice a command prints when --parallel-start was asked for and the servers cannot run
    side by side."""
    return f"--parallel-start asked, but {layout.reason}" if parallel and not layout.side_by_side else None


def need_gib(cfg: dict | None, shape: dict | None, tokens_in_flight: int) -> float | None:
    """GiB one server needs for a load with this many tokens (prompt + output) in flight at once."""
    resident = resident_gib(cfg)
    if resident is None or not shape or not all(shape.get(k) for k in ("num_hidden_layers", "num_key_value_heads",
                                                                          "head_dim")):
        return None
    return resident + tokens_in_flight * kv_bytes_per_token(shape) / GIB


def resident_gib(cfg: dict | None) -> float | None:
    """GiB a server holds besides its KV cache: the weights, and OVERHEAD_GIB for the rest."""
    try:
        return weight_bytes(cfg) / GIB + OVERHEAD_GIB if cfg else None
    except (KeyError, TypeError, ValueError):
        return None


PREFILL_TOKENS_PER_STEP = 16_384  # the most prompt tokens vLLM prefills in one step (its default budget, or less)


def tokens_in_flight(requests: int, shapes: list[tuple[int, int]]) -> int:
    """Most tokens (prompt + output) a load of `requests` in flight at once needs in the KV cache,
    over its (input, output) shapes. A request that decodes holds its KV from its first token to
    its last, so every request in flight counts in full. A request with one output token leaves as
    soon as it is prefilled: only the prompts of one step's prefill budget (plus the one being
    started) are resident, and the rest wait in the queue whatever the cache size, so a bigger
    cache would not change what is measured."""
    def resident(i: int, o: int) -> int:
        if o > 1:
            return requests * (i + o)
        return min(requests, -(-PREFILL_TOKENS_PER_STEP // i) + 1) * (i + o)

    return max(resident(i, o) for i, o in shapes)


def cpu_split(n_cpus: int | None = None) -> tuple[tuple[int, ...] | None, tuple[int, ...] | None]:
    """(server cores, client cores): the last CLIENT_CORES of the cores this process may use go to
    the load generator, the rest to the servers; no split below SPLIT_CORES."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None, None
    if n_cpus is not None:
        cpus = cpus[:n_cpus]
    if len(cpus) < SPLIT_CORES:
        return None, None
    return tuple(cpus[:-CLIENT_CORES]), tuple(cpus[-CLIENT_CORES:])


def memory_args(share: float | None, serve_args: list[str] | tuple[str, ...] = (),
                alone: float | None = None, kv_cache_gib: float | None = None) -> list[str]:
    """The vLLM arguments that give a server its share of the GPU's memory: `share` as plan decided
    it, else `alone` (a command's own choice for a server alone; None: vLLM's default), and nothing
    where `serve_args` set --gpu-memory-utilization themselves; with `kv_cache_gib`, that KV cache
    too, unless `serve_args` set one. (A caller that puts the user's arguments after these may
    leave them out: the last value wins in vLLM's argparse.)"""
    if flag_value(list(serve_args), MEMORY_FLAG) is not None:
        return []
    value = share or alone
    out = [MEMORY_FLAG, str(value)] if value else []
    if kv_cache_gib and flag_value(list(serve_args), KV_BYTES_FLAG) is None:
        out += [KV_BYTES_FLAG, str(int(kv_cache_gib * GIB))]
    return out


def server_args(model: str, embedded_names) -> list[str]:
    """vLLM arguments every server of this model gets: an embedded architecture has no weights."""
    return ["--load-format", "dummy"] if model in embedded_names else []


def flag_value(args: list[str], flag: str) -> str | None:
    """The value a vLLM argument list gives `flag`, as `--flag V` or `--flag=V` (the last wins, as
    in argparse); None when absent."""
    value = None
    for i, a in enumerate(args):
        if a.startswith(flag + "="):
            value = a.partition("=")[2]
        elif a == flag and i + 1 < len(args):
            value = args[i + 1]
    return value


def api_server_count(serve_args: list[str], n_cpus: int | None = None) -> int:
    """vLLM API-server processes a server started with these arguments runs: the user's
    --api-server-count, else API_SERVERS on a machine of SPLIT_CORES or more cores, else vLLM's
    default of one."""
    given = flag_value(serve_args, "--api-server-count")
    if given is not None:
        return int(given) if given.isdigit() else 1
    if n_cpus is None:
        try:
            n_cpus = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            n_cpus = os.cpu_count() or 1
    return API_SERVERS if n_cpus >= SPLIT_CORES else 1


def frontend_args(serve_args: list[str], n_cpus: int | None = None) -> list[str]:
    """What a load benchmark adds to the user's arguments so that vLLM's frontend is not the bottleneck."""
    if flag_value(serve_args, "--api-server-count") is not None:
        return []
    n = api_server_count(serve_args, n_cpus)
    return ["--api-server-count", str(n)] if n > 1 else []


@contextlib.contextmanager
def running(specs: list[ServerSpec], status: Callable[[str], None] | None = None,
            stagger_timeout_s: float = 600.0,
            interrupt_grace_s: float | None = None,
            on_interrupt: Callable[[BaseException], None] | None = None,
            lead_alone: bool | None = None) -> Iterator[list[VllmServer | ServerFailed]]:
    """Start every server, each once the one before has taken its GPU memory (its log says so, it
    is ready, or it died; where every one has a fixed KV cache, so none profiles free memory, all
    at once, or on a fresh machine (first_alone(specs), unless `lead_alone` says) the first alone
    until it has taken its memory, by when it has compiled what the others then reuse, and the
    rest together), wait
    until all are ready, yield each server or why it failed, and
    always stop them all: on errors, Ctrl-C, SIGTERM or a crash of one of them. Interrupted,
    the stop grace is cut to `interrupt_grace_s` (when given) and the GPU is not waited for, so
    the cleanup ends before a `timeout -k` follow-up SIGKILL; `on_interrupt` hears of it first."""
    servers = [VllmServer(spec) for spec in specs]
    out: list[VllmServer | ServerFailed] = list(servers)
    together = start_together(specs)
    lead_alone = first_alone(specs) if lead_alone is None else lead_alone
    interrupted = False
    try:
        for i, server in enumerate(servers):
            server.start()
            if i + 1 < len(servers) and (not together or (i == 0 and lead_alone)):
                server.wait_for_log(MEMORY_TAKEN, stagger_timeout_s)
        for i, server in enumerate(servers):
            try:
                server.wait_ready(status)
            except ServerFailed as e:
                out[i] = e
                server.stop(wait_gpu=False)
        yield out
    except (KeyboardInterrupt, SystemExit) as e:
        interrupted = interrupt_grace_s is not None
        if on_interrupt:
            on_interrupt(e)
        raise
    finally:
        if interrupted:
            stop_all(servers, grace_s=interrupt_grace_s, wait_gpu=False)
        else:
            stop_all(servers)


@contextlib.contextmanager
def serving(spec: ServerSpec, status: Callable[[str], None] | None = None) -> Iterator[VllmServer]:
    """One server: yield it once ready, raise ServerFailed if it does not come up, and always stop
    it (also on errors and Ctrl-C)."""
    with running([spec], status) as (server,):
        if isinstance(server, ServerFailed):
            raise server
        yield server


def stop_all(servers: list[VllmServer], grace_s: float | None = None, wait_gpu: bool = True) -> None:
    """Stop every server at once (each SIGTERM grace, default the spec's, runs in parallel, so N
    servers cost one grace), then wait for the GPU unless `wait_gpu` is False."""
    threads = [threading.Thread(target=s.stop, kwargs={"grace_s": grace_s, "wait_gpu": False})
               for s in servers if s.proc is not None]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if wait_gpu:
        wait_gpu_released()
