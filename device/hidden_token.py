"""A token given on the command line leaves it at once.

``device-serve --token T`` and ``device-agent --token T`` put host-serve's secret into /proc/PID/cmdline,
which every local user can read (``ps -ef``) for as long as the program runs. So, when the token came that
way, the program runs itself again at once (``execve``: the same process id) with the token in the
environment instead (``SQUISHEDNETS_TOKEN``; /proc/PID/environ is readable by its owner only) and says so;
``--token-file F`` (mode-checked: 600) or the variable keep it off the command line from the start.
"""
import os
import sys

from contract.tokens import token_from_argv

TOKEN_ENV = "SQUISHEDNETS_TOKEN"
MOVED_ENV = "SQUISHEDNETS_TOKEN_MOVED"  # set for the second start: say it once, never loop


def move_token_off_the_command_line(module, argv=None, environ=None, execve=None):
    """When ``argv`` (default sys.argv) holds ``--token T``, start ``module`` again without it, the token in
    the environment; returns only when there is nothing to move (or the platform cannot execve)."""
    argv = list(sys.argv if argv is None else argv)
    environ = os.environ if environ is None else environ
    execve = execve or getattr(os, "execve", None)
    token, rest = token_from_argv(argv[1:])
    if not token or execve is None:
        return
    env = dict(environ)
    env[TOKEN_ENV] = token
    env[MOVED_ENV] = "1"
    program = argv[0]
    if os.path.isfile(program) and os.access(program, os.X_OK) and not program.endswith(".py"):
        execve(program, [program] + rest, env)  # the console script: ps still shows its name
    else:
        execve(sys.executable, [sys.executable, "-m", module] + rest, env)


def said_token_moved(prog, log):
    """After the second start: one line saying where the token went, and how to keep it off from the start."""
    if os.environ.pop(MOVED_ENV, None):
        log("{}: --token moved off the command line (other users can read it there, in ps); give it as "
            "--token-file F (mode 600) or in ${}".format(prog, TOKEN_ENV))
