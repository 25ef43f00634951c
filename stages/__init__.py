"""PD-Diffusion build stages.

Each stage is a module with a thin ``main()`` over plain functions; ``stages.cli``
is the only place that parses argv. See README.md for the tree and the DAG.
"""

__version__ = "0.1.0"
PROJECT_URL = "https://github.com/pd-diffusion/pd-diffusion"
