"""Content credentials: `pdd generate` with a signing key writes a PNG whose C2PA manifest a stock c2pa Reader
validates and shows (trainedAlgorithmicMedia, the model's digest, the snapshot's hash, prompt, seed, steps,
guidance); a pixel edit makes validation fail; without a key one warning line says the images have none;
bad input is one line and exit 2. The chain is made at run time (a throw-away CA + ES256 leaf); no key is
committed."""
from __future__ import annotations

import json
import shutil
import struct
import zlib

import c2pa
import pytest

import tiny_pipes
from pdd import cli, credentials
from pdd.core.hashing import hash_dir


SNAP = {"name": "demo-snap", "content_hash": "ab" * 32}


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """The tiny text pipeline with a provenance.json like the pipeline stage's (the snapshot part)."""
    root = tiny_pipes.make(tmp_path_factory.mktemp("pipes"))
    (root / "text/provenance.json").write_text(json.dumps({"pipeline": "StableDiffusionPipeline", "snapshot": SNAP}))
    return root / "text"


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    return credentials.make_key(tmp_path_factory.mktemp("keys") / "k")


def run(capsys, *argv):
    rc = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def generate(capsys, model, out, *extra):
    return run(capsys, "generate", "--model", model, "--prompt", "apple", "--seed", "5", "--steps", "2",
               "--guidance", "2.5", "-o", out, "--quiet", *extra)


def edit_pixels(png: bytes) -> bytes:
    """The same PNG with one pixel byte changed in the image data (IDAT re-compressed, CRC fixed); every
    other chunk (the C2PA one included) kept as it is."""
    out, pos, idat = [png[:8]], 8, []
    chunks = []
    while pos < len(png):
        n, kind = struct.unpack(">I4s", png[pos:pos + 8])
        chunks.append((kind, png[pos + 8:pos + 8 + n]))
        pos += 12 + n
    idat = bytearray(zlib.decompress(b"".join(d for k, d in chunks if k == b"IDAT")))
    idat[1] ^= 0x40   # the first pixel's red byte (byte 0 of a scanline is its filter type)
    done = False
    for kind, data in chunks:
        if kind == b"IDAT":
            if done:
                continue
            data, done = zlib.compress(bytes(idat), 9), True
        out.append(struct.pack(">I4s", len(data), kind) + data + struct.pack(">I", zlib.crc32(kind + data)))
    return b"".join(out)


def test_generated_image_carries_credentials_a_stock_reader_validates(model, keys, tmp_path, capsys):
    import io

    out = tmp_path / "apple.png"
    rc, stdout, err = generate(capsys, model, out, "--credentials-key", keys["key"], "--credentials-cert", keys["chain"])
    assert rc == 0 and stdout == f"{out}\n" and "warning" not in err
    reader = c2pa.Reader("image/png", io.BytesIO(out.read_bytes()))   # the stock reader, none of our code
    assert reader.get_validation_state() == "Valid"
    # the one failure a self-made chain has: it is on no trust list (hence "Valid", not "Trusted")
    failed = reader.get_validation_results()["activeManifest"].get("failure") or []
    assert [f["code"] for f in failed] == ["signingCredential.untrusted"]
    m = reader.get_active_manifest()
    assertions = {a["label"]: a["data"] for a in m["assertions"]}
    created = assertions["c2pa.actions.v2"]["actions"][0]
    assert created["action"] == "c2pa.created"
    assert created["digitalSourceType"] == "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
    gen = assertions["org.pd-diffusion.generation"]
    assert (gen["prompt"], gen["seed"], gen["steps"], gen["guidance_scale"]) == ("apple", 5, 2, 2.5)
    assert gen["model"]["name"] == model.name
    assert gen["model"]["digest"] == {**gen["model"]["digest"], "alg": "sha256", "value": hash_dir(model),
                                      "kind": "pdd-content-hash"}
    assert gen["model"]["snapshot"] == SNAP
    assert m["signature_info"]["alg"].upper() == "ES256"
    # the same pixels as an unsigned image: credentials add a chunk, they change no pixel
    from PIL import Image

    plain = tmp_path / "plain.png"
    assert generate(capsys, model, plain, "--no-credentials")[0] == 0
    assert Image.open(out).tobytes() == Image.open(plain).tobytes()

    # `pdd credentials show`: exit 0 and the story in lines
    rc, stdout, _ = run(capsys, "credentials", "show", out)
    assert rc == 0 and "content credentials Valid" in stdout and "trainedAlgorithmicMedia" in stdout
    assert SNAP["content_hash"] in stdout and hash_dir(model) in stdout

    # a pixel edit: the hard binding no longer matches
    edited = tmp_path / "edited.png"
    edited.write_bytes(edit_pixels(out.read_bytes()))
    assert Image.open(edited).tobytes() != Image.open(out).tobytes()
    reader = c2pa.Reader("image/png", io.BytesIO(edited.read_bytes()))
    assert reader.get_validation_state() == "Invalid"
    codes = {f["code"] for f in reader.get_validation_results()["activeManifest"]["failure"]}
    assert "assertion.dataHash.mismatch" in codes, codes
    rc, stdout, _ = run(capsys, "credentials", "show", edited)
    assert rc == 1 and "Invalid" in stdout and "assertion.dataHash.mismatch" in stdout


def test_keys_from_the_environment(model, keys, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(credentials.ENV_KEY, keys["key"])
    monkeypatch.setenv(credentials.ENV_CERT, keys["chain"])
    out = tmp_path / "env.png"
    assert generate(capsys, model, out)[0] == 0
    assert credentials.read(out).state == "Valid"


def test_a_signed_folder_is_named_by_its_model_signing_digest(model, keys, tmp_path, capsys):
    """With model.sig (what `model_signing sign` writes) the manifest carries the signed digest."""
    ms = pytest.importorskip("model_signing")
    folder = tmp_path / "signed"
    shutil.copytree(model, folder)
    ms.signing.Config().use_elliptic_key_signer(private_key=keys["key"]).sign(folder, folder / "model.sig")
    out = tmp_path / "s.png"
    assert generate(capsys, folder, out, "--credentials-key", keys["key"], "--credentials-cert", keys["chain"])[0] == 0
    digest = credentials.read(out).generation["model"]["digest"]
    bundle = json.loads((folder / "model.sig").read_text())
    import base64

    subject = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))["subject"][0]
    assert digest["kind"] == "model-signing" and digest["value"] == subject["digest"]["sha256"]


def test_without_a_key_one_warning_and_no_credentials(model, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(credentials.ENV_KEY, raising=False)
    monkeypatch.delenv(credentials.ENV_CERT, raising=False)
    out = tmp_path / "nokey.png"
    rc, _, err = generate(capsys, model, out)
    warnings = [ln for ln in err.splitlines() if ln.startswith("pdd: warning:")]
    assert rc == 0 and len(warnings) == 1 and "no content credentials" in warnings[0]
    assert "--credentials-key" in warnings[0] and "make-key" in warnings[0]
    # the image without credentials, given to the reader: one line, exit 2
    rc, stdout, err = run(capsys, "credentials", "show", out)
    assert rc == 2 and stdout == "" and err.count("\n") == 1 and "has no content credentials" in err
    rc, _, err = generate(capsys, model, tmp_path / "quiet.png", "--no-credentials")
    assert rc == 0 and "warning" not in err
    assert (tmp_path / "quiet.png").read_bytes() == out.read_bytes()


def test_bad_credentials_input_is_one_line(model, keys, tmp_path, capsys):
    junk = tmp_path / "junk.pem"
    junk.write_text("not a key\n")
    cases = [
        (("--credentials-key", keys["key"]), "--credentials-cert is missing"),
        (("--credentials-key", junk, "--credentials-cert", keys["chain"]), "not a PEM private key"),
        (("--credentials-key", tmp_path / "nope.pem", "--credentials-cert", keys["chain"]), "cannot read it"),
        (("--credentials-key", keys["key"], "--credentials-cert", keys["key"]), "not a PEM certificate chain"),
        (("--credentials-key", keys["key"], "--credentials-cert", keys["ca"]), "c2pa could not sign"),
    ]
    for extra, words in cases:
        out = tmp_path / "bad.png"
        rc, stdout, err = generate(capsys, model, out, *extra)
        assert rc == 2 and stdout == "" and err.count("\n") == 1 and words in err, (extra, err)
        assert not out.exists()
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    rc, _, err = run(capsys, "credentials", "show", text)
    assert rc == 2 and err.count("\n") == 1 and "not a PNG or JPEG image" in err
    rc, _, err = run(capsys, "credentials", "make-key", keys["key"].rsplit("/", 1)[0])
    assert rc == 2 and "exists already" in err
