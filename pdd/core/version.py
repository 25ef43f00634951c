"""The project's version and address (bookkeeping: recorded in manifests and the User-Agent, never a build input)."""

__version__ = "0.2.0"
PROJECT_URL = "https://github.com/pd-diffusion/pd-diffusion"
