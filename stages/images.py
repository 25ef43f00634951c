"""Safe image decoding and the one fixed resize/crop algorithm used by export."""
from __future__ import annotations

import io
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


def _open(data: bytes) -> Image.Image:
    """Open and fully decode; every failure becomes BadImage with a short reason."""
    try:
        img = Image.open(io.BytesIO(data))
        if img.width * img.height > MAX_PIXELS:
            raise BadImage(f"decompression bomb: {img.width}x{img.height} exceeds {MAX_PIXELS} pixels")
        if img.format not in RASTER_FORMATS:
            raise BadImage(f"unsupported image format {img.format}")
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


def decode_rgb(data: bytes) -> Image.Image:
    """Decode to plain RGB pixels: EXIF orientation applied, then all EXIF/XMP/ICC metadata dropped,
    transparency composited on white. Colour profiles are not applied (documented)."""
    img = _open(data)
    if img.getexif().get(0x0112, 1) != 1:  # only pay for a transpose when there is an orientation
        img = ImageOps.exif_transpose(img)
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        canvas.alpha_composite(rgba)
        img = canvas
    rgb = img.convert("RGB")  # always a new image object: nothing of the file (EXIF/XMP/ICC) is carried
    rgb.info = {}
    return rgb


def fit_square(img: Image.Image, size: int, resample: str = "lanczos") -> Image.Image:
    """Center-crop to a square and resize to size x size with a fixed Pillow filter."""
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
