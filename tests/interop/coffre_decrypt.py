#!/usr/bin/env python3
"""Independent decoder of coffre's data-object format v1, written from docs/FORMAT.md only.

Usage: coffre_decrypt.py MANIFEST DATA (--key-file FILE | --passphrase-env VAR | --identity-file FILE) > plaintext

It checks everything FORMAT.md says a reader must check and exits 1 on any failure.
Needs: cryptography, zstandard, argon2-cffi.
"""
import argparse, base64, hashlib, hmac, json, os, sys, uuid

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

HEADER_LEN = 92
TAG_LEN = 16


def hkdf(ikm, salt, info, length):
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


def key_id(kek):
    return hashlib.sha256(b"coffre/v1/key-id" + kek).digest()[:8].hex()


def parse_key(raw):
    if len(raw) == 32:
        return raw
    text = raw.decode().strip()
    if text.startswith("coffre-key-v1:"):
        return base64.b64decode(text[len("coffre-key-v1:"):])
    return bytes.fromhex(text)


def unwrap(stanza, kek, backup_id):
    aad = b"coffre/v1/wrap" + backup_id.bytes
    return AESGCM(kek).decrypt(base64.b64decode(stanza["nonce"]), base64.b64decode(stanza["wrapped"]), aad)


def x25519_kek(identity_file, stanza):
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
    from cryptography.hazmat.primitives import serialization
    text = open(identity_file).read().strip()
    assert text.startswith("coffre-x25519-identity-v1:")
    secret = X25519PrivateKey.from_private_bytes(base64.b64decode(text[len("coffre-x25519-identity-v1:"):]))
    recipient = secret.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    if stanza["key_id"] != key_id(recipient):
        return None
    epk = base64.b64decode(stanza["epk"])
    shared = secret.exchange(X25519PublicKey.from_public_bytes(epk))
    if shared == bytes(32):
        sys.exit("low-order point")
    return hkdf(shared, epk + recipient, b"coffre/v1/x25519", 32)


def find_dek(manifest, args):
    backup_id = uuid.UUID(manifest["backup_id"])
    for stanza in manifest["keys"]:
        if stanza["type"] == "x25519" and args.identity_file:
            kek = x25519_kek(args.identity_file, stanza)
            if kek:
                aad = b"coffre/v1/wrap" + backup_id.bytes
                return AESGCM(kek).decrypt(bytes(12), base64.b64decode(stanza["wrapped"]), aad)
        if stanza["type"] == "key" and args.key_file:
            kek = parse_key(open(args.key_file, "rb").read())
            if stanza["key_id"] == key_id(kek):
                return unwrap(stanza, kek, backup_id)
        if stanza["type"] == "argon2id" and args.passphrase_env:
            from argon2.low_level import Type, hash_secret_raw
            if stanza["m_kib"] > 1024 * 1024:
                sys.exit("argon2id memory cost over 1 GiB")
            kek = hash_secret_raw(os.environ[args.passphrase_env].encode(), base64.b64decode(stanza["salt"]),
                                  time_cost=stanza["t"], memory_cost=stanza["m_kib"], parallelism=stanza["p"],
                                  hash_len=32, type=Type.ID)
            try:
                return unwrap(stanza, kek, backup_id)
            except Exception:
                continue
    sys.exit("no key in this backup's manifest opens it")


def canonical(value):
    # RFC 8785 for integer-only JSON with ASCII keys.
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("manifest")
    p.add_argument("data")
    p.add_argument("--key-file")
    p.add_argument("--passphrase-env")
    p.add_argument("--identity-file")
    args = p.parse_args()

    manifest = json.load(open(args.manifest, "rb"))
    assert manifest["format"] == "coffre-manifest/1"
    dek = find_dek(manifest, args)
    data = open(args.data, "rb").read()
    if hashlib.sha256(data).hexdigest() != manifest["data_sha256"]:
        sys.exit("data_sha256 mismatch")

    h = data[:HEADER_LEN]
    if len(h) < HEADER_LEN or h[0:8] != b"COFFRE1\n" or h[8] != 1 or h[10:12] != b"\0\0":
        sys.exit("bad header")
    chunk_log2 = h[9]
    if not 16 <= chunk_log2 <= 24:
        sys.exit("bad chunk size")
    if uuid.UUID(bytes=h[12:28]) != uuid.UUID(manifest["backup_id"]):
        sys.exit("data object of another backup")
    salt = h[28:60]
    if not hmac.compare_digest(hkdf(dek, salt, b"coffre/v1/commit" + h[0:60], 32), h[60:92]):
        sys.exit("commitment mismatch")

    body = {k: v for k, v in manifest.items() if k not in ("keys", "mac")}
    mac = hmac.new(hkdf(dek, salt, b"coffre/v1/manifest", 32), canonical(body), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(mac, manifest["mac"]):
        sys.exit("manifest mac mismatch")

    okm = hkdf(dek, salt, b"coffre/v1/payload", 39)
    aead, prefix = AESGCM(okm[:32]), okm[32:39]
    stored = (1 << chunk_log2) + TAG_LEN
    payload, pos, index = bytearray(), HEADER_LEN, 0
    while True:
        chunk = data[pos:pos + stored]
        pos += len(chunk)
        last = pos >= len(data)
        nonce = prefix + index.to_bytes(4, "big") + (b"\x01" if last else b"\x00")
        payload += aead.decrypt(nonce, chunk, h)
        index += 1
        if last:
            break
    if index != manifest["chunks"] or len(payload) != manifest["payload_bytes"]:
        sys.exit("counts differ from the manifest")

    if manifest["compression"] == "zstd":
        import zstandard
        plain = zstandard.ZstdDecompressor().decompressobj().decompress(bytes(payload))
    else:
        plain = bytes(payload)
    if len(plain) != manifest["plaintext_bytes"]:
        sys.exit("plaintext size differs from the manifest")
    sys.stdout.buffer.write(plain)


if __name__ == "__main__":
    main()
