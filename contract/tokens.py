"""Bearer-token files shared by host-serve (which creates one) and the device (which reads it)."""
import os
import stat

from contract.errors import ContractError

MIN_TOKEN_CHARS = 16


def read_token_file(path, flag="--token-file"):
    """The token on the first line of ``path``; ContractError when it is unreadable, empty or too short
    (an empty token must never be compared: it would let anyone in)."""
    try:
        with open(str(path), encoding="utf-8") as handle:
            token = handle.readline().strip()
    except (IOError, OSError, UnicodeDecodeError) as error:
        raise ContractError("{} {} cannot be read ({})".format(flag, path, error))
    check_token(token, str(path))
    return token


def check_token(token, where):
    """``token`` is long enough to be a secret, else ContractError naming where it came from."""
    if len(token.strip()) < MIN_TOKEN_CHARS:
        raise ContractError("the token in {} has {} characters; use at least {} (e.g. python3 -c 'import secrets; "
                            "print(secrets.token_urlsafe(32))')".format(where, len(token.strip()), MIN_TOKEN_CHARS))
    return token.strip()


def token_file_exposed(path):
    """The file's permission bits when users other than its owner may read or write it, else None."""
    mode = stat.S_IMODE(os.stat(str(path)).st_mode)
    return mode if mode & 0o077 else None
