"""`pdd sign` and `pdd verify --signatures`: the built pipeline folder signed with OpenSSF model-signing (key
method, offline: no Sigstore, no network), and every stage's provenance statement wrapped in a signed DSSE
envelope. Both are checked again without rebuilding anything.

    models/pipeline.sig            model-signing's signature of models/pipeline (a Sigstore bundle whose DSSE
                                   envelope holds an in-toto statement of every file's sha256); the stock
                                   `model_signing verify key models/pipeline --signature models/pipeline.sig
                                   --public_key PUBLIC.pem` checks it
    models/pipeline.intoto.jsonl   one DSSE envelope per line (SLSA's .intoto.jsonl), one per stage that
                                   models/pipeline was built from, in DAG order: payload = that stage's
                                   <out>.intoto.json byte for byte, signed over DSSE's PAE with the same key

Both sit beside the folder, not in it: the folder stays the build's output (its hash, dvc.lock, the manifest
and `pdd verify` are unchanged by signing), and git ignores them (/models/*). Keys are the user's: an elliptic
curve key (P-256, P-384 or P-521; what model-signing's key method takes) in PEM; this project holds none.

`pdd sign` signs only what the build recorded and only with the key the model card names (params.yaml
release.signing_key, so the signed card lists its signer's fingerprint): each statement must be the one its manifest gives, and every
file of models/pipeline must be a subject of the pipeline's statement with that sha256; else it refuses,
naming the file. `pdd verify --signatures --key PUBLIC.pem` checks the model-signing signature (every file of
the folder), that the model card names this key, every envelope's signature and key id, that each envelope's payload is the statement on disk and
that statement the one its manifest gives, that the pipeline folder's files are its statement's subjects, and
that the chain holds: each statement's upstream outputs (by TREE_DIGEST) are what the upstream statements'
subjects describe. Outputs of other stages that are on disk are checked against their subjects too.

Bookkeeping, not a build input (only the CLI imports this module).
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from pdd.build import dag
from pdd.build.provenance import TREE_DIGEST, chain_tree, statement, statement_bytes, statement_path
from pdd.core.errors import PddError
from pdd.core.files import read_regular
from pdd.core.hashing import hash_file, list_files, write_atomic

PIPELINE = "models/pipeline"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
CURVES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
KEYGEN = ("openssl ecparam -name prime256v1 -genkey -noout -out PRIVATE.pem && "
          "openssl ec -in PRIVATE.pem -pubout -out PUBLIC.pem")


def signature_path(model: str | Path = PIPELINE) -> Path:
    return Path(f"{model}.sig")


def envelopes_path(model: str | Path = PIPELINE) -> Path:
    return Path(f"{model}.intoto.jsonl")


# ---- keys ----------------------------------------------------------------------------------------
def _read_key_file(path: str | Path, what: str) -> bytes:
    path = Path(path)
    if not path.exists():
        raise PddError(f"{path}: no such {what} file")
    try:
        return read_regular(path, what, hint="pass the PEM file")
    except OSError as exc:
        raise PddError(f"{path}: cannot read the {what} ({exc.strerror})") from None


def _check_curve(key, path) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec  # lazy: start-up

    pub = key.public_key() if hasattr(key, "public_key") else key
    if not isinstance(pub, ec.EllipticCurvePublicKey) or pub.curve.name not in CURVES:
        name = type(pub).__name__.replace("_", "").replace("PublicKey", "")
        kind = (f"an elliptic curve key on {pub.curve.name}" if isinstance(pub, ec.EllipticCurvePublicKey)
                else {"RSA": "an RSA key", "Ed25519": "an Ed25519 key", "Ed448": "an Ed448 key"}.get(name, f"a {name} key"))
        raise PddError(f"{path}: {kind}; model-signing's key method takes elliptic curve keys on P-256, P-384 or "
                       f"P-521 (make one: {KEYGEN})")


def load_private_key(path: str | Path, password: bytes | None = None):
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization  # lazy: start-up

    data = _read_key_file(path, "private key")
    try:
        key = serialization.load_pem_private_key(data, password)
    except TypeError:
        raise PddError(f"{path}: the private key is encrypted; set PDD_KEY_PASSWORD to its password") from None
    except (ValueError, UnsupportedAlgorithm):
        hint = " (that is a public key: sign with the private one)" if b"PUBLIC KEY-----" in data else ""
        raise PddError(f"{path}: not a PEM private key{hint}; give the PEM file of an elliptic curve private key "
                       f"(make one: {KEYGEN})") from None
    _check_curve(key, path)
    return key


def load_public_key(path: str | Path):
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization  # lazy: start-up

    data = _read_key_file(path, "public key")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        hint = (" (that is a private key: give its public half, `openssl ec -in KEY -pubout`)"
                if b"PRIVATE KEY-----" in data else "")
        raise PddError(f"{path}: not a PEM public key{hint}; give the PEM file of the signer's public key") from None
    _check_curve(key, path)
    return key


def fingerprint(key) -> str:
    """SHA256:<hex> of the public key's DER SubjectPublicKeyInfo (the DSSE key id is the hex part)."""
    from cryptography.hazmat.primitives import serialization  # lazy: start-up

    pub = key.public_key() if hasattr(key, "public_key") else key
    der = pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "SHA256:" + hashlib.sha256(der).hexdigest()


def _hash_alg(pub):
    from cryptography.hazmat.primitives import hashes  # lazy: start-up

    return {256: hashes.SHA256(), 384: hashes.SHA384(), 521: hashes.SHA512()}[pub.curve.key_size]


# ---- DSSE ----------------------------------------------------------------------------------------
def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding."""
    t = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def envelope(payload: bytes, key) -> dict:
    from cryptography.hazmat.primitives.asymmetric import ec  # lazy: start-up

    sig = key.sign(pae(PAYLOAD_TYPE, payload), ec.ECDSA(_hash_alg(key.public_key())))
    return {"payload": base64.b64encode(payload).decode("ascii"), "payloadType": PAYLOAD_TYPE,
            "signatures": [{"keyid": fingerprint(key).split(":", 1)[1], "sig": base64.b64encode(sig).decode("ascii")}]}


def open_envelope(env: dict, pub) -> tuple[bytes | None, str]:
    """(payload, "") when the envelope is signed by PUB, else (None, why)."""
    from cryptography import exceptions
    from cryptography.hazmat.primitives.asymmetric import ec  # lazy: start-up

    try:
        payload = base64.b64decode(env["payload"], validate=True)
        sigs = env["signatures"]
        if env["payloadType"] != PAYLOAD_TYPE:
            return None, f"payloadType {env['payloadType']!r}, not {PAYLOAD_TYPE}"
    except (KeyError, TypeError, ValueError):
        return None, "not a DSSE envelope"
    keyid = fingerprint(pub).split(":", 1)[1]
    for s in sigs if isinstance(sigs, list) else []:
        try:
            pub.verify(base64.b64decode(s["sig"], validate=True), pae(PAYLOAD_TYPE, payload), ec.ECDSA(_hash_alg(pub)))
            return payload, ""
        except (exceptions.InvalidSignature, KeyError, TypeError, ValueError):
            continue
    if sigs and all(isinstance(s, dict) and s.get("keyid") not in (None, "", keyid) for s in sigs):
        return None, "signed by another key (key id " + str(sigs[0].get("keyid"))[:16] + "...)"
    return None, "bad signature"


# ---- what is signed ------------------------------------------------------------------------------
def chain(root: Path) -> list[str]:
    """The stage outputs models/pipeline is built from (itself last), in DAG order."""
    from pdd.build.verify import upstream  # lazy: verify imports yaml and subprocess helpers

    outs = []
    for name in upstream(["pipeline"]):
        outs.extend(dag.stage(name).outs.values())
    return outs


def _manifest(root: Path, out: str) -> dict:
    path = root / f"{out}.manifest.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PddError(f"{out}.manifest.json not found: build first (`dvc repro pipeline`)") from None
    except (OSError, ValueError) as exc:
        raise PddError(f"{out}.manifest.json: not a readable manifest ({exc})") from None


def card_key(root: Path) -> str | None:
    """The signing key the pipeline's card names (provenance.json signing_key: params.yaml release.signing_key)."""
    try:
        return json.loads((root / PIPELINE / "provenance.json").read_text(encoding="utf-8")).get("signing_key")
    except (OSError, ValueError, AttributeError):
        return None


def folder_problems(root: Path, out: str, stmt: dict) -> list[str]:
    """Each file of OUT that differs from, is missing from or is not among the statement's subjects."""
    folder = root / out
    want = {s["name"]: s["digest"].get("sha256") for s in stmt.get("subject", []) if isinstance(s, dict)}
    have = {f"{out}/{rel}" for rel in list_files(folder)} if folder.is_dir() else set()
    problems = []
    for name in sorted(set(want) | have):
        if name == out and TREE_DIGEST in next(s["digest"] for s in stmt["subject"] if s["name"] == name):
            continue
        if name not in want:
            problems.append(f"{name}: not in {statement_path(out).as_posix()} (a file added after the build)")
        elif name not in have:
            problems.append(f"{name}: missing (the statement lists it)")
        elif hash_file(root / name) != want[name]:
            problems.append(f"{name}: sha256 differs from {statement_path(out).as_posix()}")
    return problems


def sign(root: str | Path, key_path: str | Path, password: bytes | None = None) -> dict:
    """Sign models/pipeline and wrap the statements of its chain in DSSE envelopes; returns what was written."""
    root = Path(root).resolve()
    key = load_private_key(key_path, password)   # before anything else: a bad key is one line
    import model_signing  # lazy: sigstore and protobuf at start-up

    folder = root / PIPELINE
    if not folder.is_dir():
        raise PddError(f"{PIPELINE}: no such folder; build it first (`dvc repro pipeline`)")
    named = card_key(root)
    if named != fingerprint(key):
        raise PddError(f"{PIPELINE}'s model card names {'signing key ' + named if named else 'no signing key'}, not "
                       f"this key ({fingerprint(key)}): put `release: {{signing_key: \"{fingerprint(key)}\"}}` in "
                       "params.yaml, rebuild the card (`dvc repro pipeline`), then sign")
    payloads = []
    for out in chain(root):
        manifest = _manifest(root, out)
        st = statement_path(out)
        if not (root / st).is_file():
            raise PddError(f"{st}: not found; rerun the stage (`dvc repro -f -s {manifest.get('stage', out)}`) to "
                           "write its provenance statement, then sign")
        data = (root / st).read_bytes()
        if data != statement_bytes(statement(manifest)):
            raise PddError(f"{st} is not the statement its manifest gives (edited?); rebuild, then sign")
        payloads.append(data)
    problems = folder_problems(root, PIPELINE, statement(_manifest(root, PIPELINE)))
    if problems:
        raise PddError(f"{PIPELINE} is not what the build recorded, refusing to sign it: {problems[0]}"
                       + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
    sig, envs = root / signature_path(), root / envelopes_path()
    tmp = sig.with_name(f".{sig.name}.tmp-{os.getpid()}")
    try:
        # model-signing's defaults, as its CLI signs and verifies: sha256 of every file (git's files left out; the
        # pipeline folder has none, and the statement check below catches any added)
        model_signing.signing.Config().use_elliptic_key_signer(private_key=key_path, password=password).sign(folder, tmp)
        os.replace(tmp, sig)
    except PddError:
        raise
    except Exception as exc:   # model-signing raises what its layers raise; one line, and nothing half-written
        raise PddError(f"model-signing could not sign {PIPELINE}: {exc}") from None
    finally:
        tmp.unlink(missing_ok=True)
    write_atomic(envs, b"".join(json.dumps(envelope(p, key), sort_keys=True, separators=(",", ":")).encode() + b"\n"
                                for p in payloads))
    return {"signature": signature_path().as_posix(), "envelopes": envelopes_path().as_posix(),
            "statements": len(payloads), "fingerprint": fingerprint(key)}


# ---- verification --------------------------------------------------------------------------------
@dataclass
class Check:
    what: str        # model-signing | envelope | statement | subjects | chain
    file: str
    ok: bool
    detail: str = ""


def _model_signing_check(root: Path, key_path) -> Check:
    import model_signing  # lazy: start-up

    try:
        model_signing.verifying.Config().use_elliptic_key_verifier(public_key=key_path).verify(
            root / PIPELINE, root / signature_path())
        return Check("model-signing", signature_path().as_posix(), True, f"every file of {PIPELINE}")
    except Exception as exc:   # its failures are ValueError, InvalidSignature, protobuf/JSON errors: all a 'no'
        text = " ".join(str(exc).split()) or type(exc).__name__
        if "Key mismatch" in text:
            raise PddError(f"{signature_path()}: signed with another key than {key_path} "
                           "(give the public key of the key that signed it)") from None
        return Check("model-signing", signature_path().as_posix(), False, _mismatch(text))


def _mismatch(text: str) -> str:
    """model-signing's 'Signature mismatch: [...]' (a list's repr with byte-string digests) as the files it names."""
    parts = []
    changed = re.findall(r"Hash mismatch for \\?'([^'\\]+)", text)
    if changed:
        parts.append("sha256 differs from the signature: " + ", ".join(f"{PIPELINE}/{n}" for n in changed))
    for what, names in re.findall(r"(Extra files found|Missing files) in model '[^']*': ([^'\]\"\\]+)", text):
        files = ", ".join(f"{PIPELINE}/{n.strip()}" for n in names.split(","))
        parts.append(("not signed: " if what.startswith("Extra") else "signed but missing: ") + files)
    return "; ".join(parts) if parts else text[:300]


def verify_signatures(root: str | Path, key_path: str | Path) -> list[Check]:
    """Every signature and digest, nothing rebuilt. Raises PddError on bad input (a key that is no key or
    another signer's, a missing signature)."""
    root = Path(root).resolve()
    pub = load_public_key(key_path)
    for path in (signature_path(), envelopes_path()):
        if not (root / path).is_file():
            raise PddError(f"{path}: not found; sign first (`pdd sign --key PRIVATE.pem`), or fetch the signature "
                           "files with the model")
    checks = [_model_signing_check(root, key_path)]
    named = card_key(root)
    checks.append(Check("card", f"{PIPELINE}/provenance.json", named == fingerprint(pub),
                        f"names the signing key {named}" + ("" if named == fingerprint(pub) else
                                                            f", not this key {fingerprint(pub)}")))
    lines = (root / envelopes_path()).read_bytes().splitlines()
    expected = chain(root)
    statements: dict[str, dict] = {}
    envs = envelopes_path().as_posix()
    foreign = 0
    for i, line in enumerate(lines, 1):
        try:
            env = json.loads(line)
        except ValueError:
            checks.append(Check("envelope", f"{envs}:{i}", False, "not JSON"))
            continue
        payload, why = open_envelope(env, pub) if isinstance(env, dict) else (None, "not a DSSE envelope")
        if payload is None:
            foreign += why.startswith("signed by another key")
            checks.append(Check("envelope", f"{envs}:{i}", False, why))
            continue
        try:
            stmt = json.loads(payload)
            out = stmt["predicate"]["runDetails"]["byproducts"][0]["name"].removesuffix(".manifest.json")
        except (ValueError, KeyError, TypeError, IndexError):
            checks.append(Check("envelope", f"{envs}:{i}", False, "payload is not one of this project's statements"))
            continue
        statements[out] = stmt
        st = statement_path(out).as_posix()
        on_disk = (root / st).read_bytes() if (root / st).is_file() else None
        if on_disk != payload:
            checks.append(Check("statement", st, False, "missing" if on_disk is None
                                else f"differs from the signed one in {envs}:{i}"))
        elif statement_bytes(statement(_manifest(root, out))) != payload:
            checks.append(Check("statement", f"{out}.manifest.json", False, f"does not give the signed statement {st}"))
        else:
            checks.append(Check("statement", st, True, f"signed ({envs}:{i}), and its manifest gives it"))
    if foreign and foreign == len(lines):
        raise PddError(f"{envs}: signed with another key than {key_path} (give the public key of the key that "
                       "signed it)")
    for out in expected:
        if out not in statements:
            checks.append(Check("envelope", envs, False, f"no signed statement for {out}"))
    for out in expected:
        stmt = statements.get(out)
        if stmt is None:
            continue
        if out == PIPELINE or (root / out).is_dir():
            problems = folder_problems(root, out, stmt)
            checks.append(Check("subjects", out, not problems, "; ".join(problems[:5]) or
                                f"{len(stmt['subject'])} file(s) as signed"))
        for dep in stmt["predicate"]["buildDefinition"].get("resolvedDependencies", []):
            name, digest = dep.get("name"), (dep.get("digest") or {}).get(TREE_DIGEST)
            if digest is None or name not in statements:
                continue
            got = chain_tree(statements[name])
            checks.append(Check("chain", f"{out} <- {name}", got == digest,
                                "" if got == digest else f"{statement_path(out).as_posix()} names {name} "
                                f"{digest[:16]}, its statement describes {str(got)[:16]}"))
    return checks


def report(checks: list[Check]) -> str:
    head = ("check", "file", "ok", "detail")
    body = [(c.what, c.file, "yes" if c.ok else "NO", c.detail) for c in checks]
    widths = [max(len(x[i]) for x in [head, *body]) for i in range(3)]
    lines = ["  ".join([*(str(v).ljust(w) for v, w in zip(row[:3], widths)), row[3]]).rstrip() for row in [head, *body]]
    bad = [c for c in checks if not c.ok]
    if bad:
        lines.append(f"SIGNATURES DO NOT HOLD: {len(bad)} of {len(checks)} checks failed: "
                     + ", ".join(sorted({c.file for c in bad})))
    else:
        lines.append(f"verified: all {len(checks)} signature and digest checks hold")
    return "\n".join(lines)
