"""The model card (README.md with Hub front matter) and provenance.json of the pipeline folder.

Everything in them is a function of the build's inputs (snapshot, params, the content hashes of the
stage outputs, pinned library versions): no timestamps, host names or git revisions, so the folder's
bytes stay a pure function of (snapshot, params, code, seed).
"""
from __future__ import annotations

import csv
import io
import json
import re
import shutil
from pathlib import Path

# the Hub's card classes only (they render and validate text); nothing here calls the Hub, so the stage imports
# these two offline modules, not the huggingface_hub package's network API (tests/test_dag.py NETWORK)
from huggingface_hub.repocard import ModelCard
from huggingface_hub.repocard_data import ModelCardData

from pdd import exclusions, snapshot
from pdd.core.report_tables import quality_table
from pdd.core.hashing import hash_path, write_json
from pdd.core.ids import printable
from pdd.core import pii, shards
from pdd.data import personal
from pdd.data.export import pick_labels
from pdd.core.version import package_versions

LIBRARIES = ("torch", "diffusers", "transformers", "accelerate", "tokenizers", "safetensors")
REBUILD = ["git clone <this repository> && cd pd-diffusion",
           "python3 tasks.py build        # sets up .venv from requirements.lock, runs `dvc repro`",
           "# or: dvc repro pipeline | snakemake -c2 models/pipeline | snakemake --profile workflow/profiles/slurm"]


# one row per training image (the export's train split), whatever its licence requires
ATTRIBUTION_COLUMNS = ("file_id", "title", "creator", "source", "location", "licence", "licence_uri", "snapshot_sha256",
                       "caption_credit")
# a creator the Open Clip Art RDF export garbled into a Perl reference
_PLACEHOLDER = re.compile(r"^(HASH|ARRAY|SCALAR|CODE|REF|GLOB)\(0x[0-9a-fA-F]+\)$")
LICENCE_URIS = {"pd": "https://creativecommons.org/publicdomain/mark/1.0/",
                "cc0": "https://creativecommons.org/publicdomain/zero/1.0/"}


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


def creator_of(labels: list[dict], prov: dict) -> str:
    """Whom to credit: the creator/artist/author label or provenance, personal data removed (an e-mail address
    is not a name), "unknown" when there is none or it is a placeholder such as HASH(0x8a0cf9c)."""
    raw = prov.get("artist") or prov.get("creator") or next(
        (lb["text"] for lb in labels if lb["field"] in ("creator", "artist", "author")), None) or ""
    text = pii.scrub(" ".join(str(raw).split()))[0]
    return "unknown" if not text or _PLACEHOLDER.match(text) else text


def licence_uri(row: dict, evidence: dict) -> str:
    """The licence exactly as the source stated it: the Open Clip Art RDF licence URI, Commons' LicenseUrl,
    else the canonical URI of the row's licence kind."""
    sources = evidence.get("licence_sources") if isinstance(evidence, dict) else None
    if sources and isinstance(sources[0], list) and len(sources[0]) == 2 and str(sources[0][1]).startswith("http"):
        return str(sources[0][1])
    ext = evidence.get("extmetadata") if isinstance(evidence, dict) else None
    if isinstance(ext, dict) and str(ext.get("LicenseUrl") or "").startswith("http"):
        return str(ext["LicenseUrl"])
    return LICENCE_URIS.get(row.get("licence_kind"), str(row.get("licence_kind") or ""))


def training_attribution(snapshot_path, export_dir, caption_cfg: dict) -> list[dict]:
    """One row per image of the export's train split (ATTRIBUTION_COLUMNS): even where its licence asks for
    no credit. caption_credit names caption text under a licence that requires attribution (attribution())."""
    exported = _exported(export_dir)
    credit: dict[str, list[str]] = {}
    for a in attribution(snapshot_path, export_dir, caption_cfg):
        credit.setdefault(a["file_id"], []).append(f"{a['field']} ({a['licence']}) by {a['author'] or 'unknown'}, {a['source_url']}")
    out = []
    cols = ["file_id", "external_id", "title", "sha256", "source_url", "licence_kind", "licence_evidence", "provenance", "labels"]
    for batch in snapshot.iter_batches(snapshot_path, columns=cols):
        for row in batch:
            if exported.get(row["file_id"], ("",))[0] != "train":
                continue
            labels, prov = json.loads(row["labels"]), json.loads(row["provenance"] or "{}")
            evidence = json.loads(row["licence_evidence"] or "{}")
            where = row["source_url"] or prov.get("descriptionurl") or prov.get("source_url")
            if not where and prov.get("png"):
                where = f"usr/share/openclipart/{prov['png']}"
            out.append({"file_id": row["file_id"], "title": pii.scrub(row["title"] or "")[0],
                        "creator": creator_of(labels, prov), "source": prov.get("source") or row["file_id"].split(":")[0],
                        "location": where or row["external_id"], "licence": row["licence_kind"],
                        "licence_uri": licence_uri(row, evidence), "snapshot_sha256": row["sha256"],
                        "caption_credit": "; ".join(credit.get(row["file_id"], []))})
    return out


def attribution_tsv(rows: list[dict]) -> str:
    """Tab-separated with a header; a cell holding a quote is quoted (csv.QUOTE_MINIMAL), so Python's csv,
    pandas and `datasets.load_dataset("csv", delimiter="\\t")` read every cell back as written."""
    buf = io.StringIO()
    w = csv.writer(buf, delimiter="\t", lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    w.writerow(ATTRIBUTION_COLUMNS)
    for r in rows:
        w.writerow([_tsv(r[c]) for c in ATTRIBUTION_COLUMNS])
    return buf.getvalue()


def _count(values) -> dict:
    out: dict = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return dict(sorted(out.items()))


def _snapshot_record(snapshot_path) -> dict:
    """NAME.json beside the snapshot (pdd.source.pin writes it), or {} when there is none."""
    path = Path(snapshot_path).with_suffix(".json")
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, ValueError):
        return {}


def provenance(params: dict, deps: dict, pipeline_class: str) -> dict:
    snap = snapshot.summary(deps["snapshot"])
    caption_cfg = params["export"]["caption"]
    labels: dict[str, int] = {}
    origins: dict[str, int] = {}
    uris: dict[str, int] = {}
    for batch in snapshot.iter_batches(deps["snapshot"], columns=["labels", "provenance", "licence_kind", "licence_evidence"]):
        for row in batch:
            for lb in json.loads(row["labels"]):
                labels[lb["licence"]] = labels.get(lb["licence"], 0) + 1
            prov = json.loads(row["provenance"] or "{}")
            origin = str(prov.get("source") or "")
            origins[origin] = origins.get(origin, 0) + 1
            uri = licence_uri(row, json.loads(row["licence_evidence"] or "{}"))
            uris[uri] = uris.get(uri, 0) + 1
    removed = personal.removals((r for b in snapshot.iter_batches(deps["snapshot"], columns=["labels"]) for r in b),
                                list(caption_cfg["label_licences"]), caption_cfg["template"])
    exported = _exported(deps["export"]) if "export" in deps else {}
    splits: dict[str, int] = {}
    for split, _ in exported.values():
        splits[split] = splits.get(split, 0) + 1
    example = next((pii.scrub(cap)[0] for fid, (split, cap) in sorted(exported.items()) if split == "train"), None)
    attrib = attribution(deps["snapshot"], deps["export"], caption_cfg) if "export" in deps else []
    train_rows = training_attribution(deps["snapshot"], deps["export"], caption_cfg) if "export" in deps else []
    quality_metrics = json.loads(Path(deps["quality"]).read_text()) if deps.get("quality") and Path(deps["quality"]).exists() else {}
    curate_metrics = json.loads(Path(deps["curate"]).read_text()) if deps.get("curate") and Path(deps["curate"]).exists() else {}
    index = shards.read_index(deps["export"]) if "export" in deps else {}
    record = _snapshot_record(deps["snapshot"])
    return {
        "pipeline": pipeline_class,
        "snapshot": {"name": snap["name"], "content_hash": snap["content_hash"], "rows": snap["rows"],
                     "licences": dict(sorted(snap["licences"].items())), "sources": dict(sorted(snap["sources"].items())),
                     "origins": dict(sorted(origins.items())), "licence_uris": dict(sorted(uris.items())),
                     "label_licences": dict(sorted(labels.items())),
                     "rejected_at_import": record.get("rejected", {}), "excluded_at_pin": record.get("excluded", 0)},
        "exported": dict(sorted(splits.items())),
        "export_curation": {k: curate_metrics[k] for k in ("byte_identical_groups", "byte_identical_rows",
                                                             "near_duplicate_clusters", "near_duplicate_rows", "dropped",
                                                             "kept") if k in curate_metrics},
        "personal_data_removed": removed,
        "exclusions": len(exclusions.read(deps["exclusions"])),
        "attribution": {"rows": len(train_rows), "file": "ATTRIBUTION.tsv",
                        "caption_credits": {"images": len({r["file_id"] for r in attrib}), "labels": len(attrib),
                                            "licences": _count(r["licence"] for r in attrib)},
                        "_rows": train_rows},
        "caption_label_licences": caption_cfg["label_licences"],
        "caption_template": caption_cfg["template"],
        "example_caption": example,
        "stages": {k: hash_path(v) for k, v in sorted(deps.items()) if k in ("export", "unet", "latents", "clip", "tokenizer")},
        "params": {k: params[k] for k in ("seed", "export", "tokenizer", "clip", "vae", "latents", "unet", "sample", "memorization")
                   if k in params},
        "quality": quality_metrics,
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
    keep = ("n_samples", "n_train", "n_val", "percentile", "saturated_above", "pixel_size", "hash_size", "clip", "pixel",
            "phash", "flag_spaces", "can_separate", "flagged", "clip_only", "rate_percent", "anchor", "flagged_samples")
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
    spaces = [(name, label, m[name]) for name, label in (("clip", "CLIP"), ("pixel", "pixels"), ("phash", "pHash"))
              if name in m]

    def num(x):
        return "-" if x is None else f"{x:.3f}"

    def row(name, d):
        return (f"| {name} | {d.get('n', 0)} | {num(d.get('min'))} | {num(d.get('p50'))} | {num(d.get('p90'))} | "
                f"{num(d.get('p99'))} | {num(d.get('max'))} |")
    rows = "\n".join(row(f"{who}, {label}", e[who]) for _, label, e in spaces for who in ("samples", "val"))
    thresholds = "; ".join(f"{label} {num(e.get('threshold'))}" + (" (saturated: no part in the flag)"
                                                                   if e.get("saturated") else "")
                           for _, label, e in spaces)
    flagged = "".join(f"\n- {_code(pii.scrub(f['sample'])[0])} ~ {_code(pii.scrub(f['nearest_train'])[0])} (CLIP {f['clip_similarity']:.3f}, pixels "
                      f"{f['pixel_similarity']:.3f})" for f in m.get("flagged_samples", [])[:20])
    anchor = m.get("anchor") or {}
    verdict = (f"**{m['flagged']} of {m['n_samples']} samples flagged** as likely copies ({m.get('rate_percent', 0):.2f} %: "
               f"closer to a training image than val's p{m.get('percentile', 99):g} in "
               f"{' and '.join(m.get('flag_spaces', []))}); {m.get('clip_only', 0)} more are close in CLIP only "
               f"(look-alikes, not copies)." if m.get("can_separate") else
               f"**No copies can be told apart on this data**: every space is saturated (val images already sit at "
               f"the top of the scale), so nothing is flagged ({m['flagged']} of {m['n_samples']}).")
    return (f"\n## Memorization check\n\n{m['n_samples']} samples (training captions as prompts), each one's nearest of the "
            f"{m['n_train']} training images, beside the same for the {m['n_val']} val images (never trained on: they "
            f"calibrate the thresholds). Similarity: cosine in our own CLIP's image space; correlation of "
            f"{m['pixel_size']} px images; perceptual hash. No downloaded copy detector.\n\n"
            f"| nearest-train similarity | n | min | median | p90 | p99 | max |\n|---|---|---|---|---|---|---|\n"
            f"{rows}\n\nThresholds (val's p{m.get('percentile', 99):g}): {thresholds}.\n\n{verdict}"
            + (f" For context (not like for like): {anchor['source']}: {anchor['rate_percent']} % of {anchor['what']}."
               if anchor else "")
            + f"{' Flagged:' + flagged if flagged else ''}\n")


def _attribution_text(p: dict) -> str:
    a = p.get("attribution") or {}
    c = a.get("caption_credits") or {}
    head = (f"`ATTRIBUTION.tsv` in this folder names every one of the {a.get('rows', 0)} training images (id, title, "
            "creator or `unknown`, source package and path or URL, licence URI, the image's sha256 in the snapshot), "
            "although their licences ask for no credit. ")
    if not c.get("labels"):
        return head + "No caption text requires attribution.\n"
    lic = ", ".join(f"{v} under {k}" for k, v in c["licences"].items())
    return head + (f"**Attribution required:** the captions of {c['images']} images use text under licences that require "
                   f"attribution ({lic}), so these weights are a derivative of that text; its `caption_credit` column "
                   "names the field, its licence, the author we know of and the page to credit (for wiki descriptions: "
                   "the page's contributors, in its history).\n")


def _table(head: tuple, rows) -> str:
    return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] +
                     ["| " + " | ".join(str(c) for c in r) + " |" for r in rows])


def _licence_name(uri: str) -> str:
    if uri.rstrip("/").endswith(("web.resource.org/cc/PublicDomain", "licenses/publicdomain")):
        return "Creative Commons Public Domain Dedication (retired)"
    if "publicdomain/zero/1.0" in uri:
        return "CC0 1.0 Universal"
    if "publicdomain/mark/1.0" in uri:
        return "Public Domain Mark 1.0"
    return uri


def _training_table(params: dict) -> str:
    rows = []
    for name in ("tokenizer", "clip", "vae", "unet"):
        sec = params.get(name) or {}
        t = sec.get("train") or {}
        if not t:
            if name == "tokenizer" and sec:
                rows.append(("tokenizer (BPE)", "-", "-", "-", "-", f"vocab {sec.get('vocab_size', '?')}"))
            continue
        opt, sch = t.get("optimizer") or {}, t.get("schedule") or {}
        ema = t.get("ema") or {}
        rows.append((name, t.get("steps"), t.get("batch_size"), f"{opt.get('kind', '?')} lr {opt.get('lr', '?')}",
                     f"{sch.get('kind', '?')}, warm-up {sch.get('warmup_steps', 0)}",
                     f"mixed precision {t.get('mixed_precision', 'no')}" + (f", EMA {ema.get('decay')}" if ema.get("decay") else "")))
    return _table(("model", "steps", "batch", "optimizer", "schedule", "notes"), rows)


def card_data(p: dict) -> ModelCardData:
    """The Hub metadata, validated by huggingface_hub: no base model (everything is trained here), no Hub dataset
    id (the data is a pinned snapshot in this repository: `pdd_snapshot` names it and its content hash)."""
    free_text = set(p["caption_label_licences"]) <= {"pd", "cc0"}
    s = p["snapshot"]
    return ModelCardData(
        license="cc0-1.0" if free_text else "other",
        library_name="diffusers",
        pipeline_tag="text-to-image" if p["pipeline"] == "StableDiffusionPipeline" else "unconditional-image-generation",
        tags=["pd-diffusion", "public-domain", "trained-from-scratch", "reproducible-build", "diffusers:" + p["pipeline"]],
        pdd_snapshot={"name": s["name"], "content_hash": s["content_hash"], "images": s["rows"],
                      "sources": [o for o in s.get("origins", {}) if o] or list(s["sources"])},
    )


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
    s, q, prm = p["snapshot"], p["quality"], p.get("params", {})
    t2i = p["pipeline"] == "StableDiffusionPipeline"
    res = (prm.get("export") or {}).get("resolutions") or ["?"]
    smp = prm.get("sample") or {}
    prompt = (smp.get("prompts") or [p.get("example_caption") or "Apple, food/fruit, apple, fruit"])[0]
    prompt = pii.scrub(prompt)[0]
    steps, guidance = smp.get("steps", 25), smp.get("guidance_scale", 3.0)
    licences = _table(("licence, as stated by the source", "images"),
                      ((f"{_licence_name(k)} (`{k}`)", v) for k, v in s.get("licence_uris", {}).items())
                      ) if s.get("licence_uris") else _table(("licence", "images"), s["licences"].items())
    origins = _table(("source", "images"), ((k or "(not recorded)", v) for k, v in s.get("origins", {}).items()))
    rej = s.get("rejected_at_import") or {}
    removed = p.get("personal_data_removed") or {}
    counts = [("accepted (in the snapshot)", s["rows"])] + [(f"rejected: {k}", v) for k, v in rej.items()]
    counts.append(("excluded (takedowns) at pin", s.get("excluded_at_pin", 0)))
    curation = p.get("export_curation") or {}
    for reason, n in (curation.get("dropped") or {}).items():
        counts.append(({"cluster_cap": "dropped before export: more than curate.cap_per_cluster near-duplicates in train",
                         "caption_cap": "dropped before export: more than curate.cap_per_caption train images of one caption",
                         "val_near_train": "dropped before export: val near-duplicate of a train image"}.get(reason, reason), n))
    if curation:
        counts.append(("(byte-identical groups / rows; near-duplicate clusters / rows)",
                       f"{curation.get('byte_identical_groups')} / {curation.get('byte_identical_rows')}; "
                       f"{curation.get('near_duplicate_clusters')} / {curation.get('near_duplicate_rows')}"))
    counts += [(f"exported: {k}", v) for k, v in p.get("exported", {}).items()]
    rejected_note = ("" if rej else "\nThe snapshot's record (NAME.json) holds no import counts, so the rejections are "
                     "not listed here.\n")
    qual = ""
    if q:
        qual = (f"\n## Sample quality, measured by an independent judge (no downloaded weights)\n\n"
                f"{quality_table(q)}\n")
    grid = (f"\n![{len(smp.get('prompts') or [])} prompts (columns) x {smp.get('images_per_prompt', '?')} seeds (rows), "
            f"{res[0]} px](sample_grid.png)\n\n`sample_grid.png`: the build's own samples of `params.yaml` "
            f"`sample.prompts`, {steps} steps, guidance {guidance}.\n") if p.get("sample_grid") else ""
    example = f" A training caption: `{p['example_caption']}`." if p.get("example_caption") else ""
    body = f"""
# PD-Diffusion ({p['pipeline']})

A small {'text-to-image' if t2i else 'unconditional image'} model trained **from scratch** (tokenizer, text encoder,
VAE and U-Net alike) on {s['rows']} clip-art images whose sources dedicate them to the public domain, as a
reproducible build: the dataset snapshot is the source code, these weights are its compiled output. No weights were
downloaded from anywhere; there is no base model.
{grid}
## How to use

```python
from diffusers import DiffusionPipeline
pipe = DiffusionPipeline.from_pretrained("models/pipeline")
image = pipe({repr(prompt) + ', ' if t2i else ''}num_inference_steps={steps}{f', guidance_scale={guidance}' if t2i else ''}).images[0]
```

* **Resolution**: {res[0]} x {res[0]} px, the size it was trained at (images were padded to squares on white);
  other sizes are untested.
* **Prompts**: write them like the training captions, template `{p.get('caption_template', '?')}` (for the
  Open Clip Art Library: title, category path, keywords), not as sentences.{example}
* Steps {steps} and guidance {guidance} (classifier-free guidance, trained with caption dropout) are the build's
  defaults; the scheduler is DPM-Solver++.

## Intended use

Research and teaching: a worked example of a model whose every training image, caption and step can be traced and
rebuilt. Not for producing finished artwork, not for depicting real people, brands or places, and not a
replacement for checking the rights of what it outputs.

## What it can do, honestly

At {res[0]} px and the step counts below, on CPU, it learns the look of the collection (white backgrounds, one
centred clip-art shape, dark outlines, some colour per prompt), not recognisable objects. Look at the sample grid
before relying on it; the numbers below put it between real images and noise.

## Training data

Snapshot `{s['name']}`, content hash `{s['content_hash']}`, {s['rows']} images.

{origins}

{licences}

No image is CC0 unless the table says so: the licence column is each source's own statement.

{_table(("files", "count"), counts)}
{rejected_note}
Rejections: **licence** (not an exact public-domain statement, conflicting or restricted licence blocks, GPL),
**trademark** (the words logo/trademark or a `logos/` folder), **mark** (a brand or organisation name from npm's
`simple-icons` list, a protected emblem, an icon theme's application folder), **likeness** (a `people/` or portrait
image whose text names a person, or text saying it was traced from a photograph), **reviewed** (a human decision in
the build's `data/rights_review.tsv`, which can also accept what the screen flagged), **decompression bomb**.

Personal data: e-mail addresses, phone numbers and URLs are removed from the caption text before training
({removed.get('email', 0)} e-mail addresses, {removed.get('phone', 0)} phone numbers and {removed.get('url', 0)} URLs,
in {removed.get('rows', 0)} images' labels); the images themselves stay.

Captions come only from labels whose own licence is one of {', '.join(p['caption_label_licences'])}.
{_attribution_text(p)}
Exclusions (takedowns) applied: {p['exclusions']}.

## Training

{_training_table(prm)}

Seed {prm.get('seed', '?')}; every parameter is in `provenance.json` beside this card.
{qual}{render_memorization(p.get("memorization", {}))}
## Limitations

* The rights screens read text: a logo nobody named, a face with a generic title, or a tracing nobody mentioned
  passes them. Brand names that are ordinary words ("apple", "shell") count only beside words like logo or brand.
* The licences are the uploaders' statements; nobody verified that each uploader drew the image. The retired
  Public Domain Dedication is not a licence in countries without a public-domain dedication; it is what the
  source states.
* Captions are titles, folder names and keywords: noisy, English-leaning, and from one clip-art collection of the
  mid-2000s, with its gaps and stereotypes; series of near-identical images are over-represented.
* A small model trained for minutes on CPU: low resolution, no recognisable objects, and it can reproduce
  near-duplicate series (see the memorization check).
* No safety checker: `safety_checker` is `None` (`requires_safety_checker=False`), because there is no pretrained
  safety model we could ship without downloading weights we did not train.

## Rebuild

```bash
{chr(10).join(p['rebuild'])}
```

Training params, stage output hashes and library versions are in `provenance.json` beside this card.
{signing_key_section(p.get("signing_key"))}"""
    return str(ModelCard(f"---\n{card_data(p).to_yaml()}\n---\n{body}"))


def write(out_dir, params: dict, deps: dict, pipeline_class: str) -> dict:
    p = provenance(params, deps, pipeline_class)
    grid = Path(deps["sample_grid"]) if deps.get("sample_grid") else None
    if grid is not None and grid.is_file():  # the samples travel with the weights (the card shows them)
        shutil.copyfile(grid, Path(out_dir) / "sample_grid.png")
        p["sample_grid"] = "sample_grid.png"
    rows = p["attribution"].pop("_rows")
    (Path(out_dir) / "ATTRIBUTION.tsv").write_text(attribution_tsv(rows), encoding="utf-8")
    write_json(Path(out_dir) / "provenance.json", p)
    (Path(out_dir) / "README.md").write_text(render(p), encoding="utf-8")
    return {"snapshot": p["snapshot"]["content_hash"], "images": p["snapshot"]["rows"]}
