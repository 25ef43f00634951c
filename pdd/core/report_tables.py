"""The quality stage's figures as one table, for the model card, the README and the stage's summary."""
from __future__ import annotations

# (key in metrics/quality.json, what it measures, better)
ROWS = [
    ("r_precision", "R-precision: own prompt ranked first among 32 val captions (judge)", "higher"),
    ("clip_score", "CLIP score: image-prompt cosine x 100 (judge)", "higher"),
    ("category_accuracy", "category accuracy (judge's probe; real: val images)", "higher"),
    ("precision", "precision (k-NN manifold of val, judge features)", "higher"),
    ("recall", "recall (k-NN manifold of val, judge features)", "higher"),
    ("kid", "KID x 1e3 vs val (judge features)", "lower"),
    ("colour", "colour: hue/saturation histogram distance to val", "lower"),
    ("swd", "SWD x 1e3 vs val (pixel patches)", "lower"),
]


def _fmt(key: str, v) -> str:
    if v is None:
        return "n/a"
    return f"{v * 1e3:.2f}" if key == "kid" else f"{v:.3f}"


def quality_table(q: dict) -> str:
    """Markdown: each measure's model / real-image / chance values."""
    lines = ["| measure | better | model (samples) | real images | chance / trivial |", "|---|---|---|---|---|"]
    for key, what, better in ROWS:
        row = q.get(key)
        if not isinstance(row, dict):
            continue
        m, r, c = (_fmt(key, row.get(k)) for k in ("model", "real", "chance"))
        if key == "kid":
            m += f" ± {row.get('model_se', 0) * 1e3:.2f}"
            r += f" ± {row.get('real_se', 0) * 1e3:.2f}"
        lines.append(f"| {what} | {better} | {m} | {r} | {c} |")
    n = q.get("n_samples")
    lines.append("")
    lines.append(f"{n} samples prompted with held-out val captions; real: a random train subset of the same size "
                 f"(distribution measures) or the {q.get('n_val')} val images with their own captions; chance: Gaussian "
                 f"noise with the data's colours, 1/{q.get('r_precision', {}).get('candidates', 32)} for R-precision, "
                 f"shuffled image-caption pairs for the CLIP score, the train split's majority class for categories.")
    return "\n".join(lines)
