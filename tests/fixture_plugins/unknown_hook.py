"""A plugin implementing a hook that does not exist (a typo)."""
from harness import hookimpl


@hookimpl
def harness_fitt(method, task, config, ctx):
    return None
