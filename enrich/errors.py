"""User-facing failures and the exit codes the CLI documents.

Anything the user can fix (a bad option, a missing model, an unreachable bucket) is raised as
`UsageError` before work starts, and the CLI prints its one line without a traceback. Model
weights are checked where they load, in the model actors: one that cannot load raises
`ModelLoadError`, which the driver turns into a `UsageError` before any clip is committed.
"""

EXIT_OK = 0  # every clip succeeded (or was already up to date)
EXIT_CLIPS_FAILED = 1  # the run finished, but at least one clip failed; see the clips table
EXIT_CANNOT_RUN = 2  # bad option, config, model, input or output: nothing was done
EXIT_INFRASTRUCTURE = 3  # storage or the Ray cluster failed under the run; what it committed is kept
EXIT_INTERRUPTED = 130  # stopped by Ctrl-C; committed clips are kept, the rest redo next run


class UsageError(Exception):
    """A problem the user can fix; reported as one line, exit code 2."""


class Busy(UsageError):
    """OUTPUT is held by another run (see `enrich.lock`); a scheduled run skips instead of failing."""


class ModelLoadError(Exception):
    """A model actor could not load its model (weights that do not match their config, out of
    memory): the run stops with this one line and exit code 2, before any clip is committed."""


class InfrastructureError(Exception):
    """Storage that stays unreachable, or a Ray node or object store that died under the driver: not
    a problem with the data. The run stops, keeps what it committed, and says so in one line (exit
    code 3); the same command resumes."""


class ClipError(Exception):
    """A problem with one clip; recorded on its clips row, the run goes on."""
