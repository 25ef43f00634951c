"""The model card (README.md with Hub front matter) and provenance.json of the pipeline folder.

Everything in them is a function of the build's inputs (snapshot, params, the content hashes of the
stage outputs, pinned library versions): no timestamps, host names or git revisions, so the folder's
bytes stay a pure function of (snapshot, params, code, seed).
"""
from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

import yaml

from pdd import exclusions, snapshot
from pdd.build.hashing import hash_path, write_json

LIBRARIES = ("torch", "diffusers", "transformers", "accelerate", "tokenizers", "safetensors")
REBUILD = ["git clone <this repository> && cd pd-diffusion",
           "python3 tasks.py build        # sets up .venv from requirements.lock, runs `dvc repro`",
           "# or: dvc repro pipeline | snakemake -c2 models/pipeline | snakemake --profile workflow/profiles/slurm"]


def _versions() -> dict:
    out = {}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def provenance(params: dict, deps: dict, pipeline_class: str) -> dict:
    snap = snapshot.summary(deps["snapshot"])
    labels: dict[str, int] = {}
    for batch in snapshot.iter_batches(deps["snapshot"], columns=["labels"]):
        for row in batch:
            for lb in json.loads(row["labels"]):
                labels[lb["licence"]] = labels.get(lb["licence"], 0) + 1
    sample_metrics = json.loads(Path(deps["sample_metrics"]).read_text()) if Path(deps["sample_metrics"]).exists() else {}
    return {
        "pipeline": pipeline_class,
        "snapshot": {"name": snap["name"], "content_hash": snap["content_hash"], "rows": snap["rows"],
                     "licences": dict(sorted(snap["licences"].items())), "sources": dict(sorted(snap["sources"].items())),
                     "label_licences": dict(sorted(labels.items()))},
        "exclusions": len(exclusions.read(deps["exclusions"])),
        "caption_label_licences": params["export"]["caption"]["label_licences"],
        "stages": {k: hash_path(v) for k, v in sorted(deps.items()) if k in ("unet", "latents", "clip", "tokenizer")},
        "params": {k: params[k] for k in ("seed", "export", "tokenizer", "clip", "vae", "latents", "unet", "sample")},
        "quality": sample_metrics.get("quality", {}),
        "libraries": _versions(),
        "safety_checker": None,
        "rebuild": REBUILD,
    }


def render(p: dict) -> str:
    free_text = set(p["caption_label_licences"]) <= {"pd", "cc0"}
    front = {"license": "cc0-1.0" if free_text else "other",
             "library_name": "diffusers",
             "pipeline_tag": "text-to-image" if p["pipeline"] == "StableDiffusionPipeline" else "unconditional-image-generation",
             "tags": ["pd-diffusion", "public-domain", "cc0", "trained-from-scratch", "reproducible-build"],
             "base_model": [],
             "datasets": [p["snapshot"]["name"]]}
    s, q = p["snapshot"], p["quality"]
    lic = "\n".join(f"| {k} | {v} |" for k, v in s["licences"].items())
    src = "\n".join(f"| {k} | {v} |" for k, v in s["sources"].items())
    qual = ""
    if q:
        qual = (f"\n## Sample quality (no downloaded weights)\n\n| metric | model | floor (train vs val) | ceiling (noise vs val) |\n"
                f"|---|---|---|---|\n| SWD x1e3 (lower is better) | {q.get('swd', float('nan')):.2f} | "
                f"{q.get('swd_floor_train', float('nan')):.2f} | {q.get('swd_ceiling_noise', float('nan')):.2f} |\n"
                f"| FD in our CLIP space | {q.get('fd_clip', float('nan')):.4f} | {q.get('fd_clip_floor_train', float('nan')):.4f} | "
                f"{q.get('fd_clip_ceiling_noise', float('nan')):.4f} |\n\nOn {q.get('n_samples')} samples against "
                f"{q.get('n_val')} val images.\n")
    body = f"""
# PD-Diffusion ({p['pipeline']})

A {'text-to-image' if p['pipeline'] == 'StableDiffusionPipeline' else 'unconditional image'} model trained **from
scratch**, tokenizer, text encoder, VAE and U-Net alike, **only on public-domain and CC0 images**, as a
reproducible build: the dataset snapshot is the source code, these weights are its compiled output.
No weights were downloaded from anywhere; there is no base model.

```python
from diffusers import DiffusionPipeline
pipe = DiffusionPipeline.from_pretrained("models/pipeline")
image = pipe({'"a red apple", ' if p['pipeline'] == 'StableDiffusionPipeline' else ''}num_inference_steps=25).images[0]
```

## Training data

Snapshot `{s['name']}`, content hash `{s['content_hash']}`, {s['rows']} images.

| image licence | images |
|---|---|
{lic}

| source | images |
|---|---|
{src}

Captions come only from labels whose own licence is one of {', '.join(p['caption_label_licences'])}.
Exclusions (takedowns) applied: {p['exclusions']}.

## Safety

`safety_checker` is `None` (`requires_safety_checker=False`): there is no pretrained safety model we could ship
without downloading weights we did not train. The training images are public-domain and CC0 works that passed
the build's licence audit.
{qual}
## Rebuild

```bash
{chr(10).join(p['rebuild'])}
```

Training params, stage output hashes and library versions are in `provenance.json` beside this card.
"""
    return "---\n" + yaml.safe_dump(front, sort_keys=False) + "---\n" + body


def write(out_dir, params: dict, deps: dict, pipeline_class: str) -> dict:
    p = provenance(params, deps, pipeline_class)
    write_json(Path(out_dir) / "provenance.json", p)
    (Path(out_dir) / "README.md").write_text(render(p), encoding="utf-8")
    return {"snapshot": p["snapshot"]["content_hash"], "images": p["snapshot"]["rows"]}
