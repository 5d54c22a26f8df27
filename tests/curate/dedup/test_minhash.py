"""MinHash: estimates agree with datasketch and the true Jaccard; band choice; invariances."""
import math
import random

import numpy as np
import pytest

from curate.dedup import minhash as mh


def _pair(rng, n_words, jaccard_target):
    """Two word lists whose 1-gram sets have roughly the target Jaccard."""
    shared = int(n_words * 2 * jaccard_target / (1 + jaccard_target))
    common = [f"c{rng.random():.12f}" for _ in range(shared)]
    a = common + [f"a{rng.random():.12f}" for _ in range(n_words - shared)]
    b = common + [f"b{rng.random():.12f}" for _ in range(n_words - shared)]
    return " ".join(a), " ".join(b), len(set(common)) / len(set(a) | set(b))


def test_estimates_agree_with_datasketch_and_truth():
    datasketch = pytest.importorskip("datasketch")
    rng = random.Random(7)
    num_perm = 256
    ours_err, ds_err = [], []
    for target in (0.2, 0.5, 0.8, 0.95):
        for _ in range(10):
            a, b, true = _pair(rng, 300, target)
            sigs = mh.shingle_and_sign([a, b], num_perm, ngram=1).signatures
            ours = float((sigs[0] == sigs[1]).mean())
            ma, mb = datasketch.MinHash(num_perm=num_perm), datasketch.MinHash(num_perm=num_perm)
            for w in set(a.split()):
                ma.update(w.encode())
            for w in set(b.split()):
                mb.update(w.encode())
            ds = ma.jaccard(mb)
            sigma = math.sqrt(true * (1 - true) / num_perm)
            assert abs(ours - true) <= 4 * sigma + 0.01, (target, ours, true)
            assert abs(ours - ds) <= 4 * math.sqrt(2) * sigma + 0.01, (target, ours, ds)
            ours_err.append(ours - true)
            ds_err.append(ds - true)
    # unbiased like datasketch: mean error near zero, similar spread
    assert abs(np.mean(ours_err)) < 0.02
    assert np.std(ours_err) < 1.5 * np.std(ds_err) + 0.01


def test_exact_jaccard_matches_python_sets():
    rng = random.Random(1)
    docs = [" ".join(rng.choice("abcdefghij") for _ in range(rng.randint(1, 40))) for _ in range(30)]
    sh = mh.shingle_and_sign(docs, 16, ngram=2, keep_sets=True)
    left, right = np.triu_indices(len(docs), 1)
    got = mh.exact_jaccard(sh, left, right)

    def grams(d):
        w = d.split()
        return {tuple(w[i:i + 2]) for i in range(max(1, len(w) - 1))}

    want = [len(grams(docs[i]) & grams(docs[j])) / len(grams(docs[i]) | grams(docs[j])) for i, j in zip(left, right)]
    assert np.allclose(got, want)


def test_band_choice_meets_recall_at_threshold():
    assert mh.choose_bands(0.8, 128) == (18, 7)
    for t in (0.5, 0.6, 0.7, 0.8, 0.9):
        for p in (64, 128, 256):
            b, r = mh.choose_bands(t, p)
            assert b * r <= p
            assert mh.candidate_probability(t, b, r) >= 0.95
    # datasketch's own choice at 0.8 (9 bands x 13 rows) finds such a pair under half the time
    assert mh.candidate_probability(0.8, 9, 13) < 0.45


def test_normalisation_invariance_and_unicode():
    base = "The Café serves crème brûlée every Tuesday evening at nine o'clock sharp"
    variants = [base.upper(), base.replace(" ", "  \n\t "), "Ｔｈｅ Café serves crème brûlée every Tuesday evening at nine o'clock sharp"]
    sigs = mh.shingle_and_sign([base] + variants, 64, ngram=3).signatures
    for row in sigs[1:]:
        assert (row == sigs[0]).all()


def test_long_and_empty_and_short_documents():
    long_doc = " ".join(f"w{i}" for i in range(200_000))
    sh = mh.shingle_and_sign([long_doc, long_doc + " extra", "", "", "two words"], 64, ngram=5)
    s = sh.signatures
    assert (s[0] == s[1]).mean() > 0.95
    assert (s[2] == s[3]).all()  # empty texts are identical to each other
    assert (s[4] != 0xFFFFFFFF).all()  # fewer words than n: one shingle of all of them


M64 = (1 << 64) - 1


def _python_word_hashes(text):
    """FNV-1a (64-bit) of each white-space separated word's code points."""
    words = []
    for w in text.split():
        h = 0xCBF29CE484222325
        for ch in w:
            h = ((h ^ ord(ch)) * 0x100000001B3) & M64
        words.append(h)
    return words


def _python_signature(text, num_perm, n):
    """The documented algorithm in plain Python: FNV-1a per word, fold per n-gram,
    splitmix64 finaliser, (a*x + b) mod 2^32 then x ^= x >> 15, minimum."""
    words = _python_word_hashes(text)
    grams = [words[i:i + n] for i in range(max(1, len(words) - n + 1))]
    xs = []
    for g in grams:
        acc = 0x9E3779B97F4A7C15
        for w in g:
            acc = ((acc ^ w) * 0x100000001B3) & M64
        xs.append(mh.splitmix64(acc) & 0xFFFFFFFF)
    a, b = mh.permutations(num_perm, 1)
    out = []
    for ai, bi in zip(a.tolist(), b.tolist()):
        vals = []
        for x in xs:
            v = (ai * x + bi) & 0xFFFFFFFF
            vals.append(v ^ (v >> 15))
        out.append(min(vals))
    return out


def test_kernel_matches_the_documented_algorithm_and_fixed_values():
    text = "the quick brown fox jumps over the lazy dog"
    sig = mh.shingle_and_sign([text], 4, ngram=3).signatures
    assert sig.tolist() == [_python_signature(text, 4, 3)]
    # frozen: a change to hashing or permutations changes every user's clusters
    assert sig.tolist() == [[777851483, 172858215, 685636695, 161829118]]


def test_fused_parallel_kernel_equals_two_step_kernels():
    rng = random.Random(3)
    docs = [" ".join(rng.choice(["alpha", "beta", "gamma", "δέλτα", "e"]) for _ in range(rng.randint(0, 60)))
            for _ in range(200)]
    for shingle, n in (("word", 5), ("char", 4), ("word", 1)):
        fused = mh.shingle_and_sign(docs, 32, n, shingle).signatures
        two_step = mh.shingle_and_sign(docs, 32, n, shingle, keep_sets=True).signatures
        assert (fused == two_step).all(), shingle


def test_band_keys_equal_the_documented_fold():
    rng = np.random.default_rng(0)
    sigs = rng.integers(0, 2**32, size=(5, 12), dtype=np.uint64).astype(np.uint32)
    keys = mh.band_keys(sigs, 3, 4)
    for d in range(5):
        for band in range(3):
            k = 0xCBF29CE484222325
            for v in sigs[d, band * 4:(band + 1) * 4].tolist():
                k = ((k ^ v) * 0x100000001B3) & M64
            assert int(keys[d, band]) == k


def _pairs_by_sorting(keys):
    """The sort-per-band grouping the hash table replaced (and the Ray engine's shuffle uses)."""
    n = len(keys)
    found = [np.zeros(0, np.int64)]
    for band in range(keys.shape[1]):
        order = np.argsort(keys[:, band], kind="stable")
        sk = keys[order, band]
        found += mh.bucket_pairs(np.r_[True, sk[1:] != sk[:-1]], order, n)
    pairs = np.unique(np.concatenate(found))
    return pairs // n, pairs % n


@pytest.mark.parametrize("n,distinct", [(0, 1), (1, 1), (7, 3), (500, 40), (3000, 25), (2000, 2000)])
def test_candidate_pairs_equal_sorting_per_band(n, distinct):
    # few distinct keys make buckets of every size, past BIG_BUCKET (a star) included; keys
    # that differ only in high bits land in the same table slot and must still not pair
    rng = np.random.default_rng(n)
    keys = rng.integers(0, distinct, size=(n, 5)).astype(np.uint64) << np.uint64(40)
    keys[:, 1] ^= np.uint64(1)
    left, right = mh.candidate_pairs(keys)
    want_left, want_right = _pairs_by_sorting(keys)
    assert np.array_equal(left, want_left) and np.array_equal(right, want_right)
    if n == 3000:
        assert (np.bincount(keys[:, 0].astype(np.int64) >> 40) > mh.BIG_BUCKET).any()


def test_signing_a_column_in_place_equals_signing_the_strings():
    import polars as pl

    rng = random.Random(3)
    words = ["alpha", "Beta", "GAMMA", "ünï", "straße", "ǅemal", "x\u00a0y", "tab\tbed", "日本"]
    docs = [" ".join(rng.choice(words) for _ in range(rng.randint(0, 30))) for _ in range(300)]
    docs += ["", "one", "A B C D E F", "  spaced   out\n\ntext  "]
    column = pl.Series(docs)
    for ngram in (1, 3, 5):
        want = mh.shingle_and_sign(docs, 32, ngram).signatures
        assert np.array_equal(mh.shingle_and_sign(column, 32, ngram).signatures, want)
        assert not np.array_equal(mh.shingle_and_sign(column, 32, ngram, seed=2).signatures, want)


def _mix(x):
    return mh.splitmix64(x & M64)


def _python_oph(text, num_perm, n, seed=1):
    """One-permutation hashing with optimal densification, in plain Python: the shingle
    hashes as above (the 64-bit value, before truncation), each hashed once more with the
    seed's salt; bin = high 32 bits * num_perm >> 32, value = low 31 bits, a bin keeps
    its minimum; an empty bin i copies the first filled bin along probe(i, 1), probe(i, 2), ...,
    marked as a copy by the top bit."""
    words = _python_word_hashes(text)
    width = min(n, len(words))
    salt = mh.oph_salt(seed)
    bins = [None] * num_perm
    for i in range(max(1, len(words) - n + 1)):
        acc = 0x9E3779B97F4A7C15
        for w in words[i:i + width]:
            acc = ((acc ^ w) * 0x100000001B3) & M64
        h = _mix(mh.splitmix64(acc) ^ salt)
        b, v = ((h >> 32) * num_perm) >> 32, h & 0x7FFFFFFF
        bins[b] = v if bins[b] is None else min(bins[b], v)
    probe_salt = _mix(salt ^ 0x5DEECE66D)
    out = []
    for i in range(num_perm):
        t = 1
        while bins[i] is None:
            j = ((_mix(probe_salt ^ (i << 32) ^ t) >> 32) * num_perm) >> 32
            if bins[j] is not None:
                out.append(bins[j] | 0x80000000)
                break
            t += 1
        else:
            out.append(bins[i])
    return out


def test_oph_kernel_matches_the_documented_algorithm_and_fixed_values():
    texts = ["the quick brown fox jumps over the lazy dog",
             "one",  # a single shingle: most empty bins probe past the kernel's table of 16
             " ".join(f"w{i}" for i in range(400))]  # more shingles than bins
    for num_perm in (4, 64, 128):
        got = mh.shingle_and_sign(texts, num_perm, ngram=3, signature="oph").signatures
        assert got.tolist() == [_python_oph(t, num_perm, 3) for t in texts], num_perm
    sig = mh.shingle_and_sign([texts[0]], 4, ngram=3, signature="oph").signatures
    # frozen: a change to hashing, binning or densification changes every user's clusters
    assert sig.tolist() == [[1304556946, 1246890930, 1408894203, 934699615]]


def test_oph_estimates_are_unbiased_on_short_documents():
    """46-shingle documents in 128 bins (most bins empty before densification): the estimate
    is as close to the true Jaccard as k-permutation MinHash's."""
    rng = random.Random(11)
    errs = {"kperm": [], "oph": []}
    for target in (0.5, 0.7, 0.8, 0.9):
        for _ in range(40):
            a, b, true = _pair(rng, 46, target)
            for scheme, found in errs.items():
                sigs = mh.shingle_and_sign([a, b], 128, ngram=1, signature=scheme, seed=rng.randrange(1000)).signatures
                found.append(float(mh.estimated_jaccard(sigs, np.array([0]), np.array([1]), scheme)[0]) - true)
    for scheme, e in errs.items():
        assert abs(np.mean(e)) < 0.015, scheme
    assert np.sqrt(np.mean(np.square(errs["oph"]))) < 1.3 * np.sqrt(np.mean(np.square(errs["kperm"])))


def test_oph_fused_kernels_equal_two_step_and_the_column_path():
    import polars as pl

    rng = random.Random(5)
    docs = [" ".join(rng.choice(["alpha", "beta", "gamma", "δέλτα", "e", "F", "gg"]) for _ in range(rng.randint(0, 80)))
            for _ in range(300)] + ["", "x"]
    for shingle, n in (("word", 5), ("char", 4), ("word", 1)):
        fused = mh.shingle_and_sign(docs, 64, n, shingle, signature="oph").signatures
        two_step = mh.shingle_and_sign(docs, 64, n, shingle, keep_sets=True, signature="oph").signatures
        assert (fused == two_step).all(), shingle
        assert not (fused == mh.shingle_and_sign(docs, 64, n, shingle).signatures).all()
    column = mh.shingle_and_sign(pl.Series(docs), 64, 5, signature="oph").signatures
    assert np.array_equal(column, mh.shingle_and_sign(docs, 64, 5, signature="oph").signatures)
    assert not np.array_equal(column, mh.shingle_and_sign(pl.Series(docs), 64, 5, signature="oph", seed=2).signatures)
    with pytest.raises(ValueError, match="signature"):
        mh.shingle_and_sign(docs, 64, 5, signature="bogus")


@pytest.mark.parametrize("signature", ["oph", "kperm"])
def test_ascii_column_words_equal_the_code_point_path(signature):
    """The in-place ASCII path hashes a text's words in four runs cut at white space: every
    kind of white space, control characters, NUL, capitals, runs of spaces at the cuts,
    texts of 0-4 bytes, one long word, as the code-point path reads them."""
    import polars as pl

    rng = random.Random(9)
    alphabet = "aB \t\n\x0b\x0c\r\x1c\x1d\x1e\x1f\x00\x01xyzZ~"
    docs = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60))) for _ in range(3000)]
    docs += ["", " ", "a", "ab", "a b", "  a  ", "x" * 500, " ".join("W" * i for i in range(40))]
    for ngram in (1, 2, 5):
        want = mh.shingle_and_sign(docs, 32, ngram, signature=signature, keep_sets=True).signatures
        assert np.array_equal(mh.shingle_and_sign(pl.Series(docs), 32, ngram, signature=signature).signatures, want)


@pytest.mark.parametrize("num_perm", [2, 7, 128])
def test_estimated_jaccard_kernel_equals_the_numpy_formula(num_perm):
    """The per-pair kernel gives numpy's values bit for bit: kperm the share of rows that
    agree, oph the agreeing shingle-filled bins over the bins not copied in both."""
    rng = np.random.default_rng(num_perm)
    sigs = rng.integers(0, 2**31, size=(400, num_perm), dtype=np.uint64).astype(np.uint32)
    sigs[1::2] = np.where(rng.random((200, num_perm)) < 0.7, sigs[0::2], sigs[1::2])  # near copies
    sigs |= np.where(rng.random(sigs.shape) < 0.3, mh.COPIED, np.uint32(0))  # bins copied in
    sigs[:, 0] &= ~mh.COPIED  # a signature has a bin its shingles filled, as every one does
    left, right = rng.integers(0, 400, 5000), rng.integers(0, 400, 5000)
    a, b = sigs[left], sigs[right]
    want = {"kperm": (a == b).mean(axis=1),
            "oph": ((a == b) & (a < mh.COPIED)).sum(axis=1) / (num_perm - ((a & b) >= mh.COPIED).sum(axis=1))}
    for scheme, values in want.items():
        got = mh.estimated_jaccard(sigs, left, right, scheme)
        assert got.tobytes() == values.tobytes(), scheme
        assert len(np.unique(got)) >= min(num_perm, 4)
