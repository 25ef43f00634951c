"""Image tensors, reconstruction metrics and PNG grids shared by the VAE, U-Net and sample stages.

No pretrained networks here (no LPIPS, no VGG): PSNR and SSIM are computed from pixels.
"""
from __future__ import annotations

import io

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


def to_model(images_u8: torch.Tensor) -> torch.Tensor:
    """uint8 [B,R,R,3] -> float [B,3,R,R] in [-1, 1] (what the VAE and the pixel U-Net see)."""
    return images_u8.permute(0, 3, 1, 2).float() / 127.5 - 1.0


def to_u8(x: torch.Tensor) -> torch.Tensor:
    """float [B,3,R,R] in [-1, 1] -> uint8 [B,R,R,3], rounded, clamped."""
    return ((x.detach().float().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu()


def psnr(a_u8: torch.Tensor, b_u8: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of two uint8 batches."""
    mse = ((a_u8.float() - b_u8.float()) ** 2).flatten(1).mean(1).clamp_min(1e-10)
    return 10.0 * torch.log10(255.0 ** 2 / mse)


def _gauss(size: int = 7, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-x * x / (2 * sigma * sigma))
    g = (g / g.sum()).float()
    return (g[:, None] * g[None, :])[None, None].repeat(3, 1, 1, 1)


def ssim(a_u8: torch.Tensor, b_u8: torch.Tensor) -> torch.Tensor:
    """Per-image SSIM (Wang et al. 2004, 7x7 Gaussian window, sigma 1.5, on RGB averaged over channels), in fp32
    even inside a bf16 autocast region (the training loop evaluates under the stage's mixed precision, where
    the window convolutions would otherwise round the figure to bf16's 8 bits)."""
    with torch.autocast(a_u8.device.type, enabled=False):
        return _ssim(a_u8, b_u8)


def _ssim(a_u8: torch.Tensor, b_u8: torch.Tensor) -> torch.Tensor:
    a = a_u8.permute(0, 3, 1, 2).float() / 255.0
    b = b_u8.permute(0, 3, 1, 2).float() / 255.0
    w = _gauss()
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    mu_a, mu_b = F.conv2d(a, w, groups=3), F.conv2d(b, w, groups=3)
    saa = F.conv2d(a * a, w, groups=3) - mu_a ** 2
    sbb = F.conv2d(b * b, w, groups=3) - mu_b ** 2
    sab = F.conv2d(a * b, w, groups=3) - mu_a * mu_b
    m = ((2 * mu_a * mu_b + c1) * (2 * sab + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (saa + sbb + c2))
    return m.flatten(1).mean(1)


def mean_colour(images_u8: torch.Tensor) -> torch.Tensor:
    """Baseline: every pixel replaced by its image's mean colour."""
    m = images_u8.float().mean(dim=(1, 2), keepdim=True)
    return m.expand_as(images_u8.float()).round().clamp(0, 255).to(torch.uint8)


def resize_baseline(images_u8: torch.Tensor, size: int) -> torch.Tensor:
    """Baseline: bicubic down to the latent's spatial size, then back up."""
    x = images_u8.permute(0, 3, 1, 2).float()
    r = images_u8.shape[1]
    small = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False, antialias=True)
    back = F.interpolate(small, size=(r, r), mode="bicubic", align_corners=False)
    return back.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)


def grid(rows: list[torch.Tensor], pad: int = 2, scale: int = 1):
    """A PIL image: each entry of rows is a uint8 batch [N,R,R,3] shown as one row (white gaps)."""
    n = max(len(r) for r in rows)
    r = rows[0].shape[1]
    h, w = len(rows) * (r + pad) + pad, n * (r + pad) + pad
    canvas = np.full((h, w, 3), 255, dtype=np.uint8)
    for i, row in enumerate(rows):
        for j, img in enumerate(row):
            y, x = pad + i * (r + pad), pad + j * (r + pad)
            canvas[y:y + r, x:x + r] = img.numpy()
    im = Image.fromarray(canvas)
    if scale > 1:
        im = im.resize((w * scale, h * scale), Image.Resampling.NEAREST)
    return im


def png_bytes(image) -> bytes:
    """PNG with no metadata chunks (no time, no text): equal pixels give equal bytes."""
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=9)
    return buf.getvalue()


def _hue_chroma(u8: torch.Tensor):
    x = u8.reshape(-1, 3).float()
    mx, mn = x.max(dim=1).values, x.min(dim=1).values
    chroma = mx - mn
    r, g, b = x.unbind(1)
    safe = chroma.clamp_min(1e-6)
    hue = torch.where(mx == r, ((g - b) / safe) % 6, torch.where(mx == g, (b - r) / safe + 2, (r - g) / safe + 4)) * 60
    return hue, chroma, mx


def colour_error(ref_u8: torch.Tensor, out_u8: torch.Tensor) -> dict:
    """How a reconstruction keeps colour, per pixel: the mean hue error in degrees over the reference's coloured
    pixels (chroma >= 51 of 255: a red that turns brown shows here), and the mean chroma (max - min channel)
    lost over them (positive: washed out)."""
    h0, c0, _ = _hue_chroma(ref_u8)
    h1, c1, _ = _hue_chroma(out_u8)
    coloured = c0 >= 51
    if not bool(coloured.any()):
        return {"hue_error_deg": 0.0, "chroma_loss": 0.0, "coloured_pixels": 0.0}
    dh = (h1 - h0).abs()[coloured]
    dh = torch.minimum(dh, 360 - dh)
    return {"hue_error_deg": float(dh.mean()), "chroma_loss": float((c0 - c1)[coloured].mean()),
            "coloured_pixels": float(coloured.float().mean())}
