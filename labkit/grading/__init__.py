"""Grading: author, release, run in a sandbox, and grade into a SQLite gradebook.

Small steps, one module each (nbgrader-preprocessor style):

- ``authoring``  -- read the instructor's source notebook (solution regions, prompts, tests)
- ``release``    -- ``labkit release``: the student version (no solutions, no hidden tests)
- ``prepare``    -- check a submission, restore protected cells, add the export cells
- ``sandbox``    -- bubblewrap + unprivileged user + limits
- ``execute``    -- inside the sandbox: papermill with output caps and per-cell timeouts
- ``export``     -- inside the sandbox: graded values -> plain JSON; the tamper tripwire
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
