"""Safe image decoding and the one fixed resize/crop algorithm used by export."""
from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass

from PIL import Image, ImageFile, ImageOps

# Refuse decompression bombs outright (Pillow only warns between 1x and 2x of its limit).
MAX_PIXELS = 64_000_000
RASTER_FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "TIFF": "image/tiff", "GIF": "image/gif"}
RESAMPLE = {"lanczos": Image.Resampling.LANCZOS, "bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}

ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is an error, never half an image
# Process-wide (set once, not per call, so decoding threads never race on it): Pillow raises
# above 2x this; between 1x and 2x it only warns, so _open checks the size itself.
Image.MAX_IMAGE_PIXELS = MAX_PIXELS
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


class BadImage(ValueError):
    """The bytes are not a usable raster image; str() is the stored reason."""


@dataclass(frozen=True)
class ImageInfo:
    mime: str
    width: int
    height: int


def _open(data: bytes, min_short_side: int | None = None) -> Image.Image:
    """Open and fully decode; every failure becomes BadImage with a short reason.

    With min_short_side, a JPEG is decoded at the largest DCT reduction (1/2, 1/4, 1/8) that keeps its
    short side >= 2 * min_short_side: libjpeg's scaled IDCT is a proper downscale, and the 2x margin
    leaves the final Lanczos resize to decide the pixels. Fixed by the sizes alone, so deterministic."""
    try:
        img = Image.open(io.BytesIO(data))
        if img.width * img.height > MAX_PIXELS:
            raise BadImage(f"decompression bomb: {img.width}x{img.height} exceeds {MAX_PIXELS} pixels")
        if img.format not in RASTER_FORMATS:
            raise BadImage(f"unsupported image format {img.format}")
        if min_short_side and img.format == "JPEG":
            scale = 2 * min_short_side / min(img.size)
            if scale < 1:
                img.draft(img.mode, (math.ceil(img.width * scale), math.ceil(img.height * scale)))
        img.load()
        return img
    except BadImage:
        raise
    except Image.DecompressionBombError as exc:
        raise BadImage(f"decompression bomb: {exc}") from None
    except Image.UnidentifiedImageError:
        raise BadImage("not an image (Pillow cannot identify the bytes)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        msg = str(exc)
        if "truncated" in msg.lower():
            raise BadImage("truncated image file") from None
        raise BadImage(f"corrupt image: {msg}") from None


def inspect(data: bytes) -> ImageInfo:
    """Fully decode once (catches truncation) and report mime and size; raise BadImage."""
    if not data:
        raise BadImage("empty file")
    img = _open(data)
    return ImageInfo(RASTER_FORMATS[img.format], img.width, img.height)


def decode_rgb(data: bytes, min_short_side: int | None = None) -> Image.Image:
    """Decode to plain RGB pixels: EXIF orientation applied, then all EXIF/XMP/ICC metadata dropped,
    transparency composited on white. Colour profiles are not applied (documented). See _open for
    min_short_side (reduced-size JPEG decoding when the caller only needs that many pixels)."""
    img = _open(data, min_short_side)
    # only pay for EXIF parsing and a transpose when the file carries an orientation
    if ("exif" in img.info or img.format == "TIFF") and img.getexif().get(0x0112, 1) != 1:
        img = ImageOps.exif_transpose(img)
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # 16-bit gray (PNG, TIFF): scaled to 8 bit by 255/65535, a tRNS key honoured; convert("RGB")
        # clipped every value above 255 to white
        img = flatten_on_white(img)
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        canvas.alpha_composite(rgba)
        img = canvas
    rgb = img.convert("RGB")  # always a new image object: nothing of the file (EXIF/XMP/ICC) is carried
    rgb.info = {}
    return rgb


def fit_square(img: Image.Image, size: int, resample: str = "lanczos", fit: str = "crop",
               background: tuple = (255, 255, 255)) -> Image.Image:
    """size x size with a fixed Pillow filter: `crop` center-crops to a square first; `pad` keeps the whole
    image and centres it on the background colour (clip art is rarely square, and cropping cuts it)."""
    if fit == "pad":
        return ImageOps.pad(img, (size, size), method=RESAMPLE[resample], color=tuple(background), centering=(0.5, 0.5))
    return ImageOps.fit(img, (size, size), method=RESAMPLE[resample], centering=(0.5, 0.5))


def downscale_jpeg(data: bytes, max_side: int, quality: int = 90) -> bytes:
    """Shrink so the longer side is at most max_side and re-encode as baseline JPEG (no metadata)."""
    img = decode_rgb(data)
    if max(img.size) > max_side:
        scale = max_side / max(img.size)
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=quality, optimize=False, progressive=False)
    return out.getvalue()


# ---- clip art (issue 8): transparency flattened on white, small lossless WebP ----------------------
def flatten_on_white(img: Image.Image) -> Image.Image:
    """The fixed flatten: bring any mode to RGBA (palette/gray/RGB tRNS colour keys and LA alpha honoured,
    16-bit gray scaled by 255/65535), alpha-composite over opaque white (Pillow's integer compositing),
    return RGB with no metadata."""
    im = img
    if im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        src = im if im.mode == "I" else im.convert("I")
        lum = src.point(lambda v: v * (255.0 / 65535.0) + 0.5).convert("L")
        key = im.info.get("transparency")
        if isinstance(key, int):
            alpha = Image.frombytes("L", im.size, bytes(0 if v == key else 255 for v in src.getdata()))
            im = Image.merge("LA", (lum, alpha))
        else:
            im = lum
    elif im.mode == "1":
        im = im.convert("L")
    if im.mode != "RGBA":
        im = im.convert("RGBA")  # P/PA/LA/La/RGBa, and L/RGB with a tRNS key, get their alpha here
    canvas = Image.new("RGBA", im.size, (255, 255, 255, 255))
    canvas.alpha_composite(im)
    rgb = canvas.convert("RGB")
    rgb.info = {}
    return rgb


def shrink_to(img: Image.Image, max_side: int) -> Image.Image:
    """Downscale (never upscale) so the longer side is at most max_side: Lanczos, aspect kept (rounded, >= 1 px)."""
    w, h = img.size
    if max(w, h) <= max_side:
        return img
    if w >= h:
        size = (max_side, max(1, round(h * max_side / w)))
    else:
        size = (max(1, round(w * max_side / h)), max_side)
    return img.resize(size, Image.Resampling.LANCZOS)


def encode_webp_lossless(img: Image.Image) -> bytes:
    """Lossless WebP, fixed settings (quality=80 is the effort, method=6), no EXIF/XMP/ICC: same pixels, same bytes."""
    out = io.BytesIO()
    img = img.copy()
    img.info = {}  # nothing of a source file is carried into the stored bytes
    img.save(out, format="WEBP", lossless=True, quality=80, method=6)
    return out.getvalue()


def open_checked(data: bytes) -> Image.Image:
    """Fully decoded Pillow image with the same checks as inspect() (bombs, truncation); raise BadImage."""
    if not data:
        raise BadImage("empty file")
    return _open(data)
