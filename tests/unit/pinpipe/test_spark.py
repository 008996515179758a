import pytest

from pinpipe.spark import with_task_retries


@pytest.mark.parametrize(("master", "expected"), [
    ("local[2]", "local[2,4]"), ("local[*]", "local[*,4]"), ("local", "local[1,4]"),
    ("local[2,8]", "local[2,8]"),  # says its attempts already
    ("spark://127.0.0.1:7077", "spark://127.0.0.1:7077"), ("yarn", "yarn"),
])
def test_a_local_master_gets_task_retries_and_any_other_master_is_kept(master, expected):
    assert with_task_retries(master) == expected


@pytest.mark.parametrize("master, configured, expected", [
    ("local[2]", None, 2), ("local[*, 4]", None, 2), ("yarn", None, None), ("spark://h:7077", None, None),
    ("yarn", 64, 64), ("local[2]", 8, 8),
])
def test_shuffle_partitions_are_the_clusters_unless_set(master, configured, expected):
    from pinpipe.spark import shuffle_partitions_for

    assert shuffle_partitions_for(master, configured) == expected


def test_databricks_keeps_its_own_shuffle_partitions_on_a_single_node_master():
    from pinpipe.spark import shuffle_partitions_for

    assert shuffle_partitions_for("local[*, 4]", None, databricks=True) is None
    assert shuffle_partitions_for("local[*, 4]", 16, databricks=True) == 16


def test_a_cluster_sessions_shuffle_partitions_stay_the_clusters_unless_set(spark):
    from pinpipe.spark import apply_shuffle_partitions

    # A session that starts from the SparkContext's conf, as a cluster's session does (Spark's 200 here).
    session = spark.newSession()
    clusters = session.conf.get("spark.sql.shuffle.partitions")
    assert clusters == "200"
    for master in ("yarn", "spark://h:7077", "k8s://https://k:443"):
        apply_shuffle_partitions(session, master, None)
        assert session.conf.get("spark.sql.shuffle.partitions") == clusters
    apply_shuffle_partitions(session, "local[2]", None, databricks=True)
    assert session.conf.get("spark.sql.shuffle.partitions") == clusters
    apply_shuffle_partitions(session, "yarn", 64)  # PINPIPE_SHUFFLE_PARTITIONS=64
    assert session.conf.get("spark.sql.shuffle.partitions") == "64"
    apply_shuffle_partitions(session, "local[2]", None)
    assert session.conf.get("spark.sql.shuffle.partitions") == "2"
    assert spark.conf.get("spark.sql.shuffle.partitions") == "2"  # the other session's setting is its own


def test_the_tests_session_is_local_with_two_shuffle_partitions(spark):
    assert spark.conf.get("spark.sql.shuffle.partitions") == "2"


def test_a_child_session_keeps_the_shuffle_partitions_a_new_session_would_lose(spark):
    from streaming.delta_sink import child_session

    # The sink's commits and maintenance run in such sessions: 200 tiny tasks a shuffle otherwise.
    assert spark.newSession().conf.get("spark.sql.shuffle.partitions") == "200"
    child = child_session(spark)
    assert child.conf.get("spark.sql.shuffle.partitions") == "2"
    child.conf.set("spark.databricks.delta.write.txnAppId", "a")  # its own settings stay its own
    assert spark.conf.get("spark.databricks.delta.write.txnAppId", None) is None
