"""Content credentials (C2PA) for images drawn with `pdd generate`, with the stock `c2pa-python` library.

Each PNG gets a signed C2PA manifest saying: created (`c2pa.created`) by a trained algorithm
(digitalSourceType `trainedAlgorithmicMedia`, the IPTC term machine-readable marking of AI images is built on),
by which model (its folder name and digest: the model-signing digest from `model.sig` when the folder is signed,
else the sha256 content hash of the folder, the hash pipeline.manifest.json records), trained on which snapshot
(name and content hash, from the folder's provenance.json), and with which prompt, seed, steps and guidance.
The manifest's hard binding (a sha256 over every byte of the file but the manifest) makes any pixel edit
fail validation.

C2PA signs with an X.509 certificate chain, never with a bare key: the user passes a private key and its chain
(`--credentials-key KEY.pem --credentials-cert CHAIN.pem`, or the PDD_CREDENTIALS_KEY / PDD_CREDENTIALS_CERT
environment variables). Without them the default is to write the image *without* credentials and say so in
one warning line (how to pass a key, or make a throw-away one with `pdd credentials make-key DIR`);
`--no-credentials` writes without them silently. A self-made chain (make-key) validates ("Valid": signature
and hashes check) but is trusted by no one else ("Trusted" needs a chain from a C2PA trust list); it says
"this file was not changed since it was signed by whoever holds this key", not who that is.
"""
from __future__ import annotations

import base64
import datetime
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

from pdd.core.errors import PddError
from pdd.core.hashing import hash_dir
from pdd.core.version import __version__

ENV_KEY = "PDD_CREDENTIALS_KEY"
ENV_CERT = "PDD_CREDENTIALS_CERT"
SIGNATURE_FILE = "model.sig"            # where `model_signing sign` (and `pdd sign`) put a folder's signature
SOURCE_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
ASSERTION = "org.pd-diffusion.generation"
UNTRUSTED = "signingCredential.untrusted"
NO_KEY_HINT = (f"pass --credentials-key KEY.pem --credentials-cert CHAIN.pem (or set {ENV_KEY} and {ENV_CERT}); "
               "`pdd credentials make-key DIR` makes a throw-away pair; --no-credentials silences this")


@dataclass(frozen=True)
class SigningKey:
    key_pem: bytes
    chain_pem: bytes
    where: str            # for messages: the files they came from


def signing_key(key_path: str | None, cert_path: str | None) -> SigningKey | None:
    """The user's key and chain from the options, else the environment; None when neither names one.
    One named without the other, an unreadable file or a non-PEM file is a PddError."""
    key_path = key_path or os.environ.get(ENV_KEY) or None
    cert_path = cert_path or os.environ.get(ENV_CERT) or None
    if not key_path and not cert_path:
        return None
    if not key_path or not cert_path:
        missing = "--credentials-key" if not key_path else "--credentials-cert"
        raise PddError(f"content credentials need both a private key and its certificate chain: {missing} is missing "
                       f"({NO_KEY_HINT})")
    out = []
    for what, path, marker in (("--credentials-key", key_path, b"PRIVATE KEY-----"),
                               ("--credentials-cert", cert_path, b"-----BEGIN CERTIFICATE-----")):
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise PddError(f"{what} {path}: cannot read it ({exc.strerror or exc}); {NO_KEY_HINT}") from None
        if marker not in data:
            raise PddError(f"{what} {path}: not a PEM {'private key' if 'key' in what else 'certificate chain'}; "
                           f"{NO_KEY_HINT}")
        out.append(data)
    return SigningKey(out[0], out[1], f"{key_path} + {cert_path}")


def make_key(out_dir, common_name: str = "pd-diffusion local signer") -> dict:
    """A throw-away chain for content credentials: a self-made CA and an ES256 (P-256) leaf it issues, valid 10
    years from now. Writes OUT_DIR/key.pem (the leaf's private key, mode 0600), chain.pem (leaf + CA) and
    ca.pem; returns their paths. Trusted by no one: for trying the feature and for tests."""
    from cryptography import x509  # lazy: only this command and the tests need it
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {k: out / f"{k}.pem" for k in ("key", "chain", "ca")}
    for p in paths.values():
        if p.exists():
            raise PddError(f"{p}: exists already; give an empty folder (nothing was overwritten)")

    def name(cn):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn),
                          x509.NameAttribute(NameOID.ORGANIZATION_NAME, "PD-Diffusion (self-issued, untrusted)")])

    def usage(*, sign: bool, ca: bool):
        return x509.KeyUsage(digital_signature=sign, content_commitment=False, key_encipherment=False,
                             data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
                             encipher_only=False, decipher_only=False)

    now = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=5)
    until = now + datetime.timedelta(days=3650)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name(f"{common_name} CA")).issuer_name(name(f"{common_name} CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now).not_valid_after(until)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(usage(sign=False, ca=True), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    leaf = (x509.CertificateBuilder().subject_name(name(common_name)).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(until)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(usage(sign=True, ca=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    fd = os.open(paths["key"], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    paths["chain"].write_bytes(leaf.public_bytes(pem) + ca.public_bytes(pem))
    paths["ca"].write_bytes(ca.public_bytes(pem))
    return {k: str(v) for k, v in paths.items()}


def model_identity(model_dir) -> dict:
    """Which model made the image: its folder name, digest and the snapshot it was trained on."""
    model_dir = Path(model_dir)
    ident: dict = {"name": model_dir.resolve().name}
    sig = model_dir / SIGNATURE_FILE
    if sig.is_file():
        try:
            bundle = json.loads(sig.read_text(encoding="utf-8"))
            payload = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
            subject = payload["subject"][0]
            alg, value = next(iter(sorted(subject["digest"].items())))
        except (ValueError, KeyError, IndexError, TypeError, StopIteration):
            raise PddError(f"{sig}: not a model-signing signature bundle (a DSSE envelope with one subject); "
                           "sign the folder again (`pdd sign`) or remove the file") from None
        ident["digest"] = {"alg": alg, "value": value, "kind": "model-signing",
                           "predicate_type": payload.get("predicateType"), "signed_name": subject.get("name")}
    else:
        ident["digest"] = {"alg": "sha256", "value": hash_dir(model_dir), "kind": "pdd-content-hash",
                           "what": "sha256 over 'path\\0sha256\\n' of every file in the folder "
                                   "(the pipeline stage's output hash in pipeline.manifest.json and dvc.lock)"}
    prov_file = model_dir / "provenance.json"
    try:
        prov = json.loads(prov_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        prov = {}
    snap = prov.get("snapshot") or {}
    ident["snapshot"] = {"name": snap.get("name"), "content_hash": snap.get("content_hash")}
    return ident


def manifest_definition(identity: dict, *, prompt: str | None, seed: int, steps: int, guidance: float,
                        title: str) -> dict:
    """The C2PA manifest definition (the c2pa Builder's JSON) for one generated image."""
    generation = {"model": identity, "prompt": prompt, "seed": seed, "steps": steps, "guidance_scale": guidance,
                  "generator": f"pd-diffusion {__version__}"}
    return {
        "claim_generator_info": [{"name": "pd-diffusion", "version": __version__}],
        "title": title,
        "format": "image/png",
        "assertions": [
            {"label": "c2pa.actions.v2",
             "data": {"actions": [{"action": "c2pa.created", "digitalSourceType": SOURCE_TYPE,
                                   "softwareAgent": {"name": "pd-diffusion", "version": __version__},
                                   "description": f"generated by the model {identity['name']} "
                                                  f"({identity['digest']['kind']} {identity['digest']['value']})",
                                   "parameters": {"prompt": prompt, "seed": seed, "steps": steps,
                                                  "guidance_scale": guidance}}]}},
            {"label": ASSERTION, "data": generation},
        ],
    }


def sign_png(png: bytes, key: SigningKey, definition: dict) -> bytes:
    """PNG bytes with the signed manifest embedded."""
    import c2pa  # lazy: a native library; only generate with credentials and the reader need it

    try:
        signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, key.chain_pem, key.key_pem, None))
        out = io.BytesIO()
        with c2pa.Builder(json.dumps(definition)) as builder:
            builder.sign(signer, "image/png", io.BytesIO(png), out)
    except c2pa.C2paError as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise PddError(f"content credentials: c2pa could not sign with {key.where} ({first}); the key must be an "
                       "ES256 (P-256) private key and the chain its leaf certificate followed by its issuer(s); "
                       "`pdd credentials make-key DIR` makes a pair that works") from None
    return out.getvalue()


def check_key(key: SigningKey) -> None:
    """Sign a 1-pixel PNG with KEY: a key c2pa refuses fails here, before any image is drawn."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buf, format="PNG")
    probe = {"name": "key check", "digest": {"alg": "sha256", "value": "0" * 64, "kind": "none"}}
    sign_png(buf.getvalue(), key, manifest_definition(probe, prompt=None, seed=0, steps=1, guidance=1.0, title="probe"))


@dataclass(frozen=True)
class Read:
    state: str                 # c2pa's validation_state: Valid, Trusted or Invalid
    manifest: dict             # the active manifest
    failures: list[dict]       # validation failures (code, explanation) of the active manifest, but untrusted
    untrusted: bool            # the signer's chain is on no trust list the reader knows (c2pa reports it as a failure)
    generation: dict | None    # our assertion's data


def read(path) -> Read:
    """The credentials of an image file, as a stock c2pa Reader sees them. PddError when there are none."""
    import c2pa  # lazy: as above

    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PddError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    fmt = "image/png" if data[:8] == b"\x89PNG\r\n\x1a\n" else "image/jpeg" if data[:3] == b"\xff\xd8\xff" else None
    if fmt is None:
        raise PddError(f"{path}: not a PNG or JPEG image; content credentials are read from the image files "
                       "`pdd generate` writes")
    try:
        reader = c2pa.Reader(fmt, io.BytesIO(data))
        state = reader.get_validation_state() or "unknown"
        manifest = reader.get_active_manifest() or {}
        results = reader.get_validation_results() or {}
    except c2pa.C2paError as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        if "ManifestNotFound" in type(exc).__name__ or "not found" in first.lower() or "JumbfNotFound" in first:
            raise PddError(f"{path}: has no content credentials (no C2PA manifest); it was written without them "
                           "(--no-credentials, or no signing key) or they were stripped") from None
        raise PddError(f"{path}: its content credentials cannot be read ({first})") from None
    if not manifest:
        raise PddError(f"{path}: has no content credentials (no active C2PA manifest)")
    failed = list((results.get("activeManifest") or {}).get("failure") or [])
    failures = [f for f in failed if f.get("code") != UNTRUSTED]
    generation = next((a.get("data") for a in manifest.get("assertions", []) if a.get("label") == ASSERTION), None)
    return Read(state, manifest, failures, len(failures) < len(failed), generation)


def describe(r: Read, path) -> list[str]:
    """Lines for people: the validation state, then what the manifest says."""
    lines = [f"{path}: content credentials {r.state}" + (f": {len(r.failures)} check(s) failed" if r.failures else "")]
    for f in r.failures:
        lines.append(f"  FAILED {f.get('code')}: {f.get('explanation', '')}")
    sig = r.manifest.get("signature_info") or {}
    lines.append(f"  signed by: {sig.get('common_name')} ({sig.get('issuer')}), {sig.get('alg')}")
    actions = next((a["data"].get("actions", []) for a in r.manifest.get("assertions", [])
                    if a.get("label", "").startswith("c2pa.actions")), [])
    for a in actions:
        lines.append(f"  action: {a.get('action')}, digitalSourceType {a.get('digitalSourceType')}")
    g = r.generation or {}
    if g:
        m = g.get("model") or {}
        d = m.get("digest") or {}
        s = m.get("snapshot") or {}
        lines += [f"  model: {m.get('name')} ({d.get('kind')} {d.get('alg')}:{d.get('value')})",
                  f"  trained on snapshot: {s.get('name')} (content hash {s.get('content_hash')})",
                  f"  prompt: {g.get('prompt')!r}, seed {g.get('seed')}, steps {g.get('steps')}, "
                  f"guidance {g.get('guidance_scale')}"]
    if r.state == "Valid" and r.untrusted:
        lines.append("  (Valid: the signature and every hash check; the signer's certificate is on no trust list "
                     "this reader knows, so it says nothing about who signed)")
    return lines
