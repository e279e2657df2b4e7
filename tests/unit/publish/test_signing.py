"""DSSE envelopes signed with real keys that `ssh-keygen` and `openssl genpkey` make, checked by
our verifier and by openssl itself; key ids checked against `ssh-keygen -lf`."""

from __future__ import annotations

import base64
import dataclasses
import importlib.util
import json
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from builder.errors import SignatureError, SigningKeyError
from builder.publish import artifacts
from builder.publish.signing import (
    Envelope,
    load_public_key,
    load_signing_key,
    open_envelope,
    pae,
    public_half,
    public_key_pem,
    sign,
    verified,
)

PAYLOAD = b'{"_type": "https://in-toto.io/Statement/v1", "subject": []}\n\xfb\xff'
PAYLOAD_TYPE = "application/vnd.in-toto+json"
HAVE_BCRYPT = importlib.util.find_spec("bcrypt") is not None

SIGN_FIX = (
    "give the private key you sign git commits with (`--sign ~/.ssh/id_ed25519`), or a PEM "
    "private key (Ed25519, ECDSA P-256, or RSA of 2048 bits or more)"
)
VERIFY_FIX = (
    "give the public key the envelope was signed with: an OpenSSH public key line "
    "(`--key ~/.ssh/id_ed25519.pub`), a PEM public key, or the private key itself (Ed25519, "
    "ECDSA P-256, or RSA of 2048 bits or more)"
)
NEW_KEY = "`ssh-keygen -t ed25519` makes a new one."

# name -> the command that writes the key to the path that follows it.
SSH_KEYS = {
    "ssh-ed25519": ["ssh-keygen", "-q", "-t", "ed25519", "-N", ""],
    "ssh-ed25519-other": ["ssh-keygen", "-q", "-t", "ed25519", "-N", ""],
    "ssh-ed25519-encrypted": ["ssh-keygen", "-q", "-t", "ed25519", "-N", "secret"],
    "ssh-ecdsa": ["ssh-keygen", "-q", "-t", "ecdsa", "-b", "256", "-N", ""],
    "ssh-ecdsa384": ["ssh-keygen", "-q", "-t", "ecdsa", "-b", "384", "-N", ""],
    "ssh-rsa": ["ssh-keygen", "-q", "-t", "rsa", "-b", "3072", "-N", ""],
    "ssh-dsa": ["ssh-keygen", "-q", "-t", "dsa", "-N", ""],
}
GENPKEY = ["openssl", "genpkey", "-algorithm"]
PEM_KEYS = {
    "pem-ed25519": [*GENPKEY, "ed25519"],
    "pem-ed25519-encrypted": [*GENPKEY, "ed25519", "-aes256", "-pass", "pass:secret"],
    "pem-p256": [*GENPKEY, "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
    "pem-rsa": [*GENPKEY, "RSA", "-pkeyopt", "rsa_keygen_bits:3072"],
    "pem-p384": [*GENPKEY, "EC", "-pkeyopt", "ec_paramgen_curve:P-384"],
    "pem-rsa1024": [*GENPKEY, "RSA", "-pkeyopt", "rsa_keygen_bits:1024"],
    "pem-ed448": [*GENPKEY, "ed448"],
    "pem-x25519": [*GENPKEY, "x25519"],
}
# Traditional ("BEGIN EC PRIVATE KEY", "BEGIN RSA PRIVATE KEY") copies of PKCS#8 keys.
TRADITIONAL = {"pem-p256-traditional": "pem-p256", "pem-rsa-traditional": "pem-rsa"}
SIGNERS = [
    "ssh-ed25519",
    "ssh-ecdsa",
    "ssh-rsa",
    "pem-ed25519",
    "pem-p256",
    "pem-p256-traditional",
    "pem-rsa",
    "pem-rsa-traditional",
]
KIND = {"ed25519": "ed25519", "ecdsa": "ecdsa", "p256": "ecdsa", "rsa": "rsa"}


def run(*command: str | Path) -> str:
    done = subprocess.run([str(part) for part in command], capture_output=True, check=True)
    return done.stdout.decode()


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("keys")
    made = {}
    for name, command in {**SSH_KEYS, **PEM_KEYS}.items():
        option = "-f" if name.startswith("ssh") else "-out"
        try:
            run(*command, option, folder / name)
        except subprocess.CalledProcessError:  # a newer OpenSSH makes no DSA keys
            continue
        made[name] = folder / name
    for name, source in TRADITIONAL.items():
        run("openssl", "pkey", "-in", made[source], "-traditional", "-out", folder / name)
        made[name] = folder / name
    for name in [*PEM_KEYS, *TRADITIONAL]:
        if "encrypted" not in name:
            run("openssl", "pkey", "-in", made[name], "-pubout", "-out", pub(made[name]))
    return made


def pub(key: Path) -> Path:
    """The public key file beside a private key: `ssh-keygen`'s .pub, or the PEM we wrote."""
    return key.with_name(key.name + (".pub" if key.name.startswith("ssh") else ".pub.pem"))


def key_at(keys: dict[str, Path], name: str) -> Path:
    if name not in keys:
        pytest.skip(f"this ssh-keygen makes no {name} keys")
    return keys[name]


def kind(name: str) -> str:
    return KIND[name.split("-")[1]]


def test_pae_is_dsse_v1s_encoding() -> None:
    """The example of DSSE's protocol.md, and lengths that count bytes, not characters."""
    expected = b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    assert pae("http://example.com/HelloWorld", b"hello world") == expected
    assert pae("t\u00e9", b"") == b"DSSEv1 3 t\xc3\xa9 0 "


@pytest.mark.parametrize("name", SIGNERS)
def test_a_signature_verifies_with_each_form_of_the_public_key(
    keys: dict[str, Path], name: str
) -> None:
    key = load_signing_key(keys[name])
    envelope = open_envelope(sign(PAYLOAD, PAYLOAD_TYPE, key))
    assert (envelope.payload, envelope.payload_type) == (PAYLOAD, PAYLOAD_TYPE)
    assert [keyid for keyid, _ in envelope.signatures] == [key.keyid]
    for public in (public_half(key), load_public_key(pub(keys[name])), load_public_key(keys[name])):
        assert public.keyid == key.keyid
        assert verified(envelope, public)


@pytest.mark.parametrize("name", SIGNERS)
def test_the_keyid_is_what_ssh_keygen_prints(keys: dict[str, Path], name: str) -> None:
    key = load_signing_key(keys[name])
    if name == "pem-ed25519":  # ssh-keygen reads no PEM Ed25519 key: give it the OpenSSH line
        line = public_half(key).public.public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        listed = keys[name].with_name("pem-ed25519.ssh.pub")
        listed.write_bytes(line + b"\n")
    else:  # the .pub ssh-keygen wrote, or the PEM private key itself
        listed = pub(keys[name]) if name.startswith("ssh") else keys[name]
    assert key.keyid == run("ssh-keygen", "-lf", listed).split()[1]
    assert key.keyid.startswith("SHA256:")
    assert not key.keyid.endswith("=")


OPENSSL_VERIFY = {
    "ed25519": "openssl pkeyutl -verify -pubin -inkey pub.pem -rawin -in pae.bin -sigfile sig.bin",
    "ecdsa": "openssl dgst -sha256 -verify pub.pem -signature sig.bin pae.bin",
    "rsa": "openssl dgst -sha256 -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:32 "
    "-verify pub.pem -signature sig.bin pae.bin",
}


@pytest.mark.parametrize("name", SIGNERS)
def test_openssl_verifies_our_signatures(keys: dict[str, Path], name: str, tmp_path: Path) -> None:
    """The envelope's signature over the PAE, with the PEM we write for readers: the commands
    the docs give."""
    key = load_signing_key(keys[name])
    envelope = open_envelope(sign(PAYLOAD, PAYLOAD_TYPE, key))
    (tmp_path / "pub.pem").write_bytes(public_key_pem(public_half(key)))
    (tmp_path / "sig.bin").write_bytes(envelope.signatures[0][1])
    (tmp_path / "pae.bin").write_bytes(pae(envelope.payload_type, envelope.payload))
    command = OPENSSL_VERIFY[kind(name)].split()
    checked = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "Verified" in checked.stdout
    (tmp_path / "pae.bin").write_bytes(pae(envelope.payload_type, envelope.payload + b" "))
    tampered = subprocess.run(command, cwd=tmp_path, capture_output=True, check=False)
    assert tampered.returncode != 0


OPENSSL_SIGN = {
    "ed25519": "openssl pkeyutl -sign -inkey key.pem -rawin -in pae.bin -out sig.bin",
    "ecdsa": "openssl dgst -sha256 -sign key.pem -out sig.bin pae.bin",
    "rsa": "openssl dgst -sha256 -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:max "
    "-sign key.pem -out sig.bin pae.bin",
}


@pytest.mark.parametrize("name", ["pem-ed25519", "pem-p256", "pem-rsa"])
def test_we_verify_openssls_signatures(keys: dict[str, Path], name: str, tmp_path: Path) -> None:
    """RSA-PSS with the longest salt too: checking takes any salt length."""
    (tmp_path / "key.pem").write_bytes(keys[name].read_bytes())
    (tmp_path / "pae.bin").write_bytes(pae(PAYLOAD_TYPE, PAYLOAD))
    subprocess.run(OPENSSL_SIGN[kind(name)].split(), cwd=tmp_path, check=True)
    envelope = Envelope(PAYLOAD, PAYLOAD_TYPE, (("", (tmp_path / "sig.bin").read_bytes()),))
    assert verified(envelope, load_public_key(pub(keys[name])))
    assert not verified(
        dataclasses.replace(envelope, payload=PAYLOAD + b" "), load_public_key(pub(keys[name]))
    )


@pytest.mark.parametrize("name", ["ssh-ecdsa", "ssh-rsa"])
def test_the_pem_of_an_ssh_public_key_is_ssh_keygens(keys: dict[str, Path], name: str) -> None:
    exported = run("ssh-keygen", "-e", "-m", "PKCS8", "-f", pub(keys[name])).encode()
    theirs = serialization.load_pem_public_key(exported)
    ours = serialization.load_pem_public_key(public_key_pem(load_public_key(pub(keys[name]))))
    assert ours == theirs


def test_the_pem_of_an_ssh_ed25519_key_holds_its_bytes(keys: dict[str, Path]) -> None:
    """ssh-keygen exports no Ed25519 PEM: the .pub's blob ends with the key's 32 bytes."""
    blob = base64.b64decode(pub(keys["ssh-ed25519"]).read_text().split()[1])
    ours = serialization.load_pem_public_key(public_key_pem(load_public_key(keys["ssh-ed25519"])))
    raw = ours.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert blob == b"\0\0\0\x0bssh-ed25519\0\0\0\x20" + raw


@pytest.mark.parametrize("name", ["ssh-ed25519", "ssh-ecdsa", "ssh-rsa"])
def test_a_changed_byte_or_another_key_fails(keys: dict[str, Path], name: str) -> None:
    key = load_signing_key(keys[name])
    public = public_half(key)
    envelope = open_envelope(sign(PAYLOAD, PAYLOAD_TYPE, key))
    (keyid, sig) = envelope.signatures[0]
    assert verified(envelope, public)
    flipped = bytes([sig[0] ^ 1]) + sig[1:]
    changes: list[Envelope] = [
        dataclasses.replace(envelope, payload=b"X" + PAYLOAD[1:]),
        dataclasses.replace(envelope, payload_type=PAYLOAD_TYPE.replace("in-toto", "in-totO")),
        dataclasses.replace(envelope, signatures=((keyid, flipped),)),
        dataclasses.replace(envelope, signatures=((keyid, sig[:-1]),)),
        dataclasses.replace(envelope, signatures=((keyid, b""),)),
    ]
    assert [verified(changed, public) for changed in changes] == [False] * len(changes)
    others = ("ssh-ed25519-other", "pem-p256", "pem-rsa")
    assert not any(verified(envelope, load_public_key(keys[other])) for other in others)


def test_a_changed_payload_type_in_the_file_fails(keys: dict[str, Path]) -> None:
    key = load_signing_key(keys["ssh-ed25519"])
    text = sign(PAYLOAD, PAYLOAD_TYPE, key).decode()
    changed = text.replace('"payloadType": "application/', '"payloadType": "applicatioN/')
    assert verified(open_envelope(text.encode()), public_half(key))
    assert not verified(open_envelope(changed.encode()), public_half(key))


def test_the_signatures_that_name_the_key_are_the_ones_checked(keys: dict[str, Path]) -> None:
    """A keyid is a hint: with none naming the key every signature is tried; with one naming it,
    only those are."""
    key = load_signing_key(keys["ssh-ed25519"])
    good = open_envelope(sign(PAYLOAD, PAYLOAD_TYPE, key)).signatures[0][1]
    bad = bytes(len(good))
    envelope = Envelope(PAYLOAD, PAYLOAD_TYPE, (("", bad), ("someone else", good)))
    assert verified(envelope, public_half(key))
    named = Envelope(PAYLOAD, PAYLOAD_TYPE, ((key.keyid, bad), ("someone else", good)))
    assert not verified(named, public_half(key))
    both = Envelope(PAYLOAD, PAYLOAD_TYPE, (("x", bad), (key.keyid, bad), (key.keyid, good)))
    assert verified(both, public_half(key))


def test_the_envelope_is_canonical_json(keys: dict[str, Path]) -> None:
    key = load_signing_key(keys["ssh-ed25519"])
    text = sign(PAYLOAD, PAYLOAD_TYPE, key).decode()
    document = json.loads(text)
    assert text == json.dumps(document, sort_keys=True, indent=2) + "\n"
    assert list(document) == ["payload", "payloadType", "signatures"]
    assert document["payload"] == base64.b64encode(PAYLOAD).decode()  # standard: "+/" ends it
    assert document["payload"].endswith("+/8=")
    assert [list(entry) for entry in document["signatures"]] == [["keyid", "sig"]]
    assert document["signatures"][0]["keyid"] == key.keyid
    assert artifacts.DSSE == "application/vnd.dsse.envelope.v1+json"


def test_an_envelope_may_use_url_safe_unpadded_base64_and_no_keyid(keys: dict[str, Path]) -> None:
    key = load_signing_key(keys["ssh-ed25519"])
    sig = open_envelope(sign(PAYLOAD, PAYLOAD_TYPE, key)).signatures[0][1]
    document = {
        "payload": base64.urlsafe_b64encode(PAYLOAD).decode().rstrip("="),
        "payloadType": PAYLOAD_TYPE,
        "signatures": [{"sig": base64.urlsafe_b64encode(sig).decode().rstrip("=")}],
    }
    envelope = open_envelope(json.dumps(document).encode())
    assert envelope == Envelope(PAYLOAD, PAYLOAD_TYPE, (("", sig),))
    assert verified(envelope, public_half(key))


def envelope_json(**changes: object) -> bytes:
    signatures = [{"keyid": "k", "sig": "AA"}]
    document: dict[str, object] = {"payload": "aGk=", "payloadType": "t", "signatures": signatures}
    document.update(changes)
    return json.dumps({name: value for name, value in document.items() if value != "-"}).encode()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not json", "the file is not JSON."),
        (b"\xff\xfe\xfd", "the file is not JSON."),
        (b"[]", "the JSON is not an object."),
        (envelope_json(payload="-"), '"payload" is missing or not a string.'),
        (envelope_json(payload=3), '"payload" is missing or not a string.'),
        (envelope_json(payload="aGk*"), "the payload is not base64."),
        (envelope_json(payload="\u00e9"), "the payload is not base64."),
        (envelope_json(payloadType="-"), '"payloadType" is missing or not a string.'),
        (envelope_json(signatures="-"), '"signatures" is missing or not a list.'),
        (envelope_json(signatures={"sig": "AA"}), '"signatures" is missing or not a list.'),
        (envelope_json(signatures=[{"keyid": "k"}]), 'signature 1 has no "sig" string.'),
        (envelope_json(signatures=[{"sig": "AA"}, "AA"]), 'signature 2 has no "sig" string.'),
        (envelope_json(signatures=[{"sig": "AA", "keyid": 1}]), 'signature 1\'s "keyid" is not '),
        (envelope_json(signatures=[{"sig": "AA"}, {"sig": "A"}]), "signature 2 is not base64."),
    ],
)
def test_a_malformed_envelope_is_named(data: bytes, message: str) -> None:
    with pytest.raises(SignatureError) as caught:
        open_envelope(data)
    assert str(caught.value).startswith("not a DSSE envelope: " + message)


def test_an_envelope_without_signatures_is_refused() -> None:
    assert open_envelope(envelope_json()) == Envelope(b"hi", "t", (("k", b"\0"),))
    with pytest.raises(SignatureError, match=r"^the DSSE envelope carries no signatures\.$"):
        open_envelope(envelope_json(signatures=[]))


# Keys that cannot be used, and why.


def key_error(path: Path, passphrase: bytes | None = None, *, verify: bool = False) -> str:
    with pytest.raises(SigningKeyError) as caught:
        if verify:
            load_public_key(path)
        else:
            load_signing_key(path, passphrase)
    assert caught.value.exit_code == 2
    return str(caught.value)


def test_a_missing_or_unreadable_file(tmp_path: Path) -> None:
    missing = tmp_path / "id_ed25519"
    assert key_error(missing) == f"the signing key {missing} does not exist: {SIGN_FIX}."
    assert key_error(missing, verify=True) == (
        f"the public key {missing} does not exist: {VERIFY_FIX}."
    )
    assert key_error(tmp_path) == (
        f"cannot read the signing key {tmp_path} (Is a directory): check the path and that this "
        f"user may read it, or {SIGN_FIX}."
    )


def test_a_file_that_is_no_key(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    assert key_error(text) == f"{text} is not a private key: {SIGN_FIX}."
    assert key_error(text, verify=True) == f"{text} is not a key: {VERIFY_FIX}."


def test_a_public_key_given_to_sign_with(keys: dict[str, Path]) -> None:
    ssh = pub(keys["ssh-ed25519"])
    assert key_error(ssh) == (
        f"{ssh} is a public key, and signing needs the private key: give the private half "
        f"(`--sign {keys['ssh-ed25519']}`), the key you sign git commits with, or a PEM private "
        "key (Ed25519, ECDSA P-256, or RSA of 2048 bits or more)."
    )
    pem = pub(keys["pem-p256"])
    assert key_error(pem).startswith(
        f"{pem} is a public key, and signing needs the private key: give the private half, the "
    )


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("pem-p384", "ECDSA P-384"),
        ("pem-rsa1024", "RSA 1024-bit"),
        ("pem-ed448", "Ed448"),
        ("pem-x25519", "X25519"),
        ("ssh-ecdsa384", "ECDSA P-384"),
        ("ssh-dsa", "DSA"),
    ],
)
def test_a_key_of_a_kind_not_supported(keys: dict[str, Path], name: str, kind: str) -> None:
    path = key_at(keys, name)
    assert key_error(path) == (
        f"{path}: reprobuild does not sign with {kind} keys: {SIGN_FIX}; {NEW_KEY}"
    )
    for given in (path, pub(path)):
        assert key_error(given, verify=True) == (
            f"{given}: reprobuild does not check signatures with {kind} keys: {VERIFY_FIX}; "
            f"{NEW_KEY}"
        )


def test_a_security_key_is_refused(keys: dict[str, Path], tmp_path: Path) -> None:
    """A FIDO key (`ssh-keygen -t ed25519-sk`) signs through its token, in another format."""
    blob = pub(keys["ssh-ed25519"]).read_text().split()[1]
    line = tmp_path / "id_ed25519_sk.pub"
    line.write_text(f"sk-ssh-ed25519@openssh.com {blob} me@host\n")
    assert key_error(line, verify=True) == (
        f"{line}: reprobuild does not check signatures with FIDO security-key "
        f"(sk-ssh-ed25519@openssh.com) keys: {VERIFY_FIX}; {NEW_KEY}"
    )


@pytest.mark.parametrize("name", ["ssh-ed25519-encrypted", "pem-ed25519-encrypted"])
def test_an_encrypted_key_without_a_passphrase(keys: dict[str, Path], name: str) -> None:
    path = keys[name]
    assert key_error(path) == (
        f"the signing key {path} is encrypted and no passphrase was given: set "
        "REPROBUILD_SIGNING_PASSPHRASE to its passphrase (`read -rs "
        "REPROBUILD_SIGNING_PASSPHRASE && export REPROBUILD_SIGNING_PASSPHRASE`), or give an "
        "unencrypted key."
    )


def test_an_encrypted_pem_key_with_its_passphrase_or_another(keys: dict[str, Path]) -> None:
    path = keys["pem-ed25519-encrypted"]
    key = load_signing_key(path, b"secret")
    assert verified(open_envelope(sign(PAYLOAD, PAYLOAD_TYPE, key)), public_half(key))
    assert key_error(path, b"wrong") == (
        f"the passphrase in REPROBUILD_SIGNING_PASSPHRASE does not decrypt the signing key {path} "
        f"(a wrong passphrase, or a damaged key): set it to this key's passphrase (`openssl pkey "
        f"-noout -in {path}` asks for it and tells), or give another key."
    )
    assert key_error(path, verify=True) == (
        f"{path} is an encrypted private key, and checking needs no secret: give its public half "
        f"(`openssl pkey -in {path} -pubout -out key.pem`, then `--key key.pem`)."
    )


@pytest.mark.skipif(not HAVE_BCRYPT, reason="cryptography decrypts OpenSSH keys with bcrypt")
def test_an_encrypted_ssh_key_with_its_passphrase_or_another(keys: dict[str, Path]) -> None:
    path = keys["ssh-ed25519-encrypted"]
    key = load_signing_key(path, b"secret")
    assert verified(open_envelope(sign(PAYLOAD, PAYLOAD_TYPE, key)), load_public_key(pub(path)))
    assert key_error(path, b"wrong") == (
        f"the passphrase in REPROBUILD_SIGNING_PASSPHRASE does not decrypt the signing key {path} "
        f"(a wrong passphrase, or a damaged key): set it to this key's passphrase (`ssh-keygen -y "
        f"-f {path}` asks for it and tells), or give another key."
    )


@pytest.mark.skipif(HAVE_BCRYPT, reason="bcrypt is installed: the key decrypts")
def test_an_encrypted_ssh_key_without_bcrypt(keys: dict[str, Path]) -> None:
    path = keys["ssh-ed25519-encrypted"]
    assert key_error(path, b"secret") == (
        f"the signing key {path} is an encrypted OpenSSH key, and decrypting one needs the Python "
        "package bcrypt, which is not installed: install it beside reprobuild (`pip install "
        "bcrypt`), or give an unencrypted key."
    )


def test_an_encrypted_ssh_keys_public_half_needs_no_passphrase(keys: dict[str, Path]) -> None:
    path = keys["ssh-ed25519-encrypted"]
    assert load_public_key(path).keyid == run("ssh-keygen", "-lf", pub(path)).split()[1]


def test_a_passphrase_for_a_key_that_is_not_encrypted_is_ignored(keys: dict[str, Path]) -> None:
    for name in ("ssh-ed25519", "pem-p256"):
        given = public_half(load_signing_key(keys[name], b"secret"))
        assert given == public_half(load_signing_key(keys[name]))


def test_a_damaged_key(keys: dict[str, Path], tmp_path: Path) -> None:
    pem = tmp_path / "damaged.pem"
    pem.write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    assert key_error(pem) == (
        f"{pem} looks like a key but cannot be read (damaged, or a format other than OpenSSH "
        f"and PEM): {SIGN_FIX}."
    )
    openssh = tmp_path / "id_damaged"
    lines = keys["ssh-ed25519"].read_text().splitlines()
    openssh.write_text("\n".join([lines[0], lines[1][:20], lines[-1]]) + "\n")
    assert key_error(openssh) == (
        f"{openssh} is a damaged OpenSSH private key (its header cannot be read): {SIGN_FIX}."
    )
    line = tmp_path / "damaged.pub"
    line.write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ me@host\n")
    assert key_error(line, verify=True).startswith(f"{line} looks like a key but cannot be read")
