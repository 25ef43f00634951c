"""import-openclipart: every rejection reason on small SVG/PNG pairs written here, the stored image and
labels of an accepted file, re-import idempotence, the audit's re-decision; and (when the Debian packages
can be fetched) the real Open Clip Art Library 0.18 against the committed openclipart-0.18 snapshot."""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import struct
import subprocess
import time
import zlib
from pathlib import Path

import pytest
from PIL import Image

from pdd import snapshot
from pdd.cli import main
from pdd.rights import openclipart as rights
from pdd.rights.audit import row_problems
from pdd.source import pin
from pdd.source.openclipart import import_openclipart
from pdd.source.store import Store

REPO = Path(__file__).resolve().parents[1]
PD = "http://web.resource.org/cc/PublicDomain"
GPL = "http://creativecommons.org/licenses/GPL/2.0/"


def svg(title="A duck", creator="Jane Doe", keywords=("duck", "bird"), licences=(PD,), description=None,
        doctype="") -> str:
    subj = "".join(f"<rdf:li>{k}</rdf:li>" for k in keywords)
    lic = "".join(f'<cc:license rdf:resource="{v}" />' for v in licences)
    desc = f"<dc:description>{description}</dc:description>" if description else ""
    about = f'<cc:License rdf:about="{licences[0]}" />' if licences else ""
    return f"""<?xml version="1.0" encoding="UTF-8"?>{doctype}
<svg xmlns="http://www.w3.org/2000/svg" xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"
     xmlns:cc="http://web.resource.org/cc/" xmlns:dc="http://purl.org/dc/elements/1.1/" width="4" height="4">
 <metadata><rdf:RDF><cc:Work rdf:about="">
  <dc:title>{title}</dc:title>{desc}
  <dc:creator><cc:Agent><dc:title>{creator}</dc:title></cc:Agent></dc:creator>
  <dc:subject><rdf:Bag>{subj}</rdf:Bag></dc:subject>{lic}
 </cc:Work>{about}</rdf:RDF></metadata>
</svg>"""


def png_bytes(size=(16, 8)) -> bytes:
    img = Image.new("RGBA", size, (200, 0, 0, 255))
    img.paste((0, 0, 0, 0), (0, 0, size[0] // 2, size[1]))  # left half fully transparent (black): must become white
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


def png_header_only(w: int, h: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))


def write_tree(root: Path, files: dict[str, tuple[str, bytes]]) -> Path:
    base = root / "usr" / "share" / "openclipart"
    for key, (svg_text, png) in files.items():
        for kind, data in (("svg", svg_text.encode()), ("png", png)):
            path = base / kind / f"{key}.{kind}"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
    return root


CASES = {
    "animals/birds/duck": (svg(), png_bytes()),
    "animals/empty_licence": (svg(licences=("",)), png_bytes()),
    "computer/gpl_switch": (svg(licences=(GPL,)), png_bytes()),
    "food/two_licences": (svg(licences=(PD, "Public Domain")), png_bytes()),
    "shapes/malformed": (svg().replace("</cc:Work>", ""), png_bytes()),
    "computer/entities": (svg(doctype='<!DOCTYPE svg [<!ENTITY ns_flows "http://ns.adobe.com/Flows/1.0/">]>'), png_bytes()),
    "unsorted/title_logo": (svg(title="logo of ACME Corp"), png_bytes()),
    "unsorted/keyword_tm": (svg(keywords=("shield", "trademark")), png_bytes()),
    "logos/debian_swirl": (svg(title="swirl"), png_bytes()),
    "signs_and_symbols/stop_bomb": (svg(title="stop"), png_header_only(20990, 29700)),
    "shapes/undecodable": (svg(title="square"), png_header_only(8, 8) + b"\x00\x00\x00\x04IDATjunk"),
}
EXPECTED = {
    "openclipart:animals/birds/duck": "accepted: public domain in SVG RDF",
    "openclipart:animals/empty_licence": "rejected: empty licence",
    "openclipart:computer/gpl_switch": "rejected: GPL licence",
    "openclipart:food/two_licences": "rejected: conflicting licences",
    "openclipart:shapes/malformed": "rejected: SVG metadata unreadable (malformed xml",
    "openclipart:computer/entities": "rejected: SVG metadata unreadable (refused xml: entity declaration",
    "openclipart:unsorted/title_logo": "rejected: trademark: 'logo' in title",
    "openclipart:unsorted/keyword_tm": "rejected: trademark: 'trademark' in keyword",
    "openclipart:logos/debian_swirl": "rejected: trademark: 'logos' in dir",
    "openclipart:signs_and_symbols/stop_bomb": "rejected: bad image: decompression bomb: 20990x29700",
    "openclipart:shapes/undecodable": "rejected: bad image:",
}


@pytest.fixture
def tree(tmp_path):
    root = write_tree(tmp_path / "unpacked", CASES)
    # Debian's de-duplication: a relative symlink to the same PNG and SVG is one file with an alias
    for kind in ("png", "svg"):
        alias = root / f"usr/share/openclipart/{kind}/animals/ducks/duck2.{kind}"
        alias.parent.mkdir(parents=True)
        alias.symlink_to(f"../birds/duck.{kind}")
    return root


def test_every_rejection_reason_and_the_accepted_file(tree, tmp_path):
    with Store(tmp_path / "db" / "pdd.duckdb") as store:
        report = import_openclipart(store, tree, max_side=4, workers=2)
        rows = {r["file_id"]: r for r in store.query("SELECT * FROM current_revisions")}
        assert {fid: r["reason"][: len(EXPECTED[fid])] for fid, r in rows.items()} == EXPECTED
        assert report.names == len(CASES) + 1 and report.accepted == 1 and report.rejected == len(CASES) - 1
        assert report.reasons == {"accepted": 1, "rejected: empty": 1, "rejected: gpl": 1, "rejected: conflict": 1,
                                  "rejected: malformed": 2, "rejected: trademark": 3,
                                  "rejected: decompression bomb": 1, "rejected: bad image": 1}
        for fid, r in rows.items():  # rejected rows keep no bytes, but their evidence and reason
            assert (r["sha256"] is None) == (r["status"] == "rejected")
            ev = json.loads(r["licence_evidence"])
            assert ev["svg"] == f"svg/{fid.split(':', 1)[1]}.svg" and len(ev["svg_sha256"]) == 64
        assert json.loads(rows["openclipart:computer/gpl_switch"]["licence_evidence"])["licence_sources"][0][1] == GPL

        duck = rows["openclipart:animals/birds/duck"]
        assert (duck["mime"], duck["width"], duck["height"], duck["licence_kind"]) == ("image/webp", 4, 2, "pd")
        assert json.loads(duck["provenance"])["aliases"] == ["animals/ducks/duck2"]
        img = Image.open(io.BytesIO(store.read_blob(duck["sha256"])))
        assert img.format == "WEBP" and img.mode == "RGB" and not img.info.get("exif") and not img.info.get("icc_profile")
        assert min(img.getpixel((0, 0))) >= 250 and img.getpixel((3, 1))[1] < 50  # transparent -> white, red stays red
        labels = {lb["field"]: (lb["text"], lb["licence"]) for lb in store.labels_of(duck["revision_id"])}
        assert labels == {"title": ("A duck", "pd"), "creator": ("Jane Doe", "pd"),
                          "keywords": ("duck, bird", "pd"), "category": ("animals/birds", "pd")}

        n_revs = store.query("SELECT count(*) AS n FROM revisions")[0]["n"]
        again = import_openclipart(store, tree, max_side=4, workers=1)
        assert again.unchanged == len(CASES) and store.query("SELECT count(*) AS n FROM revisions")[0]["n"] == n_revs


def test_flatten_is_exact_without_resizing(tmp_path):
    root = write_tree(tmp_path / "u", {"animals/duck": (svg(), png_bytes())})
    with Store(tmp_path / "pdd.duckdb") as store:
        import_openclipart(store, root, max_side=64)  # 8x4 is never upscaled
        row = store.query("SELECT * FROM current_revisions")[0]
        img = Image.open(io.BytesIO(store.read_blob(row["sha256"])))
        assert img.size == (16, 8) and img.getpixel((0, 0)) == (255, 255, 255) and img.getpixel((15, 7)) == (200, 0, 0)


def test_pinned_rows_pass_the_audit_and_tampered_evidence_fails(tree, tmp_path):
    out = tmp_path / "snaps"
    hashes = []
    for i in range(2):  # two fresh stores, two pins: the same bytes
        with Store(tmp_path / f"db{i}" / "pdd.duckdb") as store:
            import_openclipart(store, tree, max_side=4, workers=1 + i)
            info = pin.pin(store, "oca-test", out / str(i))
        hashes.append((info["content_hash"], (out / str(i) / "oca-test.parquet").read_bytes()))
    assert hashes[0] == hashes[1]
    rows = snapshot.read_rows(out / "0" / "oca-test.parquet")
    assert [r["file_id"] for r in rows] == ["openclipart:animals/birds/duck"]
    assert row_problems(rows[0], ["pd", "cc0"]) == []
    ev = json.loads(rows[0]["licence_evidence"])
    for tamper in ({"licence_sources": [["x", GPL]]}, {"keywords": ["logo"]}, {"aliases": ["logos/duck"]}):
        bad = dict(rows[0], licence_evidence=json.dumps({**ev, **tamper}))
        assert any("does not support" in p for p in row_problems(bad, ["pd", "cc0"])), tamper


@pytest.mark.parametrize("text,hit", [
    ("linux_logo", True), ("logo-2", True), ("Logotype", True), ("Acme\u2122", True), ("(TM) corp", True),
    ("logon", False), ("catalogo", False), ("Logotipo", False), ("ecologos", False), ("logo2", False),
    ("trademarked", False),
])
def test_trademark_word_rule(text, hit):
    assert bool(rights.trademark_hits({"key": "shapes/x", "title": text})) == hit


def test_rdf_reader_never_raises():
    for data in (b"", b"\xff\xfe", b"<svg", b"<svg/>", svg().encode()[:200], b"<a>" * 300 + b"</a>" * 300):
        meta = rights.read_rdf(data)
        assert not rights.decide(meta, "shapes/x").accepted
    meta = rights.read_rdf(svg(licences=(PD, PD)).encode())  # the same PD form twice is not a conflict
    assert rights.decide(meta, "shapes/x").accepted
    meta = rights.read_rdf(svg(licences=(PD, "")).encode())  # an empty licence beside PD: fail closed
    assert rights.decide(meta, "shapes/x").kind == "conflict"


def test_cli_prints_the_summary(tree, tmp_path, capsys):
    assert main(["import-openclipart", str(tree / "usr/share/openclipart"), "--db", str(tmp_path / "c.duckdb"), "--max-side", "4"]) == 0
    out = capsys.readouterr().out
    assert "12 PNG names, 11 distinct files: 1 accepted, 10 rejected" in out and "3  rejected: trademark" in out
    assert main(["import-openclipart", str(tmp_path), "--db", str(tmp_path / "c.duckdb")]) == 2


# ---- the real packages ---------------------------------------------------------------------------
DEBS = {"openclipart-png": "f07f1545a2970c2cf3fa339bc2405da1a95cf2b1827bfa05bf73eb1c20291c02",
        "openclipart-svg": "989712d90d57dfa3230049f553bb43b76c30ee4d4b8c5f6e106e33f7db5cbdc5"}
VERSION = "1:0.18+dfsg-19"
# per distinct PNG file (Debian symlinks duplicates; names = files + their aliases)
FILES_BY_REASON = {"accepted": 6350, "rejected: conflict": 9, "rejected: decompression bomb": 6, "rejected: empty": 57,
                   "rejected: gpl": 2, "rejected: malformed": 4, "rejected: trademark": 32, "rejected: mark": 425,
                   "rejected: likeness": 8, "rejected: reviewed": 7}
NAMES_BY_KIND = {"pd": 7425, "conflict": 10, "empty": 61, "gpl": 4, "malformed": 15, "trademark": 45, "bomb": 6,
                 "mark": 531, "likeness": 11, "reviewed": 13}


def fetch_debs(dest: Path) -> list[Path]:
    """The two .debs from $PDD_OPENCLIPART_DEBS (a folder that has them) or `apt-get download`; sha256-checked."""
    given = os.environ.get("PDD_OPENCLIPART_DEBS")
    if given:
        found = [p for name in DEBS for p in Path(given).glob(f"{name}_*.deb")]
        for p in found:
            shutil.copy(p, dest)
    else:
        if not shutil.which("apt-get") or not shutil.which("dpkg-deb"):
            pytest.skip("apt-get/dpkg-deb not available: cannot fetch the Debian openclipart packages")
        try:
            proc = subprocess.run(["apt-get", "download", *(f"{n}={VERSION}" for n in DEBS)], cwd=dest,
                                  capture_output=True, text=True, timeout=300)
        except subprocess.TimeoutExpired:
            pytest.skip("apt-get download openclipart-png openclipart-svg took over 300 s")
        if proc.returncode != 0:
            pytest.skip(f"apt-get download openclipart-png openclipart-svg failed: {proc.stderr.strip().splitlines()[-1:]}")
    debs = sorted(dest.glob("*.deb"))
    if len(debs) != 2:
        pytest.skip("the two openclipart .debs could not be fetched")
    for deb in debs:
        digest = hashlib.sha256(deb.read_bytes()).hexdigest()
        assert digest in DEBS.values(), f"{deb.name}: sha256 {digest} is not Debian's {VERSION}"
    return debs


def test_real_packages_rebuild_the_committed_snapshot(tmp_path):
    committed = REPO / "data" / "snapshots" / "openclipart-0.18.parquet"
    debs = fetch_debs(tmp_path)
    root = tmp_path / "root"
    for deb in debs:
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True, timeout=300)
    t0 = time.time()
    with Store(tmp_path / "db" / "pdd.duckdb") as store:
        report = import_openclipart(store, root, max_side=64)
        t_import = time.time() - t0
        assert dict(report.reasons) == FILES_BY_REASON and report.names == 8121
        by_kind: dict[str, int] = {}
        for r in store.query("SELECT status, reason, licence_kind, provenance FROM current_revisions"):
            screened = r["reason"].split(":")[1].strip() if r["reason"].startswith(("rejected: mark:", "rejected: likeness:",
                                                                                    "rejected: reviewed:")) else None
            kind = "bomb" if "decompression bomb" in r["reason"] else screened or r["licence_kind"]
            by_kind[kind] = by_kind.get(kind, 0) + 1 + len(json.loads(r["provenance"])["aliases"])
        assert by_kind == NAMES_BY_KIND
        info = pin.pin(store, "openclipart-0.18", tmp_path / "snaps")
    rows = snapshot.read_rows(tmp_path / "snaps" / "openclipart-0.18.parquet")
    assert len(rows) == 6350 and {r["licence_kind"] for r in rows} == {"pd"}
    for r in rows:
        names = [r["external_id"], *json.loads(r["provenance"])["aliases"]]
        assert not any("logos" in n.split("/")[:-1] for n in names)
        assert "gpl" not in r["licence_evidence"].lower()
    print(f"import {t_import:.0f} s, pin {time.time() - t0 - t_import:.0f} s, content hash {info['content_hash']}")
    assert (tmp_path / "snaps" / "openclipart-0.18.parquet").read_bytes() == committed.read_bytes()
    assert json.loads((REPO / "data/snapshots/openclipart-0.18.json").read_text())["content_hash"] == info["content_hash"]
