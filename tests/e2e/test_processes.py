"""The child-process helpers every end-to-end test stands on: free ports."""

from __future__ import annotations

import socket

import pytest

from falcon_tracing_wsgi.demo.processes import free_port


@pytest.mark.parametrize('kind', [socket.SOCK_STREAM, socket.SOCK_DGRAM], ids=['tcp', 'udp'])
def test_free_port_never_hands_out_a_port_twice(kind):
    # Servers picked one after another before any binds (Jaeger's sixteen listeners)
    # collided when the OS offered a closed probe's port again (CI, stop 25).
    ports = [free_port(kind=kind) for _ in range(600)]
    assert len(set(ports)) == len(ports)
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(('127.0.0.1', ports[-1]))  # and it is free: a server can bind it
