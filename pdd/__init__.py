"""PD-Diffusion's library: everything the build stages in `stages/` share, and the mutable source side.

    pdd/source/   the mutable side (DuckDB store, importers, Wikimedia Commons client, mirror, pinning)
    pdd/snapshot  the snapshot format: read, verify, diff (never opens the store)
    pdd/rights/   licence decisions for every source, and the audit's re-decision
    pdd/core/     the ground floor: errors, version, hashing, determinism, params loading and typed configs,
                  the image and shard formats; imports nothing of the project outside itself
    pdd/build/    the engine on top of everything: the DAG registry, the stage runner, manifests, cluster
                  launch, verify, reports (only stages/, the CLI and the engine import it)
    pdd/data/     the export (snapshot -> training shards)
    pdd/train/    the training core (one accelerate loop) and the model builders

Package __init__ files hold no code (a test checks it): they are in every module's import closure.
tests/test_layers.py keeps the floors: the ground imports nothing above it, only stages, the CLI and the
engine import the engine, and no stage imports another stage.
"""
