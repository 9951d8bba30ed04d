"""Inside the sandbox: execute one prepared submission with papermill.

``python -m labkit.grading.execute IN.ipynb OUT.ipynb --cell-timeout S --max-output BYTES``

It runs as the sandbox's unprivileged user, in the sandbox's working folder, with no network.
Errors in cells don't stop the run (every later cell still gets its chance, so one broken
answer costs only its own points); a cell that runs past its timeout is interrupted and the run
goes on; output beyond ``--max-output`` bytes is dropped. It prints one JSON line (its report)
last. The grader treats that report as a hint about the student's own run (e.g. "cell 4 timed
out"); it never decides a score.

Before the kernel starts it reads the notebook into memory and deletes the file (its export
cells name the expressions hidden tests need), and makes itself non-dumpable, so that the
student's kernel (its child, same user) cannot read its memory through ``/proc``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

# jsonschema (imported by nbformat, so by papermill) optionally imports rfc3987_syntax, which builds
# a Lark grammar at import: about 1 s of every sandbox's start-up, for an "iri" format check that
# the notebook schema never uses. Blocking that optional import makes jsonschema skip it.
sys.modules.setdefault("rfc3987_syntax", None)


def _client_class():
    from nbformat.v4 import new_output
    from papermill.clientwrap import PapermillNotebookClient

    class CappedClient(PapermillNotebookClient):
        """papermill's client, with an output budget and a record of timed-out cells."""

        max_output = 2_000_000

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.output_bytes, self.truncated, self.timed_out, self.current = 0, False, [], None

        def execute_cell(self, cell, cell_index, *args, **kwargs):
            self.current = cell_index
            return super().execute_cell(cell, cell_index, *args, **kwargs)

        def output(self, outs, msg, display_id, cell_index):
            content = msg.get("content", {})
            size = len(content.get("text", "")) + sum(len(str(v)) for v in (content.get("data") or {}).values()) \
                + sum(len(str(t)) for t in content.get("traceback", []) or [])
            self.output_bytes += size
            if self.output_bytes > self.max_output:
                if not self.truncated:
                    self.truncated = True
                    outs.append(new_output("stream", name="stderr",
                                           text=f"[labkit] output beyond {self.max_output} bytes was dropped\n"))
                return None
            return super().output(outs, msg, display_id, cell_index)

        async def _async_handle_timeout(self, timeout, cell=None):
            self.timed_out.append(self.current)
            if cell is not None:
                cell.outputs.append(new_output("error", ename="CellTimeout", traceback=[],
                                               evalue=f"this cell ran past {timeout} s and was interrupted"))
            return await super()._async_handle_timeout(timeout, cell)

    return CappedClient


def _not_dumpable() -> None:
    """Keep the student's kernel (same user, our child) from reading this process's memory."""
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 4
    except (OSError, AttributeError):
        pass


def run(src: str, dst: str, cell_timeout: int, max_output: int) -> dict:
    import nbformat
    import papermill
    from papermill.exceptions import PapermillExecutionError
    from papermill.engines import NBClientEngine, papermill_engines

    client_cls = _client_class()
    client_cls.max_output = max_output
    holder = {}

    class Engine(NBClientEngine):
        @classmethod
        def execute_managed_notebook(cls, nb_man, kernel_name, log_output=False, stdout_file=None,
                                     stderr_file=None, start_timeout=60, execution_timeout=None, **kwargs):
            client = client_cls(nb_man, timeout=execution_timeout, startup_timeout=start_timeout,
                                kernel_name=kernel_name, log_output=False, allow_errors=True,
                                interrupt_on_timeout=True, raise_on_iopub_timeout=False,
                                error_on_timeout={"ename": "CellTimeout", "evalue": "interrupted", "traceback": []},
                                # the sandbox is thrown away: no graceful kernel shutdown, no history file
                                shutdown_kernel="immediate", extra_arguments=["--HistoryManager.enabled=False"])
            holder["client"] = client
            return client.execute()

    papermill_engines.register("labkit-sandbox", Engine)
    nb = nbformat.read(src, as_version=4)
    os.unlink(src)  # the export cells name what hidden tests need: keep them off the disk during the run
    _not_dumpable()
    start = time.perf_counter()
    report = {"status": "ok", "error": None}
    try:
        papermill.execute_notebook(nb, dst, kernel_name="python3", engine_name="labkit-sandbox",
                                   execution_timeout=cell_timeout, progress_bar=False, log_output=False,
                                   request_save_on_cell_execute=False)
    except PapermillExecutionError:
        pass  # an error in a student's cell: recorded in the notebook, and the run went on
    except Exception as exc:  # DeadKernelError and friends: the kernel died
        report = {"status": "crashed", "error": f"{type(exc).__name__}: {exc}"[:500]}
    client = holder.get("client")
    if client is not None and report["status"] == "crashed":
        try:  # keep what ran before the crash, for the student's feedback
            nbformat.write(client.nb, dst)
        except Exception:  # noqa: BLE001
            pass
    report.update(seconds=round(time.perf_counter() - start, 2),
                  cell=client.current if client else None,
                  timed_out=sorted(set(client.timed_out)) if client else [],
                  truncated=bool(client and client.truncated))
    return report


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("--cell-timeout", type=int, default=60)
    p.add_argument("--max-output", type=int, default=2_000_000)
    args = p.parse_args(argv)
    report = run(args.src, args.dst, args.cell_timeout, args.max_output)
    sys.stdout.write("\nLABKIT-REPORT " + json.dumps(report) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
