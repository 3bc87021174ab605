"""Independent token04 decoder for the tests: Python's `cryptography`, not tokengate.

Usage: token04.py SECRET < token   ->  prints {"mode": "gcm"|"cbc", "expire": …, "claims": {…}}
"""
import base64
import json
import struct
import sys

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM


def decode(secret: bytes, token: str):
    assert token.startswith("04"), "not a token04"
    raw = base64.b64decode(token[2:], validate=True)
    (expire,) = struct.unpack(">q", raw[:8])
    (iv_len,) = struct.unpack(">H", raw[8:10])
    iv = raw[10 : 10 + iv_len]
    (ct_len,) = struct.unpack(">H", raw[10 + iv_len : 12 + iv_len])
    ct = raw[12 + iv_len : 12 + iv_len + ct_len]
    rest = raw[12 + iv_len + ct_len :]
    if iv_len == 12 and rest == b"\x01":
        plain, mode = AESGCM(secret).decrypt(iv, ct, None), "gcm"
    elif iv_len == 16 and rest == b"":
        decryptor = Cipher(algorithms.AES(secret), modes.CBC(iv)).decryptor()
        padded = decryptor.update(ct) + decryptor.finalize()
        unpadder = padding.PKCS7(128).unpadder()
        plain, mode = unpadder.update(padded) + unpadder.finalize(), "cbc"
    else:
        raise ValueError("unknown layout")
    return {"mode": mode, "expire": expire, "claims": json.loads(plain)}


if __name__ == "__main__":
    print(json.dumps(decode(sys.argv[1].encode(), sys.stdin.read().strip())))
