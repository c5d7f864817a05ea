"""Encryption at rest: values with key rotation and row binding, and chunked files that survive a crash."""

from __future__ import annotations

import base64
import io
import os
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.crypto import CHUNK_SIZE, ChunkedWriter, Keyring, iter_chunks, read_chunked
from core.errors import ConfigError, DecryptionError

CANARY = "CANARY-7f3a"
SMALL = 1024


def b64(key: bytes) -> str:
    return base64.urlsafe_b64encode(key).rstrip(b"=").decode()


def ring(*ids: str, keys: dict[str, bytes] | None = None) -> Keyring:
    """A keyring whose first id is current; keys default to fixed per-id bytes so rings can share a key."""
    keys = keys or {}
    return Keyring({kid: keys.get(kid, kid.encode().ljust(32, b"\x07")) for kid in ids}, ids[0])


@pytest.fixture
def kr() -> Keyring:
    return Keyring.from_spec(Keyring.generate_spec("k1"))


def flip(data: bytes, index: int) -> bytes:
    out = bytearray(data)
    out[index] ^= 0x01
    return bytes(out)


# --- values -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["héllo wörld ✓ 日本語 🎉", "", "x" * 100_000], ids=["unicode", "empty", "100kb"])
def test_text_round_trip(kr: Keyring, text: str) -> None:
    token = kr.encrypt_text(text, aad="chat:1")
    assert token.isascii()
    assert token.startswith("v1.k1.")
    assert kr.decrypt_text(token, aad="chat:1") == text


def test_binary_round_trip(kr: Keyring) -> None:
    data = os.urandom(1000)
    blob = kr.encrypt(data, aad=b"file:9")
    assert blob.startswith(b"v1\x02k1")
    assert kr.decrypt(blob, aad=b"file:9") == data


def test_same_text_encrypts_differently_each_time(kr: Keyring) -> None:
    assert kr.encrypt_text("same") != kr.encrypt_text("same")
    assert kr.encrypt(b"same") != kr.encrypt(b"same")


def test_ciphertext_does_not_contain_plaintext(kr: Keyring) -> None:
    text = f"note {CANARY} note " * 20
    token = kr.encrypt_text(text)
    assert CANARY not in token
    assert CANARY.encode() not in kr.encrypt(text.encode())
    assert CANARY.encode() not in base64.urlsafe_b64decode(token.split(".")[2] + "==")


def test_rotation() -> None:
    old = ring("k1")
    old_token = old.encrypt_text("before rotation", aad="chat:5")
    old_blob = old.encrypt(b"before rotation", aad=b"chat:5")

    rotated = ring("k2", "k1")
    assert rotated.current_id == "k2"
    assert rotated.decrypt_text(old_token, aad="chat:5") == "before rotation"
    assert rotated.decrypt(old_blob, aad=b"chat:5") == b"before rotation"
    new_token = rotated.encrypt_text("after rotation")
    assert rotated.key_id_of(old_token) == "k1"
    assert rotated.key_id_of(new_token) == "k2"
    assert new_token.startswith("v1.k2.")

    retired = ring("k2")
    assert retired.decrypt_text(new_token) == "after rotation"
    assert retired.key_id_of(old_token) == "k1"
    with pytest.raises(DecryptionError) as info:
        retired.decrypt_text(old_token, aad="chat:5")
    assert info.value.code == "decryption_failed"
    with pytest.raises(DecryptionError):
        retired.decrypt(old_blob, aad=b"chat:5")


def test_wrong_key_with_same_id() -> None:
    a = ring("k1", keys={"k1": b"\x01" * 32})
    b = ring("k1", keys={"k1": b"\x02" * 32})
    with pytest.raises(DecryptionError):
        b.decrypt_text(a.encrypt_text("secret"))
    with pytest.raises(DecryptionError):
        b.decrypt(a.encrypt(b"secret"))


# blob layout for kid "k1": b"v1" (0-1) | 0x02 (2) | b"k1" (3-4) | nonce (5-16) | ciphertext (17-) | tag (last 16)
@pytest.mark.parametrize(
    "position",
    [0, 1, 2, 3, 4, 5, 16, 17, -17, -1],
    ids=["magic0", "magic1", "kidlen", "kid0", "kid1", "nonce0", "nonce11", "ct0", "ct-last", "tag-last"],
)
def test_flipping_a_byte_of_the_blob_is_detected(position: int) -> None:
    keys = ring("k1", "k0")
    blob = keys.encrypt(b"some plaintext", aad=b"chat:1")
    with pytest.raises(DecryptionError):
        keys.decrypt(flip(blob, position), aad=b"chat:1")


def test_flipping_any_byte_of_the_blob_is_detected() -> None:
    keys = ring("k1", "k0")
    blob = keys.encrypt(b"hi", aad=b"chat:1")
    for position in range(len(blob)):
        with pytest.raises(DecryptionError):
            keys.decrypt(flip(blob, position), aad=b"chat:1")


def test_swapping_the_key_id_is_detected() -> None:
    shared = b"\x09" * 32
    keys = ring("k1", "k2", keys={"k1": shared, "k2": shared})
    blob = keys.encrypt(b"payload")
    with pytest.raises(DecryptionError):
        keys.decrypt(blob.replace(b"k1", b"k2", 1))
    token = keys.encrypt_text("payload")
    with pytest.raises(DecryptionError):
        keys.decrypt_text(token.replace("v1.k1.", "v1.k2.", 1))


def test_tampered_text_token_is_detected(kr: Keyring) -> None:
    token = kr.encrypt_text("payload")
    body = token.split(".")[2]
    for i in (0, len(body) // 2, len(body) - 2):
        replacement = "A" if body[i] != "A" else "B"
        with pytest.raises(DecryptionError):
            kr.decrypt_text(token[: 6 + i] + replacement + token[6 + i + 1 :])


def test_value_bound_to_its_row(kr: Keyring) -> None:
    token = kr.encrypt_text("message body", aad="chat:123")
    with pytest.raises(DecryptionError):
        kr.decrypt_text(token, aad="chat:124")
    with pytest.raises(DecryptionError):
        kr.decrypt_text(token)
    with pytest.raises(DecryptionError):
        kr.decrypt(kr.encrypt(b"x", aad=b"chat:123"), aad=b"chat:124")


@pytest.mark.parametrize(
    "token",
    ["", "v1.", "garbage", "v2.k1.xxx", "v1.k1.", "v1.k1", "v1..AAAA", "v1.k1.!!!!"]
    + ["v1.k1.AAAA", "v1.k1.AAAA.x", "v1.k1.é", "v1.k 1." + "A" * 40, "v1.k1." + "A" * 41],
)
def test_malformed_tokens(kr: Keyring, token: str) -> None:
    with pytest.raises(DecryptionError):
        kr.decrypt_text(token)


def test_key_id_of_malformed_token(kr: Keyring) -> None:
    with pytest.raises(DecryptionError):
        kr.key_id_of("garbage")


def test_truncated_values(kr: Keyring) -> None:
    blob = kr.encrypt(b"some plaintext")
    for cut in range(len(blob)):
        with pytest.raises(DecryptionError):
            kr.decrypt(blob[:cut])
    token = kr.encrypt_text("some plaintext")
    for cut in (1, 5, 8, len(token) - 1):
        with pytest.raises(DecryptionError):
            kr.decrypt_text(token[:cut])


def test_malformed_blobs(kr: Keyring) -> None:
    for blob in (b"", b"v1", b"v2\x02k1" + b"\x00" * 40, b"v1\x00" + b"\x00" * 40, b"v1\x02\xff\xfe" + b"\x00" * 40):
        with pytest.raises(DecryptionError):
            kr.decrypt(blob)


# --- key spec -----------------------------------------------------------------------------------------


def test_from_spec_good() -> None:
    k1, k2 = os.urandom(32), os.urandom(32)
    keys = Keyring.from_spec(f"k2:{b64(k2)}, k1:{b64(k1)}=")
    assert keys.current_id == "k2"
    assert keys.key_id_of(keys.encrypt_text("x")) == "k2"
    assert keys.decrypt_text(Keyring({"k1": k1}, "k1").encrypt_text("z")) == "z"


def test_generate_spec() -> None:
    spec = Keyring.generate_spec("main-2025")
    assert spec.startswith("main-2025:")
    assert spec != Keyring.generate_spec("main-2025")
    keys = Keyring.from_spec(spec)
    assert keys.current_id == "main-2025"
    assert keys.decrypt_text(keys.encrypt_text("ok")) == "ok"
    assert Keyring.from_spec(Keyring.generate_spec()).current_id == "k1"
    with pytest.raises(ConfigError):
        Keyring.generate_spec("bad id")


SECRET = b64(b"\xa5" * 32)


@pytest.mark.parametrize(
    ("spec", "material"),
    [
        (f"k1:{SECRET[:-3]}$%^", SECRET[:-3]),
        (f"k1:{SECRET[:20]}", SECRET[:20]),
        (f"k1:+{SECRET[1:]}", SECRET[1:]),
        (f"k1:{b64(b'short-key-16byte')}", b64(b"short-key-16byte")),
        (f"k1:{SECRET}AAAA", SECRET),
        ("", None),
        ("   ", None),
        (f"k1:{SECRET},", SECRET),
        (f"k1:{SECRET},k1:{SECRET}", SECRET),
        (f"k 1:{SECRET}", SECRET),
        (f"k.1:{SECRET}", SECRET),
        (f"{'k' * 33}:{SECRET}", SECRET),
        (f":{SECRET}", SECRET),
        (SECRET, SECRET),
        ("k1:", None),
    ],
    ids=[
        "bad-base64",
        "truncated-base64",
        "standard-base64-alphabet",
        "wrong-length",
        "too-long",
        "empty",
        "blank",
        "trailing-comma",
        "duplicate-id",
        "space-in-id",
        "dot-in-id",
        "id-too-long",
        "missing-id",
        "missing-colon",
        "missing-key",
    ],
)
def test_from_spec_rejects_bad_specs_without_leaking_keys(spec: str, material: str | None) -> None:
    with pytest.raises(ConfigError) as info:
        Keyring.from_spec(spec)
    message = str(info.value)
    assert message
    if material:
        assert material not in message
        assert material[:12] not in message
    assert info.value.__cause__ is None


@pytest.mark.parametrize(
    ("keys", "current"),
    [
        ({"k1": b"\x00" * 32}, "k2"),
        ({"k1": b"\x00" * 31}, "k1"),
        ({"k1": b"\x00" * 33}, "k1"),
        ({"k/1": b"\x00" * 32}, "k/1"),
        ({"": b"\x00" * 32}, ""),
        ({}, "k1"),
    ],
    ids=["current-missing", "short-key", "long-key", "bad-id", "empty-id", "no-keys"],
)
def test_keyring_rejects_bad_config(keys: dict[str, bytes], current: str) -> None:
    with pytest.raises(ConfigError):
        Keyring(keys, current)


def test_repr_does_not_show_keys() -> None:
    key = b"\x5a" * 32
    text = repr(Keyring({"k1": key}, "k1"))
    assert "k1" in text
    assert b64(key)[:12] not in text and key.hex()[:12] not in text and "ZZZZ" not in text


# --- chunked files ------------------------------------------------------------------------------------


def write_file(keys: Keyring, data: bytes, *, aad: bytes = b"", chunk_size: int = SMALL, piece: int = 1000) -> bytes:
    out = io.BytesIO()
    with ChunkedWriter(keys, out, aad=aad, chunk_size=chunk_size) as writer:
        for i in range(0, len(data), piece):
            writer.write(data[i : i + piece])
    return out.getvalue()


def split_file(raw: bytes) -> tuple[bytes, list[bytes]]:
    """(header, [length-prefixed chunk, ...]) parsed independently of the reader."""
    header_len = 4 + 1 + 1 + raw[5] + 8
    chunks, pos = [], header_len
    while pos < len(raw):
        (word,) = struct.unpack(">I", raw[pos : pos + 4])
        end = pos + 4 + (word & 0x7FFF_FFFF)
        chunks.append(raw[pos:end])
        pos = end
    return raw[:header_len], chunks


def read(keys: Keyring, raw: bytes, aad: bytes = b""):
    return read_chunked(keys, io.BytesIO(raw), aad=aad)


@pytest.mark.parametrize("size", [0, 1, SMALL - 1, SMALL, 3 * SMALL + 17])
def test_chunked_round_trip(kr: Keyring, size: int) -> None:
    data = os.urandom(size)
    raw = write_file(kr, data, aad=b"rec:1")
    result = read(kr, raw, aad=b"rec:1")
    assert result.data == data
    assert result.complete is True
    assert result.chunks == size // SMALL + 1
    assert b"".join(iter_chunks(kr, io.BytesIO(raw), aad=b"rec:1")) == data


def test_chunked_round_trip_default_chunk_size(kr: Keyring) -> None:
    data = os.urandom(2 * CHUNK_SIZE + 5)
    out = io.BytesIO()
    with ChunkedWriter(kr, out) as writer:
        writer.write(data)
    _, chunks = split_file(out.getvalue())
    assert len(chunks) == 3
    assert len(chunks[0]) == 4 + CHUNK_SIZE + 16
    result = read(kr, out.getvalue())
    assert (result.data, result.complete, result.chunks) == (data, True, 3)
    assert [len(c) for c in iter_chunks(kr, io.BytesIO(out.getvalue()))] == [CHUNK_SIZE, CHUNK_SIZE, 5]


def test_chunked_file_hides_plaintext(kr: Keyring) -> None:
    raw = write_file(kr, (CANARY * 500).encode())
    assert CANARY.encode() not in raw
    assert raw.startswith(b"TRCE\x01\x02k1")


def test_chunked_old_key_still_reads_after_rotation() -> None:
    raw = write_file(ring("k1"), b"old recording" * 200)
    assert read(ring("k2", "k1"), raw).data == b"old recording" * 200
    with pytest.raises(DecryptionError):
        read(ring("k2"), raw)


def test_close_is_idempotent_and_write_after_close_fails(kr: Keyring) -> None:
    out = io.BytesIO()
    writer = ChunkedWriter(kr, out, chunk_size=SMALL)
    writer.write(b"abc")
    writer.close()
    size = len(out.getvalue())
    writer.close()
    assert len(out.getvalue()) == size
    with pytest.raises(ValueError):
        writer.write(b"more")
    assert read(kr, out.getvalue()).data == b"abc"


def test_cut_at_every_chunk_boundary(kr: Keyring) -> None:
    data = os.urandom(3 * SMALL + 17)
    raw = write_file(kr, data)
    header, chunks = split_file(raw)
    assert len(chunks) == 4
    for whole in range(len(chunks)):
        cut = header + b"".join(chunks[:whole])
        result = read(kr, cut)
        assert result.data == data[: whole * SMALL]
        assert result.complete is False
        assert result.chunks == whole
        assert b"".join(iter_chunks(kr, io.BytesIO(cut))) == data[: whole * SMALL]


def test_cut_in_the_middle_of_a_chunk(kr: Keyring) -> None:
    data = os.urandom(3 * SMALL + 17)
    raw = write_file(kr, data)
    header, chunks = split_file(raw)
    for whole in range(len(chunks)):
        before = header + b"".join(chunks[:whole])
        for extra in (1, 3, 4, 5, len(chunks[whole]) // 2, len(chunks[whole]) - 1):
            result = read(kr, before + chunks[whole][:extra])
            assert result.data == data[: whole * SMALL]
            assert result.complete is False


def test_removing_the_final_chunk_reads_as_incomplete(kr: Keyring) -> None:
    data = os.urandom(2 * SMALL + 100)
    header, chunks = split_file(write_file(kr, data))
    result = read(kr, header + b"".join(chunks[:-1]))
    assert result.complete is False
    assert result.data == data[: 2 * SMALL]


def test_empty_final_chunk_cannot_be_dropped_unnoticed(kr: Keyring) -> None:
    data = os.urandom(2 * SMALL)
    header, chunks = split_file(write_file(kr, data))
    assert len(chunks) == 3
    result = read(kr, header + b"".join(chunks[:-1]))
    assert result.data == data
    assert result.complete is False


def test_flush_chunk_makes_data_durable(kr: Keyring) -> None:
    out = io.BytesIO()
    writer = ChunkedWriter(kr, out, chunk_size=SMALL)
    writer.write(b"first words")
    writer.flush_chunk()
    writer.flush_chunk()
    snapshot = out.getvalue()
    result = read(kr, snapshot)
    assert (result.data, result.complete, result.chunks) == (b"first words", False, 1)

    writer.write(b" and more")
    assert read(kr, out.getvalue()).data == b"first words"
    writer.close()
    result = read(kr, out.getvalue())
    assert (result.data, result.complete) == (b"first words and more", True)


def test_header_is_written_immediately(kr: Keyring) -> None:
    out = io.BytesIO()
    ChunkedWriter(kr, out)
    result = read(kr, out.getvalue())
    assert (result.data, result.complete, result.chunks) == (b"", False, 0)


def chunked_fixture(kr: Keyring) -> tuple[bytes, list[bytes]]:
    return split_file(write_file(kr, os.urandom(4 * SMALL + 50), aad=b"rec:7"))


def assert_rejected(kr: Keyring, raw: bytes, aad: bytes = b"rec:7") -> None:
    with pytest.raises(DecryptionError):
        read(kr, raw, aad=aad)
    with pytest.raises(DecryptionError):
        list(iter_chunks(kr, io.BytesIO(raw), aad=aad))


def test_swapping_two_middle_chunks(kr: Keyring) -> None:
    header, c = chunked_fixture(kr)
    assert_rejected(kr, header + b"".join([c[0], c[2], c[1], *c[3:]]))


def test_duplicating_a_chunk(kr: Keyring) -> None:
    header, c = chunked_fixture(kr)
    assert_rejected(kr, header + b"".join([c[0], c[1], c[1], *c[2:]]))
    assert_rejected(kr, header + b"".join(c) + c[-1])


def test_removing_a_middle_chunk(kr: Keyring) -> None:
    header, c = chunked_fixture(kr)
    assert_rejected(kr, header + b"".join([c[0], *c[2:]]))


def test_chunks_from_another_file(kr: Keyring) -> None:
    header, c = chunked_fixture(kr)
    _, other = chunked_fixture(kr)
    assert_rejected(kr, header + b"".join([c[0], other[1], *c[2:]]))


@pytest.mark.parametrize("where", [3, 4, 20, -1], ids=["length-low", "ct-first", "ct-middle", "tag-last"])
def test_flipping_a_byte_in_a_chunk(kr: Keyring, where: int) -> None:
    header, c = chunked_fixture(kr)
    assert_rejected(kr, header + c[0] + flip(c[1], where) + b"".join(c[2:]))


def test_flipping_the_final_flag(kr: Keyring) -> None:
    header, c = chunked_fixture(kr)
    promoted = bytearray(c[1])
    promoted[0] |= 0x80
    assert_rejected(kr, header + c[0] + bytes(promoted))
    demoted = bytearray(c[-1])
    demoted[0] &= 0x7F
    assert_rejected(kr, header + b"".join(c[:-1]) + bytes(demoted))


@pytest.mark.parametrize("position", [0, 4, 5, 6, 7, 8], ids=["magic", "version", "kidlen", "kid0", "kid1", "prefix"])
def test_flipping_a_header_byte(kr: Keyring, position: int) -> None:
    header, c = chunked_fixture(kr)
    assert_rejected(kr, flip(header, position) + b"".join(c))


@pytest.mark.parametrize("raw", [b"", b"TRC", b"TRCE\x01", b"TRCE\x01\x02k1\x00\x00", b"TRCE\x02\x02k1" + bytes(8)])
def test_bad_header(kr: Keyring, raw: bytes) -> None:
    assert_rejected(kr, raw, aad=b"")


@pytest.mark.parametrize("extra", [b"\x00", b"junk", bytes(40)])
def test_data_after_the_final_chunk(kr: Keyring, extra: bytes) -> None:
    header, c = chunked_fixture(kr)
    assert_rejected(kr, header + b"".join(c) + extra)


def test_chunked_wrong_aad(kr: Keyring) -> None:
    header, c = chunked_fixture(kr)
    assert_rejected(kr, header + b"".join(c), aad=b"rec:8")


def test_chunked_wrong_key(kr: Keyring) -> None:
    header, c = chunked_fixture(kr)
    assert_rejected(Keyring.from_spec(Keyring.generate_spec("k1")), header + b"".join(c))
    assert_rejected(Keyring.from_spec(Keyring.generate_spec("k9")), header + b"".join(c))


def test_iter_chunks_yields_valid_chunks_before_the_tampered_one(kr: Keyring) -> None:
    header, c = chunked_fixture(kr)
    chunks = iter_chunks(kr, io.BytesIO(header + c[0] + flip(c[1], 30) + b"".join(c[2:])), aad=b"rec:7")
    assert len(next(chunks)) == SMALL
    with pytest.raises(DecryptionError):
        next(chunks)


PROPERTY_KEYS = ring("k1")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.binary(max_size=3000),
    cuts=st.lists(st.integers(min_value=0, max_value=3000), max_size=12),
    chunk_size=st.integers(min_value=1, max_value=700),
    flushes=st.booleans(),
)
def test_property_what_is_written_is_read(data: bytes, cuts: list[int], chunk_size: int, flushes: bool) -> None:
    points = sorted({0, len(data), *(c for c in cuts if c <= len(data))})
    out = io.BytesIO()
    with ChunkedWriter(PROPERTY_KEYS, out, aad=b"p", chunk_size=chunk_size) as writer:
        for start, end in zip(points, points[1:]):
            writer.write(data[start:end])
            if flushes:
                writer.flush_chunk()
    result = read_chunked(PROPERTY_KEYS, io.BytesIO(out.getvalue()), aad=b"p")
    assert result.data == data
    assert result.complete is True
    assert b"".join(iter_chunks(PROPERTY_KEYS, io.BytesIO(out.getvalue()), aad=b"p")) == data
