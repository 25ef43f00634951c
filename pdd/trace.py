"""`pdd trace IMAGE`: which training images is this picture close to, and who made them?

The image is prepared exactly as the export prepares training images (decode, flatten on white, fit to a
square at the export's largest resolution, export.resample / fit / background), then compared with every
image of the export's *train* split (what the model was trained on) in two spaces:
- a learned feature space: the image tower of a transformers CLIPModel folder (`--features`, default
  models/judge, the quality stage's independent judge; models/clip works too), with the CLIP stage's own
  preprocessing (pdd/train/quality.py `clip_features`): cosine of normalised embeddings;
- pixels: the correlation of the images shrunk to `memorization.pixel_size` px (pdd/train/memorization.py).

Each of the k nearest comes with its title, creator, source and licence from the snapshot, and each similarity
is put in context: its percentile among the val images' nearest-train similarities (real images the model
never saw) and whether it is above the memorization check's calibrated copy threshold (val's
`memorization.percentile`) in a space where that threshold is not saturated.

Limits: closeness in a small CLIP trained on this data and in 16 px pixels is not proof of copying or of
influence: a generated image owes something to every training image, and the nearest ones are only the most
similar, not the source. It cannot find a crop, a mirrored or re-coloured copy, or an object pasted into a
scene, and it looks at the training set only as the export holds it (small squares).
"""
from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from pdd import snapshot
from pdd.core import images, shards
from pdd.core.errors import PddError

SPACES = (("features", "feature space"), ("pixel", "pixels"))


@dataclass(frozen=True)
class Inputs:
    image: Path
    features: Path
    export: Path
    snapshot: Path
    export_cfg: object          # the export config (resolutions, resample, fit, background)
    mem_cfg: object             # the memorization config (pixel_size, percentile, saturated_above)


def prepare(image_path, export_cfg) -> torch.Tensor:
    """uint8 [1,R,R,3]: the image as the export would have rendered it at its largest resolution."""
    path = Path(image_path)
    try:
        data = path.read_bytes()
    except IsADirectoryError:
        raise PddError(f"{path}: a folder, not an image file; give one image (PNG, JPEG, WebP, ...)") from None
    except OSError as exc:
        raise PddError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    try:
        img = images.decode_rgb(data)
    except images.BadImage as exc:
        raise PddError(f"{path}: not an image pdd can read ({exc}); give a PNG, JPEG or WebP file") from None
    res = max(export_cfg.resolutions)
    import numpy as np

    sq = images.fit_square(img, res, export_cfg.resample, export_cfg.fit, tuple(export_cfg.background))
    return torch.from_numpy(np.asarray(sq).copy())[None]


def load_features(model_dir):
    """The CLIPModel (eval) and its image processor from a folder; one line when it is not one."""
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise PddError(f"--features {model_dir}: no model there (no config.json); build the judge with "
                       "`dvc repro quality` (it writes models/judge) or pass --features models/clip")
    from transformers import CLIPImageProcessor, CLIPModel  # lazy: torch-side start-up
    from transformers.utils import logging as tlogging  # lazy: the same

    tlogging.set_verbosity_error()
    try:
        model = CLIPModel.from_pretrained(model_dir, local_files_only=True).eval()
        processor = CLIPImageProcessor.from_pretrained(model_dir, local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise PddError(f"--features {model_dir}: not a CLIPModel folder transformers can load ({first}); "
                       "give models/judge or models/clip") from None
    return model, processor


def load_split(export_dir, split: str, res: int) -> tuple[torch.Tensor, list[str]]:
    import numpy as np

    table = shards.read_split(export_dir, split, columns=["file_id", shards.image_column(res)])
    u8 = torch.from_numpy(np.array(shards.images_array(table, res), copy=True))
    return u8, table.column("file_id").to_pylist()


def credits(snapshot_path, file_ids: set[str]) -> dict[str, dict]:
    """file_id -> title, creator, source, licence and the image bytes (for thumbnails), from the snapshot."""
    out = {}
    cols = ["file_id", "title", "source_id", "source_url", "licence_kind", "licence_status", "provenance", "labels",
            "mime", "image"]
    for batch in snapshot.iter_batches(snapshot_path, columns=cols):
        for row in batch:
            if row["file_id"] not in file_ids:
                continue
            labels = json.loads(row["labels"] or "[]")
            prov = json.loads(row["provenance"] or "{}")
            creator = next((lb["text"] for lb in labels if lb.get("field") in ("creator", "artist", "author")), None)
            title = row["title"] or next((lb["text"] for lb in labels if lb.get("field") == "title"), None)
            out[row["file_id"]] = {
                "title": title or "",
                "creator": prov.get("artist") or prov.get("creator") or creator or "",
                "source": prov.get("descriptionurl") or row["source_url"] or prov.get("source") or row["source_id"] or "",
                "licence": row["licence_kind"] or "",
                "mime": row["mime"], "image": row["image"]}
    return out


def _percentile(value: float, ref: torch.Tensor) -> float:
    """The share of REF (in %) strictly below VALUE."""
    return round(100.0 * float((ref < value).double().mean()), 2) if len(ref) else float("nan")


def trace(inp: Inputs, k: int) -> dict:
    """The report: for each space, the k nearest training images with their credits and context."""
    from pdd.train import memorization, quality  # lazy: torch, transformers, diffusers

    if not (Path(inp.export) / "index.json").is_file():
        raise PddError(f"--export {inp.export}: no export there (no index.json); build it with `dvc repro export`")
    if not Path(inp.snapshot).is_file():
        raise PddError(f"--snapshot {inp.snapshot}: no such file; give the snapshot the export was built from")
    query = prepare(inp.image, inp.export_cfg)
    model, processor = load_features(inp.features)
    res = max(shards.read_index(inp.export)["resolutions"])
    if res != query.shape[1]:
        raise PddError(f"--export {inp.export} holds {res} px images but params say {query.shape[1]}: "
                       "pass the --params the export was built with")
    train, train_ids = load_split(inp.export, "train", res)
    val, _ = load_split(inp.export, "val", res)
    cfg = inp.mem_cfg
    with torch.no_grad():
        embed = {"features": lambda x: quality.clip_features(model, processor, x),
                 "pixel": lambda x: memorization.pixel_features(x, cfg.pixel_size)}
        report: dict = {"image": str(inp.image), "k": k, "n_train": len(train), "n_val": len(val),
                        "features": str(inp.features), "resolution": res, "spaces": {}}
        picked: set[str] = set()
        for space, fn in embed.items():
            ft, fq, fv = fn(train), fn(query), fn(val)
            sims = (fq.double() @ ft.double().T)[0]
            order = sorted(range(len(sims)), key=lambda i: (-float(sims[i]), i))[:k]
            v_sims = memorization.nearest(fv, ft)[0] if len(fv) else torch.zeros(0)
            cal = memorization.calibrate(v_sims, cfg.percentile, cfg.saturated_above)
            report["spaces"][space] = {
                "val": memorization.distribution(v_sims), **cal,
                "nearest": [{"rank": r + 1, "file_id": train_ids[i], "similarity": round(float(sims[i]), 6),
                             "val_percentile": _percentile(float(sims[i]), v_sims),
                             "above_copy_threshold": (cal["threshold"] is not None and not cal["saturated"]
                                                      and float(sims[i]) > cal["threshold"])}
                            for r, i in enumerate(order)]}
            picked.update(train_ids[i] for i in order)
    found = credits(inp.snapshot, picked)
    missing = sorted(picked - set(found))
    if missing:
        raise PddError(f"--snapshot {inp.snapshot}: {len(missing)} training image(s) of {inp.export} are not in it "
                       f"(e.g. {missing[0]}); give the snapshot the export was built from")
    for entry in report["spaces"].values():
        for n in entry["nearest"]:
            n.update({k2: v for k2, v in found[n["file_id"]].items() if k2 not in ("mime", "image")})
    report["_thumbs"] = {fid: (c["mime"], c["image"]) for fid, c in found.items()}
    return report


def text(report: dict) -> list[str]:
    """Lines for people."""
    lines = [f"{report['image']}: nearest of the {report['n_train']} training images ({report['resolution']} px; "
             f"features: {report['features']})"]
    for space, label in SPACES:
        e = report["spaces"][space]
        t = e.get("threshold")
        state = ("saturated: no copy threshold here" if e.get("saturated") else f"copy threshold {t:.4f}")
        lines.append(f"  {label} (val-to-nearest-train median {e['val'].get('p50', float('nan')):.4f}, "
                     f"p99 {e['val'].get('p99', float('nan')):.4f}; {state}):")
        for n in e["nearest"]:
            flag = "  ABOVE COPY THRESHOLD" if n["above_copy_threshold"] else ""
            lines.append(f"    {n['rank']:2d}. {n['similarity']:.4f} (above {n['val_percentile']:.1f} % of val)"
                         f"{flag}  {n['file_id']}")
            lines.append(f"        {n['title']!r} by {n['creator'] or 'unknown'}, licence {n['licence']}, "
                         f"source {n['source'] or '-'}")
    lines.append("  (close is not copied: these are the most similar training images, not the image's sources; "
                 "see `pdd trace --help`)")
    return lines


def _data_uri(mime: str | None, data: bytes) -> str:
    return f"data:{mime or 'application/octet-stream'};base64,{base64.b64encode(data).decode('ascii')}"


def page(report: dict) -> str:
    """A self-contained HTML page: the image, then each space's nearest training images side by side."""
    esc = html.escape
    q = Path(report["image"])
    import io

    shown = images.decode_rgb(q.read_bytes())
    shown.thumbnail((256, 256))
    buf = io.BytesIO()
    shown.save(buf, format="PNG")
    qdata, mime = buf.getvalue(), "image/png"
    parts = [f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>pdd trace: {esc(q.name)}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; color: #222; }}
.row {{ display: flex; flex-wrap: wrap; gap: 12px; }}
figure {{ margin: 0; width: 150px; font-size: 12px; }}
figure img {{ width: 128px; height: 128px; object-fit: contain; image-rendering: pixelated; border: 1px solid #ccc;
  background: #fff; }}
.query img {{ width: 192px; height: 192px; }}
figure code {{ display: block; word-break: break-all; font-size: 10px; color: #555; }}
.flag {{ color: #b00; font-weight: bold; }}
.note {{ color: #555; font-size: 13px; max-width: 60em; }}
</style></head><body>
<h1>pdd trace</h1>
<figure class="query"><img src="{_data_uri(mime, qdata)}" alt="the traced image"><figcaption>{esc(q.name)}
</figcaption></figure>
<p class="note">The {report['k']} nearest of the {report['n_train']} training images, in a learned feature space
({esc(report['features'])}) and in pixels. Each similarity is placed among the val images' nearest-train
similarities (real images the model never saw). Close is not copied: these are the most similar training
images, not the image's sources.</p>"""]
    for space, label in SPACES:
        e = report["spaces"][space]
        t = e.get("threshold")
        state = "saturated: no copy threshold" if e.get("saturated") else f"copy threshold {t:.4f}"
        parts.append(f"<h2>{esc(label)} <small>(val median {e['val'].get('p50', float('nan')):.3f}; {state})</small></h2>"
                     "<div class=\"row\">")
        for n in e["nearest"]:
            m, data = report["_thumbs"][n["file_id"]]
            src = n["source"]
            link = (f'<a href="{esc(src)}">source</a>' if src.startswith(("https://", "http://"))
                    else esc(src or "source unknown"))
            flag = '<br><span class="flag">above copy threshold</span>' if n["above_copy_threshold"] else ""
            parts.append(f"""<figure><img src="{_data_uri(m, data)}" alt="{esc(n['title'])}"><figcaption>
<b>{n['rank']}.</b> {n['similarity']:.3f} (above {n['val_percentile']:.1f} % of val){flag}<br>
<b>{esc(n['title'] or n['file_id'])}</b><br>by {esc(n['creator'] or 'unknown')}<br>licence: {esc(n['licence'])}<br>
{link}<br><code>{esc(n['file_id'])}</code></figcaption></figure>""")
        parts.append("</div>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def public(report: dict) -> dict:
    """The report without the thumbnails' bytes (JSON)."""
    return {k: v for k, v in report.items() if not k.startswith("_")}
