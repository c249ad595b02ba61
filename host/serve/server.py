"""``host-serve``: the command line, the listening socket and its signals; the application is host/serve/app.py.

    host-serve --run RUN [--bind 127.0.0.1:8700] [--token-file F]

SIGINT and SIGTERM stop it gracefully (uvicorn finishes the requests in flight), exit status 0.
"""
from __future__ import annotations

import argparse
import socket
import sys
import threading

from fastapi import FastAPI

from contract.address import parse_address
from contract.errors import ContractError
from contract.version import add_version
from host.errors import HostError
from host.serve import app as app_module
from host.serve.app import create_app
from host.serve.auth import load_token
from host.serve.served_run import check_run_folder

DEFAULT_BIND = "127.0.0.1:8700"


class BackgroundServer:
    """host-serve on a thread of this process (tests, notebooks): ``start()`` returns once it listens."""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0, guard=None):
        import uvicorn
        self.server = uvicorn.Server(server_config(app, guard, host=host, port=port, lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, name="host-serve", daemon=True)

    def start(self, timeout: float = 10.0) -> "BackgroundServer":
        import time
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise HostError("host-serve did not start (is the port in use?)")
            time.sleep(0.01)
        return self

    @property
    def url(self) -> str:
        host, port = self.server.servers[0].sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def server_config(app: FastAPI, guard=None, **options):
    """uvicorn's Config for host-serve: the h11 protocol with a header timeout and a connection limit
    (host/serve/guard.py), idle keep-alive connections closed after a few seconds, a bounded log."""
    import uvicorn
    from host.serve.guard import ACCEPT_BURST, KEEP_ALIVE_TIMEOUT_S, ConnectionGuard, install_bounded_logging
    install_bounded_logging()
    guard = guard or ConnectionGuard()
    return uvicorn.Config(app, http=guard.protocol(), ws="none", log_level="warning",
                          timeout_keep_alive=KEEP_ALIVE_TIMEOUT_S, backlog=ACCEPT_BURST, **options)


class _Terminated(BaseException):
    """SIGTERM, raised once uvicorn has finished its graceful shutdown and handed the signal back."""


def parse_bind(text: str) -> tuple[str, int]:
    """``--bind [HOST:]PORT`` (a bare port binds to loopback)."""
    try:
        return parse_address(text, flag="--bind")
    except ContractError as error:
        raise HostError(str(error)) from error


def ipaddress_is_loopback(host: str) -> bool:
    import ipaddress
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind_socket(host: str, port: int, text: str) -> socket.socket:
    """A listening socket on (host, port), or HostError naming the address (in use, not this machine's, ...)."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        listening = socket.socket(family, socket.SOCK_STREAM)
        listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listening.bind((host, port))
        listening.listen(2048)
    except OSError as error:  # gaierror, EADDRINUSE, EADDRNOTAVAIL, EACCES
        raise HostError(f"--bind {text}: cannot listen there ({error.strerror or error}); pick a free port or an "
                        f"address of this machine, e.g. --bind 127.0.0.1:8701") from None
    return listening


#: the least host-serve works with: its connections' guard keeps FD_HEADROOM (320) files for the database and
#: the served files beside at least 16 connections; threads and the event loop need address space
MIN_OPEN_FILES = 336
MIN_ADDRESS_SPACE = 2 << 30


def check_limits(limits=None) -> None:
    """HostError (one line, the limit and the fix) when the process's open-file or address-space limit is below
    what host-serve needs: below them it would start, then answer 500s with a traceback per request.
    ``limits``: (open files, address space bytes) soft limits, read from the process by default (None: none)."""
    import resource
    if limits is None:
        files = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        space = resource.getrlimit(resource.RLIMIT_AS)[0]
        limits = (None if files == resource.RLIM_INFINITY else files,
                  None if space == resource.RLIM_INFINITY else space)
    files, space = limits
    if files is not None and files < MIN_OPEN_FILES:
        raise HostError(f"the open-file limit is {files} (ulimit -n); host-serve needs at least {MIN_OPEN_FILES}: "
                        f"raise it (ulimit -n 1024, or LimitNOFILE=1024 in its systemd unit)")
    if space is not None and space < MIN_ADDRESS_SPACE:
        raise HostError(f"the address-space limit is {space >> 20} MB (ulimit -v); host-serve needs at least "
                        f"{MIN_ADDRESS_SPACE >> 20} MB for its threads: raise it (ulimit -v unlimited)")


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="host-serve", description=app_module.__doc__.split("\n\n")[0])
    add_version(parser, "host-serve")
    parser.add_argument("--run", required=True, help="the run folder (RUN with lineage.sqlite and gen-XX/)")
    parser.add_argument("--bind", default=DEFAULT_BIND,
                        help="[HOST:]PORT to listen on (default %(default)s: loopback only; 0.0.0.0:8700 to "
                             "let devices on the network in)")
    parser.add_argument("--token-file", help="file whose first line is the bearer token devices must send")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    try:
        check_limits()
        host, port = parse_bind(args.bind)
        run = check_run_folder(args.run)  # before anything is written into it
        listening = bind_socket(host, port, args.bind)  # a busy port is refused before a token file is made
        token = load_token(args.token_file, run)
        app = create_app(run, token)
    except HostError as error:
        print(f"host-serve: error: {error}", file=sys.stderr)
        return 2
    import signal
    import uvicorn
    port = listening.getsockname()[1]
    scope = "loopback only" if ipaddress_is_loopback(host) else "reachable from the network"
    mode = "; read-only: reports are not stored" if app.state.read_only else ""
    print(f"host-serve: serving {run} on http://{host}:{port} ({scope}{mode})", flush=True)

    def terminated(signum, frame):
        raise _Terminated()
    # uvicorn catches SIGINT and SIGTERM, shuts down gracefully, then raises the signal again to the handler
    # that was there before it: a KeyboardInterrupt or _Terminated here, after a clean stop
    signal.signal(signal.SIGTERM, terminated)
    try:
        uvicorn.Server(server_config(app)).run(sockets=[listening])
    except (KeyboardInterrupt, _Terminated):
        pass
    print("host-serve: stopped", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
