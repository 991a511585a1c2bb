"""A real ComfyUI server process on loopback, with the pack in its custom_nodes, for end-to-end tests.

    with ComfyServer(tree, base_dir) as server:        # starts `main.py --cpu ...`, waits for /system_stats
        server.add_model("checkpoints", ckpt_path)      # links a file into <base>/models/checkpoints/
        entry = server.run(prompt, timeout=300)         # POST /prompt, poll /history/<id>, assert success

Everything lives under ``base_dir`` (``--base-directory``): the ComfyUI tree is never written to.
Every HTTP call and wait has a bound; the process is terminated (then killed) on exit.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from _comfy import REPO_ROOT

HOST = "127.0.0.1"
START_TIMEOUT_S = 120.0
HTTP_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
PACK_DIR_NAME = "ComfyUI-Kinema"
TRACEBACK_MARK = "Traceback (most recent call last)"
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the test process dies, so a killed run leaves no server behind (Linux)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class ServerError(RuntimeError):
    """The server did not start, died, or answered unexpectedly; the message ends with the log's tail."""


class PromptRejected(ServerError):
    """POST /prompt answered 400 (validation failed); ``body`` holds ``error`` and ``node_errors``."""

    def __init__(self, body: dict):
        self.body = body
        self.node_errors = body.get("node_errors", {})
        super().__init__(f"prompt rejected: {json.dumps(body, indent=1)[:4000]}")


class PromptFailed(ServerError):
    """The prompt ran and ended with ``status_str == "error"``; ``entry`` is its history entry."""

    def __init__(self, entry: dict, message: str):
        self.entry = entry
        super().__init__(message)


def free_port() -> int:
    """A TCP port on loopback that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def link_pack(custom_nodes: Path, name: str = PACK_DIR_NAME, root: Path = REPO_ROOT) -> Path:
    """Symlink the repo root into ``custom_nodes/<name>`` (ComfyUI loads a linked directory as a package)."""
    custom_nodes.mkdir(parents=True, exist_ok=True)
    dst = custom_nodes / name
    if not dst.is_symlink():
        dst.symlink_to(root, target_is_directory=True)
    return dst


class ComfyServer:
    """``python main.py --cpu --listen 127.0.0.1`` from ``tree`` with ``--base-directory base_dir``."""

    def __init__(self, tree: Path, base_dir: Path, *, python: str = sys.executable, with_pack: bool = True,
                 extra_args: tuple[str, ...] = (), start_timeout: float = START_TIMEOUT_S):
        self.tree = Path(tree)
        self.base_dir = Path(base_dir)
        self.python = python
        self.with_pack = with_pack
        self.extra_args = tuple(extra_args)
        self.start_timeout = start_timeout
        self.port: int | None = None
        self.proc: subprocess.Popen | None = None
        self.log_path = self.base_dir / "comfyui.log"
        self.client_id = uuid.uuid4().hex
        self.startup_s: float | None = None
        self._object_info: dict | None = None

    # -- lifecycle ------------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def models_dir(self) -> Path:
        return self.base_dir / "models"

    @property
    def output_dir(self) -> Path:
        return self.base_dir / "output"

    def start(self, attempts: int = 3) -> ComfyServer:
        """Start the process and wait until GET /system_stats answers 200 (new port if the last was taken)."""
        for sub in ("custom_nodes", "models", "input", "output", "temp", "user"):
            (self.base_dir / sub).mkdir(parents=True, exist_ok=True)
        if self.with_pack:
            link_pack(self.base_dir / "custom_nodes")
        for attempt in range(attempts):
            try:
                return self._start_once()
            except ServerError as err:
                if attempt + 1 == attempts or "address already in use" not in str(err).lower():
                    raise
        raise AssertionError("unreachable")

    def _start_once(self) -> ComfyServer:
        """One start on a fresh free port; stops the process again if it does not come up."""
        self.port = free_port()
        cmd = [self.python, "main.py", "--cpu", "--listen", HOST, "--port", str(self.port),
               "--disable-auto-launch", "--base-directory", str(self.base_dir),
               "--database-url", "sqlite:///:memory:", *self.extra_args]
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1",
               "HF_HUB_OFFLINE": "1", "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
        env.pop("COMFYUI_PATH", None)
        started = time.monotonic()
        with open(self.log_path, "ab") as log:
            log.write(f"\n=== kinema: {' '.join(cmd)} (cwd {self.tree})\n".encode())
            log.flush()
            self.proc = subprocess.Popen(cmd, cwd=self.tree, env=env, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True,
                                         preexec_fn=_die_with_parent)
        try:
            self._wait_ready(started)
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.monotonic() - started
        return self

    def _wait_ready(self, started: float) -> None:
        """Poll /system_stats until 200, the process dies, or ``start_timeout`` passes."""
        while time.monotonic() - started < self.start_timeout:
            if self.proc.poll() is not None:
                raise ServerError(f"ComfyUI exited with {self.proc.returncode} during startup{self._tail()}")
            try:
                if self._request("GET", "/system_stats", timeout=2.0)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.25)
        raise ServerError(f"ComfyUI did not answer /system_stats within {self.start_timeout:.0f}s{self._tail()}")

    def stop(self) -> None:
        """Terminate the process group, then kill it if it is still there after STOP_TIMEOUT_S."""
        if self.proc is None or self.proc.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, STOP_TIMEOUT_S), (signal.SIGKILL, STOP_TIMEOUT_S)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.proc.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self) -> ComfyServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- HTTP -----------------------------------------------------------------------------------------------

    def _request(self, method: str, path: str, body: Any = None, timeout: float = HTTP_TIMEOUT_S) -> tuple[int, bytes]:
        """One HTTP call without proxies; returns (status, raw body) for 2xx and 4xx/5xx alike."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"} if data else {})
        try:
            with _NO_PROXY.open(req, timeout=timeout) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()

    def get_json(self, path: str, timeout: float = HTTP_TIMEOUT_S) -> Any:
        """GET ``path`` and decode JSON; raises ServerError on a non-200 answer."""
        status, raw = self._request("GET", path, timeout=timeout)
        if status != 200:
            raise ServerError(f"GET {path} answered {status}: {raw[:2000]!r}")
        return json.loads(raw)

    def post_json(self, path: str, body: Any, timeout: float = HTTP_TIMEOUT_S) -> tuple[int, Any]:
        """POST JSON to ``path``; returns (status, decoded body or None)."""
        status, raw = self._request("POST", path, body, timeout=timeout)
        try:
            return status, json.loads(raw) if raw else None
        except json.JSONDecodeError:
            return status, raw.decode(errors="replace")

    def object_info(self, refresh: bool = False) -> dict:
        """GET /object_info (cached after the first call)."""
        if self._object_info is None or refresh:
            self._object_info = self.get_json("/object_info", timeout=60.0)
        return self._object_info

    def post_prompt(self, prompt: dict, *, expect_error: bool = False, extra_data: dict | None = None) -> Any:
        """POST /prompt; returns the prompt_id, or with ``expect_error=True`` the HTTP 400 body.

        An unexpected 400 raises PromptRejected (with ``node_errors``); an unexpected 200 with
        ``expect_error=True`` raises ServerError.
        """
        payload = {"prompt": prompt, "client_id": self.client_id}
        if extra_data:
            payload["extra_data"] = extra_data
        status, body = self.post_json("/prompt", payload)
        if status == 400 and isinstance(body, dict):
            if expect_error:
                return body
            raise PromptRejected(body)
        if status != 200:
            raise ServerError(f"POST /prompt answered {status}: {body!r}{self._tail()}")
        if expect_error:
            raise ServerError(f"POST /prompt accepted a prompt that should fail validation: {body!r}")
        return body["prompt_id"]

    def wait(self, prompt_id: str, timeout: float = 300.0, poll: float = 0.2) -> dict:
        """Poll /history/<id> until the prompt finished (success or error); returns its history entry.

        On timeout, interrupts the server and raises TimeoutError with the log's tail.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise ServerError(f"ComfyUI died while running {prompt_id}{self._tail()}")
            try:
                entry = self.get_json(f"/history/{prompt_id}").get(prompt_id)
            except OSError:  # a busy server (loading a model on a loaded machine) may not answer in time
                continue
            if entry is not None and entry.get("status", {}).get("status_str") in ("success", "error"):
                return entry
            time.sleep(poll)
        self.interrupt()
        raise TimeoutError(f"prompt {prompt_id} did not finish within {timeout:.0f}s{self._tail()}")

    def run(self, prompt: dict, timeout: float = 300.0) -> dict:
        """post_prompt + wait; raises PromptFailed with the exception message and traceback on error."""
        entry = self.wait(self.post_prompt(prompt), timeout)
        if entry["status"]["status_str"] != "success":
            raise PromptFailed(entry, f"prompt failed: {execution_error(entry)}")
        return entry

    def interrupt(self) -> None:
        """POST /interrupt (stops the running prompt)."""
        self._request("POST", "/interrupt", {}, timeout=10.0)

    def free(self) -> None:
        """POST /free: unload models and free memory."""
        self._request("POST", "/free", {"unload_models": True, "free_memory": True}, timeout=30.0)

    def add_model(self, folder: str, src: Path, name: str | None = None) -> str:
        """Link ``src`` into ``<base>/models/<folder>/`` and return the file name to use in a prompt."""
        from _models import place

        name = name or Path(src).name
        place(Path(src), self.models_dir / folder / name)
        return name

    def output_files(self, entry: dict) -> list[Path]:
        """Paths of the files a history entry's outputs list (images, gifs, videos)."""
        found = []
        for node_out in entry.get("outputs", {}).values():
            for items in node_out.values():
                for item in items if isinstance(items, list) else []:
                    if isinstance(item, dict) and "filename" in item:
                        root = self.base_dir / item.get("type", "output")
                        found.append(root / item.get("subfolder", "") / item["filename"])
        return found

    # -- log ------------------------------------------------------------------------------------------------

    def log_text(self) -> str:
        """Everything the server wrote to stdout/stderr so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_since(self, offset: int) -> str:
        """The log from character ``offset`` on (take ``len(server.log_text())`` before an action)."""
        return self.log_text()[offset:]

    def tracebacks(self, text: str | None = None) -> list[str]:
        """The tracebacks in the log (or in ``text``), each with the 30 lines that follow its first line."""
        lines = (self.log_text() if text is None else text).splitlines()
        return ["\n".join(lines[i:i + 30]) for i, line in enumerate(lines) if TRACEBACK_MARK in line]

    def _tail(self, chars: int = 6000) -> str:
        return f"\n--- {self.log_path} (tail) ---\n{self.log_text()[-chars:]}"


def execution_error(entry: dict) -> str:
    """The ``execution_error`` message of a failed history entry: node, exception and traceback."""
    for kind, data in entry.get("status", {}).get("messages", []):
        if kind == "execution_error":
            trace = "".join(data.get("traceback", []))
            return (f"{data.get('node_type')} (node {data.get('node_id')}): {data.get('exception_type')}: "
                    f"{data.get('exception_message')}\n{trace}")
    return json.dumps(entry.get("status", {}))[:2000]
