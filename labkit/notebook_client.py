"""The notebook client labkit executes notebooks with: papermill's, made stall-proof.

**Why notebooks stalled** (issue 10; ``tests/test_notebook_client.py`` reproduces each step).
jupyter_client's ``Session.send`` writes to a ``zmq.asyncio`` socket through a synchronous
*shadow* of it. nbclient's stand-in for an ipywidgets ``Output`` widget sends a ``comm_msg`` on the
**shell** socket every time the widget's outputs change, and it does so while the client awaits the
cell's ``execute_reply`` on that same socket. A send makes libzmq process the socket's pending
commands, which consumes the edge-triggered wake-up of a reply that has just arrived. pyzmq's
asyncio layer re-checks for such swallowed events after its own sends, but never learns of the
shadow's; so the client sleeps until the cell timeout and only then finds the reply, and the cell
"completes" after exactly the timeout. An explorer cell displays its figure inside an Output widget
just before the cell ends, right when the reply arrives: that is why widget cells stalled, and why
it depended on timing (what ran before in the kernel).

**The fix**, in two layers:

1. the Output-widget stand-in sends its messages through the asyncio socket, whose bookkeeping
   re-checks for pending replies after every send (:class:`AsyncSafeOutputWidget`);
2. a watchdog (:class:`LabkitNotebookClient`): replies are awaited in one-second slices. Each
   slice ends with a real poll of the socket, so any other lost wake-up costs at most a second and
   is counted as *recovered* (a reply that sat unread for more than ``late_after`` seconds). If the
   kernel has announced on IOPub that it is idle for the cell, yet no reply comes within
   ``stall_grace`` seconds, the reply is lost for good: the cell fails at once as ``StalledCell``,
   instead of after the cell timeout.

:func:`execute` runs a notebook with this client through papermill (the ``"labkit"`` engine), and
records what the watchdog saw in the notebook's metadata (``metadata.labkit``).
"""
from __future__ import annotations

import asyncio
import datetime as dt
from queue import Empty
from time import monotonic

import nbformat
from nbclient.client import timestamp
from nbclient.exceptions import CellExecutionComplete, CellExecutionError, CellTimeoutError
from nbclient.jsonutil import json_clean
from nbclient.output_widget import OutputWidget
from nbclient.util import ensure_async
from papermill.clientwrap import PapermillNotebookClient
from papermill.engines import NBClientEngine, papermill_engines

ENGINE = "labkit"


class StalledCell(CellExecutionError):
    """The kernel said it was idle, but the cell's reply never came: the outcome is unknown."""

    def __init__(self, cell_index: int, waited: float):
        self.cell_index, self.waited = cell_index, waited
        message = (f"cell {cell_index}: the kernel went idle but its reply never reached the notebook client "
                   f"(waited {waited:.1f} s)")
        super().__init__(message, "StalledCell", message)


class AsyncSafeOutputWidget(OutputWidget):
    """nbclient's Output-widget stand-in, sending through the asyncio socket instead of a shadow of it."""

    def _publish_msg(self, msg_type, data=None, metadata=None, buffers=None, **keys):
        content = json_clean(dict(data={} if data is None else data, comm_id=self.comm_id, **keys))
        session = self.kernel_client.session
        msg = session.msg(msg_type, content=content, parent=self.parent_header,
                          metadata={} if metadata is None else metadata)
        # zmq.asyncio's send_multipart sends at once when it can, then re-checks the socket for
        # messages whose wake-up the send consumed (Session.send's shadow socket skips that step).
        self.kernel_client.shell_channel.socket.send_multipart(session.serialize(msg))


class LabkitNotebookClient(PapermillNotebookClient):
    """papermill's client with :class:`AsyncSafeOutputWidget` and the stall watchdog (see the module)."""

    #: seconds per wait on a socket; a lost wake-up costs at most this
    slice_seconds = 1.0
    #: seconds a reply may lag the kernel's idle status before the cell counts as stalled
    stall_grace = 5.0
    #: a reply read this long after the kernel sent it had lost its wake-up
    late_after = 0.5
    #: send widget messages through the asyncio socket (False: nbclient's way; for bench/stability.py)
    safe_widgets = True

    def __init__(self, nb_man, **kwargs):
        super().__init__(nb_man, **kwargs)
        if self.safe_widgets:
            self.widget_registry["@jupyter-widgets/output"]["OutputModel"] = AsyncSafeOutputWidget
        self.recovered: list[dict] = []
        self.stalled: dict | None = None

    async def _async_poll_for_reply(self, msg_id, cell, timeout, task_poll_output_msg, task_poll_kernel_alive):
        deadline = None if timeout is None else monotonic() + timeout
        idle_since = None
        while True:
            wait = self.slice_seconds if deadline is None else max(0.0, min(self.slice_seconds, deadline - monotonic()))
            try:
                msg = await ensure_async(self.kc.shell_channel.get_msg(timeout=wait))
            except Empty:
                now = monotonic()
                if task_poll_output_msg.done():  # the kernel has said it is idle for this cell
                    idle_since = idle_since or now
                    if now - idle_since >= self.stall_grace:
                        task_poll_kernel_alive.cancel()
                        raise self._stall(cell, now - idle_since)
                if deadline is not None and now >= deadline:
                    task_poll_kernel_alive.cancel()
                    await self._async_check_alive()
                    reply = await self._async_handle_timeout(timeout, cell)  # raises unless configured not to
                    if reply is not None:
                        return {**reply, "parent_header": {"msg_id": msg_id}}
                    deadline = None
                continue
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            self._note_lateness(msg, cell)
            if self.record_timing:
                cell["metadata"]["execution"]["shell.execute_reply"] = timestamp(msg)
            try:
                await asyncio.wait_for(task_poll_output_msg, self.iopub_timeout)
            except (asyncio.TimeoutError, Empty):
                if self.raise_on_iopub_timeout:
                    task_poll_kernel_alive.cancel()
                    raise CellTimeoutError.error_from_timeout_and_cell(
                        "Timeout waiting for IOPub output", self.iopub_timeout, cell) from None
                self.log.warning("Timeout waiting for IOPub output")
            task_poll_kernel_alive.cancel()
            return msg

    async def _async_poll_output_msg(self, parent_msg_id, cell, cell_index):
        # As nbclient's, but in slices: a wait without a timeout never re-polls the socket.
        while True:
            try:
                msg = await ensure_async(self.kc.iopub_channel.get_msg(timeout=self.slice_seconds))
            except Empty:
                continue
            if msg["parent_header"].get("msg_id") == parent_msg_id:
                try:
                    self.process_message(msg, cell, cell_index)
                except CellExecutionComplete:
                    return

    def _note_lateness(self, msg: dict, cell) -> None:
        sent = msg["header"].get("date")
        if isinstance(sent, dt.datetime):
            lag = (dt.datetime.now(dt.timezone.utc) - sent).total_seconds()
            if lag > self.late_after:
                index = self.nb.cells.index(cell) if cell in self.nb.cells else None
                self.recovered.append({"cell": index, "seconds_late": round(lag, 2)})
                self.log.warning(f"cell {index}: the kernel's reply sat unread for {lag:.1f} s (recovered)")

    def _stall(self, cell, waited: float) -> StalledCell:
        index = self.nb.cells.index(cell) if cell in self.nb.cells else -1
        self.stalled = {"cell": index, "waited": round(waited, 1)}
        error = StalledCell(index, waited)
        cell.setdefault("outputs", []).append(nbformat.v4.new_output(
            "error", ename="StalledCell", evalue=str(error), traceback=[f"StalledCell: {error}"]))
        return error

    def papermill_execute_cells(self):
        try:
            super().papermill_execute_cells()
        finally:
            self.nb.metadata["labkit"] = {"recovered": self.recovered, "stalled": self.stalled}


class LabkitEngine(NBClientEngine):
    """papermill's nbclient engine, executing with :class:`LabkitNotebookClient`."""

    @classmethod
    def execute_managed_notebook(cls, nb_man, kernel_name, log_output=False, stdout_file=None, stderr_file=None,
                                 start_timeout=60, execution_timeout=None, **kwargs):
        kwargs.pop("input_path", None)
        for unused in ("timeout", "startup_timeout"):
            kwargs.pop(unused, None)
        client = LabkitNotebookClient(nb_man, timeout=execution_timeout, startup_timeout=start_timeout,
                                      kernel_name=kernel_name, log=_logger(), log_output=log_output,
                                      stdout_file=stdout_file, stderr_file=stderr_file, **kwargs)
        return client.execute()


def _logger():
    from papermill.log import logger

    return logger


papermill_engines.register(ENGINE, LabkitEngine)


def execute(input_path, output_path, **kwargs):
    """``papermill.execute_notebook`` with the labkit engine; returns the executed notebook."""
    import papermill

    return papermill.execute_notebook(str(input_path), str(output_path), engine_name=ENGINE, **kwargs)
