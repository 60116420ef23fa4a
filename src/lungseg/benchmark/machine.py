"""What the benchmark ran on, and the machine's peak float32 FLOP/s with how it was derived."""

from __future__ import annotations

import importlib
import os
import platform
import re
import shutil
import subprocess
import time
from pathlib import Path

LIBRARIES = ("lungseg", "torch", "onnxruntime", "onnx", "numpy", "cv2", "tensorrt", "pydicom")


def _cpuinfo() -> dict:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    first = text.split("\n\n")[0]
    return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in first.splitlines()) if k.strip()}


def cpu_count() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def fp32_flops_per_cycle(flags: set[str]) -> tuple[int, str]:
    """float32 FLOPs one core can retire per cycle, from its vector extensions, and why."""
    if "avx512f" in flags:
        return 64, "AVX-512: 2 FMA units x 16 float32 lanes x 2 FLOPs (mul + add)"
    if "avx2" in flags and "fma" in flags:
        return 32, "AVX2 + FMA: 2 FMA units x 8 float32 lanes x 2 FLOPs (mul + add)"
    if "avx" in flags:
        return 16, "AVX: 1 add + 1 mul unit x 8 float32 lanes"
    return 8, "SSE: 1 add + 1 mul unit x 4 float32 lanes"


def cpu_description() -> dict:
    info = _cpuinfo()
    flags = set(info.get("flags", "").split())
    mhz = float(info.get("cpu MHz", 0) or 0)
    per_cycle, why = fp32_flops_per_cycle(flags)
    cores = cpu_count()
    peak = cores * mhz * 1e6 * per_cycle
    try:
        mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        mem_gib = float("nan")
    return {
        "model": info.get("model name", platform.processor() or platform.machine()),
        "cores": cores,
        "mhz": mhz,
        "vector": ", ".join(f for f in ("avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "avx2", "fma") if f in flags),
        "memory_gib": round(mem_gib, 1),
        "peak_fp32_flops": peak,
        "peak_derivation": (f"{cores} cores x {mhz:.0f} MHz (the clock /proc/cpuinfo reports) x {per_cycle} "
                            f"FLOP/cycle ({why}) = {peak / 1e9:.0f} GFLOP/s"),
    }


def gpu_description() -> dict | None:
    """The first CUDA GPU as torch sees it, with its float32 peak (CUDA cores, not tensor cores)."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    p = torch.cuda.get_device_properties(0)
    mhz = _nvidia_smi_max_sm_clock()
    lanes = 128 if p.major >= 8 and (p.major, p.minor) != (8, 0) else 64  # FP32 lanes per SM (A100: 64)
    peak = p.multi_processor_count * lanes * 2 * mhz * 1e6 if mhz else float("nan")
    return {
        "name": p.name,
        "memory_gib": round(p.total_memory / 2**30, 1),
        "sm_count": p.multi_processor_count,
        "capability": f"{p.major}.{p.minor}",
        "max_sm_mhz": mhz,
        "peak_fp32_flops": peak,
        "peak_derivation": (f"{p.multi_processor_count} SMs x {lanes} FP32 lanes x 2 FLOPs x {mhz} MHz "
                            f"(nvidia-smi max SM clock) = {peak / 1e12:.1f} TFLOP/s (CUDA cores; TF32 is off)"
                            if mhz else "unknown: nvidia-smi gave no clock"),
    }


def _nvidia_smi_max_sm_clock() -> float | None:
    exe = shutil.which("nvidia-smi")
    if not exe:
        return None
    try:
        out = subprocess.run([exe, "--query-gpu=clocks.max.sm", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=20).stdout
        return float(out.split()[0])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def measured_gemm_flops(device: str = "cpu", n: int = 2048, repeat: int = 5) -> float:
    """Best float32 FLOP/s of an n x n x n matrix product through torch: the attainable ceiling."""
    import torch

    dev = torch.device(device)
    a = torch.randn(n, n, device=dev)
    b = torch.randn(n, n, device=dev)
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        best = float("inf")
        for _ in range(repeat + 1):
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            torch.mm(a, b)
            if dev.type == "cuda":
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - t)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    return 2 * n**3 / best


def library_versions() -> dict:
    out = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            out[name] = getattr(importlib.import_module(name), "__version__", "?")
        except Exception:  # noqa: BLE001 - absent or broken: recorded as absent
            out[name] = None
    return out


def describe() -> dict:
    """Machine, CPU, GPU and library versions, for the results' header."""
    return {
        "host_os": f"{platform.system()} {platform.release()}",
        "cpu": cpu_description(),
        "gpu": gpu_description(),
        "versions": library_versions(),
    }


def short_cpu_name(cpu: dict) -> str:
    return re.sub(r"\s+", " ", f"{cpu['model']} ({cpu['cores']} cores, {cpu['vector'] or 'no AVX2'})")
