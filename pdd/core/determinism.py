"""Seeds alone are not determinism: one place that turns a params seed into a
fully determined process (Python, NumPy, torch, every DataLoader generator), and
that switches torch's kernels by params.yaml `compute` (`apply`, called by the
stage runner before a stage runs): deterministic algorithms, cuDNN deterministic
without benchmarking, TF32 off and CUBLAS_WORKSPACE_CONFIG when
compute.deterministic is true; the fastest kernels when it is false. `record`
says what the process really ran with; every manifest carries it.

torch (and xformers, diffusers) are imported inside the functions that use them, not at the top: the
runner imports this module for every stage, and audit, export and tokenizer never load torch (importing
it costs about 1.5 s here)."""
from __future__ import annotations

import hashlib
import os
import random

import numpy as np

# cuBLAS needs this set before the first CUDA matmul to be deterministic (apply sets it again when asked).
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def derive_seed(seed: int, *names: str) -> int:
    """A stable per-purpose seed (e.g. derive_seed(seed, 'clip', 'loader')), in [0, 2**32)."""
    digest = hashlib.sha256(":".join([str(seed), *names]).encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch. The kernels are switched by `apply` (params.yaml compute)."""
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


ATTENTION = {"kind": "sdpa"}   # the process's attention kernels, set by apply (like torch's own flags: global)


def apply(compute) -> dict:
    """Switch this process's torch kernels as params.yaml `compute` says (a config.ComputeCfg or a dict with
    deterministic and attention); returns `record()`. Raises PddError when xformers is asked for and cannot run here (no GPU or package); the
    xformers + deterministic refusal is config.check's."""
    import torch

    deterministic = compute["deterministic"] if isinstance(compute, dict) else compute.deterministic
    attention = compute["attention"] if isinstance(compute, dict) else compute.attention
    if attention == "xformers":   # with deterministic: true it is refused by config.check, which runs first
        from pdd.core.errors import PddError

        if not torch.cuda.is_available():
            raise PddError("params.yaml: compute.attention: xformers needs a CUDA GPU and this machine has none; "
                           "use attention: sdpa")
        try:
            import xformers.ops  # noqa: F401
        except ImportError:
            raise PddError("params.yaml: compute.attention: xformers is not installed (pip install xformers, GPU "
                           "only); use attention: sdpa") from None
    if deterministic:
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = ":4096:8"
    torch.use_deterministic_algorithms(bool(deterministic))
    torch.backends.cudnn.deterministic = bool(deterministic)
    torch.backends.cudnn.benchmark = not deterministic
    # TF32 (10-bit mantissa matmuls and convolutions on Ampere and later) only when not deterministic.
    # torch 2.9+ API; mixing it with the legacy allow_tf32 flags is an error, so only this one is used.
    tf32 = "ieee" if deterministic else "tf32"
    torch.backends.cuda.matmul.fp32_precision = tf32
    torch.backends.cudnn.conv.fp32_precision = tf32
    torch.backends.cudnn.rnn.fp32_precision = tf32
    ATTENTION["kind"] = attention
    return record()


def record() -> dict:
    """What this process computes with, for the manifest: `deterministic` is true only when every switch is."""
    import torch

    cuda = torch.cuda.is_available()
    tf32 = {"matmul": torch.backends.cuda.matmul.fp32_precision, "cudnn_conv": torch.backends.cudnn.conv.fp32_precision}
    rec = {
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
        "tf32": tf32,
        "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG", ""),
        "attention": ATTENTION["kind"],
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
    }
    rec["deterministic"] = (rec["deterministic_algorithms"] and rec["cudnn_deterministic"] and not rec["cudnn_benchmark"]
                            and "tf32" not in tf32.values() and bool(rec["cublas_workspace_config"])
                            and rec["attention"] == "sdpa")
    return {"deterministic": rec.pop("deterministic"), **rec}


def stage_record(rec: dict | None) -> tuple[dict, list[str]]:
    """The manifest's `determinism` field and its note, for a stage that applied `compute` (rec) or runs no model."""
    if rec is None:
        return {"deterministic": True, "models": "none: this stage runs no torch model"}, []
    if rec["deterministic"]:
        return rec, []
    return rec, ["compute.deterministic is false: nondeterministic kernels were allowed (cuDNN benchmark, TF32 "
                 "and xformers on a GPU): two runs may give different bytes"]


def use_attention(model):
    """Put a diffusers model (VAE, U-Net) on the process's attention kernels (see apply); returns it.
    sdpa is diffusers' default processor (AttnProcessor2_0), set explicitly so that a model never keeps
    another one; xformers: `enable_xformers_memory_efficient_attention`."""
    if ATTENTION["kind"] == "xformers":
        model.enable_xformers_memory_efficient_attention()
    else:
        from diffusers.models.attention_processor import AttnProcessor2_0

        if getattr(model, "attn_processors", None):
            model.set_attn_processor(AttnProcessor2_0())
    return model


def torch_generator(seed: int, *names: str):
    """A torch.Generator for one sampler/DataLoader, seeded from params."""
    import torch

    g = torch.Generator()
    g.manual_seed(derive_seed(seed, *names))
    return g


def seed_worker(worker_id: int) -> None:  # DataLoader(worker_init_fn=seed_worker)
    import torch

    worker_seed = torch.initial_seed() % 2**32
    np.random.seed(worker_seed)
    random.seed(worker_seed)


def rng_state() -> dict:
    """Every RNG's state, to save in a checkpoint so a resumed run matches an uninterrupted one."""
    import torch

    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def nondeterminism_notes() -> list[str]:
    """What this process cannot promise bit-for-bit; recorded in every manifest."""
    notes = []
    try:
        import torch

        if torch.cuda.is_available():
            notes.append(
                "CUDA: with compute.deterministic results are only bitwise stable on the same GPU model, "
                "driver and CUDA/cuDNN versions; xformers kernels are refused in deterministic builds"
            )
    except ImportError:  # pragma: no cover
        pass
    return notes
