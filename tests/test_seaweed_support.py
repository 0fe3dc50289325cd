"""The test suite's own SeaweedFS starter (tests/support/seaweed.py), on the one failure it
must survive: a port picked free is taken by someone else before SeaweedFS binds it (CI once
lost a whole run to this)."""

import socket

from tests.support.seaweed import SeaweedS3


def test_a_port_taken_before_seaweedfs_binds_it_is_replaced_by_another():
    server = SeaweedS3(bucket="port-clash")
    taken = server.s3_port
    # Bound, as an outgoing connection's port is: SeaweedFS can't have it.
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", taken))
        try:
            server.start()
            assert server.s3_port != taken
            assert "address already in use" in (server.workdir / "weed-attempt-1.log").read_text()
            client = server.client()
            client.put_object(Bucket="port-clash", Key="k", Body=b"stored")
            assert client.get_object(Bucket="port-clash", Key="k")["Body"].read() == b"stored"
        finally:
            server.cleanup(grace=1)
