#!/usr/bin/env python3
"""Writes the seed corpus of //fuzz:proxy_header_fuzz: PROXY protocol headers as
balancers send them (v1 TCP4/TCP6/UNKNOWN; v2 INET, INET6, UNIX, LOCAL, UNSPEC, with and
without CRC32C, with every TLV HAProxy's proxy-protocol.txt defines), some followed by
the first bytes of the connection. Deterministic: run it again and nothing changes.

  fuzz/make_proxy_header_corpus.py   # rewrites fuzz/proxy_header_fuzz_corpus/seed-*
"""
import ipaddress
import os
import struct

SIG = b"\r\n\r\n\x00\r\nQUIT\n"
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "proxy_header_fuzz_corpus")


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def tlv(kind: int, value: bytes) -> bytes:
    return struct.pack(">BH", kind, len(value)) + value


def v2(command: int, family: int, addresses: bytes, tlvs: bytes = b"", crc: bool = False) -> bytes:
    body = addresses + tlvs
    if crc:
        body += tlv(0x03, b"\x00" * 4)
    header = SIG + bytes([0x20 | command, family]) + struct.pack(">H", len(body)) + body
    if crc:
        value = struct.pack(">I", crc32c(header))
        header = header[:-4] + value
    return header


def inet(src, sport, dst, dport) -> bytes:
    s, d = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    return s.packed + d.packed + struct.pack(">HH", sport, dport)


def unix(src: str, dst: str) -> bytes:
    return src.encode().ljust(108, b"\x00") + dst.encode().ljust(108, b"\x00")


SSL = (tlv(0x20, bytes([0x07]) + struct.pack(">I", 0)
           + tlv(0x21, b"TLSv1.3") + tlv(0x22, b"client.example")
           + tlv(0x23, b"TLS_AES_128_GCM_SHA256") + tlv(0x24, b"SHA256")
           + tlv(0x25, b"RSA2048")))
RICH = (tlv(0x01, b"h2") + tlv(0x02, b"api.example.com") + tlv(0x04, b"\x00\x00")
        + tlv(0x05, b"4f8a2c1e-9b3d-4e7f-a6c5-0d1e2f3a4b5c") + SSL + tlv(0x30, b"blue")
        + tlv(0xE0, b"custom"))

SEEDS = {
    "v1_tcp4": b"PROXY TCP4 192.0.2.10 198.51.100.1 56324 443\r\nGET / HTTP/1.1\r\n\r\n",
    "v1_tcp6": b"PROXY TCP6 2001:db8::7 2001:db8::1 40000 8443\r\n",
    "v1_unknown": b"PROXY UNKNOWN\r\n",
    "v1_unknown_rest": b"PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
                       b"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",
    "v2_inet": v2(1, 0x11, inet("203.0.113.7", 51000, "10.0.0.1", 443)) + b"\x16\x03\x01\x00",
    "v2_inet_crc": v2(1, 0x11, inet("203.0.113.7", 51000, "10.0.0.1", 443), crc=True),
    "v2_inet6": v2(1, 0x21, inet("2001:db8::7", 40000, "2001:db8::1", 8443)),
    "v2_inet6_tlvs_crc": v2(1, 0x21, inet("2001:db8::7", 40000, "2001:db8::1", 8443), RICH, True),
    "v2_inet_tlvs": v2(1, 0x11, inet("203.0.113.7", 51000, "10.0.0.1", 443), RICH),
    "v2_unix": v2(1, 0x31, unix("/run/client.sock", "/run/app.sock"), tlv(0x01, b"http/1.1")),
    "v2_local": v2(0, 0x00, b""),
    "v2_local_crc": v2(0, 0x11, inet("127.0.0.1", 1, "127.0.0.1", 2), crc=True),
    "v2_unspec": v2(1, 0x00, b"", tlv(0x04, b"")),
    "v2_ssl_verify_failed": v2(1, 0x11, inet("198.51.100.9", 1234, "10.0.0.1", 443),
                               tlv(0x20, bytes([0x03]) + struct.pack(">I", 21))),
}

os.makedirs(OUT, exist_ok=True)
for name, data in SEEDS.items():
    with open(os.path.join(OUT, "seed-" + name), "wb") as f:
        f.write(data)
