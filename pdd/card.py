"""The model card (README.md with Hub front matter) and provenance.json of the pipeline folder.

Everything in them is a function of the build's inputs (snapshot, params, the content hashes of the
stage outputs, pinned library versions): no timestamps, host names or git revisions, so the folder's
bytes stay a pure function of (snapshot, params, code, seed).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from pdd import exclusions, snapshot
from pdd.core.hashing import hash_path, write_json
from pdd.core.ids import printable
from pdd.core import shards
from pdd.data.export import pick_labels
from pdd.core.version import package_versions

LIBRARIES = ("torch", "diffusers", "transformers", "accelerate", "tokenizers", "safetensors")
REBUILD = ["git clone <this repository> && cd pd-diffusion",
           "python3 tasks.py build        # sets up .venv from requirements.lock, runs `dvc repro`",
           "# or: dvc repro pipeline | snakemake -c2 models/pipeline | snakemake --profile workflow/profiles/slurm"]


ATTRIBUTION_COLUMNS = ("file_id", "split", "page_id", "field", "licence", "author", "source_url", "text")


def needs_attribution(licence: str) -> bool:
    """CC BY and CC BY-SA (any version) require attribution; pd and cc0 do not."""
    return str(licence).lower().startswith("cc-by")


def _tsv(value) -> str:
    return " ".join(str(value if value is not None else "").split())


def _exported(export_dir) -> dict:
    """file_id -> (split, caption) of every exported row."""
    out = {}
    for split in shards.read_index(export_dir)["shards"]:
        t = shards.read_split(export_dir, split, columns=["file_id", "caption"])
        for fid, cap in zip(t.column("file_id").to_pylist(), t.column("caption").to_pylist()):
            out[fid] = (split, cap)
    return out


def attribution(snapshot_path, export_dir, caption_cfg: dict) -> list[dict]:
    """Every exported row whose caption uses a label under a licence that requires attribution: the label
    (the one export picked for that field, pdd.data.export.pick_labels) and whom and where to credit."""
    allowed = list(caption_cfg["label_licences"])
    if not any(needs_attribution(lic) for lic in allowed):
        return []
    fields = set(re.findall(r"\{([A-Za-z_][A-Za-z0-9_]*)\}", caption_cfg["template"]))
    exported = _exported(export_dir)
    out = []
    for batch in snapshot.iter_batches(snapshot_path, columns=["file_id", "external_id", "source_url", "provenance", "labels"]):
        for row in batch:
            if row["file_id"] not in exported:
                continue
            split, caption = exported[row["file_id"]]
            labels = json.loads(row["labels"])
            picked = pick_labels(labels, allowed)
            prov = json.loads(row["provenance"] or "{}")
            creator = next((lb["text"] for lb in labels if lb["field"] in ("creator", "artist", "author")), None)
            for field_name, text in sorted(picked.items()):
                if field_name not in fields or text not in caption:
                    continue
                label = min((lb for lb in labels if lb["field"] == field_name and lb["licence"] in allowed
                             and " ".join((lb["text"] or "").split()) == text),
                            key=lambda lb: (0 if lb.get("lang") in (None, "", "en") else 1, lb.get("lang") or ""))
                if not needs_attribution(label["licence"]):
                    continue
                out.append({"file_id": row["file_id"], "split": split,
                            "page_id": prov.get("pageid") or row["external_id"], "field": field_name,
                            "licence": label["licence"],
                            "author": prov.get("artist") or prov.get("creator") or creator or "",
                            "source_url": prov.get("descriptionurl") or row["source_url"] or prov.get("source_url") or "",
                            "text": text})
    return out


def attribution_tsv(rows: list[dict]) -> str:
    lines = ["\t".join(ATTRIBUTION_COLUMNS)] + ["\t".join(_tsv(r[c]) for c in ATTRIBUTION_COLUMNS) for r in rows]
    return "\n".join(lines) + "\n"


def _count(values) -> dict:
    out: dict = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return dict(sorted(out.items()))


def provenance(params: dict, deps: dict, pipeline_class: str) -> dict:
    snap = snapshot.summary(deps["snapshot"])
    labels: dict[str, int] = {}
    for batch in snapshot.iter_batches(deps["snapshot"], columns=["labels"]):
        for row in batch:
            for lb in json.loads(row["labels"]):
                labels[lb["licence"]] = labels.get(lb["licence"], 0) + 1
    exported = _exported(deps["export"]) if "export" in deps else {}
    splits: dict[str, int] = {}
    for split, _ in exported.values():
        splits[split] = splits.get(split, 0) + 1
    attrib = attribution(deps["snapshot"], deps["export"], params["export"]["caption"]) if "export" in deps else []
    sample_metrics = json.loads(Path(deps["sample_metrics"]).read_text()) if Path(deps["sample_metrics"]).exists() else {}
    return {
        "pipeline": pipeline_class,
        "snapshot": {"name": snap["name"], "content_hash": snap["content_hash"], "rows": snap["rows"],
                     "licences": dict(sorted(snap["licences"].items())), "sources": dict(sorted(snap["sources"].items())),
                     "label_licences": dict(sorted(labels.items()))},
        "exported": dict(sorted(splits.items())),
        "exclusions": len(exclusions.read(deps["exclusions"])),
        "attribution": {"rows": len({r["file_id"] for r in attrib}), "labels": len(attrib),
                        "licences": _count(r["licence"] for r in attrib),
                        "file": "ATTRIBUTION.tsv", "_rows": attrib},
        "caption_label_licences": params["export"]["caption"]["label_licences"],
        "stages": {k: hash_path(v) for k, v in sorted(deps.items()) if k in ("export", "unet", "latents", "clip", "tokenizer")},
        "params": {k: params[k] for k in ("seed", "export", "tokenizer", "clip", "vae", "latents", "unet", "sample", "memorization")
                   if k in params},
        "quality": sample_metrics.get("quality", {}),
        "memorization": _memorization(deps.get("memorization")),
        "libraries": package_versions(LIBRARIES),
        "safety_checker": None,
        "rebuild": REBUILD,
        **signing_key(params),
    }


def signing_key(params: dict) -> dict:
    """{"signing_key": fingerprint} when params.yaml release.signing_key names the key `pdd sign` signs with; {}
    otherwise, so an unsigned build's folder is what it was before signing existed."""
    key = (params.get("release") or {}).get("signing_key")
    return {"signing_key": key} if key else {}


def _memorization(path) -> dict:
    """The summary of metrics/memorization.json (the stage's numbers, not its per-sample lists)."""
    if not path or not Path(path).exists():
        return {}
    m = json.loads(Path(path).read_text())
    keep = ("n_samples", "n_train", "n_val", "threshold", "pixel_size", "clip", "pixel", "flagged", "flagged_samples")
    return {k: m[k] for k in keep if k in m}


def _code(text) -> str:
    """TEXT as a Markdown code span that it cannot break out of: control characters escaped
    (pdd.core.ids.printable), fenced with more backticks than it holds. A plain id: `id`."""
    text = printable(text)
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def render_memorization(m: dict) -> str:
    if not m:
        return ""
    c, px = m["clip"], m["pixel"]

    def row(name, d):
        return (f"| {name} | {d.get('n', 0)} | {d.get('min', float('nan')):.3f} | {d.get('p50', float('nan')):.3f} | "
                f"{d.get('p90', float('nan')):.3f} | {d.get('max', float('nan')):.3f} |")
    flagged = "".join(f"\n- {_code(f['sample'])} ~ {_code(f['nearest_train'])} (CLIP {f['clip_similarity']:.3f}, pixels "
                      f"{f['pixel_similarity']:.3f})" for f in m.get("flagged_samples", [])[:20])
    return (f"\n## Memorization check\n\n{m['n_samples']} samples (training captions as prompts), each one's nearest of the "
            f"{m['n_train']} training images, beside the same for the {m['n_val']} val images (never trained on: the "
            f"reference for close but not copied). Similarity: cosine in our own CLIP's image space; correlation of "
            f"{m['pixel_size']} px images. No downloaded copy detector.\n\n"
            f"| nearest-train similarity | n | min | median | p90 | max |\n|---|---|---|---|---|---|\n"
            f"{row('samples, CLIP', c['samples'])}\n{row('val, CLIP', c['val'])}\n"
            f"{row('samples, pixels', px['samples'])}\n{row('val, pixels', px['val'])}\n\n"
            f"**{m['flagged']} of {m['n_samples']} samples flagged** as likely copies (CLIP similarity >= {m['threshold']}); "
            f"{c.get('val_at_or_above_threshold', 0)} of {m['n_val']} val images reach it too."
            f"{' Flagged:' + flagged if flagged else ''}\n")


def _attribution_text(p: dict) -> str:
    a = p.get("attribution") or {}
    if not a.get("labels"):
        return "No caption text requires attribution (`ATTRIBUTION.tsv` lists none).\n"
    lic = ", ".join(f"{v} under {k}" for k, v in a["licences"].items())
    return (f"**Attribution required:** the captions of {a['rows']} images use text under licences that require "
            f"attribution ({lic}), so these weights are a derivative of that text. `ATTRIBUTION.tsv` in this folder "
            "lists each image, the field, its licence, the author we know of and the page to credit (for wiki "
            "descriptions: the page's contributors, in its history).\n")


def signing_key_section(fingerprint: str | None) -> str:
    """The card's "Signature" section: the key `pdd sign` signs this folder with (params.yaml release.signing_key),
    and how to check it; "" when the build names no key."""
    if not fingerprint:
        return ""
    return (f"\n## Signature\n\nSigned with the elliptic curve key {fingerprint} (sha256 of its DER public key): "
            "OpenSSF model-signing's signature of this folder beside it (`pipeline.sig`), and the SLSA provenance of "
            "every build stage in DSSE envelopes (`pipeline.intoto.jsonl`). Check with `pdd verify --signatures --key "
            "PUBLIC.pem`, or `model_signing verify key models/pipeline --signature models/pipeline.sig --public_key "
            "PUBLIC.pem`.\n")


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

Exported for training: {', '.join(f"{v} {k}" for k, v in p.get('exported', {}).items()) or 'see provenance.json'}.

Captions come only from labels whose own licence is one of {', '.join(p['caption_label_licences'])}.
{_attribution_text(p)}
Exclusions (takedowns) applied: {p['exclusions']}.

## Safety

`safety_checker` is `None` (`requires_safety_checker=False`): there is no pretrained safety model we could ship
without downloading weights we did not train. The training images are public-domain and CC0 works that passed
the build's licence audit.
{qual}{render_memorization(p.get("memorization", {}))}
## Rebuild

```bash
{chr(10).join(p['rebuild'])}
```

Training params, stage output hashes and library versions are in `provenance.json` beside this card.
{signing_key_section(p.get("signing_key"))}"""
    return "---\n" + yaml.safe_dump(front, sort_keys=False) + "---\n" + body


def write(out_dir, params: dict, deps: dict, pipeline_class: str) -> dict:
    p = provenance(params, deps, pipeline_class)
    rows = p["attribution"].pop("_rows")
    (Path(out_dir) / "ATTRIBUTION.tsv").write_text(attribution_tsv(rows), encoding="utf-8")
    write_json(Path(out_dir) / "provenance.json", p)
    (Path(out_dir) / "README.md").write_text(render(p), encoding="utf-8")
    return {"snapshot": p["snapshot"]["content_hash"], "images": p["snapshot"]["rows"]}
