"""`pdd sign` and `pdd verify --signatures` on the tiny build (the session's `dvc repro` of the whole chain, so the
statements come from real stage runs): keys made here at run time, none committed. The signed build verifies
with pdd and with the stock `model_signing verify` command; one byte flipped in the U-Net weights, in a
provenance statement or in a signed envelope fails, naming the file; a wrong key, a missing signature and a key
file that is not PEM are one line each, exit 2."""
from __future__ import annotations

import base64
import json
import shutil
import subprocess

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from conftest import BIN, engine_env, pdd_cli, sh, update_params
from pdd.build import signing

WEIGHTS = "models/pipeline/unet/diffusion_pytorch_model.safetensors"


def keypair(folder, name):
    key = ec.generate_private_key(ec.SECP256R1())
    (folder / f"{name}.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                           serialization.NoEncryption()))
    (folder / f"{name}.pub").write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                                       serialization.PublicFormat.SubjectPublicKeyInfo))
    return signing.fingerprint(key)


def stock_verify(root, pub) -> subprocess.CompletedProcess:
    """The stock model-signing CLI, as a user without this project runs it."""
    return subprocess.run([str(BIN / "model_signing"), "verify", "key", "models/pipeline", "--signature",
                           "models/pipeline.sig", "--public_key", str(pub)], cwd=root, env=engine_env(),
                          capture_output=True, text=True, timeout=300)


def one_line(proc, *words):
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.startswith("pdd: error: ") and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    for w in words:
        assert w in proc.stderr, proc.stderr
    return proc.stderr


def flipped(path):
    """Flip one byte in the middle of PATH; returns a function that puts it back."""
    data = path.read_bytes()
    i = len(data) // 2
    path.write_bytes(data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1:])
    return lambda: path.write_bytes(data)


@pytest.fixture(scope="module")
def signed(tiny_chain_dvc, tmp_path_factory):
    """A copy of the tiny build whose card names a fresh key, signed with it: (root, keys folder, fingerprint)."""
    base = tmp_path_factory.mktemp("signed")
    keys = base / "keys"
    keys.mkdir()
    fpr = keypair(keys, "signer")
    keypair(keys, "other")
    root = base / "repo"
    shutil.copytree(tiny_chain_dvc[0], root, symlinks=True)
    refused = pdd_cli(["sign", "--key", str(keys / "signer.pem")], root)   # the card names no key yet
    one_line(refused, "names no signing key", fpr, "release: {signing_key:")
    assert not (root / "models/pipeline.sig").exists()
    update_params(root, {"release": {"signing_key": fpr}})
    out = sh(["dvc", "repro", "pipeline"], root)
    assert "Running stage 'pipeline'" in out.stdout and "Running stage 'unet'" not in out.stdout
    before = sh(["git", "status", "--porcelain"], root).stdout
    done = pdd_cli(["sign", "--key", str(keys / "signer.pem")], root, check=True)
    assert fpr in done.stdout and "13 provenance statements" in done.stdout
    # the signatures sit beside the folder, git-ignored: signing changes nothing git or DVC track
    assert sh(["git", "status", "--porcelain"], root).stdout == before
    assert sh(["git", "check-ignore", "models/pipeline.sig", "models/pipeline.intoto.jsonl"], root).returncode == 0
    return root, keys, fpr


def test_signed_build_verifies_with_pdd_and_the_stock_model_signing_cli(signed):
    root, keys, fpr = signed
    assert fpr in (root / "models/pipeline/README.md").read_text()   # the card lists the signing key
    ok = pdd_cli(["verify", "--signatures", "--key", str(keys / "signer.pub")], root)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "verified: all" in ok.stdout
    lines = (root / "models/pipeline.intoto.jsonl").read_text().splitlines()
    assert len(lines) == 13   # one DSSE envelope per stage the pipeline is built from
    env = json.loads(lines[-1])
    assert env["payloadType"] == "application/vnd.in-toto+json" and env["signatures"][0]["keyid"] == fpr.split(":")[1]
    stock = stock_verify(root, keys / "signer.pub")
    assert stock.returncode == 0 and "Verification succeeded" in stock.stdout, stock.stdout + stock.stderr


def test_a_flipped_byte_in_the_unet_weights_fails_both_naming_the_file(signed):
    root, keys, _ = signed
    restore = flipped(root / WEIGHTS)
    try:
        bad = pdd_cli(["verify", "--signatures", "--key", str(keys / "signer.pub")], root)
        assert bad.returncode == 1, bad.stdout + bad.stderr
        assert f"{WEIGHTS}: sha256 differs" in bad.stdout and "SIGNATURES DO NOT HOLD" in bad.stdout
        assert f"sha256 differs from the signature: {WEIGHTS}" in bad.stdout   # model-signing's own check, file named
        stock = stock_verify(root, keys / "signer.pub")
        assert stock.returncode != 0 and "unet/diffusion_pytorch_model.safetensors" in stock.stderr
        # and pdd sign refuses to sign a folder that is not what the build recorded
        again = pdd_cli(["sign", "--key", str(keys / "signer.pem")], root)
        one_line(again, "refusing to sign", WEIGHTS)
    finally:
        restore()
    assert pdd_cli(["verify", "--signatures", "--key", str(keys / "signer.pub")], root).returncode == 0


@pytest.mark.parametrize("statement", ["models/unet.intoto.json", "models/pipeline.intoto.json"])
def test_a_flipped_byte_in_a_provenance_statement_fails_naming_it(signed, statement):
    root, keys, _ = signed
    restore = flipped(root / statement)
    try:
        bad = pdd_cli(["verify", "--signatures", "--key", str(keys / "signer.pub")], root)
        assert bad.returncode == 1, bad.stdout + bad.stderr
        row = next(r for r in map(str.split, bad.stdout.splitlines()) if r[:2] == ["statement", statement])
        assert row[:3] == ["statement", statement, "NO"] and "differs from the signed one" in " ".join(row)
        assert statement in bad.stdout.splitlines()[-1]   # the summary names it
    finally:
        restore()


def test_a_flipped_byte_in_a_signed_envelope_fails_naming_it(signed):
    root, keys, _ = signed
    path = root / "models/pipeline.intoto.jsonl"
    data = path.read_bytes()
    lines = data.splitlines(keepends=True)
    env = json.loads(lines[3])
    payload = bytearray(base64.b64decode(env["payload"]))
    payload[len(payload) // 2] ^= 0x01
    env["payload"] = base64.b64encode(bytes(payload)).decode()
    path.write_bytes(b"".join(lines[:3]) + json.dumps(env).encode() + b"\n" + b"".join(lines[4:]))
    try:
        bad = pdd_cli(["verify", "--signatures", "--key", str(keys / "signer.pub")], root)
        assert bad.returncode == 1
        assert "models/pipeline.intoto.jsonl:4" in bad.stdout and "bad signature" in bad.stdout
    finally:
        path.write_bytes(data)


def test_bad_input_is_one_line_exit_2(signed, tmp_path):
    root, keys, fpr = signed
    wrong = pdd_cli(["verify", "--signatures", "--key", str(keys / "other.pub")], root)
    one_line(wrong, "models/pipeline.sig", "signed with another key", "other.pub")
    (tmp_path / "notpem.pem").write_text("this is not a key\n")
    one_line(pdd_cli(["verify", "--signatures", "--key", str(tmp_path / "notpem.pem")], root), "notpem.pem", "not a PEM public key")
    one_line(pdd_cli(["sign", "--key", str(tmp_path / "notpem.pem")], root), "notpem.pem", "not a PEM private key")
    one_line(pdd_cli(["sign", "--key", str(keys / "signer.pub")], root), "signer.pub", "that is a public key")
    one_line(pdd_cli(["sign", "--key", str(keys / "other.pem")], root), "names signing key " + fpr, "not this key")
    one_line(pdd_cli(["verify", "--signatures", "--key", str(tmp_path / "absent.pub")], root), "absent.pub", "no such")
    one_line(pdd_cli(["verify", "--signatures"], root), "--key PUBLIC.pem")
    copy = tmp_path / "unsigned"
    shutil.copytree(root, copy, symlinks=True)
    (copy / "models/pipeline.sig").unlink()
    one_line(pdd_cli(["verify", "--signatures", "--key", str(keys / "signer.pub")], copy), "models/pipeline.sig", "not found",
             "pdd sign")
    assert (root / "models/pipeline.sig").is_file()   # nothing stored was touched by the refusals


def test_sign_checks_the_key_before_anything_else(tmp_path):
    """No build needed for the key checks: a folder is a folder, an RSA key is not what model-signing takes."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (tmp_path / "rsa.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    one_line(pdd_cli(["sign", "--key", "rsa.pem"], tmp_path), "rsa.pem", "an RSA key", "P-256")
    one_line(pdd_cli(["sign", "--key", str(tmp_path)], tmp_path), "is a folder")
    enc = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "enc.pem").write_bytes(enc.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.BestAvailableEncryption(b"pw")))
    one_line(pdd_cli(["sign", "--key", "enc.pem"], tmp_path), "enc.pem", "PDD_KEY_PASSWORD")


def test_the_card_names_a_key_only_when_params_do():
    """An unsigned build's card and provenance.json are what they were before signing existed."""
    from pdd import card

    fpr = "SHA256:" + "ab" * 32
    assert card.signing_key({"release": {"signing_key": ""}}) == {} == card.signing_key({})
    assert card.signing_key({"release": {"signing_key": fpr}}) == {"signing_key": fpr}
    assert card.signing_key_section(None) == ""
    section = card.signing_key_section(fpr)
    assert section.startswith("\n## Signature\n") and fpr in section and "pdd verify --signatures" in section
