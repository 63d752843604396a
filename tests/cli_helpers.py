"""Running the CLI in-process in tests (one helper for every test module that needs it)."""

from __future__ import annotations

from tsformer.cli import main


def run(capsys, *argv) -> tuple[int, str, str]:  # noqa: ANN001 - pytest's capsys fixture
    """Exit code, stdout and stderr of one command; argparse's own refusals exit from inside
    parse_args, so SystemExit's code counts like any other."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err
