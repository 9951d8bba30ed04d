"""Grading: author, release, run in a sandbox, and grade into a SQLite gradebook.

Small steps, one module each (nbgrader-preprocessor style):

- ``authoring``  -- read the instructor's source notebook (solution regions, prompts, tests)
- ``release``    -- ``labkit release``: the student version (no solutions, no hidden tests)
- ``untrusted``  -- everything from a submission or a sandbox: parsed with limits, text cleaned
- ``plans``      -- what the kernel is asked to compute, without a hidden test's text
- ``prepare``    -- check a submission, restore protected cells, list the steps to run
- ``detect``     -- the flagging scan (reads code as Python does)
- ``sandbox``    -- bubblewrap + unprivileged user + limits; ``slots`` and ``cgroups`` per slot
- ``client``     -- grader side: drives the sandboxed kernel over ZMQ, collects outputs and exports
- ``export``     -- inside the kernel: graded values -> plain JSON; the tamper tripwire
- ``checks``     -- grader side: run tests on plain values; plain-words explanations
- ``gradebook``  -- SQLite (WAL), one row per submission x test, overrides
- ``feedback``   -- feedback HTML, grades.csv, lms.csv
- ``batch``      -- ``labkit grade``: the whole pipeline over a folder; ``grade_samples``
- ``cli``        -- ``register(subparsers)`` adds ``release`` and ``grade``
"""
__all__ = ["grade", "grade_samples", "release_assignment"]


def __getattr__(name):
    """Lazy: the modules that run inside the sandbox and the test runner import only what they need
    (importing ``batch`` pulls in nbformat and jsonschema, about a second per process)."""
    if name in ("grade", "grade_samples"):
        from labkit.grading import batch

        return getattr(batch, name)
    if name == "release_assignment":
        from labkit.grading.release import release

        return release
    raise AttributeError(f"module 'labkit.grading' has no attribute {name!r}")
