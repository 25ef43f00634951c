"""Seeds alone are not determinism: one place that turns a params seed into a
fully determined process (Python, NumPy, torch, every DataLoader generator)."""
from __future__ import annotations

import hashlib
import os
import random

import numpy as np

# cuBLAS needs this set before the first CUDA matmul to be deterministic.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def derive_seed(seed: int, *names: str) -> int:
    """A stable per-purpose seed (e.g. derive_seed(seed, 'clip', 'loader')), in [0, 2**32)."""
    digest = hashlib.sha256(":".join([str(seed), *names]).encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big")


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed Python, NumPy and torch, and switch torch to deterministic algorithms."""
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True


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
                "CUDA: deterministic algorithms are on, but results are only bitwise stable on the same GPU model, "
                "driver and CUDA/cuDNN versions; xformers/flash attention kernels are not used in deterministic builds"
            )
    except ImportError:  # pragma: no cover
        pass
    return notes
