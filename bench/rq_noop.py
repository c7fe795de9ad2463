"""The no-op job function that RQ workers import by its path, ``bench.rq_noop.noop``.

It lives in a module with no imports. RQ's forking ``Worker`` resolves the
function inside each forked work horse, which imports the module there when the
parent has not, so importing the plugin at that point would charge RQ for work
that is not its own.
"""


def noop(*args, **kwargs):
    """Return an empty result."""
    return {}
