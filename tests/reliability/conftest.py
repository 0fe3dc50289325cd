import pytest

from bench.common import synthesize_ct


@pytest.fixture(scope="session")
def ct_files(tmp_path_factory):
    """A small synthetic CT: 40 slices of 256 x 256 (about 130 KB a file), new UIDs."""
    return synthesize_ct(tmp_path_factory.mktemp("ct"), slices=40, size=256)
