import numpy as np

from curate.dedup.clusters import cluster_table, components, representatives


def test_union_find_is_transitive_and_order_free():
    labels = components(6, np.array([0, 1, 4]), np.array([1, 2, 5]))
    assert labels.tolist() == [0, 0, 0, 3, 4, 4]
    again = components(6, np.array([4, 2, 1]), np.array([5, 1, 0]))
    assert again.tolist() == labels.tolist()


def test_representative_first_in_input_order_without_scores():
    labels = np.array([0, 1, 0, 1, 0])
    assert representatives(labels, None).tolist() == [0, 1, 0, 1, 0]


def test_representative_highest_score_ties_by_order_nan_last():
    labels = np.array([0, 0, 0, 3, 3])
    scores = np.array([2.0, 4.5, 4.5, np.nan, 1.0])
    assert representatives(labels, scores).tolist() == [1, 1, 1, 4, 4]


def test_cluster_table_lists_members_only():
    t = cluster_table(["a", "b", "c", "d"], np.array([0, 1, 0, 3]), np.array([0, 1, 0, 3]),
                      np.array([1.0, 1.0, 0.9, 1.0]), "minhash")
    assert t["id"].to_list() == ["a", "c"]
    assert t["kept_id"].to_list() == ["a", "a"]
    assert t["cluster"].to_list() == [0, 0]
    assert t["similarity"].to_list() == [1.0, 0.9]


def test_star_clusters_do_not_chain():
    from curate.dedup.clusters import star_clusters

    # a~b (0.95), b~c (0.93), a and c not similar: c is kept, not "a duplicate of a"
    rep, sim = star_clusters(3, np.array([0, 1]), np.array([1, 2]), np.array([0.95, 0.93]), None)
    assert rep.tolist() == [0, 0, 2]
    assert sim.tolist() == [1.0, 0.95, 1.0]
    # with scores, the best record keeps its neighbours
    rep, _ = star_clusters(3, np.array([0, 1]), np.array([1, 2]), np.array([0.95, 0.93]), np.array([1.0, 5.0, 2.0]))
    assert rep.tolist() == [1, 1, 1]
