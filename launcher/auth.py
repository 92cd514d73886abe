"""The job's secret: the token from which every store, heartbeat and rank connection derives
the credentials of its handshake.

A single-node job makes a random token itself and hands it to its workers. A multi-node job's
agents must share one that nobody else knows — whoever holds it can read every store key and
shut the job down — so it must be given: `--rdzv-token`, the `PHALANX_STORE_TOKEN` variable, or
`--rdzv-token-file`, a file only its owner can read (refused otherwise, as ssh refuses a private
key that others can read). Without one a multi-node store does not start.
"""
import os
import stat

from ..distributed.store import TOKEN_ENV, new_token

MIN_TOKEN_CHARS = 16
HOW_TO_MAKE_ONE = ("create one with `umask 077; python -c 'import secrets; "
                   "print(secrets.token_hex(16))' > ~/.phalanx-token`, copy it to every node, and "
                   "pass --rdzv-token-file ~/.phalanx-token (or export the same "
                   f"{TOKEN_ENV} on every node)")


class TokenError(ValueError):
    """No usable secret for a job that needs one."""


def read_token_file(path):
    """The token in `path`, refusing a file other users could read or write."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as e:
        raise TokenError(f"cannot read the token file {path}: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise TokenError(f"the token file {path} is not a regular file")
        if st.st_uid != os.getuid():
            raise TokenError(f"the token file {path} belongs to uid {st.st_uid}, not to you "
                             f"(uid {os.getuid()}); use a token file of your own")
        if st.st_mode & 0o077:
            raise TokenError(f"the token file {path} has mode {stat.S_IMODE(st.st_mode):04o}: "
                             f"other users can read or change it, so it is no secret; run "
                             f"`chmod 600 {path}`")
        with os.fdopen(fd, "r") as f:
            fd = None
            token = f.read().strip()
    finally:
        if fd is not None:
            os.close(fd)
    if not token:
        raise TokenError(f"the token file {path} is empty; {HOW_TO_MAKE_ONE}")
    return token


def job_token(token=None, token_file=None, multi_node=False, environ=None):
    """The store token for this agent: `token` (--rdzv-token), else $PHALANX_STORE_TOKEN, else
    the contents of `token_file`; a random one for a single-node job; else a TokenError."""
    environ = os.environ if environ is None else environ
    source = "--rdzv-token"
    if not token:
        token, source = environ.get(TOKEN_ENV), TOKEN_ENV
    if not token and token_file:
        token, source = read_token_file(token_file), f"--rdzv-token-file {token_file}"
    if not token:
        if not multi_node:
            return new_token()
        raise TokenError(f"a multi-node job needs a secret store token shared by every node "
                         f"(anyone who knows the token can read the store and stop the job); "
                         f"{HOW_TO_MAKE_ONE}")
    if multi_node and len(token) < MIN_TOKEN_CHARS:
        raise TokenError(f"the store token from {source} has {len(token)} characters; a "
                         f"multi-node job needs at least {MIN_TOKEN_CHARS} (a guessable token "
                         f"protects nothing); {HOW_TO_MAKE_ONE}")
    return token
