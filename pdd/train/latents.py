"""The cached latent + conditioning dataset of stage `latents`, read by the U-Net stage.

    data/latents/
      index.json               format, latent shape, scaling factor, per-channel stats, counts, shard names
      train-00000.parquet ...  file_id, caption, text_idx (int32), latent (float32 bytes, C*h*w, row-major),
      val-00000.parquet ...    rows in file_id order (the export's order), row groups of 64
      text.parquet             one row per distinct caption: caption, states (float32 bytes, L*D): the frozen
                               CLIP text encoder's last hidden states for the caption padded to the tokenizer's
                               max length -- exactly what StableDiffusionPipeline.encode_prompt computes. Row 0
                               is the empty prompt (classifier-free guidance), so caption dropout is an index swap.
      vae/                     the trained VAE with `scaling_factor` set from the data (the pipeline uses this one)

Latents are the VAE posterior *mean* (deterministic; no sample is drawn), stored unscaled. The scaling
factor is 1 / std of every train latent value (computed in float64), written into vae/config.json so the
Stable Diffusion pipeline scales exactly as training did (not SD's 0.18215).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from diffusers import AutoencoderKL
from transformers import CLIPModel, CLIPTextModel, CLIPTokenizerFast

from pdd.core.determinism import use_attention
from pdd.core.hashing import write_json
from pdd.core import shards
from pdd.core.errors import PddError
from pdd.train import data

FORMAT = "pdd-latents/1"
ROW_GROUP = 64
WRITE_OPTIONS = dict(compression={"file_id": "zstd", "caption": "zstd", "text_idx": "zstd", "latent": "none",
                                  "states": "none"},
                     use_dictionary=False, write_statistics=False, write_page_index=False, store_schema=False)
LATENT_SCHEMA = pa.schema([("file_id", pa.string()), ("caption", pa.string()), ("text_idx", pa.int32()),
                           ("latent", pa.binary())])
TEXT_SCHEMA = pa.schema([("caption", pa.string()), ("states", pa.binary())])


def text_encoder_from_clip(clip_dir):
    """Our CLIP's text tower as a stand-alone CLIPTextModel (what the pipeline folder ships)."""
    clip = CLIPModel.from_pretrained(clip_dir, local_files_only=True)
    te = CLIPTextModel(clip.config.text_config)
    te.load_state_dict(clip.text_model.state_dict())   # transformers 5: CLIPModel.text_model is a CLIPTextModel
    return te.eval()


@torch.no_grad()
def encode_text(tokenizer, text_encoder, captions: list[str], batch_size: int = 64) -> torch.Tensor:
    """[N, L, D] float32: last hidden states of captions padded/truncated to the tokenizer's max length,
    with no attention mask (as StableDiffusionPipeline.encode_prompt does)."""
    out = []
    for s in range(0, len(captions), batch_size):
        ids = tokenizer(captions[s:s + batch_size], padding="max_length", max_length=tokenizer.model_max_length,
                        truncation=True, return_tensors="pt").input_ids
        out.append(text_encoder(ids)[0].float())
    return torch.cat(out) if out else torch.zeros(0)


def _write(path: Path, schema: pa.Schema, columns: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with pq.ParquetWriter(tmp, schema, **WRITE_OPTIONS) as w:
        n = len(next(iter(columns.values())))
        for s in range(0, max(n, 1), ROW_GROUP):
            w.write_table(pa.table({k: v[s:s + ROW_GROUP] for k, v in columns.items()}, schema=schema),
                          row_group_size=ROW_GROUP)
    tmp.replace(path)


def check_inputs(export_dir, resolution: int) -> dict:
    """The export's index, if it has images at the resolution the VAE was trained at."""
    index = shards.read_index(export_dir)
    if resolution not in index["resolutions"]:
        raise PddError(f"{export_dir}: the VAE was trained at {resolution} px but the export has no such images (it "
                       f"has {index['resolutions']}); rebuild the export or the VAE")
    return index


def build(export_dir, vae_dir, clip_dir, tokenizer_dir, out_dir, cfg, resolution: int) -> dict:
    """Encode the export with the trained VAE and the text with the frozen text encoder; returns index.json."""
    torch.set_num_threads(cfg.threads)
    out_dir = Path(out_dir)
    vae = use_attention(AutoencoderKL.from_pretrained(vae_dir, local_files_only=True).eval())
    tokenizer = CLIPTokenizerFast.from_pretrained(tokenizer_dir, local_files_only=True)
    text_encoder = text_encoder_from_clip(clip_dir)
    index = check_inputs(export_dir, resolution)
    col = shards.image_column(resolution)
    captions: dict[str, int] = {"": 0}
    counts, names, stats = {}, {}, None
    s1 = s2 = None
    n_train_values = 0
    for split in shards.SPLITS:
        files = data.split_files(export_dir, split)
        rows_id, rows_cap, rows_idx, rows_lat = [], [], [], []
        for f in files:
            pf = pq.ParquetFile(f)
            for rg in range(pf.metadata.num_row_groups):
                t = pf.read_row_group(rg, columns=["file_id", "caption", col])
                imgs = torch.from_numpy(np.array(shards.images_array(t, resolution), copy=True))
                for s in range(0, len(imgs), cfg.batch_size):
                    x = imgs[s:s + cfg.batch_size].permute(0, 3, 1, 2).float() / 127.5 - 1.0
                    with torch.no_grad():
                        mean = vae.encode(x).latent_dist.mean.float().contiguous()
                    if split == "train":
                        m64 = mean.double()
                        cs1, cs2 = m64.sum(dim=(0, 2, 3)), (m64 * m64).sum(dim=(0, 2, 3))
                        s1 = cs1 if s1 is None else s1 + cs1
                        s2 = cs2 if s2 is None else s2 + cs2
                        n_train_values += mean.shape[0] * mean.shape[2] * mean.shape[3]
                    rows_lat += [m.numpy().tobytes() for m in mean]
                for fid, cap in zip(t.column("file_id").to_pylist(), t.column("caption").to_pylist()):
                    cap = cap or ""
                    rows_idx.append(captions.setdefault(cap, len(captions)))
                    rows_id.append(fid)
                    rows_cap.append(cap)
        name = f"{split}-00000.parquet"
        _write(out_dir / name, LATENT_SCHEMA, {"file_id": rows_id, "caption": rows_cap, "text_idx": rows_idx,
                                                "latent": rows_lat})
        counts[split], names[split] = len(rows_id), [name]
    if not n_train_values:
        raise PddError("latents: the export has no train rows")
    channel_mean = s1 / n_train_values
    channel_var = s2 / n_train_values - channel_mean ** 2
    total_mean = s1.sum() / (n_train_values * len(s1))
    total_var = s2.sum() / (n_train_values * len(s1)) - total_mean ** 2
    scaling = float(1.0 / np.sqrt(max(float(total_var), 1e-12)))
    texts = list(captions)                       # insertion order: "", then first appearance in file_id order
    states = encode_text(tokenizer, text_encoder, texts)
    _write(out_dir / "text.parquet", TEXT_SCHEMA, {"caption": texts, "states": [s.numpy().tobytes() for s in states]})
    vae.register_to_config(scaling_factor=scaling)
    vae.save_pretrained(out_dir / "vae", safe_serialization=True)
    latent_shape = list(vae.encode(torch.zeros(1, 3, resolution, resolution)).latent_dist.mean.shape[1:])
    index = {"format": FORMAT, "resolution": resolution, "latent_shape": latent_shape, "dtype": "float32",
             "posterior": "mean", "scaling_factor": scaling, "counts": counts, "shards": names,
             "channel_mean": [float(v) for v in channel_mean], "channel_std": [float(np.sqrt(max(v, 0))) for v in channel_var],
             "text": {"file": "text.parquet", "rows": len(texts), "shape": list(states.shape[1:]),
                      "empty_prompt_row": 0, "max_length": tokenizer.model_max_length}}
    write_json(out_dir / "index.json", index)
    return index


def read_index(latents_dir) -> dict:
    path = Path(latents_dir) / "index.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PddError(f"{path} not found: build the latents stage first (`dvc repro latents`)") from None


def read_text_states(latents_dir) -> tuple[list[str], torch.Tensor]:
    index = read_index(latents_dir)
    t = pq.read_table(Path(latents_dir) / index["text"]["file"])
    shape = index["text"]["shape"]
    buf = b"".join(t.column("states").to_pylist())
    states = torch.from_numpy(np.frombuffer(buf, dtype=np.float32).copy()).view(t.num_rows, *shape)
    return t.column("caption").to_pylist(), states


def latents_array(table: pa.Table, shape: list[int]) -> torch.Tensor:
    buf = b"".join(table.column("latent").to_pylist())
    return torch.from_numpy(np.frombuffer(buf, dtype=np.float32).copy()).view(table.num_rows, *shape)


def split_source(latents_dir, split: str, *, scaling: float, budget_mb: int, batch_size: int, **force):
    """Train rows as a loop data source: {"latent": scaled [N,C,h,w], "text_idx": [N]}."""
    index = read_index(latents_dir)
    shape = index["latent_shape"]
    files = [Path(latents_dir) / n for n in index["shards"][split]]

    def prepare(table):
        return {"latent": latents_array(table, shape) * scaling,
                "text_idx": torch.tensor(table.column("text_idx").to_pylist(), dtype=torch.long)}

    size = data.split_bytes(files, ["latent", "text_idx"])
    budget = budget_mb * 2**20
    streaming = force.pop("streaming", None)
    window = force.pop("window", None)
    n_blocks = sum(pq.ParquetFile(f).metadata.num_row_groups for f in files)
    if window is None:
        window = n_blocks if size <= budget else max(1, int(budget / max(1, size / max(1, n_blocks))) - 1)
    if streaming if streaming is not None else size > budget:
        return data.ShardSource(files, ["latent", "text_idx"], prepare, window, None, batch_size)
    tables = [pq.read_table(f, columns=["latent", "text_idx"]) for f in files]
    blocks = [pq.ParquetFile(f).metadata.row_group(rg).num_rows for f in files
              for rg in range(pq.ParquetFile(f).metadata.num_row_groups)]
    src = data.ArraySource(prepare(pa.concat_tables(tables)), blocks)
    src.window = window
    return src
