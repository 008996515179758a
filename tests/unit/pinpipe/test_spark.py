import pytest

from pinpipe.spark import with_task_retries


@pytest.mark.parametrize(("master", "expected"), [
    ("local[2]", "local[2,4]"), ("local[*]", "local[*,4]"), ("local", "local[1,4]"),
    ("local[2,8]", "local[2,8]"),  # says its attempts already
    ("spark://127.0.0.1:7077", "spark://127.0.0.1:7077"), ("yarn", "yarn"),
])
def test_a_local_master_gets_task_retries_and_any_other_master_is_kept(master, expected):
    assert with_task_retries(master) == expected
