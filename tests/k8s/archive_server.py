"""python -m tests.k8s.archive_server DIR CERT KEY HOST PORT: serve DIR over HTTPS.

The lane's stand-in for the git host: a RayJob's ``working_dir`` is an https archive of a pinned commit (validation
admits nothing else), so the lane serves ``git archive`` zips from inside its network namespace, with a certificate
of the lane's CA that the Ray head trusts (REQUESTS_CA_BUNDLE).
"""

from __future__ import annotations

import functools
import ssl
import sys
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer


def main(directory: str, cert: str, key: str, host: str, port: str) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = ThreadingHTTPServer((host, int(port)), functools.partial(SimpleHTTPRequestHandler, directory=directory))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.serve_forever()


if __name__ == "__main__":
    main(*sys.argv[1:])
