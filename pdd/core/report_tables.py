"""The quality stage's figures as one table, for the model card, the README and the stage's summary."""
from __future__ import annotations

# (key in metrics/quality.json, what it measures, better)
ROWS = [
    ("r_precision_same_category", "R-precision, same category: own prompt first among 32 val captions of its own "
                                  "category (judge)", "higher"),
    ("r_precision", "R-precision: own prompt first among 32 random val captions (judge)", "higher"),
    ("clip_score", "CLIP score: image-prompt cosine x 100 (judge)", "higher"),
    ("category_accuracy", "category accuracy (judge's probe; real: val images)", "higher"),
    ("precision", "precision (k-NN manifold of held-out val half B, judge features)", "higher"),
    ("recall", "recall (k-NN manifold of held-out val half B, judge features)", "higher"),
    ("kid", "KID x 1e3 vs val half B (judge features)", "lower"),
    ("colour", "colour: hue/saturation histogram distance to val half B", "lower"),
    ("swd", "SWD x 1e3 vs val half B (pixel patches)", "lower"),
]


# prompt measures: guidance pushes samples towards their prompt, so each is also measured unguided on the first prompts
GUIDED = ("clip_score", "r_precision", "r_precision_same_category", "category_accuracy")


def _fmt(key: str, v) -> str:
    if v is None:
        return "n/a"
    return f"{v * 1e3:.2f}" if key == "kid" else f"{v:.3f}"


def quality_table(q: dict) -> str:
    """Markdown: each measure's model / real-image / chance values."""
    lines = ["| measure | better | model (samples) | real images | chance | category prototype |",
             "|---|---|---|---|---|---|"]
    for key, what, better in ROWS:
        row = q.get(key)
        if not isinstance(row, dict):
            continue
        m, r, c, p = (_fmt(key, row.get(k)) for k in ("model", "real", "chance", "prototype"))
        if key in ("r_precision", "r_precision_same_category", "category_accuracy") and row.get("model_se") is not None:
            m += f" ± {row['model_se']:.3f}"
            r += f" ± {row['real_se']:.3f}"
        if key in GUIDED and row.get("model_unguided") is not None:
            m += f" (unguided, first {row['unguided_n']}: {row['model_unguided']:.3f}; real on those: {row['real_same_prompts']:.3f})"
        if key == "kid":
            m += f" ± {(row.get('model_se') or 0) * 1e3:.2f}"
            r += f" ± {(row.get('real_se') or 0) * 1e3:.2f}"
        lines.append(f"| {what} | {better} | {m} | {r} | {c} | {p} |")
    n = q.get("n_samples")
    lines.append("")
    paired = q.get("n_paired", n)
    lines.append(f"{n} samples prompted with held-out val captions; real: the {q.get('n_val')} val images with their own "
                 f"captions. The distribution measures (precision to SWD) cut val in two: the first {paired} samples, "
                 f"prompted with the captions of half A, and the {paired} real images of half A are each compared with "
                 f"the other {q.get('n_reference', n)} val images (half B), which neither was drawn from (real: the "
                 f"floor of two real halves). ± is a standard error; chance: Gaussian "
                 f"noise with the data's colours, 1/{q.get('r_precision', {}).get('candidates', 32)} for R-precision, "
                 f"shuffled image-caption pairs for the CLIP score, the train split's majority class for categories. "
                 f"Category prototype: a trivial generator that draws, for every prompt, the mean train image of the "
                 f"prompt's category (a blurred blob that knows the category and nothing else). Precision and the CLIP "
                 f"score reward typical images: where the prototype beats real images, so may samples, without "
                 f"drawing the object.")
    return "\n".join(lines)
