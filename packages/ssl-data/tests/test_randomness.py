import numpy as np
import pytest

from ssl_data import uniform


def test_rows_depend_only_on_coordinates():
    a = uniform(7, 3, [5, 9, 11], 4)
    b = uniform(7, 3, [11, 5], 4)
    np.testing.assert_array_equal(a[2], b[0])
    np.testing.assert_array_equal(a[0], b[1])


def test_epoch_seed_and_stream_change_numbers():
    base = uniform(0, 0, range(100), 3)
    for other in (
        uniform(0, 1, range(100), 3),
        uniform(1, 0, range(100), 3),
        uniform(0, 0, range(100), 3, stream=1),
    ):
        assert not np.isclose(base, other).any()


def test_distribution_is_uniform():
    u = uniform(0, 0, range(20000), 5).ravel()
    assert u.min() >= 0 and u.max() < 1
    assert abs(u.mean() - 0.5) < 0.005
    counts = np.histogram(u, bins=10, range=(0, 1))[0]
    assert counts.min() > 0.97 * len(u) / 10  # each decile within 3% of its share
    # neighbouring columns are uncorrelated
    m = uniform(0, 0, range(20000), 2)
    assert abs(np.corrcoef(m[:, 0], m[:, 1])[0, 1]) < 0.03


def test_rejects_negative_index():
    with pytest.raises(ValueError, match=">= 0"):
        uniform(0, 0, [-1], 1)
