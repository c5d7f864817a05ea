"""Encryption at rest: AES-256-GCM with key ids, so keys can be rotated without re-encrypting everything at once.

Values (`Keyring.encrypt` / `encrypt_text`):
    binary  b"v1" | len(kid) (1 byte) | kid | nonce (12 random bytes) | ciphertext+tag
    text    "v1.<kid>.<base64url(nonce | ciphertext+tag), unpadded>"
    The associated data is the binary header (b"v1" | len(kid) | kid) followed by the caller's `aad`,
    so the version and key id are authenticated and a value only decrypts under the `aad` it was written with.

Chunked files (`ChunkedWriter` / `read_chunked` / `iter_chunks`):
    header  b"TRCE" | 0x01 | len(kid) (1 byte) | kid | nonce prefix (8 random bytes)
    chunk   length (4 bytes big-endian; top bit = FINAL flag, low 31 bits = ciphertext length) | ciphertext+tag
    Chunk n uses nonce = prefix | n (4 bytes big-endian, from 0) and associated data
    header | n (4 bytes) | final flag (1 byte, 1 or 0) | caller's aad.
    The flag is authenticated, so chunks cannot be reordered, dropped, duplicated or promoted to FINAL;
    a file without its FINAL chunk reads as incomplete.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from core.errors import ConfigError, DecryptionError

__all__ = [
    "CHUNK_SIZE",
    "ChunkedReadResult",
    "ChunkedWriter",
    "Keyring",
    "iter_chunks",
    "read_chunked",
]

CHUNK_SIZE = 64 * 1024

_KEY_BYTES = 32
_NONCE_BYTES = 12
_TAG_BYTES = 16
_KEY_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,32}")
_B64URL_RE = re.compile(r"[A-Za-z0-9_-]*={0,2}")

_VALUE_MAGIC = b"v1"
_TEXT_PREFIX = "v1"

_FILE_MAGIC = b"TRCE"
_FILE_VERSION = 1
_PREFIX_BYTES = 8
_FINAL_BIT = 0x8000_0000
_LENGTH_MASK = 0x7FFF_FFFF
_MAX_CHUNKS = 1 << 32
_READ_PIECE = 1 << 20


def _valid_key_id(key_id: object) -> bool:
    return isinstance(key_id, str) and _KEY_ID_RE.fullmatch(key_id) is not None


def _b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    """Strict base64url (padding optional); ValueError unless `text` is the canonical encoding of its bytes."""
    if not _B64URL_RE.fullmatch(text):
        raise ValueError("not base64url")
    bare = text.rstrip("=")
    try:
        data = base64.b64decode(bare + "=" * (-len(bare) % 4), altchars=b"-_", validate=True)
    except binascii.Error:
        raise ValueError("not base64url") from None
    if _b64url_encode(data) != bare:
        raise ValueError("not canonical base64url")
    return data


def _value_header(key_id: str) -> bytes:
    kid = key_id.encode("ascii")
    return _VALUE_MAGIC + bytes([len(kid)]) + kid


class Keyring:
    """Named 256-bit keys; `current` encrypts, every key decrypts (rotation)."""

    def __init__(self, keys: dict[str, bytes], current: str) -> None:
        if not keys:
            raise ConfigError("keyring has no keys")
        aeads: dict[str, AESGCM] = {}
        for key_id, key in keys.items():
            if not _valid_key_id(key_id):
                raise ConfigError("key id must match [A-Za-z0-9_-]{1,32}")
            if not isinstance(key, (bytes, bytearray)) or len(key) != _KEY_BYTES:
                raise ConfigError(f"key {key_id!r} must be exactly {_KEY_BYTES} bytes")
            aeads[key_id] = AESGCM(bytes(key))
        if current not in aeads:
            raise ConfigError(f"current key id {current!r} is not in the keyring")
        self._aeads = aeads
        self._current = current

    def __repr__(self) -> str:
        return f"Keyring(current={self._current!r}, key_ids={sorted(self._aeads)!r})"

    @classmethod
    def from_spec(cls, spec: str) -> Keyring:
        """Parse "kid1:BASE64URL,kid2:BASE64URL"; the first entry is the current key. ConfigError if malformed."""
        if not isinstance(spec, str) or not spec.strip():
            raise ConfigError("encryption key spec is empty; expected 'kid:BASE64URL[,kid:BASE64URL...]'")
        keys: dict[str, bytes] = {}
        current = ""
        for position, entry in enumerate(spec.split(","), start=1):
            where = f"encryption key spec entry {position}"
            key_id, sep, material = (part.strip() for part in entry.partition(":"))
            if not sep:
                raise ConfigError(f"{where} is not of the form 'kid:BASE64URL'")
            if not _valid_key_id(key_id):
                raise ConfigError(f"{where}: key id must match [A-Za-z0-9_-]{{1,32}}")
            if key_id in keys:
                raise ConfigError(f"{where}: duplicate key id {key_id!r}")
            try:
                key = _b64url_decode(material)
            except ValueError:
                raise ConfigError(f"{where} (key id {key_id!r}): key is not valid base64url") from None
            if len(key) != _KEY_BYTES:
                raise ConfigError(
                    f"{where} (key id {key_id!r}): key must decode to {_KEY_BYTES} bytes, got {len(key)}"
                )
            keys[key_id] = key
            if position == 1:
                current = key_id
        return cls(keys, current)

    @staticmethod
    def generate_spec(key_id: str = "k1") -> str:
        """A fresh one-key spec for `from_spec`, with a random 256-bit key."""
        if not _valid_key_id(key_id):
            raise ConfigError("key id must match [A-Za-z0-9_-]{1,32}")
        return f"{key_id}:{_b64url_encode(os.urandom(_KEY_BYTES))}"

    @property
    def current_id(self) -> str:
        """The id of the key that new values are encrypted with."""
        return self._current

    def _aead(self, key_id: str) -> AESGCM:
        aead = self._aeads.get(key_id)
        if aead is None:
            raise DecryptionError(f"unknown encryption key id {key_id!r}")
        return aead

    def encrypt(self, plaintext: bytes, aad: bytes = b"") -> bytes:
        """Encrypt with the current key; the result decrypts only with the same `aad`."""
        header = _value_header(self._current)
        nonce = os.urandom(_NONCE_BYTES)
        return header + nonce + self._aeads[self._current].encrypt(nonce, bytes(plaintext), header + bytes(aad))

    def decrypt(self, blob: bytes, aad: bytes = b"") -> bytes:
        """Inverse of `encrypt`; DecryptionError on an unknown key, a wrong key or `aad`, tampering or truncation."""
        blob = bytes(blob)
        if len(blob) < 3 or blob[:2] != _VALUE_MAGIC:
            raise DecryptionError("malformed ciphertext")
        kid_end = 3 + blob[2]
        try:
            key_id = blob[3:kid_end].decode("ascii")
        except UnicodeDecodeError:
            raise DecryptionError("malformed ciphertext") from None
        if not _valid_key_id(key_id) or len(blob) < kid_end + _NONCE_BYTES + _TAG_BYTES:
            raise DecryptionError("malformed ciphertext")
        aead = self._aead(key_id)
        header = blob[:kid_end]
        nonce = blob[kid_end : kid_end + _NONCE_BYTES]
        try:
            return aead.decrypt(nonce, blob[kid_end + _NONCE_BYTES :], header + bytes(aad))
        except InvalidTag:
            raise DecryptionError("ciphertext failed authentication") from None

    def encrypt_text(self, text: str, aad: str = "") -> str:
        """Encrypt a string to an ASCII token "v1.<kid>.<base64url>" for a TEXT column."""
        blob = self.encrypt(text.encode("utf-8"), aad.encode("utf-8"))
        body = blob[len(_value_header(self._current)) :]
        return f"{_TEXT_PREFIX}.{self._current}.{_b64url_encode(body)}"

    def decrypt_text(self, token: str, aad: str = "") -> str:
        """Inverse of `encrypt_text`; DecryptionError on any problem, including a malformed token."""
        key_id, body = self._parse_token(token)
        plaintext = self.decrypt(_value_header(key_id) + body, aad.encode("utf-8"))
        try:
            return plaintext.decode("utf-8")
        except UnicodeDecodeError:
            raise DecryptionError("decrypted value is not UTF-8") from None

    def key_id_of(self, token: str) -> str:
        """The id of the key that encrypted `token` (which need not be in this keyring); for re-encryption jobs."""
        return self._parse_token(token)[0]

    @staticmethod
    def _parse_token(token: str) -> tuple[str, bytes]:
        if not isinstance(token, str):
            raise DecryptionError("malformed encrypted token")
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != _TEXT_PREFIX or not _valid_key_id(parts[1]):
            raise DecryptionError("malformed encrypted token")
        try:
            body = _b64url_decode(parts[2])
        except ValueError:
            raise DecryptionError("malformed encrypted token") from None
        if len(body) < _NONCE_BYTES + _TAG_BYTES:
            raise DecryptionError("malformed encrypted token")
        return parts[1], body


def _chunk_nonce_and_aad(header: bytes, prefix: bytes, counter: int, final: bool, aad: bytes) -> tuple[bytes, bytes]:
    index = struct.pack(">I", counter)
    return prefix + index, header + index + (b"\x01" if final else b"\x00") + aad


class ChunkedWriter:
    """Encrypts a byte stream into a binary file object in independently authenticated chunks."""

    def __init__(self, keyring: Keyring, fileobj: BinaryIO, aad: bytes = b"", chunk_size: int = CHUNK_SIZE) -> None:
        if not 1 <= chunk_size <= _LENGTH_MASK - _TAG_BYTES:
            raise ValueError(f"chunk_size must be between 1 and {_LENGTH_MASK - _TAG_BYTES}")
        key_id = keyring.current_id
        kid = key_id.encode("ascii")
        self._aead = keyring._aead(key_id)
        self._prefix = os.urandom(_PREFIX_BYTES)
        self._header = _FILE_MAGIC + bytes([_FILE_VERSION, len(kid)]) + kid + self._prefix
        self._aad = bytes(aad)
        self._chunk_size = chunk_size
        self._file = fileobj
        self._buffer = bytearray()
        self._counter = 0
        self._closed = False
        fileobj.write(self._header)

    def __enter__(self) -> ChunkedWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _emit(self, plaintext: bytes, final: bool) -> None:
        if self._counter >= _MAX_CHUNKS:
            raise OverflowError("too many chunks for one file")
        nonce, ad = _chunk_nonce_and_aad(self._header, self._prefix, self._counter, final, self._aad)
        ciphertext = self._aead.encrypt(nonce, plaintext, ad)
        self._file.write(struct.pack(">I", len(ciphertext) | (_FINAL_BIT if final else 0)) + ciphertext)
        self._counter += 1

    def write(self, data: bytes) -> None:
        """Buffer `data`, writing out every full chunk."""
        if self._closed:
            raise ValueError("write to a closed ChunkedWriter")
        self._buffer += data
        size = self._chunk_size
        if len(self._buffer) < size:
            return
        view = memoryview(self._buffer)
        start = 0
        try:
            while len(self._buffer) - start >= size:
                self._emit(bytes(view[start : start + size]), final=False)
                start += size
        finally:
            view.release()
            del self._buffer[:start]

    def flush_chunk(self) -> None:
        """Write whatever is buffered as a non-final chunk now and flush the file object; no-op when empty."""
        if self._closed:
            raise ValueError("flush of a closed ChunkedWriter")
        if not self._buffer:
            return
        self._emit(bytes(self._buffer), final=False)
        self._buffer.clear()
        self._file.flush()

    def close(self) -> None:
        """Write the buffered rest as the FINAL chunk (possibly empty) and flush; idempotent."""
        if self._closed:
            return
        self._emit(bytes(self._buffer), final=True)
        self._buffer.clear()
        self._closed = True
        self._file.flush()


@dataclass
class ChunkedReadResult:
    """Plaintext of a chunked file; `complete` is True only if its FINAL chunk was read and nothing follows it."""

    data: bytes
    complete: bool
    chunks: int


def _read_up_to(fileobj: BinaryIO, n: int) -> bytes:
    """Read `n` bytes, fewer only at end of file; memory grows with the bytes actually present, not with `n`."""
    pieces: list[bytes] = []
    remaining = n
    while remaining > 0:
        piece = fileobj.read(min(remaining, _READ_PIECE))
        if not piece:
            break
        pieces.append(piece)
        remaining -= len(piece)
    return b"".join(pieces)


def _decrypt_chunks(keyring: Keyring, fileobj: BinaryIO, aad: bytes) -> Iterator[tuple[bytes, bool]]:
    """Yield (plaintext, final) per whole chunk; stop quietly at a truncated tail."""
    fixed = _read_up_to(fileobj, len(_FILE_MAGIC) + 2)
    if len(fixed) < len(_FILE_MAGIC) + 2 or fixed[:4] != _FILE_MAGIC or fixed[4] != _FILE_VERSION:
        raise DecryptionError("not an encrypted chunked file")
    kid = _read_up_to(fileobj, fixed[5])
    prefix = _read_up_to(fileobj, _PREFIX_BYTES)
    try:
        key_id = kid.decode("ascii")
    except UnicodeDecodeError:
        raise DecryptionError("not an encrypted chunked file") from None
    if not _valid_key_id(key_id) or len(prefix) != _PREFIX_BYTES:
        raise DecryptionError("not an encrypted chunked file")
    aead = keyring._aead(key_id)
    header = fixed + kid + prefix
    aad = bytes(aad)
    counter = 0
    while True:
        length_field = _read_up_to(fileobj, 4)
        if len(length_field) < 4:
            return
        (word,) = struct.unpack(">I", length_field)
        final = bool(word & _FINAL_BIT)
        length = word & _LENGTH_MASK
        ciphertext = _read_up_to(fileobj, length)
        if len(ciphertext) < length:
            return
        if counter >= _MAX_CHUNKS:
            raise DecryptionError("too many chunks")
        nonce, ad = _chunk_nonce_and_aad(header, prefix, counter, final, aad)
        try:
            plaintext = aead.decrypt(nonce, ciphertext, ad)
        except InvalidTag:
            raise DecryptionError(f"chunk {counter} failed authentication") from None
        counter += 1
        if final and fileobj.read(1):
            raise DecryptionError("data after the final chunk")
        yield plaintext, final
        if final:
            return


def read_chunked(keyring: Keyring, fileobj: BinaryIO, aad: bytes = b"") -> ChunkedReadResult:
    """Decrypt a whole chunked file; a truncated file gives its whole chunks with complete=False."""
    parts: list[bytes] = []
    complete = False
    for plaintext, final in _decrypt_chunks(keyring, fileobj, aad):
        parts.append(plaintext)
        complete = final
    return ChunkedReadResult(data=b"".join(parts), complete=complete, chunks=len(parts))


def iter_chunks(keyring: Keyring, fileobj: BinaryIO, aad: bytes = b"") -> Iterator[bytes]:
    """Yield the plaintext of each whole non-empty chunk; stop quietly at a truncated tail.

    DecryptionError for a bad header, a whole chunk that fails authentication, or data after the final chunk.
    """
    for plaintext, _final in _decrypt_chunks(keyring, fileobj, aad):
        if plaintext:
            yield plaintext
