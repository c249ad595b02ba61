"""The one version of squishednets (pyproject.toml reads it: [tool.setuptools.dynamic]); every command's
``--version`` prints it. Python >= 3.6."""

VERSION = "0.1.0"


def add_version(parser, prog):
    """``--version``: prints "PROG squishednets VERSION" and exits 0 (argparse's own action)."""
    parser.add_argument("--version", action="version", version="{} (squishednets {})".format(prog, VERSION))
    return parser
