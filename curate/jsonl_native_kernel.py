"""The native JSON Lines scan (numba), at module level so numba's disk cache finds it.
Imported lazily by :mod:`curate.jsonl_native`; see there for what it proves and what it
hands on. Every helper returns -1 (or a negative) for "not sure": the line is punted.

The helpers are compiled without numba's reference counting (``_nrt=False``, a numba
option: they allocate nothing and keep no array): with it, every array argument of every
call cost two atomic calls (``NRT_incref``/``NRT_decref``), about half of the scan's time
at ~1 KB a line. So they copy with :func:`_memcpy`, not slice assignment (which may
allocate a temporary). Only :func:`buffers`, :func:`_grow` and :func:`scan` allocate.
"""
from __future__ import annotations

import numba as nb
import numpy as np
from llvmlite import ir
from numba.core import cgutils, types
from numba.core.cpu import CPUTargetOptions
from numba.extending import intrinsic

# no reference counting in the helpers (see above), where this numba has the option; a
# numba without it counts references: slower, the same results
_NO_RC = {"_nrt": False} if hasattr(CPUTargetOptions, "_nrt") else {}

# value kinds of a top-level key
STR, TRUE, FALSE, NULL, INT, ARR = 1, 2, 3, 4, 5, 6
# indices into the names table jsonl_native builds (NAMES there, in this order)
MESSAGES, CONVERSATIONS, INSTRUCTION, PROMPT, QUESTION = 0, 1, 2, 3, 4
ROLE, CONTENT, FROM, VALUE, INPUT, OUTPUT, SYSTEM, COMPLETION, ANSWER = 5, 6, 7, 8, 9, 10, 11, 12, 13
# format codes: the index in curate.layouts.read.FORMATS
OPENAI, SHAREGPT, ALPACA, PAIR_PC, PAIR_QA = 0, 1, 2, 3, 4
MAXK, MAXT = 64, 512  # more top-level keys or turns than this: punted


@intrinsic
def _memcpy(typingctx, dst, dpos, src, spos, count):
    """dst[dpos:dpos + count] = src[spos:spos + count] for uint8 arrays that do not overlap,
    as one llvm.memcpy (libc's memcpy: numba's slice assignment copies element by element,
    about 2.5x slower on long runs). No bounds check: the callers' buffers are sized."""
    sig = types.void(dst, dpos, src, spos, count)

    def codegen(context, builder, signature, args):
        d, dp, sr, sp, n = args
        da = context.make_array(signature.args[0])(context, builder, d)
        sa = context.make_array(signature.args[2])(context, builder, sr)
        cgutils.raw_memcpy(builder, builder.gep(da.data, [dp]), builder.gep(sa.data, [sp]), n, 1)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _load8(typingctx, arr, i):
    """The 8 bytes of a uint8 array from index i as one little-endian word (an unaligned
    load; the caller keeps i + 8 within the array)."""
    sig = types.uint64(arr, i)

    def codegen(context, builder, signature, args):
        a, idx = args
        data = context.make_array(signature.args[0])(context, builder, a).data
        return builder.load(builder.bitcast(builder.gep(data, [idx]), ir.IntType(64).as_pointer()), align=1)

    return sig, codegen


@intrinsic
def _low_byte(typingctx, mask):
    """The index (0-7) of the lowest byte of a non-zero word whose top bit is set: its
    trailing zero bits over 8."""
    sig = types.int64(mask)

    def codegen(context, builder, signature, args):
        tz = builder.cttz(args[0], ir.Constant(ir.IntType(1), 1))
        return builder.lshr(tz, ir.Constant(ir.IntType(64), 3))

    return sig, codegen


@intrinsic
def _sha256(typingctx, fn, src, spos, count, dst, dpos):
    """libcrypto's one-shot ``SHA256(src + spos, count, dst + dpos)`` called through its
    address ``fn`` (an int64, :func:`curate.jsonl_native.sha256_address`): the compression
    code hashlib itself runs (SHA-NI where the CPU has it), called from here with no Python
    object per record. The address is an argument, not a symbol, so numba's cache holds no
    link to a library. No bounds check: the callers' buffers are sized."""
    sig = types.void(fn, src, spos, count, dst, dpos)

    def codegen(context, builder, signature, args):
        f, sr, sp, n, d, dp = args
        sa = context.make_array(signature.args[1])(context, builder, sr)
        da = context.make_array(signature.args[4])(context, builder, d)
        byte_ptr = ir.IntType(8).as_pointer()
        fnty = ir.FunctionType(byte_ptr, [byte_ptr, ir.IntType(64), byte_ptr])
        builder.call(builder.inttoptr(f, fnty.as_pointer()), [builder.gep(sa.data, [sp]), n, builder.gep(da.data, [dp])])
        return context.get_dummy_value()

    return sig, codegen


ID_HEX = 32  # an id: the first 32 hex digits of the sha256 of record_id's canonical JSON (record.id_of)


@nb.njit(cache=True, nogil=True, **_NO_RC)
def hash_ids(sha, canon, canon_off, n, ids, r0, md):
    """record.id_of of the canonical JSON slices canon[canon_off[c]:canon_off[c + 1]], c < n,
    as ID_HEX lowercase hex digits each at ids[ID_HEX * (r0 + c)] on (the ids one after
    another, no separator); ``sha``: libcrypto's SHA256 (see _sha256), ``md`` 32 bytes of
    scratch for its digest."""
    for c in range(n):
        _sha256(sha, canon, canon_off[c], canon_off[c + 1] - canon_off[c], md, 0)
        p = ID_HEX * (r0 + c)
        for j in range(ID_HEX // 2):
            hi, lo = md[j] >> 4, md[j] & 15
            ids[p + 2 * j] = hi + 48 if hi < 10 else hi + 87  # 0-9, a-f as hexdigest writes them
            ids[p + 2 * j + 1] = lo + 48 if lo < 10 else lo + 87


@nb.njit(cache=True, nogil=True, **_NO_RC, inline="always")
def _ws(buf, i, e):
    """Past JSON white space (no newline inside a line)."""
    while i < e and (buf[i] == 32 or buf[i] == 9 or buf[i] == 13):
        i += 1
    return i


@nb.njit(cache=True, nogil=True, **_NO_RC, inline="always")
def _hex(c):
    if 48 <= c <= 57:
        return c - 48
    if 97 <= c <= 102:
        return c - 87
    if 65 <= c <= 70:
        return c - 55
    return -1


@nb.njit(cache=True, nogil=True, **_NO_RC, inline="always")
def _u4(buf, i, e):
    """The code unit of the four hex digits at i, or -1."""
    if i + 4 > e:
        return -1
    v = 0
    for k in range(4):
        h = _hex(buf[i + k])
        if h < 0:
            return -1
        v = v * 16 + h
    return v


@nb.njit(cache=True, nogil=True, **_NO_RC)
def _utf8_len(buf, i, e):
    """Length of the valid (strict, as Python decodes) UTF-8 sequence at i, or -1."""
    c = buf[i]
    if 0xC2 <= c <= 0xDF:
        n, lo, hi = 2, 0x80, 0xBF
    elif c == 0xE0:
        n, lo, hi = 3, 0xA0, 0xBF
    elif 0xE1 <= c <= 0xEC or c == 0xEE or c == 0xEF:
        n, lo, hi = 3, 0x80, 0xBF
    elif c == 0xED:
        n, lo, hi = 3, 0x80, 0x9F  # no surrogates
    elif c == 0xF0:
        n, lo, hi = 4, 0x90, 0xBF
    elif 0xF1 <= c <= 0xF3:
        n, lo, hi = 4, 0x80, 0xBF
    elif c == 0xF4:
        n, lo, hi = 4, 0x80, 0x8F
    else:
        return -1
    if i + n > e or not (lo <= buf[i + 1] <= hi):
        return -1
    for k in range(2, n):
        if not (0x80 <= buf[i + k] <= 0xBF):
            return -1
    return n


@nb.njit(cache=True, nogil=True, **_NO_RC, inline="always")
def _nfc_ok(src, i, nfc):
    """Whether the UTF-8 character whose lead byte is at i is NFC as it is, by the table."""
    c = src[i]
    if c < 0xE0:
        cp, n = c & 0x1F, 2
    elif c < 0xF0:
        cp, n = c & 0x0F, 3
    else:
        cp, n = c & 0x07, 4
    for k in range(1, n):
        cp = (cp << 6) | (src[i + k] & 0x3F)
    return cp < nfc.shape[0] and not nfc[cp]


@nb.njit(cache=True, nogil=True, **_NO_RC, inline="always")
def _dumps_u(buf, i, u):
    """Whether the \\u escape at i (code unit u) is json.dumps's own: \\u00xx, lowercase,
    for a control character that has no short form (\\b \\t \\n \\f \\r)."""
    if u >= 0x20 or u == 8 or u == 9 or u == 10 or u == 12 or u == 13:
        return False
    h = buf[i + 5]
    return not (65 <= h <= 70)


ONES, HIGH = np.uint64(0x0101010101010101), np.uint64(0x8080808080808080)
QUOTES, BACKSLASHES, SPACES = np.uint64(0x2222222222222222), np.uint64(0x5C5C5C5C5C5C5C5C), np.uint64(0x2020202020202020)


@nb.njit(cache=True, nogil=True, **_NO_RC, inline="always")
def _special8(w):
    """The top bit of each of the 8 bytes of w that is a quote, a backslash, below 0x20 or
    from 0x80 on (SWAR "has a zero byte" / "has a byte less than n"): bytes above the lowest
    flagged one may be flagged falsely, the lowest one is exact; 0: none."""
    return _escape8(w) | (w & HIGH)


@nb.njit(cache=True, nogil=True, **_NO_RC, inline="always")
def _escape8(w):
    """As _special8 for a quote, a backslash or a byte below 0x20 only (the bytes json.dumps
    escapes); the non-ASCII bytes of valid UTF-8 are not flagged below the lowest of them."""
    q, b = w ^ QUOTES, w ^ BACKSLASHES
    return (((q - ONES) & ~q) | ((b - ONES) & ~b) | ((w - SPACES) & ~w)) & HIGH


@nb.njit(cache=True, nogil=True, **_NO_RC, inline="always")
def _backslash8(w):
    """As _special8, for backslashes only."""
    b = w ^ BACKSLASHES
    return ((b - ONES) & ~b) & HIGH


SPECIAL, ESCAPE, BACKSLASH = 0, 1, 2  # what _skip8 stops at: _special8's, _escape8's, _backslash8's bytes


@nb.njit(cache=True, nogil=True, **_NO_RC, inline="always")
def _skip8(buf, i, e, kind):
    """From buf[i], past whole words with no byte ``kind`` flags, to the lowest flagged byte
    of the first word that has one; where fewer than 8 bytes are left, the index reached
    (the caller goes on a byte at a time)."""
    while i + 8 <= e:
        w = _load8(buf, i)
        m = _special8(w) if kind == SPECIAL else (_escape8(w) if kind == ESCAPE else _backslash8(w))
        if m != 0:
            return i + _low_byte(m)
        i += 8
    return i


@nb.njit(cache=True, nogil=True, **_NO_RC)
def _string(buf, i, e, nfc):
    """The JSON string whose opening quote is at i: (index after its closing quote, flags)
    with flags bit 1 = has an escape, bit 2 = has a non-ASCII character, bit 4 = has an
    escape json.dumps(ensure_ascii=False) would not write (\\/, \\r, a \\u one but \\u00xx,
    lowercase, for a control character without a short form), bit 8 = has a character the
    NFC table flags (nfc: see _canon); (-1, 0) when it is
    not one json.loads reads as text (a raw control character, a bad escape, a lone
    surrogate, invalid UTF-8, no closing quote). Runs of plain bytes go 8 at a time."""
    i += 1
    flags = 0
    while i < e:
        i = _skip8(buf, i, e, SPECIAL)  # to the next byte that is not plain, a word at a time
        if i >= e:
            break
        c = buf[i]
        if c == 34:
            return i + 1, flags
        if c < 32:
            return -1, 0
        if c == 92:
            flags |= 1
            if i + 1 >= e:
                return -1, 0
            d = buf[i + 1]
            if d == 117:
                u = _u4(buf, i + 2, e)
                if u < 0 or 0xDC00 <= u <= 0xDFFF:
                    return -1, 0
                if u >= 0x80:
                    flags |= 2
                if not _dumps_u(buf, i, u):
                    flags |= 4
                if 0xD800 <= u <= 0xDBFF:  # a high surrogate: its low half must follow
                    if i + 12 > e or buf[i + 6] != 92 or buf[i + 7] != 117:
                        return -1, 0
                    lo = _u4(buf, i + 8, e)
                    if not (0xDC00 <= lo <= 0xDFFF):
                        return -1, 0
                    u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00)
                    if u >= nfc.shape[0] or nfc[u]:
                        flags |= 8
                    i += 12
                else:
                    if u >= nfc.shape[0] or nfc[u]:
                        flags |= 8
                    i += 6
                continue
            if d == 34 or d == 92 or d == 98 or d == 102 or d == 110 or d == 116:
                i += 2
                continue
            if d == 47 or d == 114:  # \/ is not json.dumps's; \r is folded in the canonical JSON
                flags |= 4
                i += 2
                continue
            return -1, 0
        if c >= 0x80:
            n = _utf8_len(buf, i, e)
            if n < 0:
                return -1, 0
            flags |= 2
            if not _nfc_ok(buf, i, nfc):
                flags |= 8
            i += n
            continue
        i += 1
    return -1, 0


@nb.njit(cache=True, nogil=True, **_NO_RC, inline="always")
def _put_cp(out, pos, cp):
    """UTF-8 of one code point at out[pos]; the new position."""
    if cp < 0x80:
        out[pos] = cp
        return pos + 1
    if cp < 0x800:
        out[pos] = 0xC0 | (cp >> 6)
        out[pos + 1] = 0x80 | (cp & 0x3F)
        return pos + 2
    if cp < 0x10000:
        out[pos] = 0xE0 | (cp >> 12)
        out[pos + 1] = 0x80 | ((cp >> 6) & 0x3F)
        out[pos + 2] = 0x80 | (cp & 0x3F)
        return pos + 3
    out[pos] = 0xF0 | (cp >> 18)
    out[pos + 1] = 0x80 | ((cp >> 12) & 0x3F)
    out[pos + 2] = 0x80 | ((cp >> 6) & 0x3F)
    out[pos + 3] = 0x80 | (cp & 0x3F)
    return pos + 4


@nb.njit(cache=True, nogil=True, **_NO_RC)
def _decode(buf, s, e, flags, out, pos):
    """The text of a checked JSON string body buf[s:e] (quotes excluded) as UTF-8 at out[pos].
    Runs without a backslash are found 8 bytes at a time and copied whole."""
    if flags & 1 == 0:
        _memcpy(out, pos, buf, s, e - s)
        return pos + e - s
    i = s
    while i < e:
        j = _skip8(buf, i, e, BACKSLASH)  # to the next backslash, a word at a time
        while j < e and buf[j] != 92:
            j += 1
        if j > i:
            _memcpy(out, pos, buf, i, j - i)
            pos += j - i
            i = j
            if i >= e:
                break
        d = buf[i + 1]
        if d == 117:
            u = _u4(buf, i + 2, e)
            i += 6
            if 0xD800 <= u <= 0xDBFF:
                u = 0x10000 + ((u - 0xD800) << 10) + (_u4(buf, i + 2, e) - 0xDC00)
                i += 6
            pos = _put_cp(out, pos, u)
            continue
        if d == 98:
            out[pos] = 8
        elif d == 102:
            out[pos] = 12
        elif d == 110:
            out[pos] = 10
        elif d == 114:
            out[pos] = 13
        elif d == 116:
            out[pos] = 9
        else:  # \" \\ \/
            out[pos] = d
        pos += 1
        i += 2
    return pos


@nb.njit(cache=True, nogil=True, **_NO_RC)
def _escape(src, s, e, out, pos):
    """UTF-8 text src[s:e] as json.dumps(ensure_ascii=False) writes a string's body: the
    quote, the backslash, \\b \\f \\n \\r \\t, other characters below U+0020 as \\u00xx."""
    for i in range(s, e):
        c = src[i]
        if c >= 32 and c != 34 and c != 92:
            out[pos] = c
            pos += 1
            continue
        out[pos] = 92
        if c == 34 or c == 92:
            out[pos + 1] = c
        elif c == 8:
            out[pos + 1] = 98
        elif c == 12:
            out[pos + 1] = 102
        elif c == 10:
            out[pos + 1] = 110
        elif c == 13:
            out[pos + 1] = 114
        elif c == 9:
            out[pos + 1] = 116
        else:
            out[pos + 1] = 117
            out[pos + 2] = 48
            out[pos + 3] = 48
            out[pos + 4] = 48 + (c >> 4)
            lo = c & 15
            out[pos + 5] = 48 + lo if lo < 10 else 87 + lo
            pos += 4
        pos += 2
    return pos


@nb.njit(cache=True, nogil=True, **_NO_RC, inline="always")
def _py_space(c):
    """Python's str.isspace() for an ASCII character."""
    return c == 32 or 9 <= c <= 13 or 28 <= c <= 31


@nb.njit(cache=True, nogil=True, **_NO_RC)
def _blank(src, s, e):
    """Whether UTF-8 text src[s:e] is blank by Python's str.strip(): 0 certainly not (an
    ASCII non-space), 1 certainly (all ASCII spaces, or empty), -1 not sure (non-ASCII)."""
    unsure = False
    for i in range(s, e):
        c = src[i]
        if c >= 0x80:
            unsure = True
        elif not _py_space(c):
            return 0
    return -1 if unsure else 1


@nb.njit(cache=True, nogil=True, **_NO_RC)
def _same(buf, s, e, names, off, k):
    """Whether buf[s:e] is name k of the names table."""
    a, b = off[k], off[k + 1]
    if e - s != b - a:
        return False
    for j in range(b - a):
        if buf[s + j] != names[a + j]:
            return False
    return True


@nb.njit(cache=True, nogil=True, **_NO_RC)
def _key_id(buf, s, e, names, off):
    for k in range(off.shape[0] - 1):
        if _same(buf, s, e, names, off, k):
            return k
    return -1


@nb.njit(cache=True, nogil=True, **_NO_RC)
def _role(buf, s, e, flags, fmt, rnames, roff, rcode, rfmt):
    """The role code of a chat turn's role text buf[s:e] (as ``roles.get(r.strip().lower())``)
    or -1 (unknown, escaped or non-ASCII: punted)."""
    if flags != 0:
        return -1
    while s < e and _py_space(buf[s]):
        s += 1
    while e > s and _py_space(buf[e - 1]):
        e -= 1
    for k in range(rcode.shape[0]):
        if rfmt[k] != fmt or roff[k + 1] - roff[k] != e - s:
            continue
        same = True
        for j in range(e - s):
            c = buf[s + j]
            if 65 <= c <= 90:
                c += 32
            if c != rnames[roff[k] + j]:
                same = False
                break
        if same:
            return rcode[k]
    return -1


@nb.njit(cache=True, nogil=True, **_NO_RC)
def _parse_turns(buf, i, e, tks, tke, tvs, tve, tfl, nfc):
    """The turns list whose '[' is at i: a non-empty list of objects of at most two keys,
    each value a string. Fills, per turn t, key and value spans at [2t] and [2t+1] (a
    one-key turn has key span (-1, -1) at [2t+1]). Returns (index after ']', turns), or
    (-1, 0) for anything else."""
    i = _ws(buf, i + 1, e)
    nt = 0
    while True:
        if nt >= MAXT or i >= e or buf[i] != 123:
            return -1, 0
        i = _ws(buf, i + 1, e)
        nkt = 0
        tks[2 * nt + 1] = -1
        tke[2 * nt + 1] = -1
        while True:
            if nkt >= 2 or i >= e or buf[i] != 34:
                return -1, 0
            j, fl = _string(buf, i, e, nfc)
            if j < 0 or fl & 1:
                return -1, 0
            tks[2 * nt + nkt], tke[2 * nt + nkt] = i + 1, j - 1
            i = _ws(buf, j, e)
            if i >= e or buf[i] != 58:
                return -1, 0
            i = _ws(buf, i + 1, e)
            if i >= e or buf[i] != 34:
                return -1, 0
            j, fl = _string(buf, i, e, nfc)
            if j < 0:
                return -1, 0
            tvs[2 * nt + nkt], tve[2 * nt + nkt], tfl[2 * nt + nkt] = i + 1, j - 1, fl
            nkt += 1
            i = _ws(buf, j, e)
            if i < e and buf[i] == 44:
                i = _ws(buf, i + 1, e)
                continue
            if i < e and buf[i] == 125:
                i = _ws(buf, i + 1, e)
                break
            return -1, 0
        nt += 1
        if i < e and buf[i] == 44:
            i = _ws(buf, i + 1, e)
            continue
        if i < e and buf[i] == 93:
            return i + 1, nt
        return -1, 0


@nb.njit(cache=True, nogil=True, **_NO_RC)
def _int_end(buf, i, e):
    """The end of a JSON integer at i that json.loads reads as an int json.dumps writes back
    the same (no -0, at most 18 digits), or -1 (a float, -0, a long or broken number)."""
    s = i
    if buf[i] == 45:
        i += 1
    d = i
    if i < e and buf[i] == 48:
        i += 1
    else:
        while i < e and 48 <= buf[i] <= 57:
            i += 1
    if i == d or i - d > 18 or (i < e and (48 <= buf[i] <= 57 or buf[i] == 46 or buf[i] == 101 or buf[i] == 69)):
        return -1
    if buf[s] == 45 and i - d == 1 and buf[d] == 48:
        return -1
    return i


@nb.njit(cache=True, nogil=True, **_NO_RC)
def _literal(buf, i, e, word):
    """Whether the bytes at i spell ``word``."""
    if i + word.shape[0] > e:
        return False
    for k in range(word.shape[0]):
        if buf[i + k] != word[k]:
            return False
    return True


@nb.njit(cache=True, nogil=True, **_NO_RC)
def _parse_object(buf, s, e, names, noff, ks, ke, kid, vt, vs, ve, vf, tks, tke, tvs, tve, tfl, words, nfc):
    """The line from buf[s] as exactly one JSON object with nothing after it but white space
    up to its newline (or e, the buffer's end): per key its span, name id and value kind and
    span. Returns (keys, turns, the line's end), or (-1, 0, 0) for a line to punt (anything
    not fully parsed, a duplicate or escaped key, a value other than a string,
    true/false/null, a plain integer or one turns list). Bounded by the buffer's end, not
    the line's: no token takes a newline (a raw one in a string is refused, and white
    space here is " \t\r"), so the parse stops at the line's end either way."""
    i = _ws(buf, s, e)
    if i >= e or buf[i] != 123:
        return -1, 0, 0
    i = _ws(buf, i + 1, e)
    nk, nt, arrays = 0, 0, 0
    while True:
        if nk >= MAXK or i >= e or buf[i] != 34:
            return -1, 0, 0
        j, fl = _string(buf, i, e, nfc)
        if j < 0 or fl & 1:
            return -1, 0, 0
        ks[nk], ke[nk] = i + 1, j - 1
        i = _ws(buf, j, e)
        if i >= e or buf[i] != 58:
            return -1, 0, 0
        i = _ws(buf, i + 1, e)
        if i >= e:
            return -1, 0, 0
        c = buf[i]
        vs[nk], vf[nk] = i, 0
        if c == 34:
            j, fl = _string(buf, i, e, nfc)
            if j < 0:
                return -1, 0, 0
            vt[nk], vs[nk], ve[nk], vf[nk] = STR, i + 1, j - 1, fl
        elif c == 116 and _literal(buf, i, e, words[0:4]):
            vt[nk], j = TRUE, i + 4
        elif c == 102 and _literal(buf, i, e, words[4:9]):
            vt[nk], j = FALSE, i + 5
        elif c == 110 and _literal(buf, i, e, words[9:13]):
            vt[nk], j = NULL, i + 4
        elif c == 45 or 48 <= c <= 57:
            j = _int_end(buf, i, e)
            if j < 0:
                return -1, 0, 0
            vt[nk], ve[nk] = INT, j
        elif c == 91 and arrays == 0:
            j, nt = _parse_turns(buf, i, e, tks, tke, tvs, tve, tfl, nfc)
            if j < 0:
                return -1, 0, 0
            vt[nk], arrays = ARR, 1
        else:
            return -1, 0, 0
        kid[nk] = _key_id(buf, ks[nk], ke[nk], names, noff)
        for k in range(nk):  # a duplicate key: json.loads keeps the last value in the first place
            if ke[k] - ks[k] == ke[nk] - ks[nk] and _same_span(buf, ks[k], ks[nk], ke[k] - ks[k]):
                return -1, 0, 0
        nk += 1
        i = _ws(buf, j, e)
        if i < e and buf[i] == 44:
            i = _ws(buf, i + 1, e)
            continue
        if i < e and buf[i] == 125:
            break
        return -1, 0, 0
    i = _ws(buf, i + 1, e)
    if i < e and buf[i] != 10:
        return -1, 0, 0
    return nk, nt, i


@nb.njit(cache=True, nogil=True, **_NO_RC, inline="always")
def _same_span(buf, a, b, n):
    for j in range(n):
        if buf[a + j] != buf[b + j]:
            return False
    return True


@nb.njit(cache=True, nogil=True)
def _grow(a, need):
    """``a``, or a copy at least ``need`` long (doubling)."""
    if need <= a.shape[0]:
        return a
    b = np.empty(max(need, 2 * a.shape[0]), a.dtype)
    b[:a.shape[0]] = a
    return b


@nb.njit(cache=True, nogil=True, **_NO_RC)
def _find(kid, nk, name):
    for k in range(nk):
        if kid[k] == name:
            return k
    return -1


@nb.njit(cache=True, nogil=True, **_NO_RC)
def _chat_turns(buf, f, nk, nt, kid, vt, tks, tke, tvs, tve, tfl, names, noff, rnames, roff, rcode, rfmt,
                roles, toff, raw, ntu, content, cpos):
    """An OpenAI/ShareGPT record's turns (each exactly the role and text keys, both strings,
    a known role) into roles/toff/content, each text's raw span and flags into raw. Returns (turns written, content position), or
    (-1, 0) to punt."""
    tk = MESSAGES if f == 0 else CONVERSATIONS
    rk, xk = (ROLE, CONTENT) if f == 0 else (FROM, VALUE)
    a = _find(kid, nk, tk)
    if a < 0 or vt[a] != ARR:
        return -1, 0
    t0 = ntu
    for t in range(nt):
        if tks[2 * t + 1] < 0:
            return -1, 0
        if _same(buf, tks[2 * t], tke[2 * t], names, noff, rk) and _same(buf, tks[2 * t + 1], tke[2 * t + 1], names, noff, xk):
            r, x = 2 * t, 2 * t + 1
        elif _same(buf, tks[2 * t], tke[2 * t], names, noff, xk) and _same(buf, tks[2 * t + 1], tke[2 * t + 1], names, noff, rk):
            r, x = 2 * t + 1, 2 * t
        else:
            return -1, 0
        code = _role(buf, tvs[r], tve[r], tfl[r], f, rnames, roff, rcode, rfmt)
        if code < 0:
            return -1, 0
        cpos = _decode(buf, tvs[x], tve[x], tfl[x], content, cpos)
        roles[ntu] = code
        toff[ntu + 1] = cpos
        _raw(raw, ntu - t0, tvs[x], tve[x], tfl[x])
        ntu += 1
    return ntu, cpos


@nb.njit(cache=True, nogil=True, **_NO_RC, inline="always")
def _raw(raw, t, s, e, fl):
    """The record's turn t (counted from its first: raw holds one record's turns) has as
    text the JSON string body buf[s:e] with flags fl (for _canon's copy)."""
    raw[3 * t] = s
    raw[3 * t + 1] = e
    raw[3 * t + 2] = fl


@nb.njit(cache=True, nogil=True, **_NO_RC)
def _flat_turns(buf, f, nk, kid, vt, vs, ve, vf, roles, toff, raw, ntu, content, cpos):
    """An Alpaca / prompt-completion / question-answer record's turns, as the converters in
    curate.layouts.read build them. Returns (turns written, content position) or (-1, 0)."""
    for k in range(nk):
        if vt[k] == ARR:  # a list in meta
            return -1, 0
    t0 = ntu
    if f == ALPACA:
        u, x = INSTRUCTION, OUTPUT
    elif f == PAIR_PC:
        u, x = PROMPT, COMPLETION
    else:
        u, x = QUESTION, ANSWER
    sy = _find(kid, nk, SYSTEM)
    if sy >= 0 and vt[sy] != NULL:  # `system and system.strip()`: a system turn
        if vt[sy] != STR:
            return -1, 0
        end = _decode(buf, vs[sy], ve[sy], vf[sy], content, cpos)
        b = _blank(content, cpos, end)
        if b < 0:
            return -1, 0
        if b == 0:
            roles[ntu] = 0
            toff[ntu + 1] = end
            _raw(raw, ntu - t0, vs[sy], ve[sy], vf[sy])
            cpos = end
            ntu += 1
    ui, xi = _find(kid, nk, u), _find(kid, nk, x)
    if ui < 0 or xi < 0 or vt[ui] != STR or vt[xi] != STR:
        return -1, 0
    cpos = _decode(buf, vs[ui], ve[ui], vf[ui], content, cpos)
    _raw(raw, ntu - t0, vs[ui], ve[ui], vf[ui])
    if f == ALPACA:  # `instruction if not (inp and inp.strip()) else f"{instruction}\n\n{inp}"`
        ii = _find(kid, nk, INPUT)
        if ii >= 0 and vt[ii] != NULL:
            if vt[ii] != STR:
                return -1, 0
            content[cpos] = 10
            content[cpos + 1] = 10
            end = _decode(buf, vs[ii], ve[ii], vf[ii], content, cpos + 2)
            b = _blank(content, cpos + 2, end)
            if b < 0:
                return -1, 0
            if b == 0:
                cpos = end
                raw[3 * (ntu - t0)] = -1  # two strings joined: no one raw span
    roles[ntu] = 1
    toff[ntu + 1] = cpos
    cpos = _decode(buf, vs[xi], ve[xi], vf[xi], content, cpos)
    roles[ntu + 1] = 2
    toff[ntu + 2] = cpos
    _raw(raw, ntu + 1 - t0, vs[xi], ve[xi], vf[xi])
    return ntu + 2, cpos


@nb.njit(cache=True, nogil=True, **_NO_RC)
def _used(f, name):
    """Whether the format reads the key (so it is not meta)."""
    if f == OPENAI:
        return name == MESSAGES
    if f == SHAREGPT:
        return name == CONVERSATIONS
    if f == ALPACA:
        return name == INSTRUCTION or name == INPUT or name == OUTPUT or name == SYSTEM
    if f == PAIR_PC:
        return name == PROMPT or name == COMPLETION or name == SYSTEM
    return name == QUESTION or name == ANSWER or name == SYSTEM


@nb.njit(cache=True, nogil=True, **_NO_RC)
def _meta(buf, f, nk, kid, ks, ke, vt, vs, ve, vf, words, scratch, meta, mpos):
    """The keys the format does not read, as curate.record.meta_json writes them
    (json.dumps: ", " and ": "); -1 for a list there."""
    first = True
    meta[mpos] = 123
    mpos += 1
    for k in range(nk):
        if _used(f, kid[k]):
            continue
        if vt[k] == ARR:
            return -1
        if not first:
            meta[mpos] = 44
            meta[mpos + 1] = 32
            mpos += 2
        first = False
        meta[mpos] = 34
        n = ke[k] - ks[k]
        _memcpy(meta, mpos + 1, buf, ks[k], n)  # keys have no escape, so are as written
        mpos += 1 + n
        meta[mpos] = 34
        meta[mpos + 1] = 58
        meta[mpos + 2] = 32
        mpos += 3
        if vt[k] == STR:
            meta[mpos] = 34
            end = _decode(buf, vs[k], ve[k], vf[k], scratch, 0)
            mpos = _escape(scratch, 0, end, meta, mpos + 1)
            meta[mpos] = 34
            mpos += 1
        elif vt[k] == INT:
            n = ve[k] - vs[k]
            _memcpy(meta, mpos, buf, vs[k], n)
            mpos += n
        else:
            w0, w1 = (0, 4) if vt[k] == TRUE else ((4, 9) if vt[k] == FALSE else (9, 13))
            _memcpy(meta, mpos, words, w0, w1 - w0)
            mpos += w1 - w0
    meta[mpos] = 125
    return mpos + 1


@nb.njit(cache=True, nogil=True, **_NO_RC)
def _canon_raw(buf, a, b, fl, role, nfc, rolenames, rolenoff, canon, pos):
    """One turn of _canon, ``["role","text"]``, from a raw JSON string body buf[a:b] whose
    escapes are all json.dumps's (flags bit 4 clear; so no \\r to fold): its bytes are the
    canonical body, once the outer spaces and \\t \\n escapes are stripped. -1: not NFC
    (bit 8: the text's characters are the raw string's, checked while parsing)."""
    while a < b:
        if buf[a] == 32:
            a += 1
        elif buf[a] == 92 and (buf[a + 1] == 110 or buf[a + 1] == 116):
            a += 2
        else:
            break
    while b > a:
        if buf[b - 1] == 32:
            b -= 1
            continue
        if b - a >= 2 and buf[b - 2] == 92 and (buf[b - 1] == 110 or buf[b - 1] == 116):
            k = b - 2  # an escape only if an odd run of backslashes ends here
            while k > a and buf[k - 1] == 92:
                k -= 1
            if (b - 1 - k) % 2 == 1:
                b -= 2
                continue
        break
    canon[pos] = 91
    canon[pos + 1] = 34
    pos += 2
    r0, r1 = rolenoff[role], rolenoff[role + 1]
    _memcpy(canon, pos, rolenames, r0, r1 - r0)
    pos += r1 - r0
    canon[pos] = 34
    canon[pos + 1] = 44
    canon[pos + 2] = 34
    pos += 3
    if fl & 8:  # a character NFC may change (as the loop in _canon finds it)
        return -1
    _memcpy(canon, pos, buf, a, b - a)
    pos += b - a
    canon[pos] = 34
    canon[pos + 1] = 93
    return pos + 2


@nb.njit(cache=True, nogil=True, **_NO_RC)
def _canon(buf, raw, roles, toff, t0, t1, content, nfc, rolenames, rolenoff, canon, pos):
    """record_id's canonical JSON of turns t0..t1: [[role, content], ...], each content with
    \\r\\n and \\r folded to \\n, NFC (proved by the table: else -1) and the outer " \\t\\n"
    stripped, written as json.dumps(ensure_ascii=False, separators=(",", ":")), in one pass:
    the folded text's outer " \\t\\n" are the raw text's outer " \\t\\r\\n". A text
    whose raw string has only json.dumps's escapes is copied from the raw bytes instead."""
    canon[pos] = 91
    pos += 1
    for t in range(t0, t1):
        a, b, r = toff[t], toff[t + 1], 3 * (t - t0)  # raw holds this record's turns from t0
        if raw[r] >= 0 and raw[r + 2] & 4 == 0:
            if t > t0:
                canon[pos] = 44
                pos += 1
            pos = _canon_raw(buf, raw[r], raw[r + 1], raw[r + 2], roles[t], nfc, rolenames, rolenoff, canon, pos)
            if pos < 0:
                return -1
            continue
        check = raw[r] < 0  # else the raw string's bit 8 tells (its characters are these)
        if not check and raw[r + 2] & 8:
            return -1
        while a < b and (content[a] == 32 or content[a] == 9 or content[a] == 10 or content[a] == 13):
            a += 1
        while b > a and (content[b - 1] == 32 or content[b - 1] == 9 or content[b - 1] == 10 or content[b - 1] == 13):
            b -= 1
        if t > t0:
            canon[pos] = 44
            pos += 1
        canon[pos] = 91
        canon[pos + 1] = 34
        pos += 2
        r0, r1 = rolenoff[roles[t]], rolenoff[roles[t] + 1]
        _memcpy(canon, pos, rolenames, r0, r1 - r0)
        pos += r1 - r0
        canon[pos] = 34
        canon[pos + 1] = 44
        canon[pos + 2] = 34
        pos += 3
        i = a
        while i < b:
            # a run written as it is (no quote, backslash or control; no non-ASCII to check)
            j = _skip8(content, i, b, SPECIAL if check else ESCAPE)
            if j > i:
                _memcpy(canon, pos, content, i, j - i)
                pos += j - i
                i = j
                if i >= b:
                    break
            c = content[i]
            if c >= 32 and c != 34 and c != 92:
                if c >= 0x80 and check:  # a code point: NFC as it is, by the table?
                    if not _nfc_ok(content, i, nfc):
                        return -1
                    n = 2 if c < 0xE0 else (3 if c < 0xF0 else 4)  # content is valid UTF-8
                    for k in range(n):
                        canon[pos + k] = content[i + k]
                    pos += n
                    i += n
                    continue
                canon[pos] = c
                pos += 1
            elif c == 13:  # \r\n and \r: \n
                canon[pos] = 92
                canon[pos + 1] = 110
                pos += 2
                if i + 1 < b and content[i + 1] == 10:
                    i += 1
            else:
                pos = _escape(content, i, i + 1, canon, pos)
            i += 1
        canon[pos] = 34
        canon[pos + 1] = 93
        pos += 2
    canon[pos] = 93
    return pos + 1


@nb.njit(cache=True, nogil=True, **_NO_RC)
def _line_end(buf, i):
    """The index of the newline at or after i, or the buffer's end."""
    n = buf.shape[0]
    while i < n and buf[i] != 10:
        i += 1
    return i


CANON_CHUNK = 1 << 21  # a scan call stops once a chunk's canonical JSON passes this (bytes)
# the state a scan call resumes from (an int64 array the caller keeps): the next line's start,
# lines seen, records, punted lines, turns, content and meta bytes written; the records of
# the last call's chunk; the data buffers of the contents' and the metas' views (see _views:
# -1, a string too long for one), and their most bytes (the caller sets it)
AT_START, AT_LINE, AT_REC, AT_PUNT, AT_TURN, AT_CONTENT, AT_META, AT_CHUNK, AT_CBUF, AT_MBUF, AT_LIMIT = range(11)


@nb.njit(cache=True, nogil=True)
def buffers(n):
    """The output buffers of scans of an n-byte file (allocated here, not by numpy, which
    advises huge pages for big arrays: the kernel's compaction for those cost up to seconds
    on a busy machine). Sized for the file (a line of ~256 bytes or more a record, ~2 turns
    a record), uninitialised but for the offsets' first entry: the operating system gives a
    page only when it is first written, so room never written costs no memory. A scan
    replaces any that runs out by a bigger copy. ``raw`` holds one record's turns."""
    cap = n // 256 + 16
    rec_turns, toff, meta_off = np.empty(cap + 1, np.int64), np.empty(2 * cap + MAXT + 5, np.int64), np.empty(cap + 1, np.int64)
    canon_off = np.empty(cap + 1, np.int64)
    rec_turns[0], toff[0], meta_off[0], canon_off[0] = 0, 0, 0, 0
    return (np.empty(cap, np.int64), rec_turns, np.empty(2 * cap + MAXT + 4, np.int8), toff,
            np.empty(n + 1024, np.uint8), meta_off, np.empty(n // 8 + 1024, np.uint8),
            np.empty((16, 3), np.int64), canon_off, np.empty(2 * CANON_CHUNK + 1024, np.uint8),
            np.empty(3 * (MAXT + 4), np.int64), np.empty(1024, np.uint8),
            np.empty(16 * (2 * cap + MAXT + 4), np.uint8), np.empty(64, np.int64), np.empty(16 * cap, np.uint8),
            np.empty(64, np.int64), np.empty(ID_HEX * cap, np.uint8))


@nb.njit(cache=True, nogil=True, **_NO_RC, inline="always")
def _put32(out, pos, v):
    """v as 4 little-endian bytes at out[pos]."""
    out[pos] = v & 255
    out[pos + 1] = (v >> 8) & 255
    out[pos + 2] = (v >> 16) & 255
    out[pos + 3] = (v >> 24) & 255


INLINE = 12  # a string of at most this many bytes is held in its view itself (Arrow's rule)


@nb.njit(cache=True, nogil=True, **_NO_RC)
def _views(off, data, i0, i1, views, bounds, nbuf, limit):
    """Arrow ``string_view`` views of the strings i0..i1-1, data[off[i]:off[i + 1]] (off
    ascending, the strings one after another, as the scan writes them), at views[16 * i]:
    the length (4 bytes, little-endian), then the string itself zero-padded when it is at
    most INLINE bytes, else its first 4 bytes, its data buffer's index and its offset in
    that buffer. The data buffers are spans of data, ``bounds[2k:2k + 2]`` (start, end): a
    new one starts where a string would end more than ``limit`` bytes from its buffer's
    start (Arrow's offsets and lengths are 32-bit, signed in its C++ library); bounds has
    room for one more a string. Returns the number of buffers, or -1 (and from then on)
    once a string is longer than ``limit`` (no view for it)."""
    for i in range(i0, i1):
        if nbuf < 0:
            return -1
        a, size, p = off[i], off[i + 1] - off[i], 16 * i
        _put32(views, p, size)
        if size <= INLINE:
            _put32(views, p + 4, 0)
            _put32(views, p + 8, 0)
            _put32(views, p + 12, 0)
            _memcpy(views, p + 4, data, a, size)
            continue
        if size > limit:
            return -1
        if nbuf == 0 or a + size - bounds[2 * nbuf - 2] > limit:
            bounds[2 * nbuf] = a
            nbuf += 1
        bounds[2 * nbuf - 1] = a + size
        _memcpy(views, p + 4, data, a, 4)
        _put32(views, p + 8, nbuf - 1)
        _put32(views, p + 12, a - bounds[2 * nbuf - 2])
    return nbuf


@nb.njit(cache=True, nogil=True)
def scan(buf, final, fmt, names, noff, rnames, roff, rcode, rfmt, sig_key, sig_fmt, nfc, words, rolenames, rolenoff,
         sha, at, out):
    """The lines of a JSON Lines buffer (the pieces ``bytes.split(b"\n")`` gives, found here
    as the parse goes; a chunk of a file: complete lines, the last one's newline its last
    byte, unless ``final``, where the piece after the last newline is a line too: the
    file's end) from the state ``at``, until the end or until this call's canonical
    JSON passes CANON_CHUNK (a reused buffer: hashed by the caller between calls, so the
    ids' input is never all in memory at once): blank lines skipped, the ones proven read
    exactly written to the buffers ``out`` (see :func:`buffers`), the others' numbers
    (1-based) and spans in ``punt``. Where ``sha`` is libcrypto's SHA256 (not 0), the call's
    records' ids are hashed here at its end (:func:`hash_ids`); else the caller hashes the
    chunk's canonical JSON into ``ids`` (grown here for it). Returns ``out`` (arrays that
    ran out replaced by bigger copies); ``at`` is updated. See jsonl_native."""
    (rec_line, rec_turns, roles, toff, content, meta_off, meta, punt, canon_off, canon, raw, scratch,
     cviews, cbounds, mviews, mbounds, ids) = out
    ks, ke, kid = np.empty(MAXK, np.int64), np.empty(MAXK, np.int64), np.empty(MAXK, np.int64)
    vt, vs, ve, vf = np.empty(MAXK, np.int64), np.empty(MAXK, np.int64), np.empty(MAXK, np.int64), np.empty(MAXK, np.int64)
    tks, tke = np.empty(2 * MAXT, np.int64), np.empty(2 * MAXT, np.int64)
    tvs, tve, tfl = np.empty(2 * MAXT, np.int64), np.empty(2 * MAXT, np.int64), np.empty(2 * MAXT, np.int64)
    n = buf.shape[0]
    s, li, nrec, npunt, ntu, cpos, mpos = at[AT_START], at[AT_LINE], at[AT_REC], at[AT_PUNT], at[AT_TURN], at[AT_CONTENT], at[AT_META]
    t_call, r_call = ntu, nrec
    chunk, cnpos = 0, 0
    canon_off[0] = 0
    while (s < n or final and s == n) and cnpos < CANON_CHUNK:  # a piece per newline, at the end the one after
        li += 1
        k = s
        while k < n and buf[k] != 10 and (buf[k] == 32 or 9 <= buf[k] <= 13):  # bytes.strip()'s white space
            k += 1
        if k == n or buf[k] == 10:  # a blank line
            s = k + 1
            continue
        nk, nt, e = _parse_object(buf, s, n, names, noff, ks, ke, kid, vt, vs, ve, vf, tks, tke, tvs, tve, tfl, words, nfc)
        f = fmt
        if nk > 0 and f < 0:
            for j in range(sig_key.shape[0]):
                if _find(kid, nk, sig_key[j]) >= 0:
                    f = sig_fmt[j]
                    break
        t1, c1 = -1, 0
        if nk > 0 and f >= 0:
            size = e - s
            content = _grow(content, cpos + size + 16)
            meta = _grow(meta, mpos + 2 * size + 16)
            canon = _grow(canon, cnpos + 2 * size + 64)
            scratch = _grow(scratch, size + 16)
            roles = _grow(roles, ntu + MAXT + 4)
            toff = _grow(toff, ntu + MAXT + 5)
            if f <= SHAREGPT:
                t1, c1 = _chat_turns(buf, f, nk, nt, kid, vt, tks, tke, tvs, tve, tfl, names, noff, rnames, roff,
                                     rcode, rfmt, roles, toff, raw, ntu, content, cpos)
            else:
                t1, c1 = _flat_turns(buf, f, nk, kid, vt, vs, ve, vf, roles, toff, raw, ntu, content, cpos)
        ok = t1 > ntu
        if ok:  # convert() rejects a conversation with no text: that is the per-line path's
            ok = False
            for t in range(ntu, t1):
                if _blank(content, toff[t], toff[t + 1]) == 0:
                    ok = True
                    break
        m1 = _meta(buf, f, nk, kid, ks, ke, vt, vs, ve, vf, words, scratch, meta, mpos) if ok else -1
        n1 = _canon(buf, raw, roles, toff, ntu, t1, content, nfc, rolenames, rolenoff, canon, cnpos) if m1 >= 0 else -1
        if n1 < 0:
            if nk <= 0:  # the parse stopped inside the line
                e = _line_end(buf, s)
            if npunt == punt.shape[0]:
                grown = np.empty((2 * npunt, 3), np.int64)
                grown[:npunt] = punt
                punt = grown
            punt[npunt, 0], punt[npunt, 1], punt[npunt, 2] = li, s, e
            npunt += 1
            s = e + 1
            continue
        if nrec + 1 >= rec_line.shape[0]:
            rec_line = _grow(rec_line, 2 * nrec + 2)
            rec_turns = _grow(rec_turns, 2 * nrec + 3)
            meta_off = _grow(meta_off, 2 * nrec + 3)
        canon_off = _grow(canon_off, chunk + 2)
        rec_line[nrec] = li
        ntu, cpos, mpos, cnpos = t1, c1, m1, n1
        nrec += 1
        chunk += 1
        rec_turns[nrec], meta_off[nrec], canon_off[chunk] = ntu, mpos, cnpos
        s = e + 1
    at[AT_START], at[AT_LINE], at[AT_REC], at[AT_PUNT], at[AT_TURN], at[AT_CONTENT], at[AT_META] = s, li, nrec, npunt, ntu, cpos, mpos
    at[AT_CHUNK] = chunk
    # the views of this call's strings, while they are still in the cache
    cviews, mviews = _grow(cviews, 16 * ntu), _grow(mviews, 16 * nrec)
    cbounds, mbounds = _grow(cbounds, 2 * (at[AT_CBUF] + ntu - t_call + 1)), _grow(mbounds, 2 * (at[AT_MBUF] + nrec - r_call + 1))
    at[AT_CBUF] = _views(toff, content, t_call, ntu, cviews, cbounds, at[AT_CBUF], at[AT_LIMIT])
    at[AT_MBUF] = _views(meta_off, meta, r_call, nrec, mviews, mbounds, at[AT_MBUF], at[AT_LIMIT])
    ids = _grow(ids, ID_HEX * nrec)
    if sha != 0:  # the ids of this call's records, while their canonical JSON is in the cache
        hash_ids(sha, canon, canon_off, chunk, ids, r_call, np.empty(32, np.uint8))
    return (rec_line, rec_turns, roles, toff, content, meta_off, meta, punt, canon_off, canon, raw, scratch,
            cviews, cbounds, mviews, mbounds, ids)
