"""The course hub: a single-machine JupyterHub and the loop an assignment travels.

One concept per module:

- ``course``     -- the course folder: roster, exchange, instructor's area, hub state
- ``accounts``   -- one real Unix account per student (private home), created by the hub
- ``exchange``   -- moving files between root and students safely (no links followed, as-student writes)
- ``assign``     -- ``labkit assign``: release an assignment to every student (uses ``labkit release``)
- ``student``    -- ``labkit fetch`` and ``labkit submit`` (timestamp and SHA-256), run as the student
- ``collect``    -- ``labkit collect``: inboxes -> ``SUBMISSIONS/<student_id>/``, late and missing flagged
- ``handback``   -- ``labkit return``: feedback pages into each student's home, readable only by them
- ``distribute`` -- the lab's notebooks into each home, never overwriting a student's edits
- ``singleuser`` -- what the hub starts as each student: distribute, fetch, then JupyterLab
- ``limits``     -- per-student memory/CPU/process limits with cgroups
- ``spawner``    -- ``LabSpawner``: the local-process spawner with inboxes and enforced limits
- ``auth``       -- ``DemoAuthenticator`` (DEMO ONLY) for ``make hub``
- ``reach``      -- make the lab reachable by students (a private mount namespace when it isn't)
- ``serve``      -- ``labkit hub serve`` (``make hub``): prepare, then become JupyterHub
- ``cli``        -- ``register(subparsers)`` adds the verbs

Grading itself is :mod:`labkit.grading` (``labkit grade``); this package only moves files to it
and back. The hub's configuration is ``deploy/jupyterhub/jupyterhub_config.py``.
"""
