"""DSSE v1 envelopes, signed with a key the author already has, and checked with its public half.

An envelope (https://github.com/secure-systems-lab/dsse, envelope.md) is JSON:
`{"payload": base64(body), "payloadType": type, "signatures": [{"keyid": id, "sig": base64}]}`,
and each signature is made over the pre-authentication encoding of protocol.md, `pae()`. The
signatures are raw, as securesystemslib (in-toto's and TUF's) makes and checks them: Ed25519
over the PAE; ECDSA P-256 with SHA-256 (DER); RSA of 2048 bits or more with PSS and SHA-256.
`openssl pkeyutl` and `openssl dgst` check each (tests/unit/publish/test_signing.py runs them).

Keys come as the author has them: the OpenSSH private key they sign git commits with, or a PEM
private key (PKCS#8 or traditional); to check, an OpenSSH public key line (`id_ed25519.pub`), a
PEM public key, or a private key's public half. A key's id is its SSH fingerprint, "SHA256:" and
the unpadded base64 of the sha256 of its SSH wire-format blob: what `ssh-keygen -lf` prints.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import shlex
import struct
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeAlias

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.utils import CryptographyDeprecationWarning

from builder import layout
from builder.errors import SignatureError, SigningKeyError

MIN_RSA_BITS = 2048

PrivateKey: TypeAlias = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
VerifyingKey: TypeAlias = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey | rsa.RSAPublicKey
Role = Literal["sign", "verify"]

# RSASSA-PSS with MGF1(SHA-256) and a 32-byte salt (the digest's length), as securesystemslib
# signs: `openssl dgst -sha256 -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:32` checks
# it. Checking accepts any salt length (PSS.AUTO), so signatures of tools that use the longest
# salt verify too.
_PSS_SIGN = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH)
_PSS_CHECK = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO)
_ECDSA = ec.ECDSA(hashes.SHA256())

_SUPPORTED = "Ed25519, ECDSA P-256, or RSA of 2048 bits or more"
_FIX: dict[Role, str] = {
    "sign": "give the private key you sign git commits with (`--sign ~/.ssh/id_ed25519`), or a "
    f"PEM private key ({_SUPPORTED})",
    "verify": "give the public key the envelope was signed with: an OpenSSH public key line "
    "(`--key ~/.ssh/id_ed25519.pub`), a PEM public key, or the private key itself "
    f"({_SUPPORTED})",
}
_NOUN: dict[Role, str] = {"sign": "signing key", "verify": "public key"}
_OPENSSH_PRIVATE = re.compile(
    rb"-----BEGIN OPENSSH PRIVATE KEY-----(.*?)-----END OPENSSH PRIVATE KEY-----", re.DOTALL
)
_OPENSSH_MAGIC = b"openssh-key-v1\0"
_PEM_PRIVATE = re.compile(rb"-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----")
_PEM_PUBLIC = re.compile(rb"-----BEGIN (RSA )?PUBLIC KEY-----")
_SSH_LINE = re.compile(rb"^\s*((?:ssh|ecdsa|sk)-[\w@.-]+)\s+([A-Za-z0-9+/]+=*)", re.MULTILINE)


@dataclass(frozen=True)
class SigningKey:
    """A private key to sign with, and the id its signatures carry."""

    private: PrivateKey = field(repr=False)
    keyid: str


@dataclass(frozen=True)
class PublicKey:
    """A public key to check signatures with, and its id."""

    public: VerifyingKey
    keyid: str


@dataclass(frozen=True)
class Envelope:
    payload: bytes
    payload_type: str
    signatures: tuple[tuple[str, bytes], ...]  # (keyid, sig); keyid "" where none was given


# Loading keys.


def load_signing_key(path: Path, passphrase: bytes | None = None) -> SigningKey:
    """The private key in `path` (OpenSSH or PEM); `passphrase` decrypts an encrypted one and is
    ignored for a key that is not encrypted."""
    data = _read(path, "sign")
    if _OPENSSH_PRIVATE.search(data):
        _supported(path, _openssh_public(path, data, "sign"), "sign")  # before decrypting
        private = _load_openssh_private(path, data, passphrase)
    elif _PEM_PRIVATE.search(data):
        private = _load_pem_private(path, data, passphrase, "sign")
    elif _PEM_PUBLIC.search(data) or _SSH_LINE.search(data):
        raise SigningKeyError(_public_given(path))
    else:
        raise SigningKeyError(f"{path} is not a private key: {_FIX['sign']}.")
    if not isinstance(private, PrivateKey):
        raise SigningKeyError(_unsupported(path, _kind(private), "sign"))
    return SigningKey(private, _keyid(_supported(path, private.public_key(), "sign")))


def load_public_key(path: Path) -> PublicKey:
    """The public key in `path`: an OpenSSH public key line, a PEM public key, or the public half
    of a private key (an encrypted OpenSSH key's public half needs no passphrase)."""
    data = _read(path, "verify")
    if _OPENSSH_PRIVATE.search(data):
        public = _openssh_public(path, data, "verify")
    elif _PEM_PRIVATE.search(data):
        if _pem_encrypted(data):
            raise SigningKeyError(
                f"{path} is an encrypted private key, and checking needs no secret: give its "
                f"public half (`openssl pkey -in {shlex.quote(str(path))} -pubout -out key.pem`, "
                "then `--key key.pem`)."
            )
        private = _load_pem_private(path, data, None, "verify")
        public = private.public_key() if isinstance(private, PrivateKey) else private
    elif _PEM_PUBLIC.search(data):
        with _converting(path, "verify"):
            public = serialization.load_pem_public_key(data)
    elif line := _SSH_LINE.search(data):
        public = _ssh_public_line(path, line.group(1), line.group(2), "verify")
    else:
        raise SigningKeyError(f"{path} is not a key: {_FIX['verify']}.")
    checked = _supported(path, public, "verify")
    return PublicKey(checked, _keyid(checked))


def public_half(key: SigningKey) -> PublicKey:
    public = key.private.public_key()
    return PublicKey(public, key.keyid)


def public_key_pem(key: PublicKey) -> bytes:
    """The key as a SubjectPublicKeyInfo PEM, which `openssl pkeyutl`/`dgst` read."""
    return key.public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _read(path: Path, role: Role) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise SigningKeyError(f"the {_NOUN[role]} {path} does not exist: {_FIX[role]}.") from None
    except OSError as error:
        raise SigningKeyError(
            f"cannot read the {_NOUN[role]} {path} ({error.strerror or error}): check the path "
            f"and that this user may read it, or {_FIX[role]}."
        ) from None


def _public_given(path: Path) -> str:
    private = path.with_suffix("") if path.suffix == ".pub" else None
    named = f" (`--sign {shlex.quote(str(private))}`)" if private else ""
    return (
        f"{path} is a public key, and signing needs the private key: give the private half"
        f"{named}, the key you sign git commits with, or a PEM private key ({_SUPPORTED})."
    )


@contextmanager
def _converting(path: Path, role: Role) -> Iterator[None]:
    """cryptography's refusals of a damaged or unknown key, as SigningKeyError."""
    try:
        with _quiet():
            yield
    except UnsupportedAlgorithm:
        raise SigningKeyError(
            f"{path} holds a kind of key this installation cannot read: {_FIX[role]}."
        ) from None
    except (ValueError, TypeError):
        raise SigningKeyError(
            f"{path} looks like a key but cannot be read (damaged, or a format other than "
            f"OpenSSH and PEM): {_FIX[role]}."
        ) from None


def _load_pem_private(path: Path, data: bytes, passphrase: bytes | None, role: Role) -> object:
    if not _pem_encrypted(data):
        with _converting(path, role):
            return serialization.load_pem_private_key(data, None)
    if passphrase is None:
        raise SigningKeyError(_no_passphrase(path))
    try:
        with _quiet():
            return serialization.load_pem_private_key(data, passphrase)
    except (ValueError, TypeError):
        raise SigningKeyError(_wrong_passphrase(path, "openssl pkey -noout -in")) from None
    except UnsupportedAlgorithm:
        raise SigningKeyError(
            f"the signing key {path} is encrypted with a cipher this installation cannot "
            f"decrypt: write it again with `openssl pkey -aes256 -in {shlex.quote(str(path))} "
            f"-out key.pem`, or {_FIX['sign']}."
        ) from None


def _pem_encrypted(data: bytes) -> bool:
    return b"-----BEGIN ENCRYPTED PRIVATE KEY-----" in data or b"Proc-Type: 4,ENCRYPTED" in data


def _load_openssh_private(path: Path, data: bytes, passphrase: bytes | None) -> object:
    if _openssh_header(data)[0] == b"none":
        with _converting(path, "sign"):
            return serialization.load_ssh_private_key(data, None)
    if passphrase is None:
        raise SigningKeyError(_no_passphrase(path))
    try:
        with _quiet():
            return serialization.load_ssh_private_key(data, passphrase)
    except (ValueError, TypeError):
        raise SigningKeyError(_wrong_passphrase(path, "ssh-keygen -y -f")) from None
    except UnsupportedAlgorithm:  # cryptography decrypts OpenSSH keys with the bcrypt package
        raise SigningKeyError(
            f"the signing key {path} is an encrypted OpenSSH key, and decrypting one needs the "
            "Python package bcrypt, which is not installed: install it beside reprobuild "
            "(`pip install bcrypt`), or give an unencrypted key."
        ) from None


def _no_passphrase(path: Path) -> str:
    variable = layout.SIGNING_PASSPHRASE_VARIABLE
    return (
        f"the signing key {path} is encrypted and no passphrase was given: set {variable} "
        f"to its passphrase (`read -rs {variable} && export {variable}`), or give an "
        "unencrypted key."
    )


def _wrong_passphrase(path: Path, check: str) -> str:
    return (
        f"the passphrase in {layout.SIGNING_PASSPHRASE_VARIABLE} does not decrypt the signing key "
        f"{path} (a wrong "
        f"passphrase, or a damaged key): set it to this key's passphrase (`{check} "
        f"{shlex.quote(str(path))}` asks for it and tells), or give another key."
    )


@contextmanager
def _quiet() -> Iterator[None]:
    """No deprecation warnings from loading: DSA keys warn as they load, and are refused after."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        yield


# OpenSSH's private key format keeps the public key in clear (PROTOCOL.key): read from there, a
# key's kind is known before decrypting, and an encrypted key's public half needs no passphrase.


def _openssh_public(path: Path, data: bytes, role: Role) -> object:
    try:
        blob = _openssh_header(data)[1]
        kind = _ssh_string(blob, 0)[0]
    except ValueError:
        raise SigningKeyError(
            f"{path} is a damaged OpenSSH private key (its header cannot be read): {_FIX[role]}."
        ) from None
    return _ssh_public_line(path, kind, base64.b64encode(blob), role)


def _openssh_header(data: bytes) -> tuple[bytes, bytes]:
    """The cipher's name ("none" when not encrypted) and the public key's wire-format blob."""
    found = _OPENSSH_PRIVATE.search(data)
    try:
        raw = base64.b64decode(b"".join(found.group(1).split()) if found else b"", validate=True)
    except binascii.Error as error:
        raise ValueError("not base64") from error
    if not raw.startswith(_OPENSSH_MAGIC):
        raise ValueError("not openssh-key-v1")
    cipher, offset = _ssh_string(raw, len(_OPENSSH_MAGIC))
    _kdf, offset = _ssh_string(raw, offset)
    _kdf_options, offset = _ssh_string(raw, offset)
    blob, _ = _ssh_string(raw, offset + 4)  # after the number of keys: ssh-keygen writes one
    return cipher, blob


def _ssh_string(raw: bytes, offset: int) -> tuple[bytes, int]:
    """The length-prefixed string at `offset` (RFC 4251) and the offset after it."""
    try:
        (length,) = struct.unpack_from(">I", raw, offset)
    except struct.error as error:
        raise ValueError("truncated") from error
    end = offset + 4 + length
    if end > len(raw):
        raise ValueError("truncated")
    return raw[offset + 4 : end], end


def _ssh_public_line(path: Path, kind: bytes, blob64: bytes, role: Role) -> object:
    if kind.startswith(b"sk-"):
        raise SigningKeyError(_unsupported(path, f"FIDO security-key ({kind.decode()})", role))
    with _converting(path, role):
        return serialization.load_ssh_public_key(kind + b" " + blob64)


# Kinds of key.


def _supported(path: Path, public: object, role: Role) -> VerifyingKey:
    if isinstance(public, ed25519.Ed25519PublicKey):
        return public
    if isinstance(public, ec.EllipticCurvePublicKey) and isinstance(public.curve, ec.SECP256R1):
        return public
    if isinstance(public, rsa.RSAPublicKey) and public.key_size >= MIN_RSA_BITS:
        return public
    raise SigningKeyError(_unsupported(path, _kind(public), role))


def _unsupported(path: Path, kind: str, role: Role) -> str:
    action = "sign with" if role == "sign" else "check signatures with"
    return (
        f"{path}: reprobuild does not {action} {kind} keys: {_FIX[role]}; "
        "`ssh-keygen -t ed25519` makes a new one."
    )


def _kind(public: object) -> str:
    if isinstance(public, ed25519.Ed25519PublicKey):
        return "Ed25519"
    if isinstance(public, ec.EllipticCurvePublicKey):
        names = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
        return f"ECDSA {names.get(public.curve.name, public.curve.name)}"
    if isinstance(public, rsa.RSAPublicKey):
        return f"RSA {public.key_size}-bit"
    return type(public).__name__.removesuffix("PublicKey").removesuffix("PrivateKey")


def _keyid(public: VerifyingKey) -> str:
    """The SSH fingerprint: sha256 of the wire-format blob, unpadded base64 (`ssh-keygen -l`)."""
    line = public.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    blob = base64.b64decode(line.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


# Envelopes.


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1's pre-authentication encoding: "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body,
    lengths in ASCII decimal bytes."""
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(kind), kind, len(payload), payload)


def sign(payload: bytes, payload_type: str, key: SigningKey) -> bytes:
    """The envelope's JSON: sorted keys, indented by 2, a trailing newline."""
    signature = _signature(key.private, pae(payload_type, payload))
    document = {
        "payload": base64.b64encode(payload).decode("ascii"),
        "payloadType": payload_type,
        "signatures": [{"keyid": key.keyid, "sig": base64.b64encode(signature).decode("ascii")}],
    }
    return (json.dumps(document, sort_keys=True, indent=2) + "\n").encode("utf-8")


def _signature(private: PrivateKey, message: bytes) -> bytes:
    if isinstance(private, ed25519.Ed25519PrivateKey):
        return private.sign(message)
    if isinstance(private, ec.EllipticCurvePrivateKey):
        return private.sign(message, _ECDSA)
    return private.sign(message, _PSS_SIGN, hashes.SHA256())


def open_envelope(data: bytes) -> Envelope:
    """The envelope in `data`; its payload and signatures decoded, nothing verified yet."""
    try:
        document = json.loads(data)
    except (ValueError, RecursionError):
        raise SignatureError("not a DSSE envelope: the file is not JSON.") from None
    if not isinstance(document, dict):
        raise SignatureError("not a DSSE envelope: the JSON is not an object.")
    payload = _decoded(_text(document, "payload"), "the payload")
    payload_type = _text(document, "payloadType")
    entries = document.get("signatures")
    if not isinstance(entries, list):
        raise SignatureError('not a DSSE envelope: "signatures" is missing or not a list.')
    if not entries:
        raise SignatureError("the DSSE envelope carries no signatures.")
    signatures = tuple(_signature_entry(entry, number) for number, entry in enumerate(entries, 1))
    return Envelope(payload, payload_type, signatures)


def _text(document: dict[str, Any], name: str) -> str:
    value = document.get(name)
    if not isinstance(value, str):
        raise SignatureError(f'not a DSSE envelope: "{name}" is missing or not a string.')
    return value


def _signature_entry(entry: object, number: int) -> tuple[str, bytes]:
    if not isinstance(entry, dict) or not isinstance(entry.get("sig"), str):
        raise SignatureError(f'not a DSSE envelope: signature {number} has no "sig" string.')
    keyid = entry.get("keyid", "")
    if not isinstance(keyid, str):
        raise SignatureError(f'not a DSSE envelope: signature {number}\'s "keyid" is not a string.')
    return keyid, _decoded(entry["sig"], f"signature {number}")


def _decoded(text: str, what: str) -> bytes:
    """Base64, standard or URL-safe, padded or not: envelope.md allows each."""
    standard = text.translate(str.maketrans("-_", "+/"))
    try:
        return base64.b64decode(standard + "=" * (-len(standard) % 4), validate=True)
    except ValueError:  # binascii.Error, and non-ASCII text
        raise SignatureError(f"not a DSSE envelope: {what} is not base64.") from None


def verified(envelope: Envelope, key: PublicKey) -> bool:
    """Whether a signature by `key` verifies over the envelope's PAE: the signatures that carry
    its keyid, or every signature when none does (a keyid is an unsigned hint)."""
    mine = [sig for keyid, sig in envelope.signatures if keyid == key.keyid]
    candidates = mine or [sig for _, sig in envelope.signatures]
    message = pae(envelope.payload_type, envelope.payload)
    return any(_holds(key.public, sig, message) for sig in candidates)


def _holds(public: VerifyingKey, signature: bytes, message: bytes) -> bool:
    try:
        if isinstance(public, ed25519.Ed25519PublicKey):
            public.verify(signature, message)
        elif isinstance(public, ec.EllipticCurvePublicKey):
            public.verify(signature, message, _ECDSA)
        else:
            public.verify(signature, message, _PSS_CHECK, hashes.SHA256())
    except (InvalidSignature, ValueError):
        return False
    return True
