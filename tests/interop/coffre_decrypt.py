#!/usr/bin/env python3
"""Independent decoder of coffre backups, formats 1 and 2, written from docs/FORMAT.md only.

Usage: coffre_decrypt.py BACKUP_DIR (--key-file FILE | --passphrase-env VAR | --identity-file FILE) > plaintext

BACKUP_DIR is a local backup directory {store}/{job}/{YYYYmmddTHHMMSSZ}-{backup_id}/ holding
manifest.json and data.cfr (format 1) or recipe.cfr (format 2); a format 2 backup also reads its
sessions from BACKUP_DIR/../_sessions/{session_id}.json and its packs from
BACKUP_DIR/../_packs/{pack_id}.cfp. It checks everything FORMAT.md says a reader must check,
writes the dump to stdout only once every check passed, and otherwise exits 1 with a one-line
message and writes nothing.
Needs: cryptography, zstandard, argon2-cffi, blake3.
"""
import argparse, base64, hashlib, hmac, json, os, re, sys, uuid

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

HEADER_LEN = 92
TAG_LEN = 16
NONCE_LEN = 12
RECIPE_ENTRY = 52
TABLE_ENTRY = 44
PACK_HEADER = 40
# Argon2id bounds of FORMAT.md: per stanza, then per stanza holder (manifest or session).
ARGON2_MAX_M_KIB, ARGON2_MAX_P, ARGON2_MAX_COST = 1048576, 16, 4194304
ARGON2_MAX_DERIVATIONS, ARGON2_MAX_TOTAL = 16, 8388608
DIR_NAME = re.compile(r"^[0-9]{8}T[0-9]{6}Z-(.+)$")
UUID_TEXT = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
PACK_TEXT = re.compile(r"^[0-9a-f]{32}$")


def fail(message):
    sys.exit(" ".join(str(message).split()))


# --- primitives ---------------------------------------------------------------------------

def hkdf(ikm, salt, info, length):
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


def key_id(kek):
    return hashlib.sha256(b"coffre/v1/key-id" + kek).digest()[:8].hex()


def be32(b, at):
    return int.from_bytes(b[at:at + 4], "big")


def aead_open(key, nonce, ciphertext, aad, what):
    try:
        return AESGCM(key).decrypt(nonce, ciphertext, aad)
    except InvalidTag:
        fail(f"{what}: tag does not verify")


def b64(obj, name, length, what):
    # Standard base64 with padding, of a fixed length.
    try:
        raw = base64.b64decode(field(obj, name, str, what), validate=True)
    except ValueError:
        fail(f"{what}: {name} is not base64")
    if len(raw) != length:
        fail(f"{what}: {name} is {len(raw)} bytes, not {length}")
    return raw


def zstd_frames(data, what):
    # Every frame of a zstd stream, which must end at a frame's end.
    import zstandard
    out = []
    while data:
        d = zstandard.ZstdDecompressor().decompressobj()
        try:
            out.append(d.decompress(data))
        except zstandard.ZstdError as e:
            fail(f"{what}: bad zstd data: {e}")
        if not d.eof:
            fail(f"{what}: zstd stream ends inside a frame")
        data = d.unused_data
    return b"".join(out)


# --- JSON ---------------------------------------------------------------------------------

def load_json(path, what):
    # I-JSON only: UTF-8, no duplicate members, integers only.
    def members(pairs):
        obj = {}
        for k, v in pairs:
            if k in obj:
                raise ValueError(f"duplicate member {k!r}")
            obj[k] = v
        return obj

    def no_float(text):
        raise ValueError(f"non-integer number {text}")

    try:
        raw = open(path, "rb").read()
    except OSError as e:
        fail(f"{what}: cannot read {path}: {e.strerror}")
    try:
        value = json.loads(raw.decode("utf-8"), object_pairs_hook=members,
                           parse_float=no_float, parse_constant=no_float)
    except ValueError as e:  # UnicodeDecodeError is one
        fail(f"{what} is not valid JSON: {e}")
    if not isinstance(value, dict):
        fail(f"{what} is not a JSON object")
    return value


def field(obj, name, kind, what):
    value = obj.get(name)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        fail(f"{what}: field {name!r} missing or not a {kind.__name__}")
    if kind is int and value < 0:
        fail(f"{what}: field {name!r} is negative")
    return value


def jcs(value):
    # RFC 8785 canonical form of integer-only JSON.
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, int):
        if abs(value) > 2 ** 53 - 1:
            fail("manifest integer out of I-JSON range")
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ",".join(jcs(v) for v in value) + "]"
    names = sorted(value, key=lambda k: k.encode("utf-16-be", "surrogatepass"))
    return "{" + ",".join(jcs(k) + ":" + jcs(value[k]) for k in names) + "}"


def check_mac(body, key, given):
    try:
        text = jcs(body).encode("utf-8")
    except UnicodeEncodeError:
        fail("manifest holds a lone surrogate (not I-JSON)")
    mac = hmac.new(key, text, hashlib.sha256).hexdigest()
    if not isinstance(given, str) or not hmac.compare_digest(mac.encode(), given.encode()):
        fail("manifest mac mismatch")


def check_uuid(text, what):
    # A UUID in its hyphenated lower-case form; returns its 16 bytes.
    if not isinstance(text, str) or not UUID_TEXT.match(text):
        fail(f"{what}: {text!r} is not a lower-case hyphenated UUID")
    return uuid.UUID(text).bytes


# --- keys ---------------------------------------------------------------------------------

def parse_key(raw):
    if len(raw) == 32:
        return raw
    try:
        text = raw.decode().strip()
        if text.startswith("coffre-key-v1:"):
            key = base64.b64decode(text[len("coffre-key-v1:"):], validate=True)
        else:
            key = bytes.fromhex(text) if len(text) == 64 else b""
    except ValueError:
        key = b""
    if len(key) != 32:
        fail("the key file holds no 32-byte key")
    return key


def parse_identity(text):
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    text = text.strip()
    prefix = "coffre-x25519-identity-v1:"
    try:
        secret = base64.b64decode(text[len(prefix):], validate=True) if text.startswith(prefix) else b""
    except ValueError:
        secret = b""
    if len(secret) != 32:
        fail("the identity file holds no coffre-x25519-identity-v1 identity")
    return X25519PrivateKey.from_private_bytes(secret)


def load_secret(args):
    # The one key the command line gives, as (kind, value).
    try:
        if args.key_file:
            return "key", parse_key(open(args.key_file, "rb").read())
        if args.identity_file:
            return "x25519", parse_identity(open(args.identity_file).read())
    except OSError as e:
        fail(f"cannot read the key: {e.strerror}")
    if args.passphrase_env not in os.environ:
        fail(f"environment variable {args.passphrase_env} is not set")
    return "argon2id", os.environ[args.passphrase_env].encode()


def x25519_kek(identity, stanza, what):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
    recipient = identity.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    if stanza.get("key_id") != key_id(recipient):
        return None
    epk = b64(stanza, "epk", 32, what)
    try:
        shared = identity.exchange(X25519PublicKey.from_public_bytes(epk))
    except ValueError:
        shared = bytes(32)  # the library refuses low-order points itself
    if shared == bytes(32):
        fail(f"{what}: x25519 stanza with a low-order point")
    return hkdf(shared, epk + recipient, b"coffre/v1/x25519", 32)


def argon2_cost(stanza):
    # m_kib × t, or None when the stanza asks for more than coffre ever derives.
    m, t, p = (stanza.get(k) for k in ("m_kib", "t", "p"))
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (m, t, p)):
        return None
    if not (t >= 1 and 1 <= p <= ARGON2_MAX_P and 8 * p <= m <= ARGON2_MAX_M_KIB):
        return None
    if m * t > ARGON2_MAX_COST:
        return None
    return m * t


def argon2_kek(passphrase, stanza, what):
    from argon2.low_level import Type, hash_secret_raw
    return hash_secret_raw(passphrase, b64(stanza, "salt", 16, what), time_cost=stanza["t"],
                           memory_cost=stanza["m_kib"], parallelism=stanza["p"], hash_len=32,
                           type=Type.ID, version=0x13)


def open_stanzas(stanzas, owner, secret, what):
    """The DEK wrapped in the first stanza the secret opens; owner is the id in the aad."""
    if not isinstance(stanzas, list) or not all(isinstance(s, dict) for s in stanzas):
        fail(f"{what}: keys is not an array of stanzas")
    kind, value = secret
    aad = b"coffre/v1/wrap" + owner
    mine = [s for s in stanzas if s.get("type") == kind]
    if kind == "argon2id":  # cheapest first, within the work budget
        mine = sorted((s for s in mine if argon2_cost(s) is not None), key=argon2_cost)
    derivations = work = 0
    for stanza in mine:
        if kind == "key":
            kek = value if stanza.get("key_id") == key_id(value) else None
        elif kind == "x25519":
            kek = x25519_kek(value, stanza, what)
        else:
            derivations, work = derivations + 1, work + argon2_cost(stanza)
            if derivations > ARGON2_MAX_DERIVATIONS or work > ARGON2_MAX_TOTAL:
                break
            kek = argon2_kek(value, stanza, what)
            kek = kek if stanza.get("key_id") == key_id(kek) else None
        if kek is None:
            continue
        nonce = bytes(NONCE_LEN) if kind == "x25519" else b64(stanza, "nonce", NONCE_LEN, what)
        try:
            return AESGCM(kek).decrypt(nonce, b64(stanza, "wrapped", 48, what), aad)
        except InvalidTag:
            continue
    fail(f"no key in {what} opens it")


# --- v1 data objects (data.cfr, and v2's recipe.cfr) -------------------------------------

def read_header(data, what):
    """Checks the fixed header fields; returns (header, chunk_log2, backup_id bytes, salt)."""
    h = data[:HEADER_LEN]
    if len(h) < HEADER_LEN or h[0:8] != b"COFFRE1\n" or h[8] != 1 or h[10:12] != b"\0\0":
        fail(f"{what}: bad header")
    if not 16 <= h[9] <= 24:
        fail(f"{what}: bad chunk size")
    return h, h[9], h[12:28], h[28:60]


def check_commitment(h, dek, what):
    if not hmac.compare_digest(hkdf(dek, h[28:60], b"coffre/v1/commit" + h[0:60], 32), h[60:92]):
        fail(f"{what}: commitment mismatch")


def open_chunks(data, h, dek, what):
    """Decrypts the STREAM chunks after the header; returns (payload, chunk count)."""
    okm = hkdf(dek, h[28:60], b"coffre/v1/payload", 39)
    aead, prefix = AESGCM(okm[:32]), okm[32:39]
    stored = (1 << h[9]) + TAG_LEN
    payload, pos, index = bytearray(), HEADER_LEN, 0
    while True:
        chunk = data[pos:pos + stored]
        pos += len(chunk)
        last = pos >= len(data)
        nonce = prefix + index.to_bytes(4, "big") + (b"\x01" if last else b"\x00")
        try:
            payload += aead.decrypt(nonce, chunk, h)
        except InvalidTag:
            fail(f"{what}: chunk {index} does not verify (tampered, reordered or truncated)")
        index += 1
        if last:
            return bytes(payload), index


def decode_v1(backup_dir, manifest, secret):
    backup_id = check_uuid(manifest.get("backup_id"), "manifest backup_id")
    dek = open_stanzas(manifest.get("keys"), backup_id, secret, "this backup's manifest")
    data = read_file(os.path.join(backup_dir, "data.cfr"), "data.cfr")
    if hashlib.sha256(data).hexdigest() != field(manifest, "data_sha256", str, "manifest"):
        fail("data_sha256 mismatch")

    h, chunk_log2, header_id, salt = read_header(data, "data.cfr")
    if header_id != backup_id:
        fail("data object of another backup")
    check_commitment(h, dek, "data.cfr")
    body = {k: v for k, v in manifest.items() if k not in ("keys", "mac")}
    check_mac(body, hkdf(dek, salt, b"coffre/v1/manifest", 32), manifest.get("mac"))
    check_place(backup_dir, manifest)

    payload, chunks = open_chunks(data, h, dek, "data.cfr")
    counts = [(chunks, "chunks"), (len(payload), "payload_bytes"), (len(data), "stored_bytes"),
              (chunk_log2, "chunk_log2")]
    if any(n != field(manifest, name, int, "manifest") for n, name in counts):
        fail("counts differ from the manifest")

    compression = field(manifest, "compression", str, "manifest")
    if compression not in ("zstd", "none"):
        fail(f"unknown compression {compression!r}")
    plain = zstd_frames(payload, "data.cfr") if compression == "zstd" else payload
    if len(plain) != field(manifest, "plaintext_bytes", int, "manifest"):
        fail("plaintext size differs from the manifest")
    return plain


# --- v2 -----------------------------------------------------------------------------------

class Session:
    """An opened session: its DEK, chunk key and dedup secret."""

    def __init__(self, job_dir, sid, secret):
        what = f"session {sid}"
        self.id = check_uuid(sid, "session id")
        doc = load_json(os.path.join(job_dir, "_sessions", sid + ".json"), what)
        if doc.get("format") != "coffre-session/2":
            fail(f"{what}: format is not coffre-session/2")
        if doc.get("session_id") != sid:
            fail(f"{what}: its file holds session {doc.get('session_id')!r}")
        self.job = doc.get("job")
        self.dek = open_stanzas(doc.get("keys"), self.id, secret, what)
        self.k_chunk = hkdf(self.dek, self.id, b"coffre/v2/chunk", 32)
        k_wrap = hkdf(self.dek, self.id, b"coffre/v2/dedup-wrap", 32)
        self.dedup = aead_open(k_wrap, bytes(NONCE_LEN), b64(doc, "dedup", 48, what),
                               b"coffre/v2/dedup" + self.id, f"{what}: dedup")


class Pack:
    """A pack whose header and table were checked: table maps chunk_id to (offset, blob, plain)."""

    def __init__(self, job_dir, pack_hex, k_idx, where):
        self.path = os.path.join(job_dir, "_packs", pack_hex + ".cfp")
        self.id, self.where = bytes.fromhex(pack_hex), f"{where}: pack {pack_hex}"
        try:
            with open(self.path, "rb") as f:
                head = f.read(PACK_HEADER)
                size = f.seek(0, os.SEEK_END)
                f.seek(max(size - 4, 0))
                tlen = be32(f.read(4), 0)
                start = size - 4 - tlen
                if len(head) < PACK_HEADER or start < PACK_HEADER:
                    fail(f"{self.where}: too short for its header and table (truncated?)")
                f.seek(start)
                table = f.read(tlen)
        except OSError as e:
            fail(f"{self.where}: cannot read {self.path}: {e.strerror}")
        if head[0:8] != b"COFFREP2" or head[24:40] != self.id:
            fail(f"{self.where}: bad pack header")
        self.session = head[8:24]
        if tlen < NONCE_LEN + TAG_LEN:
            fail(f"{self.where}: table too short (truncated?)")
        entries = aead_open(k_idx, table[:NONCE_LEN], table[NONCE_LEN:],
                            b"coffre/v2/pack-table" + self.id, f"{self.where}: table")
        self.table = self.parse_table(entries, start)

    def parse_table(self, entries, end):
        # Blobs must tile the pack from its header to its table, each chunk once.
        if len(entries) % TABLE_ENTRY:
            fail(f"{self.where}: table length not a multiple of {TABLE_ENTRY}")
        table = {}
        for at in range(0, len(entries), TABLE_ENTRY):
            e = entries[at:at + TABLE_ENTRY]
            if e[:32] in table:
                fail(f"{self.where}: chunk listed twice in its table")
            table[e[:32]] = (be32(e, 32), be32(e, 36), be32(e, 40))
        pos = PACK_HEADER
        for offset, blob, _ in sorted(table.values()):
            if offset != pos:
                fail(f"{self.where} offset {offset}: table blobs do not tile the pack")
            pos += blob
        if pos != end:
            fail(f"{self.where}: table blobs do not end at the table")
        return table

    def read(self, offset, length):
        with open(self.path, "rb") as f:
            f.seek(offset)
            return f.read(length)


def recipe_entries(recipe):
    # (chunk_id, pack, offset, blob length, plaintext length, session) per 52 bytes.
    return [(recipe[at:at + 32],) + tuple(be32(recipe, at + 32 + 4 * i) for i in range(5))
            for at in range(0, len(recipe), RECIPE_ENTRY)]


def check_lists(manifest, entries, bid):
    """Checks packs and sessions: well-formed, each once, each referenced (sessions[0] always listed)."""
    packs, sessions = manifest.get("packs"), manifest.get("sessions")
    if not isinstance(packs, list) or not all(isinstance(p, str) and PACK_TEXT.match(p) for p in packs):
        fail(f"backup {bid}: packs is not a list of 32-hex-digit pack ids")
    for s in sessions:
        check_uuid(s, f"backup {bid}: sessions")
    if len(set(packs)) != len(packs) or len(set(sessions)) != len(sessions):
        fail(f"backup {bid}: a pack or session is listed twice")
    for _, pack, offset, _, _, session in entries:
        if pack >= len(packs) or session >= len(sessions):
            fail(f"backup {bid}: recipe entry (pack {pack}, offset {offset}) indexes past packs or sessions")
    if {e[1] for e in entries} != set(range(len(packs))):
        fail(f"backup {bid}: packs lists a pack the recipe does not refer to")
    if {e[5] for e in entries} | {0} != set(range(len(sessions))):
        fail(f"backup {bid}: sessions lists a session the recipe does not refer to")
    return packs, sessions


def read_chunk(entry, pack, session, k_id, where):
    """The verified plaintext of one recipe entry."""
    chunk_id, _, offset, blob_len, plain_len, _ = entry
    where = f"{where} offset {offset}"
    if pack.session != session.id:
        fail(f"{where}: the pack's header names another session than the recipe")
    if pack.table.get(chunk_id) != (offset, blob_len, plain_len):
        fail(f"{where}: the pack's table does not list this chunk at this place")
    blob = pack.read(offset, blob_len)
    if len(blob) != blob_len or blob_len < NONCE_LEN + TAG_LEN + 1:
        fail(f"{where}: blob truncated")
    payload = aead_open(session.k_chunk, blob[:NONCE_LEN], blob[NONCE_LEN:],
                        b"coffre/v2/chunk" + session.id + chunk_id, where)
    if payload[0] == 0:
        plain = payload[1:]
    elif payload[0] == 1 and len(payload) > 1:
        plain = zstd_frames(payload[1:], where)
    else:
        fail(f"{where}: bad payload kind {payload[0]} or empty zstd frame")
    if len(plain) != plain_len:
        fail(f"{where}: plaintext length differs from the recipe")
    import blake3
    if not hmac.compare_digest(blake3.blake3(plain, key=k_id).digest(), chunk_id):
        fail(f"{where}: chunk id does not match its plaintext")
    return plain


def decode_v2(backup_dir, manifest, secret):
    bid_text = manifest.get("backup_id")
    bid = check_uuid(bid_text, "manifest backup_id")
    where = f"backup {bid_text}"
    job_dir = os.path.dirname(os.path.abspath(backup_dir))
    sessions = manifest.get("sessions")
    if not isinstance(sessions, list) or not sessions or sessions[0] != bid_text:
        fail(f"{where}: sessions[0] is not the backup's own session")

    # 1. own session, then the mac; 2. the dedup secret.
    own = Session(job_dir, bid_text, secret)
    body = {k: v for k, v in manifest.items() if k != "mac"}
    check_mac(body, hkdf(own.dek, bid, b"coffre/v2/manifest", 32), manifest.get("mac"))
    check_place(backup_dir, manifest)
    if own.job != manifest["job"]:
        fail(f"session {bid_text}: of job {own.job!r}")
    dedup_id = hashlib.sha256(b"coffre/v2/dedup-id" + own.dedup).digest()[:8].hex()
    if dedup_id != field(manifest, "dedup_key_id", str, where):
        fail(f"{where}: dedup_key_id does not match the session's dedup secret")
    k_id = hkdf(own.dedup, b"", b"coffre/v2/chunk-id", 32)
    k_idx = hkdf(own.dedup, b"", b"coffre/v2/index", 32)

    # 3. the recipe, a v1 data object.
    data = read_file(os.path.join(backup_dir, "recipe.cfr"), "recipe.cfr")
    if len(data) != field(manifest, "recipe_bytes", int, where):
        fail(f"{where}: recipe.cfr size differs from recipe_bytes")
    h, chunk_log2, header_id, _ = read_header(data, f"{where}: recipe.cfr")
    if header_id != bid:
        fail(f"{where}: recipe.cfr of another backup")
    if chunk_log2 != 16:
        fail(f"{where}: recipe.cfr chunk_log2 is {chunk_log2}, not 16")
    dek_recipe = hkdf(k_idx, bid, b"coffre/v2/recipe", 32)
    check_commitment(h, dek_recipe, f"{where}: recipe.cfr")
    recipe, _ = open_chunks(data, h, dek_recipe, f"{where}: recipe.cfr")
    if len(recipe) % RECIPE_ENTRY or len(recipe) // RECIPE_ENTRY != field(manifest, "chunks", int, where):
        fail(f"{where}: recipe does not hold the manifest's chunks entries")
    entries = recipe_entries(recipe)
    packs, sessions = check_lists(manifest, entries, bid_text)

    # Every listed session opens with the same dedup secret.
    opened = [own] + [Session(job_dir, s, secret) for s in sessions[1:]]
    for s in opened[1:]:
        if s.job != manifest["job"] or s.dedup != own.dedup:
            fail(f"session {uuid.UUID(bytes=s.id)}: of another job or dedup secret")

    # 4. every chunk, 5. the total.
    loaded, out = {}, []
    for entry in entries:
        pack_hex = packs[entry[1]]
        if pack_hex not in loaded:
            loaded[pack_hex] = Pack(job_dir, pack_hex, k_idx, where)
        out.append(read_chunk(entry, loaded[pack_hex], opened[entry[5]], k_id, f"{where}: pack {pack_hex}"))
    plain = b"".join(out)
    if len(plain) != field(manifest, "plaintext_bytes", int, where):
        fail(f"{where}: plaintext size differs from the manifest")
    return plain


# --- both ---------------------------------------------------------------------------------

def read_file(path, what):
    try:
        return open(path, "rb").read()
    except OSError as e:
        fail(f"cannot read {what}: {e.strerror}")


def check_place(backup_dir, manifest):
    # The directory is {job}/{time}-{backup_id}: checked after the mac, so an edit reads as one.
    path = os.path.abspath(backup_dir)
    name = DIR_NAME.match(os.path.basename(path))
    if not name or name.group(1) != manifest["backup_id"]:
        fail(f"directory {os.path.basename(path)} is not that of backup {manifest['backup_id']}")
    if field(manifest, "job", str, "manifest") != os.path.basename(os.path.dirname(path)):
        fail(f"manifest of job {manifest['job']!r} in another job's directory")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("backup_dir")
    key = p.add_mutually_exclusive_group(required=True)
    key.add_argument("--key-file")
    key.add_argument("--passphrase-env")
    key.add_argument("--identity-file")
    args = p.parse_args()

    secret = load_secret(args)
    manifest = load_json(os.path.join(args.backup_dir, "manifest.json"), "manifest.json")
    kind = manifest.get("format")
    if kind == "coffre-manifest/1":
        plain = decode_v1(args.backup_dir, manifest, secret)
    elif kind == "coffre-manifest/2":
        plain = decode_v2(args.backup_dir, manifest, secret)
    else:
        fail(f"unknown manifest format {kind!r}")
    sys.stdout.buffer.write(plain)
    sys.stdout.buffer.flush()


if __name__ == "__main__":
    try:
        main()
    except (KeyError, TypeError, ValueError, IndexError, OverflowError) as e:  # a malformed field
        fail(f"malformed backup: {type(e).__name__}: {e}")
