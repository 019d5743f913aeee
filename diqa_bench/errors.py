"""Exception types. A :class:`UserError` is the user's to fix: the CLI prints its one-line message and
exits 2. Anything else is a bug and keeps its traceback."""


class UserError(Exception):
    """Bad input from the user: a config, a path, an option. Printed as one line, exit code 2."""


class ConfigError(UserError):
    """A benchmark config that does not validate. The message names the file and key path."""


class PluginError(UserError):
    """A plugin that failed to import or to register (fatal only with --strict-plugins)."""


class MethodUnavailable(Exception):
    """A method cannot run on this machine (e.g. missing weights). The cell is recorded as
    'not run: <reason>' instead of failing the benchmark. The message must say what is missing
    and where to put it."""


class DataError(Exception):
    """Bad data: a corrupt image, a NaN MOS, a path outside the dataset root. Depending on the
    config's ``bad_input`` policy it either stops the cell or becomes a recorded skip."""


class RunAborted(UserError):
    """The run cannot go on for a reason outside it (e.g. its Ray cluster was lost). The cells
    finished so far are written as an interrupted run; the message says how to resume."""


class WeightsRefused(MethodUnavailable):
    """A weights file or saved fit that is refused: it holds Python objects (loading it could run
    code), is no file of the expected kind, or does not fit the method. Unlike a missing file this
    is an error: ``score`` and ``run`` stop with its one-line message, exit 2."""
