"""host-serve's bearer token: where it comes from (``--token-file``, or one made and kept in
RUN/host-serve.token, mode 600) and the constant-time check of an Authorization header. A token file that users
other than its owner may read or write is refused, as ssh refuses such a key."""
from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

from contract.errors import ContractError
from contract.tokens import read_token_file, token_file_exposed
from host.errors import HostError

TOKEN_FILE_NAME = "host-serve.token"


def check_token_file_mode(path: Path) -> None:
    """Refuse a token file that users other than its owner may read or write (as ssh does for keys)."""
    mode = token_file_exposed(path)
    if mode is not None:
        raise HostError(f"token file {path} has mode {mode:o}: other users can read or change the token; "
                        f"run chmod 600 {path}")


def load_token(token_file: str | None, run: Path, log=print) -> str:
    """The bearer token: the first line of ``token_file``, or a new one kept in RUN/host-serve.token.

    Call it only for a folder that is a run (:func:`check_run_folder`): it may write the token file there.
    """
    path = Path(token_file) if token_file else run / TOKEN_FILE_NAME
    if token_file or path.exists():
        if path.exists() and not path.is_file():
            raise HostError(f"token file {path} is not a file: give a file whose first line is the token")
        try:
            check_token_file_mode(path)
            return read_token_file(path)
        except OSError as error:
            raise HostError(f"token file {path} cannot be read ({error}); put the token on its first line") from error
        except ContractError as error:
            raise HostError(str(error)) from error
    if not os.access(run, os.W_OK):
        raise HostError(f"the run folder {run} is read-only and holds no {TOKEN_FILE_NAME}: give --token-file F "
                        f"(a file of yours, mode 600, whose first line is the token)")
    token = secrets.token_urlsafe(32)
    descriptor = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(token + "\n")
    log(f"host-serve: no --token-file; made a token in {path}: give devices a copy as --token-file F (mode 600) "
        f"or SQUISHEDNETS_TOKEN, never as --token on a command line (ps shows it)")
    return token


def authorized(header: str, token: str) -> bool:
    """Whether an Authorization header carries ``token`` (constant-time; never true for an empty token)."""
    scheme, _, supplied = header.partition(" ")
    supplied = supplied.strip()
    if scheme.lower() != "bearer" or not supplied or not token:
        return False
    return hmac.compare_digest(supplied.encode("utf-8", "surrogateescape"), token.encode("utf-8"))
