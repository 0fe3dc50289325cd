import pytest

from bench.common import synthesize_ct


@pytest.fixture(autouse=True)
def _own_upload_temp_dir(settings, tmp_path):
    # check_vault also looks for stale upload temp files; in the shared /tmp it would find
    # (and with --fix remove) files of other processes on this machine.
    folder = tmp_path / "upload-temp"
    folder.mkdir()
    settings.FILE_UPLOAD_TEMP_DIR = str(folder)
    return folder


@pytest.fixture(scope="session")
def ct_files(tmp_path_factory):
    """A small synthetic CT: 40 slices of 256 x 256 (about 130 KB a file), new UIDs."""
    return synthesize_ct(tmp_path_factory.mktemp("ct"), slices=40, size=256)
