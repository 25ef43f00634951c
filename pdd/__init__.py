"""PD-Diffusion's library: everything the build stages in `stages/` share, and the mutable source side.

    pdd/source/   the mutable side (DuckDB store, importers, Wikimedia Commons client, mirror, pinning)
    pdd/snapshot  the snapshot format: read, verify, diff (never opens the store)
    pdd/rights/   licence decisions for every source, and the audit's re-decision
    pdd/build/    the DAG registry, the stage runner, params and typed configs, manifests, hashing, determinism
    pdd/data/     image decoding and the training-shard format
    pdd/train/    the training core (one accelerate loop) and the model builders

Package __init__ files hold no code (a test checks it): they are in every module's import closure.
"""
