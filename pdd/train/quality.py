"""The yardstick: sample quality, prompt adherence and category accuracy, needing no downloaded weights.

Every figure is reported three times, so a reader sees where the model sits:
  * `model`: the generated samples (prompted with held-out val captions);
  * `real`: the same measurement on real held-out images (a seeded random train subset of the same size
    for the distribution measures; the val images with their own captions for prompt adherence and
    category accuracy): what a perfect generator would score;
  * `chance`: a trivial baseline (Gaussian noise with the data's colours; 1/32 for R-precision; shuffled
    pairs for the CLIP score; the majority class for category accuracy).
A measure on which samples beat `real` is a bug until shown otherwise.

Measures (all pure functions of their inputs and a seed):
* SWD: multi-scale sliced Wasserstein distance between 7x7 patches of Laplacian-pyramid levels (Karras et
  al. 2018), x 1e3. Lower is better.
* KID: Kernel Inception Distance (Binkowski et al. 2018): unbiased MMD^2 with the cubic polynomial kernel,
  averaged over random subsets (mean and standard error), in the *judge's* image-feature space. Lower is
  better; unbiased, so two samples of one distribution give about 0 at any n.
* precision / recall: Kynkaanniemi et al. 2019: the share of samples inside the real images' k-NN manifold,
  and of real images inside the samples' manifold. Higher is better.
* colour: total-variation distance between hue x saturation histograms (chromatic pixels, plus bins for
  white / grey / black pixels) of the two sets; 0 = same palette, 1 = disjoint. Shows palette collapse.
* CLIP score: mean cosine of image and prompt embeddings in the judge's space (x 100).
* R-precision: the share of images whose own prompt ranks first among it and 31 other val captions in the
  judge's space (chance 1/32).
* category accuracy: a classifier of the top-level category trained on the train split (a probe on the
  judge's image features), applied to the images; the label is the category of the val image whose caption
  prompted the sample (Classification Accuracy Score in spirit: Ravuri & Vinyals 2019).

The judge is not the conditioning model: it is a CLIP trained separately (stage `judge`, its own seed and
architecture), on the train split only, so the U-Net was never optimised to please it.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from pdd.train.clip import _features, normalizer


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---- SWD ----------------------------------------------------------------------------------
def laplacian_pyramid(x: torch.Tensor, levels: int) -> list[torch.Tensor]:
    out, cur = [], x
    for _ in range(levels - 1):
        down = F.avg_pool2d(cur, 2)
        up = F.interpolate(down, scale_factor=2, mode="bilinear", align_corners=False)
        out.append(cur - up)
        cur = down
    out.append(cur)
    return out


def _patches(level: torch.Tensor, per_image: int, g: torch.Generator, size: int = 7) -> torch.Tensor:
    n, c, h, w = level.shape
    size = min(size, h, w)
    ys = torch.randint(0, h - size + 1, (n, per_image), generator=g)
    xs = torch.randint(0, w - size + 1, (n, per_image), generator=g)
    unfolded = level.unfold(2, size, 1).unfold(3, size, 1)          # [n, c, H', W', size, size]
    picked = unfolded[torch.arange(n)[:, None], :, ys, xs]          # [n, per_image, c, size, size]
    return picked.reshape(n * per_image, -1)


def _normalise(d: torch.Tensor, c: int) -> torch.Tensor:
    d = d.view(len(d), c, -1)
    d = (d - d.mean(dim=(0, 2), keepdim=True)) / d.std(dim=(0, 2), keepdim=True).clamp_min(1e-8)
    return d.reshape(len(d), -1)


def _swd(a: torch.Tensor, b: torch.Tensor, g: torch.Generator, dirs: int = 128, repeats: int = 4) -> float:
    n = min(len(a), len(b))
    total = 0.0
    for _ in range(repeats):
        proj = torch.randn(a.shape[1], dirs, generator=g)
        proj = proj / proj.norm(dim=0, keepdim=True)
        pa = (a[torch.randperm(len(a), generator=g)[:n]] @ proj).sort(dim=0).values
        pb = (b[torch.randperm(len(b), generator=g)[:n]] @ proj).sort(dim=0).values
        total += float((pa - pb).abs().mean())
    return total / repeats


def swd(a_u8: torch.Tensor, b_u8: torch.Tensor, seed: int, levels: int = 3, per_image: int = 64) -> float:
    """Multi-scale SWD (x1e3) between two uint8 batches [N,R,R,3]."""
    g = _gen(seed)
    xa = a_u8.permute(0, 3, 1, 2).float() / 127.5 - 1
    xb = b_u8.permute(0, 3, 1, 2).float() / 127.5 - 1
    levels = max(1, min(levels, int(math.log2(xa.shape[-1] / 4)) + 1))
    dists = []
    for la, lb in zip(laplacian_pyramid(xa, levels), laplacian_pyramid(xb, levels)):
        pa = _normalise(_patches(la, per_image, g), 3)
        pb = _normalise(_patches(lb, per_image, g), 3)
        dists.append(_swd(pa, pb, g))
    return 1e3 * sum(dists) / len(dists)


def noise_like(ref_u8: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """The trivial generator: per-channel Gaussian noise with the reference's colour mean and std."""
    x = ref_u8.float()
    mean, std = x.mean(dim=(0, 1, 2)), x.std(dim=(0, 1, 2))
    z = torch.randn((n, *ref_u8.shape[1:]), generator=_gen(seed))
    return (z * std + mean).round().clamp(0, 255).to(torch.uint8)


# ---- feature-space distribution measures -----------------------------------------------------
def kid(fa: torch.Tensor, fb: torch.Tensor, seed: int, subsets: int = 50, subset_size: int = 500) -> tuple[float, float]:
    """Unbiased KID (MMD^2, kernel (x.y/d + 1)^3) between feature sets [N,d] and [M,d], over `subsets`
    random subsets of min(subset_size, N, M) rows each: (mean, standard error of the mean)."""
    fa, fb = fa.double(), fb.double()
    d = fa.shape[1]
    m = min(subset_size, len(fa), len(fb))
    if m < 2:
        raise ValueError(f"KID needs at least 2 features per set (got {len(fa)} and {len(fb)})")
    g = _gen(seed)
    vals = []
    for _ in range(subsets):
        a = fa[torch.randperm(len(fa), generator=g)[:m]]
        b = fb[torch.randperm(len(fb), generator=g)[:m]]
        kaa, kbb, kab = (a @ a.T / d + 1) ** 3, (b @ b.T / d + 1) ** 3, (a @ b.T / d + 1) ** 3
        mmd = ((kaa.sum() - kaa.diagonal().sum()) / (m * (m - 1)) + (kbb.sum() - kbb.diagonal().sum()) / (m * (m - 1))
               - 2 * kab.mean())
        vals.append(float(mmd))
    t = torch.tensor(vals, dtype=torch.float64)
    return float(t.mean()), float(t.std(unbiased=True) / math.sqrt(len(t))) if len(t) > 1 else 0.0


def _knn_radii(f: torch.Tensor, k: int) -> torch.Tensor:
    dist = torch.cdist(f, f)
    return dist.kthvalue(k + 1, dim=1).values     # the k-th neighbour (0th is the point itself)


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019) with k-NN hyperspheres."""
    real, fake = real.double(), fake.double()
    if len(real) <= k or len(fake) <= k:
        raise ValueError(f"precision/recall with k={k} needs more than {k} images per set (got {len(real)} and {len(fake)})")
    rr, rf = _knn_radii(real, k), _knn_radii(fake, k)
    d = torch.cdist(fake, real)                    # [fake, real]
    precision = (d <= rr[None, :]).any(dim=1).double().mean()
    recall = (d.T <= rf[None, :]).any(dim=1).double().mean()
    return float(precision), float(recall)


# ---- colour --------------------------------------------------------------------------------
HUE_BINS, SAT_BINS = 12, 3


def colour_histogram(images_u8: torch.Tensor) -> torch.Tensor:
    """Normalised histogram of every pixel: HUE_BINS x SAT_BINS hue/saturation bins for chromatic pixels
    (HSV saturation >= 0.2 and value >= 0.2), and 3 achromatic bins (black, grey, white by value)."""
    x = images_u8.reshape(-1, 3).float() / 255.0
    mx, mn = x.max(dim=1).values, x.min(dim=1).values
    delta = mx - mn
    sat = torch.where(mx > 0, delta / mx.clamp_min(1e-8), torch.zeros_like(mx))
    r, g, b = x.unbind(1)
    safe = delta.clamp_min(1e-8)
    hue = torch.where(mx == r, ((g - b) / safe) % 6, torch.where(mx == g, (b - r) / safe + 2, (r - g) / safe + 4)) / 6
    chroma = (sat >= 0.2) & (mx >= 0.2)
    hb = (hue * HUE_BINS).long().clamp(0, HUE_BINS - 1)
    sb = ((sat - 0.2) / 0.8 * SAT_BINS).long().clamp(0, SAT_BINS - 1)
    chrom_bin = hb * SAT_BINS + sb
    ach_bin = HUE_BINS * SAT_BINS + (mx * 3).long().clamp(0, 2)
    bins = torch.where(chroma, chrom_bin, ach_bin)
    h = torch.bincount(bins, minlength=HUE_BINS * SAT_BINS + 3).double()
    return h / h.sum().clamp_min(1)


def colour_distance(a_u8: torch.Tensor, b_u8: torch.Tensor) -> float:
    """Total-variation distance of the two sets' colour histograms (0: same palette, 1: disjoint)."""
    return float(0.5 * (colour_histogram(a_u8) - colour_histogram(b_u8)).abs().sum())


def hue_shares(images_u8: torch.Tensor) -> dict:
    """Share of chromatic pixels per hue family (red, yellow, green, cyan, blue, purple: 60 degrees each,
    centred on the primaries), and the share of pixels that are chromatic at all."""
    h = colour_histogram(images_u8)[:HUE_BINS * SAT_BINS].view(HUE_BINS, SAT_BINS).sum(1)
    chromatic = float(h.sum())
    fam = torch.roll(h, 1).view(6, 2).sum(1)       # bins of 30 degrees, the first family centred on 0 (red)
    names = ("red", "yellow", "green", "cyan", "blue", "purple")
    return {"chromatic": round(chromatic, 6),
            **{n: round(float(v) / chromatic, 6) if chromatic else 0.0 for n, v in zip(names, fam)}}


# ---- the judge -------------------------------------------------------------------------------
@torch.no_grad()
def image_features(clip_model, processor, images_u8: torch.Tensor, batch_size: int = 128) -> torch.Tensor:
    """Unit image embeddings of uint8 [N,R,R,3] images (resized to the model's size if needed)."""
    size = clip_model.config.vision_config.image_size
    pixels = normalizer(processor.image_processor if hasattr(processor, "image_processor") else processor)
    out = []
    for s in range(0, len(images_u8), batch_size):
        x = images_u8[s:s + batch_size]
        if x.shape[1] != size:
            x = F.interpolate(x.permute(0, 3, 1, 2).float(), size=(size, size), mode="bicubic", antialias=True,
                              align_corners=False).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
        f = _features(clip_model.get_image_features(pixel_values=pixels(x)))
        out.append(f / f.norm(dim=-1, keepdim=True))
    return torch.cat(out) if out else torch.zeros((0, clip_model.config.projection_dim))


clip_features = image_features   # the name the memorization stage uses


@torch.no_grad()
def text_features(clip_model, tokenizer, texts: list[str], batch_size: int = 256) -> torch.Tensor:
    out = []
    for s in range(0, len(texts), batch_size):
        enc = tokenizer(texts[s:s + batch_size], padding="max_length", truncation=True,
                        max_length=tokenizer.model_max_length, return_tensors="pt")
        f = _features(clip_model.get_text_features(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]))
        out.append(f / f.norm(dim=-1, keepdim=True))
    return torch.cat(out) if out else torch.zeros((0, clip_model.config.projection_dim))


def clip_score(img_f: torch.Tensor, txt_f: torch.Tensor) -> float:
    """Mean cosine x 100 of matched image and text embeddings (rows pair up)."""
    return float(100 * (img_f * txt_f).sum(dim=1).mean())


def distractors(prompt_ids: list[int], captions: list[str], seed: int, k: int = 31,
                groups: list | None = None) -> torch.Tensor:
    """For each query (index into captions), k other caption indices whose text differs from the query's,
    drawn with a seeded generator: [Q, k]. With `groups` (a group per caption, e.g. its category), the
    distractors come from the query's own group first (then from the others when it has too few): the
    prompt must then be told from captions of the same kind, which a category alone cannot do."""
    by_text: dict[str, int] = {}
    for i, c in enumerate(captions):
        by_text.setdefault(c, i)
    distinct = sorted(set(by_text.values()))
    if len(distinct) <= k:
        raise ValueError(f"R-precision needs more than {k} distinct captions (got {len(distinct)})")
    g = _gen(seed)
    out = []
    for q in prompt_ids:
        order = torch.randperm(len(distinct), generator=g).tolist()
        cand = [distinct[j] for j in order if captions[distinct[j]] != captions[q]]
        if groups is not None:
            cand = [c for c in cand if groups[c] == groups[q]] + [c for c in cand if groups[c] != groups[q]]
        out.append(cand[:k])
    return torch.tensor(out)


def r_precision(img_f: torch.Tensor, txt_f: torch.Tensor, prompt_ids: list[int], others: torch.Tensor) -> float:
    """Share of images whose own prompt (txt_f[prompt_ids[j]]) scores above all its distractors
    (txt_f[others[j]]); ties count against."""
    own = (img_f * txt_f[torch.tensor(prompt_ids)]).sum(dim=1)
    rival = torch.einsum("nd,nkd->nk", img_f, txt_f[others])
    return float((own > rival.max(dim=1).values).double().mean())


# ---- the category probe ------------------------------------------------------------------------
def train_probe(features: torch.Tensor, labels: torch.Tensor, n_classes: int, seed: int, steps: int = 300,
                lr: float = 0.05, weight_decay: float = 1e-4) -> torch.nn.Linear:
    """Multinomial logistic regression on fixed features (full batch, Adam, seeded init)."""
    torch.manual_seed(seed)
    probe = torch.nn.Linear(features.shape[1], n_classes)
    with torch.no_grad():
        probe.weight.copy_(torch.randn(probe.weight.shape, generator=_gen(seed)) * 0.01)
        probe.bias.zero_()
    opt = torch.optim.Adam(probe.parameters(), lr=lr, weight_decay=weight_decay)
    x = features.float()
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(probe(x), labels).backward()
        opt.step()
    return probe.eval()


@torch.no_grad()
def accuracy(probe: torch.nn.Linear, features: torch.Tensor, labels: torch.Tensor) -> float:
    return float((probe(features.float()).argmax(dim=1) == labels).double().mean())


def majority_rate(train_labels: torch.Tensor, labels: torch.Tensor, n_classes: int) -> float:
    """Accuracy of always answering the train split's most frequent class."""
    top = int(torch.bincount(train_labels, minlength=n_classes).argmax())
    return float((labels == top).double().mean())
