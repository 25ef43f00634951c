"""The project's version and address, and the versions of the libraries a build ran with (bookkeeping:
recorded in manifests, the model card and the User-Agent, never a build input)."""
from __future__ import annotations

from importlib import metadata

__version__ = "0.2.0"
PROJECT_URL = "https://github.com/pd-diffusion/pd-diffusion"


def package_versions(names) -> dict:
    """{name: installed version, or None when the package is not installed}, in the order given."""
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out
