"""The database connection dies in the middle of an ingest: the patient is asked to try again,
nothing is indexed, `check_vault` reports any blob left behind as an orphan (and nothing
lost), `--fix` removes it, and the retry is stored.

On PostgreSQL the connection is really terminated by the server (`pg_terminate_backend`):
once from a second connection right after the blob was written, and once from inside the
ingest's own transaction (a trigger on the instance insert), after the study and series rows
were already inserted. SQLite runs in this process and has no server to drop a connection:
there its handle is closed under Django, and the in-transaction case is skipped.

The test's own connection is the one that dies, so these tests commit for real
(transaction=True) instead of running inside a test transaction.
"""

import contextlib

import pytest
from django.db import close_old_connections, connection

from tests.reliability import faults
from tests.reliability.support import (
    assert_only_leftovers,
    assert_try_again,
    check_vault,
    only_result,
    orphan_count,
    rows_of,
    stored_keys,
    upload,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def hooked_storage(settings):
    settings.STORAGES = {
        **settings.STORAGES,
        "default": faults.hooked(settings.STORAGES["default"]),
    }


def lose_the_connection() -> None:
    if connection.vendor == "postgresql":
        faults.kill_postgres_backend(
            connection.settings_dict, connection.connection.info.backend_pid
        )
    else:
        connection.connection.close()  # the driver's handle, behind Django's back


@contextlib.contextmanager
def connection_lost_after_the_write(storage, name):
    yield  # the blob is written by now; the index transaction comes next
    lose_the_connection()


@pytest.fixture
def killed_inside_the_transaction(db):
    if connection.vendor != "postgresql":
        pytest.skip("SQLite has no server that could end a connection mid-statement")
    with connection.cursor() as cursor:
        # Study and series rows are already inserted in the ingest's transaction when the
        # instance insert makes the server end this very connection.
        cursor.execute(
            "CREATE FUNCTION reliability_kill_me() RETURNS trigger AS $$ BEGIN "
            "PERFORM pg_terminate_backend(pg_backend_pid()); PERFORM pg_sleep(5); "
            "RETURN NEW; END $$ LANGUAGE plpgsql"
        )
        cursor.execute(
            "CREATE TRIGGER reliability_kill_me BEFORE INSERT ON vault_instance "
            "FOR EACH ROW EXECUTE FUNCTION reliability_kill_me()"
        )

    def disarm():
        with connection.cursor() as cursor:
            cursor.execute("DROP TRIGGER IF EXISTS reliability_kill_me ON vault_instance")
            cursor.execute("DROP FUNCTION IF EXISTS reliability_kill_me()")

    yield disarm
    the_request_ended()
    disarm()


def the_request_ended() -> None:
    """What Django does when a request ends: drop a connection that had errors and no longer
    answers. SQLite's "is it usable?" always says yes, so its dead handle is closed here."""
    close_old_connections()
    if connection.vendor == "sqlite":
        connection.close()


def assert_recovered(client, data: bytes) -> None:
    patient = client.user
    assert rows_of(patient) == (0, 0, 0)
    # The blob was stored before the connection died. Whether the failed ingest could remove
    # it depends on the driver: Django reconnects to PostgreSQL after the failed transaction,
    # so the cleanup asks the database and succeeds; SQLite's handle stays dead and the blob
    # stays, an orphan. Either way check_vault must say exactly that, and nothing worse.
    left = stored_keys(patient)
    clean, report = check_vault(patient, "--grace-seconds", "0")
    assert orphan_count(report) == len(left) and clean == (not left), report
    assert all(f"  - {key}" in report for key in left), report
    assert_only_leftovers(report)

    fixed, report = check_vault(patient, "--fix", "--grace-seconds", "0")
    assert fixed, report
    assert f"Removed orphan blobs: {len(left)}\n" in report
    clean, report = check_vault(patient, "--grace-seconds", "0")
    assert clean and orphan_count(report) == 0, report
    assert stored_keys(patient) == []

    again = only_result(upload(client, data, "IM00001"))
    assert again["outcome"] == "stored", again
    assert again["study"]["images"] == 1
    assert rows_of(patient) == (1, 1, 1)
    clean, report = check_vault(patient, "--grace-seconds", "0")
    assert clean, report


def test_connection_killed_right_after_the_blob_write(hooked_storage, patient_client, ct_files):
    data = ct_files[0].read_bytes()
    with faults.around_blob_write(connection_lost_after_the_write):
        response = upload(patient_client, data, "IM00001")
    assert_try_again(response)
    the_request_ended()
    assert_recovered(patient_client, data)


def test_connection_killed_inside_the_index_transaction(
    killed_inside_the_transaction, patient_client, ct_files
):
    data = ct_files[0].read_bytes()
    assert_try_again(upload(patient_client, data, "IM00001"))
    the_request_ended()
    killed_inside_the_transaction()
    assert_recovered(patient_client, data)
