"""The README's Toolformer figures stay true (skips without ../shared/datasets)."""
from curate.dedup import DedupConfig, run
from curate.readers import read_inputs


def test_toolformer_minhash_counts_match_the_readme(shared_datasets):
    records = read_inputs([shared_datasets / "gpteacher" / "toolformer-dedupe-only.json"]).records
    assert records.height == 7673
    exact = run(records, DedupConfig(methods=["exact"]))
    assert exact.rejected.height == 2
    kept = {}
    for signature in ("oph", "kperm"):  # the default, and the earlier scheme (its figures unchanged)
        for verify in ("estimate", "exact"):
            result = run(records, DedupConfig(methods=["exact", "minhash"], threshold={"minhash": 0.8}, verify=verify,
                                              signature=signature))
            kept[signature, verify] = result.kept.height
    assert kept == {("oph", "estimate"): 7293, ("oph", "exact"): 7406,
                    ("kperm", "estimate"): 7386, ("kperm", "exact"): 7409}
