"""The build DAG, one thin module per stage (see pdd/build/dag.py for the registry).

Each module declares what its stage computes; pdd.build.runner does the bookkeeping.
"""
