"""Bad and good image files made on the fly for import tests."""
import io
import struct
import zlib

from PIL import Image


def jpeg(color=(120, 30, 200), size=(40, 30), exif: bytes | None = None) -> bytes:
    img = Image.new("RGB", size, color)
    for x in range(size[0]):
        img.putpixel((x, x % size[1]), (x * 5 % 256, 0, 0))
    out = io.BytesIO()
    kw = {"exif": exif} if exif else {}
    img.save(out, format="JPEG", quality=90, **kw)
    return out.getvalue()


def png_bomb(width=20000, height=20000) -> bytes:
    """A tiny PNG whose header claims width x height pixels (a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale
    row = b"\x00" + b"\x00" * ((width + 7) // 8)
    idat = zlib.compress(row * 16, 9)  # deliberately far fewer rows than claimed
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
