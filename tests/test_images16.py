"""16-bit images are scaled to 8 bit, not clipped to white (issue 9): on import with --max-side and in
export's decode."""
import csv
import io

import numpy as np
from PIL import Image

from pdd.core import images
from pdd.source.importers import import_folder
from pdd.source.store import Store


def png16(value_left=8192, value_right=49152, size=(64, 32)) -> bytes:
    a = np.empty((size[1], size[0]), dtype=np.uint16)
    a[:, : size[0] // 2] = value_left
    a[:, size[0] // 2:] = value_right
    out = io.BytesIO()
    Image.fromarray(a).save(out, format="PNG")
    return out.getvalue()


def test_16_bit_gray_png_is_scaled_not_clipped():
    data = png16()
    assert Image.open(io.BytesIO(data)).mode == "I;16"
    rgb = np.asarray(images.decode_rgb(data))
    left, right = rgb[:, :32].mean(), rgb[:, 32:].mean()
    assert abs(left - 8192 * 255 / 65535) < 1.5 and abs(right - 49152 * 255 / 65535) < 1.5, (left, right)


def test_16_bit_png_imported_with_max_side_keeps_its_tones(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "g.png").write_bytes(png16(size=(128, 64)))
    with open(folder / "meta.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([["file", "title", "license"], ["g.png", "G", "CC0"]])
    with Store(tmp_path / "db.duckdb") as store:
        assert import_folder(store, folder, folder / "meta.csv", max_side=64).accepted == 1
        row = store.latest_revision("m:g.png")
        stored = store.read_blob(row["sha256"])
    rgb = np.asarray(Image.open(io.BytesIO(stored)).convert("RGB")).astype(float)
    assert rgb.shape == (32, 64, 3)
    assert abs(rgb[:, :24].mean() - 32) < 4 and abs(rgb[:, 40:].mean() - 191) < 4   # not 255 (white)
