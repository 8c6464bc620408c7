"""A measured candidate, not used by kurate: walking a baseline JPEG's Huffman-coded scan with strict rules.

libjpeg decodes a scan leniently: a run of zeros past the end of a block is clipped, any DC or AC
value is taken as it comes, and after a flipped bit the decoding usually falls back in step without a
warning. :func:`check` decodes the entropy-coded data itself (baseline, 8-bit, Huffman; restart
intervals included) and holds every block to what a DCT of 8-bit samples can produce:

- every Huffman code is in its table;
- a zero run never goes past the 63rd coefficient;
- DC differences have at most 11 magnitude bits, AC values at most 10;
- every dequantised coefficient is within the largest magnitude the 8x8 DCT of samples in 0..255 can
  reach at that frequency (plus one quantisation step for rounding): 1024 for DC, less for AC;
- each restart interval and the scan end within a byte of where the data ends.

These are properties of every valid baseline file, so an intact file never breaks one; a flip whose
decoding falls back in step still breaks one in the blocks it garbled, or drives a DC predictor out of
range. Pure Python (``damaged_jpeg_bench`` measures its cost): a measurement of what such a walker
would report, not something the check could run as it is.
"""

from __future__ import annotations

import math

import numpy as np

_ZIGZAG = (
    *(0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5),
    *(12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21, 28),
    *(35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51),
    *(58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63),
)


def _bounds() -> list[float]:
    """Largest |F(u, v)| of the 8x8 DCT of level-shifted 8-bit samples, in zigzag order."""
    spread = [sum(abs(math.cos((2 * x + 1) * u * math.pi / 16)) for x in range(8)) for u in range(8)]
    c = [1 / math.sqrt(2)] + [1.0] * 7
    return [128 * 0.25 * c[k % 8] * c[k // 8] * spread[k % 8] * spread[k // 8] for k in _ZIGZAG]


BOUNDS = _bounds()
_NOT_BASELINE = {0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _segments(data: bytes) -> tuple[dict, dict, tuple, int, list, int] | None:
    """Tables, frame, restart interval, scan components and scan start of a baseline JPEG (else None)."""
    pos, qt, ht, frame, dri = 2, {}, {}, None, 0
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:
            pos += 1
            continue
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        seg = data[pos + 4 : pos + 2 + length]
        if marker == 0xDB:
            i = 0
            while i + 65 <= len(seg):
                wide, tq = seg[i] >> 4, seg[i] & 15
                step = 2 if wide else 1
                qt[tq] = [
                    int.from_bytes(seg[i + 1 + step * j : i + 1 + step * (j + 1)], "big") for j in range(64)
                ]
                i += 1 + 64 * step
        elif marker == 0xC4:
            i = 0
            while i + 17 <= len(seg):
                counts = list(seg[i + 1 : i + 17])
                ht[(seg[i] >> 4, seg[i] & 15)] = (counts, list(seg[i + 17 : i + 17 + sum(counts)]))
                i += 17 + sum(counts)
        elif marker in (0xC0, 0xC1):
            n = seg[5]
            comps = [
                (seg[6 + 3 * j], seg[7 + 3 * j] >> 4, seg[7 + 3 * j] & 15, seg[8 + 3 * j]) for j in range(n)
            ]
            frame = (seg[0], int.from_bytes(seg[1:3], "big"), int.from_bytes(seg[3:5], "big"), comps)
        elif marker in _NOT_BASELINE:
            return None
        elif marker == 0xDD:
            dri = int.from_bytes(seg[0:2], "big")
        elif marker == 0xDA:
            if frame is None:
                return None
            scan = [(seg[1 + 2 * j], seg[2 + 2 * j] >> 4, seg[2 + 2 * j] & 15) for j in range(seg[0])]
            return qt, ht, frame, dri, scan, pos + 2 + length
        pos += 2 + length
    return None


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def _table(counts: list[int], symbols: list[int]) -> tuple[list[int], list[int]]:
    """Code length and symbol for every 16-bit window (length 0: no code starts that way)."""
    lengths, values = np.zeros(65536, np.int32), np.zeros(65536, np.int32)
    code = k = 0
    for n in range(1, 17):
        for _ in range(counts[n - 1]):
            lo, hi = code << (16 - n), (code + 1) << (16 - n)
            lengths[lo:hi], values[lo:hi] = n, symbols[k]
            code, k = code + 1, k + 1
        code <<= 1
    return lengths.tolist(), values.tolist()


def _intervals(data: bytes, start: int) -> list[bytes]:
    """The scan's entropy-coded data, byte-unstuffed, split at its restart markers."""
    out, parts, pos, n = bytearray(), [], start, len(data)
    while pos < n:
        if data[pos] == 0xFF and pos + 1 < n:
            nxt = data[pos + 1]
            if nxt == 0x00:
                out.append(0xFF)
                pos += 2
                continue
            if 0xD0 <= nxt <= 0xD7:
                parts.append(bytes(out))
                out = bytearray()
                pos += 2
                continue
            break
        out.append(data[pos])
        pos += 1
    parts.append(bytes(out))
    return parts


def check(data: bytes) -> str | None:
    """'' for a scan that keeps every rule, else the first rule broken; None when not a baseline JPEG."""
    try:
        got = _segments(data)
    except (IndexError, KeyError):  # headers too broken to read: libjpeg's verdict stands
        return None
    if got is None:
        return None
    qt, ht, (precision, height, width, comps), dri, scan, start = got
    if precision != 8 or any((0, td) not in ht or (1, ta) not in ht for _, td, ta in scan):
        return None
    by_id = {c[0]: c for c in comps}
    hmax, vmax = max(c[1] for c in comps), max(c[2] for c in comps)
    if len(scan) > 1:
        order = [
            (cid, td, ta, by_id[cid][3]) for cid, td, ta in scan for _ in range(by_id[cid][1] * by_id[cid][2])
        ]
        units = _ceil(width, 8 * hmax) * _ceil(height, 8 * vmax)
    else:
        cid, td, ta = scan[0]
        _, h, v, tq = by_id[cid]
        order = [(cid, td, ta, tq)]
        units = _ceil(_ceil(width * h, hmax), 8) * _ceil(_ceil(height * v, vmax), 8)
    if any(tq not in qt for *_, tq in order):
        return None
    tables = {key: _table(*ht[key]) for key in {(0, td) for _, td, _ in scan} | {(1, ta) for *_, ta in scan}}
    per = dri or units
    intervals = _intervals(data, start)
    if len(intervals) < _ceil(units, per):
        return f"{_ceil(units, per)} restart intervals expected, {len(intervals)} found"
    for index in range(_ceil(units, per)):
        why = _interval(intervals[index], min(per, units - index * per), order, tables, qt)
        if why:
            return f"{why} (restart interval {index})" if dri else why
    return ""


def _interval(raw: bytes, mcus: int, order: list, tables: dict, qt: dict) -> str:
    """Decode one restart interval (or the whole scan); '' when it keeps every rule."""
    bits = np.unpackbits(np.frombuffer(raw + b"\xff" * 8, np.uint8)).astype(np.int32)
    nbits = 8 * len(raw)
    windows = np.zeros(nbits + 32, np.int32)
    for i in range(16):
        windows += bits[i : i + nbits + 32] << (15 - i)
    w = windows.tolist()
    pred: dict[int, int] = {}
    p = 0
    for mcu in range(mcus):
        for cid, td, ta, tq in order:
            q = qt[tq]
            dc_len, dc_sym = tables[(0, td)]
            ac_len, ac_sym = tables[(1, ta)]
            n = dc_len[w[p]]
            if not n:
                return f"invalid DC code in MCU {mcu}"
            size = dc_sym[w[p]]
            p += n
            if size > 11:
                return f"DC difference of {size} bits in MCU {mcu}"
            diff = 0
            if size:
                diff = w[p] >> (16 - size)
                p += size
                if diff < 1 << (size - 1):
                    diff -= (1 << size) - 1
            dc = pred.get(cid, 0) + diff
            pred[cid] = dc
            if abs(dc * q[0]) > BOUNDS[0] + q[0]:
                return f"DC out of range in MCU {mcu}"
            k = 1
            while k < 64:
                n = ac_len[w[p]]
                if not n:
                    return f"invalid AC code in MCU {mcu}"
                rs = ac_sym[w[p]]
                p += n
                run, size = rs >> 4, rs & 15
                if not size:
                    if run != 15:
                        break  # end of block
                    k += 16
                    if k > 64:
                        return f"zero run past the block end in MCU {mcu}"
                    continue
                k += run
                if k > 63:
                    return f"zero run past the block end in MCU {mcu}"
                if size > 10:
                    return f"AC value of {size} bits in MCU {mcu}"
                value = w[p] >> (16 - size)
                p += size
                if value < 1 << (size - 1):
                    value -= (1 << size) - 1
                if abs(value * q[k]) > BOUNDS[k] + q[k]:
                    return f"AC out of range in MCU {mcu}"
                k += 1
            if p > nbits:
                return f"data ends inside MCU {mcu}"
    if nbits - p >= 8:
        return f"{(nbits - p) // 8} bytes left after the last MCU"
    return ""
