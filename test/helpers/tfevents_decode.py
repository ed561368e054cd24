#!/usr/bin/env python3
"""Independent TensorBoard event-file decoder for tests (no TensorFlow/TensorBoard needed): reads the TFRecord
framing, checks both masked CRC-32C values of every record, parses Event/Summary/Value protobufs by hand, and
prints JSON: [{"wall_time", "step", "file_version"?, "values": [{"tag", "simple_value"? , "text"?, "plugin"?}]}]."""
import json, struct, sys

def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF

def masked(data):
    c = crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF

def fields(buf):
    i = 0
    while i < len(buf):
        key, i = varint(buf, i)
        num, wire = key >> 3, key & 7
        if wire == 0:
            v, i = varint(buf, i)
        elif wire == 1:
            v = buf[i:i + 8]; i += 8
        elif wire == 5:
            v = buf[i:i + 4]; i += 4
        elif wire == 2:
            n, i = varint(buf, i); v = buf[i:i + n]; i += n
        else:
            raise ValueError("wire type %d" % wire)
        yield num, wire, v

def varint(buf, i):
    shift = result = 0
    while True:
        b = buf[i]; i += 1
        result |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return result, i

def value(buf):
    out = {}
    for num, wire, v in fields(buf):
        if num == 1: out["tag"] = v.decode()
        elif num == 2: out["simple_value"] = struct.unpack("<f", v)[0]
        elif num == 9:
            for n2, _, v2 in fields(v):
                if n2 == 1:
                    for n3, _, v3 in fields(v2):
                        if n3 == 1: out["plugin"] = v3.decode()
        elif num == 8:
            for n2, _, v2 in fields(v):
                if n2 == 1: out["dtype"] = v2
                if n2 == 8: out["text"] = v2.decode()
    return out

def main(path):
    data = open(path, "rb").read()
    i, events = 0, []
    while i < len(data):
        header = data[i:i + 8]
        (length,) = struct.unpack("<Q", header)
        (hcrc,) = struct.unpack("<I", data[i + 8:i + 12])
        assert hcrc == masked(header), "bad length crc at %d" % i
        body = data[i + 12:i + 12 + length]
        (bcrc,) = struct.unpack("<I", data[i + 12 + length:i + 16 + length])
        assert bcrc == masked(body), "bad data crc at %d" % i
        i += 16 + length
        ev = {"values": []}
        for num, wire, v in fields(body):
            if num == 1: ev["wall_time"] = struct.unpack("<d", v)[0]
            elif num == 2: ev["step"] = v
            elif num == 3: ev["file_version"] = v.decode()
            elif num == 5:
                for n2, _, v2 in fields(v):
                    if n2 == 1: ev["values"].append(value(v2))
        events.append(ev)
    print(json.dumps(events))

main(sys.argv[1])
