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
    """``token`` is printable ASCII (what an HTTP header carries: a byte-order mark or a euro sign would be
    accepted here and then be unsendable by every device) and long enough to be a secret, else ContractError
    naming where it came from."""
    bad = [ch for ch in token.strip() if not " " < ch <= "~"]
    if bad:
        what = "a byte-order mark (an editor saved it as UTF-8 with BOM)" if bad[0] == "\ufeff" else \
            "the character {!r}".format(bad[0])
        raise ContractError("the token in {} holds {}: a token is printable ASCII (it travels in an HTTP header); "
                            "write it again, e.g. python3 -c 'import secrets; print(secrets.token_urlsafe(32))'".format(
                                where, what))
    if len(token.strip()) < MIN_TOKEN_CHARS:
        raise ContractError("the token in {} has {} characters; use at least {} (e.g. python3 -c 'import secrets; "
                            "print(secrets.token_urlsafe(32))')".format(where, len(token.strip()), MIN_TOKEN_CHARS))
    return token.strip()


def token_file_exposed(path):
    """The file's permission bits when users other than its owner may read or write it, else None."""
    mode = stat.S_IMODE(os.stat(str(path)).st_mode)
    return mode if mode & 0o077 else None


def read_private_token_file(path, flag="--token-file"):
    """:func:`read_token_file`, refused first (ContractError, "run chmod 600 FILE") when users other than its
    owner may read or write the file: host-serve refuses such a file, so the device does too."""
    try:
        mode = token_file_exposed(path)
    except (IOError, OSError) as error:
        raise ContractError("{} {} cannot be read ({})".format(flag, path, error))
    if mode is not None:
        raise ContractError("{} {} has mode {:o}: other users can read or change the token; run chmod 600 {}".format(
            flag, path, mode, path))
    return read_token_file(path, flag)


def token_from_argv(argv, flag="--token"):
    """(the value of ``flag`` in ``argv``, ``argv`` without it) -- ``--token T`` or ``--token=T``; (None, argv)
    when it is not there. device-serve and device-agent use it to move a token given on the command line
    (which every local user can read in ps or /proc/PID/cmdline) into the environment."""
    rest, token, items = [], None, iter(argv)
    for item in items:
        if item == "--":
            rest.append(item)
            rest.extend(items)
            break
        if item == flag:
            token = next(items, None)
            if token is None:
                return None, list(argv)  # argparse says what is missing
            continue
        if item.startswith(flag + "="):
            token = item[len(flag) + 1:]
            continue
        rest.append(item)
    return token, rest
