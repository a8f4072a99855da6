#!/usr/bin/env python3
"""A stand-in osquery core, built from osquery's own generated Thrift code
(the PyPI `osquery` package) and the `thrift` runtime, for driving the
`osquery-dbus` binary the way osqueryd does.

Usage: fake_core.py SCENARIO --bin BIN --workdir DIR [--root ROOT] [--wrap CMD]

`--wrap "old-kernel --kernel 4.18 --"` launches the extension through that
command line (split as a shell would, then BIN and its arguments appended),
so a scenario can run under a wrapper that execs it.

Each scenario starts the core and/or the extension, plays its part, and
prints one JSON object of *observations* on stdout (codes, messages, rows,
timings, exit status). It asserts nothing: the Rust test
(tests/osquery_peer.rs) holds the expectations, so every check can fail.
Diagnostics go to stderr.
"""
import argparse
import json
import os
import shlex
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

from osquery.extensions import Extension, ExtensionManager
from osquery.extensions.ttypes import (
    ExtensionResponse,
    ExtensionStatus,
)
from thrift.protocol import TBinaryProtocol
from thrift.transport import TSocket, TTransport

UUID = 7


def log(*args):
    print("fake_core:", *args, file=sys.stderr, flush=True)


def code_of(status):
    """osquery's C++ reads an absent i32 as 0; Python's Thrift gives None."""
    if status is None:
        return None
    return 0 if status.code is None else status.code


class CoreHandler(ExtensionManager.Iface):
    def __init__(self, core):
        self.core = core

    def ping(self):
        return ExtensionStatus(code=0, message="OK", uuid=0)

    def call(self, registry, item, request):
        return ExtensionResponse(
            status=ExtensionStatus(code=1, message="the fake core hosts no plugins"),
            response=[],
        )

    def shutdown(self):
        pass

    def extensions(self):
        if self.core.wedged.is_set():
            self.core.dead.wait()
            raise TTransport.TTransportException(message="wedged core died")
        with self.core.lock:
            self.core.extensions_calls += 1
            return dict(self.core.registered_info)

    def options(self):
        return {}

    def registerExtension(self, info, registry):
        core = self.core
        with core.lock:
            core.register_attempts.append(time.monotonic())
            if core.duplicates_left > 0:
                core.duplicates_left -= 1
                return ExtensionStatus(code=1, message="Duplicate extension registered")
            if core.refuse is not None:
                return ExtensionStatus(code=1, message=core.refuse)
            core.info = info
            core.registry = registry
            core.registered_info[UUID] = info
            core.registered.set()
            return ExtensionStatus(code=0, message="OK", uuid=UUID)

    def deregisterExtension(self, uuid):
        with self.core.lock:
            self.core.registered_info.pop(uuid, None)
        return ExtensionStatus(code=0, message="OK", uuid=uuid)

    def query(self, sql):
        return ExtensionResponse(
            status=ExtensionStatus(code=1, message="the fake core runs no SQL"), response=[]
        )

    def getQueryColumns(self, sql):
        return self.query(sql)


class FakeCore:
    """The core's extension manager socket. `die()` behaves like a dying
    osqueryd: the listening socket closes, its file goes, and every accepted
    connection is dropped."""

    def __init__(self, path, duplicates=0, refuse=None):
        self.path = path
        self.lock = threading.Lock()
        self.duplicates_left = duplicates
        self.refuse = refuse
        self.register_attempts = []
        self.registered_info = {}
        self.extensions_calls = 0
        self.info = None
        self.registry = None
        self.registered = threading.Event()
        self.dead = threading.Event()
        # A wedged core still accepts connections but answers nothing.
        self.wedged = threading.Event()
        self.clients = []
        self.processor = ExtensionManager.Processor(CoreHandler(self))
        self.server = TSocket.TServerSocket(unix_socket=path)
        self.server.listen()
        # A timeout lets the accept loop notice `die()`.
        self.server.handle.settimeout(0.1)
        self.thread = threading.Thread(target=self._accept_loop, daemon=True)
        self.thread.start()

    def _accept_loop(self):
        while not self.dead.is_set():
            try:
                client = self.server.accept()
            except (socket.timeout, TimeoutError):
                continue
            except OSError:
                if self.dead.is_set():
                    return
                raise
            client.handle.settimeout(None)
            with self.lock:
                self.clients.append(client)
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client):
        itrans = TTransport.TBufferedTransport(client)
        otrans = TTransport.TBufferedTransport(client)
        iprot = TBinaryProtocol.TBinaryProtocol(itrans)
        oprot = TBinaryProtocol.TBinaryProtocol(otrans)
        try:
            while not self.dead.is_set():
                self.processor.process(iprot, oprot)
        except TTransport.TTransportException:
            pass
        except Exception as e:  # a dying core drops connections mid-call
            if not self.dead.is_set():
                log("core connection error:", repr(e))
        finally:
            client.close()

    def forget(self, uuid):
        """The core drops the extension but keeps running."""
        with self.lock:
            self.registered_info.pop(uuid, None)

    def die(self):
        if self.dead.is_set():
            return
        self.dead.set()
        try:
            self.server.handle.close()
        except OSError:
            pass
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        with self.lock:
            clients, self.clients = self.clients, []
        for c in clients:
            handle = c.handle  # None once its serving thread closed it
            if handle is not None:
                try:
                    handle.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            c.close()
        self.thread.join(2)


# --- the extension side -----------------------------------------------------


def ext_client(path, timeout=5.0):
    sock = TSocket.TSocket(unix_socket=path)
    sock.setTimeout(int(timeout * 1000))
    trans = TTransport.TBufferedTransport(sock)
    proto = TBinaryProtocol.TBinaryProtocol(trans)
    client = Extension.Client(proto)
    trans.open()
    return client, trans


def status_obs(status):
    if status is None:
        return None
    return {"code": code_of(status), "message": status.message, "uuid": status.uuid}


def ping(path, timeout=5.0):
    client, trans = ext_client(path, timeout)
    try:
        return status_obs(client.ping())
    finally:
        trans.close()


def call(path, registry, item, request, timeout=10.0):
    client, trans = ext_client(path, timeout)
    try:
        r = client.call(registry, item, request)
        return {"status": status_obs(r.status), "response": r.response}
    finally:
        trans.close()


def call_bytes(registry, item, request):
    """The bytes a client sends for one `call`."""
    buf = TTransport.TMemoryBuffer()
    Extension.Client(TBinaryProtocol.TBinaryProtocol(buf)).send_call(registry, item, request)
    return buf.getvalue()


def raw_reply(path, request_bytes, timeout=40.0):
    """Sends one request, half-closes, and reads until the extension hangs
    up (it does once the next request is the end of input): how long the
    whole reply took to arrive, and its size, with no decoding on our side."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(path)
        t = time.monotonic()
        s.sendall(request_bytes)
        s.shutdown(socket.SHUT_WR)
        size = 0
        while True:
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            size += len(chunk)
        return time.monotonic() - t, size
    finally:
        s.close()


# The `--wrap` command line, prepended to every launch of the extension.
# The wrapper must exec the extension (not fork it), so killing the process
# started here kills the extension.
WRAP = []


def start_extension(binary, args, workdir, name="ext"):
    env = dict(os.environ)
    env.pop("RUST_LOG", None)
    stderr = open(os.path.join(workdir, name + ".stderr"), "wb")
    proc = subprocess.Popen(WRAP + [binary] + args, stdout=subprocess.DEVNULL, stderr=stderr, env=env)
    proc.stderr_path = stderr.name
    return proc


def stderr_of(proc):
    with open(proc.stderr_path, "rb") as f:
        return f.read().decode("utf-8", "replace")


def wait_for(pred, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return pred()


def wait_exit(proc, timeout):
    """Seconds until exit (measured from now) and the exit status."""
    t0 = time.monotonic()
    try:
        rc = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        return {"exited": False, "elapsed": time.monotonic() - t0, "returncode": None}
    return {"exited": True, "elapsed": time.monotonic() - t0, "returncode": rc}


def ext_socket(core_socket):
    return "%s.%d" % (core_socket, UUID)


def wait_serving(core, proc, timeout=8.0):
    ok = wait_for(lambda: core.registered.is_set() and os.path.exists(ext_socket(core.path)), timeout)
    if not ok:
        raise RuntimeError(
            "extension did not register and serve (alive=%s):\n%s"
            % (proc.poll() is None, stderr_of(proc))
        )


def registration_obs(core):
    info = core.info
    return {
        "info": {
            "name": info.name,
            "version": info.version,
            "sdk_version": info.sdk_version,
            "min_sdk_version": info.min_sdk_version,
        },
        "registry": core.registry,
    }


def raw_exchange(path, payload, half_close=False, timeout=3.0):
    """Sends bytes on a fresh connection and reads until the extension hangs
    up. `closed` is False if it kept the connection open past `timeout`."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(path)
    received = b""
    closed = False
    try:
        try:
            s.sendall(payload)
        except (BrokenPipeError, ConnectionResetError):
            return {"closed": True, "received": 0}
        if half_close:
            s.shutdown(socket.SHUT_WR)
        while True:
            chunk = s.recv(65536)
            if not chunk:
                closed = True
                break
            received += chunk
    except (socket.timeout, TimeoutError):
        closed = False
    except ConnectionResetError:
        closed = True
    finally:
        s.close()
    return {"closed": closed, "received": len(received)}


def tstring(b):
    return struct.pack(">i", len(b)) + b


def call_header(seq=1):
    """Strict binary header of a `call` message, as osquery writes it."""
    return struct.pack(">I", 0x80010001) + tstring(b"call") + struct.pack(">i", seq)


# --- scenarios -----------------------------------------------------------------


def context_json(registry, constraints, cols):
    names = [r["name"] for r in registry["table"]["dbus_service_files"]]
    bitset = sum(1 << names.index(c) for c in cols if c in names)
    return json.dumps({"constraints": constraints, "colsUsed": cols, "colsUsedBitset": bitset})


def scenario_main(a):
    obs = {}
    core_sock = os.path.join(a.workdir, "core.sock")
    core = FakeCore(core_sock)
    # osquery's argument order varies; also the `--flag=value` form and --verbose.
    proc = start_extension(
        a.bin,
        ["--interval", "1", "--root", a.root, "--socket=" + core_sock, "--timeout", "3", "--verbose"],
        a.workdir,
    )
    try:
        wait_serving(core, proc)
        obs["registration"] = registration_obs(core)
        ext = ext_socket(core_sock)
        obs["ping"] = ping(ext)

        planted = "/usr/share/dbus-1/system-services/planted.service"
        reg = core.registry
        ctx = context_json(
            reg,
            [{"name": "path", "list": [{"op": 2, "expr": planted}], "affinity": "TEXT"}],
            ["path", "uid", "mtime"],
        )
        obs["generate_constrained"] = call(
            ext, "table", "dbus_service_files", {"action": "generate", "context": ctx}
        )
        all_cols = [r["name"] for r in reg["table"]["dbus_service_files"]]
        ctx = context_json(reg, [], all_cols)
        obs["generate_all"] = call(
            ext, "table", "dbus_service_files", {"action": "generate", "context": ctx}
        )
        obs["columns"] = call(ext, "table", "dbus_service_files", {"action": "columns"})
        obs["unknown_table"] = call(ext, "table", "no_such_table", {"action": "generate", "context": "{}"})
        obs["embedded_table"] = call(ext, "table", "users", {"action": "generate", "context": "{}"})
        obs["unknown_registry"] = call(ext, "config", "dbus_service_files", {"action": "generate"})
        obs["unknown_action"] = call(ext, "table", "dbus_service_files", {"action": "explode"})
        obs["bad_context"] = call(
            ext, "table", "dbus_service_files", {"action": "generate", "context": '{"constraints": ['}
        )

        # Hostile bytes, each on its own connection.
        hostile = {}
        hostile["garbage"] = raw_exchange(ext, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + bytes(range(256)))
        hostile["truncated"] = raw_exchange(
            ext, call_header() + b"\x0b\x00\x01" + struct.pack(">i", 5) + b"ta", half_close=True
        )
        # call(registry=<a string claiming 2 GB>) with a few bytes behind it.
        hostile["huge_string"] = raw_exchange(
            ext, call_header() + b"\x0b\x00\x01" + struct.pack(">i", 0x7FFFFFFF) + b"table" * 10
        )
        hostile["negative_string"] = raw_exchange(
            ext, call_header() + b"\x0b\x00\x01" + struct.pack(">i", -2) + b"table"
        )
        # call(request=<a map claiming 2^31-1 entries>).
        hostile["huge_map"] = raw_exchange(
            ext, call_header() + b"\x0d\x00\x03\x0b\x0b" + struct.pack(">i", 0x7FFFFFFF) + b"\x00" * 64
        )
        # A method name claiming 2 GB.
        hostile["huge_name"] = raw_exchange(
            ext, struct.pack(">I", 0x80010001) + struct.pack(">i", 0x7FFFFFFF) + b"call"
        )
        obs["hostile"] = hostile
        obs["after_hostile"] = {
            "alive": proc.poll() is None,
            "ping": ping(ext),
            "generate": call(ext, "table", "dbus_service_files", {"action": "generate", "context": ""}),
        }

        # Concurrency: a request stuck half-sent on one connection (its
        # server thread is mid-read) and generates running in a loop on
        # another must not hold up pings on fresh connections.
        stuck = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stuck.connect(ext)
        stuck.sendall(call_header() + b"\x0b\x00\x01" + struct.pack(">i", 5) + b"ta")
        gen_results = []
        stop_gen = threading.Event()

        def generate_loop():
            client, trans = ext_client(ext, 10)
            try:
                while not stop_gen.is_set():
                    r = client.call("table", "dbus_service_files", {"action": "generate", "context": ctx})
                    gen_results.append(code_of(r.status))
            finally:
                trans.close()

        gen_thread = threading.Thread(target=generate_loop)
        gen_thread.start()
        pings = []
        t0 = time.monotonic()
        for _ in range(10):
            p0 = time.monotonic()
            try:
                pings.append({"code": ping(ext, timeout=2.0)["code"], "secs": time.monotonic() - p0})
            except Exception as e:
                pings.append({"code": None, "error": repr(e), "secs": time.monotonic() - p0})
        stop_gen.set()
        gen_thread.join(10)
        stuck.close()
        obs["concurrency"] = {
            "pings": pings,
            "generates": gen_results,
            "elapsed": time.monotonic() - t0,
        }

        # The core goes away: listener closed, file removed, connections dropped.
        core.die()
        obs["core_gone"] = wait_exit(proc, 6)
        obs["core_gone"]["socket_left"] = os.path.exists(ext)
        obs["stderr"] = stderr_of(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
        core.die()
    return obs


def scenario_sigterm(a):
    core_sock = os.path.join(a.workdir, "core.sock")
    core = FakeCore(core_sock)
    # A long interval: the signal must not wait for the next liveness check.
    proc = start_extension(
        a.bin, ["--socket", core_sock, "--timeout", "3", "--interval", "5", "--root", a.root], a.workdir
    )
    try:
        wait_serving(core, proc)
        obs = {"ping": ping(ext_socket(core_sock))}
        proc.send_signal(signal.SIGTERM)
        obs["exit"] = wait_exit(proc, 5)
        obs["exit"]["socket_left"] = os.path.exists(ext_socket(core_sock))
        obs["stderr"] = stderr_of(proc)
        return obs
    finally:
        if proc.poll() is None:
            proc.kill()
        core.die()


def scenario_shutdown(a):
    core_sock = os.path.join(a.workdir, "core.sock")
    core = FakeCore(core_sock)
    proc = start_extension(
        a.bin, ["--socket", core_sock, "--timeout", "3", "--interval", "5"], a.workdir
    )
    try:
        wait_serving(core, proc)
        client, trans = ext_client(ext_socket(core_sock))
        try:
            client.shutdown()
        finally:
            trans.close()
        obs = {"exit": wait_exit(proc, 5)}
        obs["exit"]["socket_left"] = os.path.exists(ext_socket(core_sock))
        return obs
    finally:
        if proc.poll() is None:
            proc.kill()
        core.die()


def scenario_duplicate(a):
    """The extension starts before the core's socket exists (as osquery may
    launch it), then the core twice reports a duplicate before accepting."""
    core_sock = os.path.join(a.workdir, "core.sock")
    proc = start_extension(
        a.bin, ["--timeout", "5", "--socket", core_sock, "--interval", "1"], a.workdir
    )
    core = None
    try:
        time.sleep(0.6)
        obs = {"alive_before_core": proc.poll() is None}
        core = FakeCore(core_sock, duplicates=2)
        wait_serving(core, proc)
        attempts = core.register_attempts
        obs["attempts"] = len(attempts)
        obs["gaps"] = [b - a_ for a_, b in zip(attempts, attempts[1:])]
        obs["registration"] = registration_obs(core)
        obs["ping"] = ping(ext_socket(core_sock))
        proc.send_signal(signal.SIGTERM)
        obs["exit"] = wait_exit(proc, 5)
        return obs
    finally:
        if proc.poll() is None:
            proc.kill()
        if core:
            core.die()


def scenario_nocore(a):
    core_sock = os.path.join(a.workdir, "core.sock")
    proc = start_extension(
        a.bin, ["--socket", core_sock, "--timeout", "2", "--interval", "1"], a.workdir
    )
    try:
        obs = {"exit": wait_exit(proc, 8)}
        obs["stderr"] = stderr_of(proc)
        return obs
    finally:
        if proc.poll() is None:
            proc.kill()


def scenario_refused(a):
    core_sock = os.path.join(a.workdir, "core.sock")
    core = FakeCore(core_sock, refuse="Table name conflicts with an existing table")
    proc = start_extension(
        a.bin, ["--socket", core_sock, "--timeout", "3", "--interval", "1"], a.workdir
    )
    try:
        obs = {"exit": wait_exit(proc, 8)}
        obs["attempts"] = len(core.register_attempts)
        obs["stderr"] = stderr_of(proc)
        return obs
    finally:
        if proc.poll() is None:
            proc.kill()
        core.die()


def scenario_deregistered(a):
    core_sock = os.path.join(a.workdir, "core.sock")
    core = FakeCore(core_sock)
    proc = start_extension(
        a.bin, ["--socket", core_sock, "--timeout", "3", "--interval", "1"], a.workdir
    )
    try:
        wait_serving(core, proc)
        obs = {"ping": ping(ext_socket(core_sock))}
        # Let one liveness check pass while still listed.
        calls = core.extensions_calls
        obs["checked_while_listed"] = wait_for(lambda: core.extensions_calls > calls, 3)
        obs["alive_while_listed"] = proc.poll() is None
        core.forget(UUID)
        obs["exit"] = wait_exit(proc, 6)
        obs["exit"]["socket_left"] = os.path.exists(ext_socket(core_sock))
        obs["core_still_listening"] = os.path.exists(core_sock) and not core.dead.is_set()
        return obs
    finally:
        if proc.poll() is None:
            proc.kill()
        core.die()


def scenario_generate(a):
    """One generate of `--table` with `--context`, served from `--root` and
    `--proc`: for comparing the Thrift path with the embedded host."""
    core_sock = os.path.join(a.workdir, "core.sock")
    core = FakeCore(core_sock)
    args = ["--socket", core_sock, "--root", a.root, "--interval", a.interval, "--timeout", "3"]
    if a.proc:
        args += ["--proc", a.proc]
    proc = start_extension(a.bin, args, a.workdir)
    try:
        wait_serving(core, proc)
        return call(
            ext_socket(core_sock), "table", a.table, {"action": "generate", "context": a.context}
        )
    finally:
        proc.kill()
        proc.wait()
        core.die()


def scenario_hold(a):
    """A core and an extension that stay up for a driver on stdin (the Rust
    tests in tests/extension_abuse.rs talk to the extension's socket
    themselves). Prints one JSON line per event; commands, one per line:

    - `die`: the core dies; reports the extension's exit.
    - `restart`: a new core on the same socket path and a relaunched
      extension (as osqueryd's watcher does); reports its registration.
    - `sigterm`: SIGTERM to the extension; reports its exit.
    - `wait`: reports the extension's exit (after a `shutdown` call).
    - `signal NAME`: that signal (HUP, USR1, ...) to the extension; reports
      its exit.
    - `wedge`: the core keeps accepting but never answers again; reports
      the extension's exit.
    - `swap`: the core dies and a new one on the same path at once
      relaunches the extension, which gets the same uuid (as osquery's
      16-bit uuids sometimes do); reports the first extension's exit, and
      whether the second still serves on the socket path.

    End of input kills whatever is left. Returns None: the events were the
    output."""
    core_sock = os.path.join(a.workdir, "core.sock")
    args = ["--socket", core_sock, "--root", a.root, "--interval", a.interval, "--timeout", "3"]
    state = {"core": FakeCore(core_sock), "proc": None, "n": 0}

    def launch():
        state["n"] += 1
        state["proc"] = start_extension(a.bin, args, a.workdir, name="ext%d" % state["n"])
        wait_serving(state["core"], state["proc"])
        emit({
            "event": "serving",
            "socket": ext_socket(core_sock),
            "pid": state["proc"].pid,
            "registration": registration_obs(state["core"])["info"],
            "registered_uuids": sorted(state["core"].registered_info),
        })

    def exit_obs(what, timeout):
        obs = wait_exit(state["proc"], timeout)
        obs["event"] = what
        obs["socket_left"] = os.path.exists(ext_socket(core_sock))
        obs["stderr"] = stderr_of(state["proc"])
        emit(obs)

    def emit(obj):
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    signal.alarm(0)  # the driver owns the time limits here
    try:
        launch()
        for line in sys.stdin:
            cmd = line.strip()
            if cmd == "die":
                state["core"].die()
                exit_obs("core_gone", 6)
            elif cmd == "restart":
                state["core"] = FakeCore(core_sock)
                launch()
            elif cmd == "sigterm":
                state["proc"].send_signal(signal.SIGTERM)
                exit_obs("sigterm", 6)
            elif cmd == "wait":
                exit_obs("exited", 6)
            elif cmd.startswith("signal "):
                state["proc"].send_signal(getattr(signal, "SIG" + cmd.split()[1]))
                exit_obs("signalled", 6)
            elif cmd == "wedge":
                state["core"].wedged.set()
                exit_obs("wedged", 12)
            elif cmd == "swap":
                old = state["proc"]
                state["core"].die()
                state["core"] = FakeCore(core_sock)
                launch()
                new = state["proc"]
                state["proc"] = old
                obs = wait_exit(old, 8)
                obs["event"] = "swapped"
                obs["stderr"] = stderr_of(old)
                if not obs["exited"]:
                    # What the first SIGTERM does to the orphan.
                    old.send_signal(signal.SIGTERM)
                    obs["after_sigterm"] = wait_exit(old, 3)
                    if old.poll() is None:
                        old.kill()
                        old.wait()
                state["proc"] = new
                obs["socket_left"] = os.path.exists(ext_socket(core_sock))
                try:
                    obs["new_ping"] = ping(ext_socket(core_sock), timeout=3.0)
                except Exception as e:
                    obs["new_ping"] = repr(e)
                obs["new_alive"] = new.poll() is None
                emit(obs)
            else:
                emit({"event": "error", "message": "unknown command %r" % cmd})
    finally:
        if state["proc"] is not None and state["proc"].poll() is None:
            state["proc"].kill()
        state["core"].die()
    return None


def rss_kib(pid, field="VmRSS"):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def scenario_bench(a):
    """For scripts/bench.sh: registration latency, resident
    memory idle and during `--reps` generates of `--table`, and rows/s
    (decoded as the core would), then `--reps` more read off the wire
    undecoded (the extension's own time)."""
    core_sock = os.path.join(a.workdir, "core.sock")
    core = FakeCore(core_sock)
    args = ["--socket", core_sock, "--root", a.root, "--interval", a.interval, "--timeout", "3"]
    if a.proc:
        args += ["--proc", a.proc]
    t0 = time.monotonic()
    proc = start_extension(a.bin, args, a.workdir)
    try:
        wait_for(core.registered.is_set, 8.0)
        registered = time.monotonic() - t0
        wait_serving(core, proc)
        time.sleep(1.0)
        idle = rss_kib(proc.pid)
        peak_sampled = [0]
        done = threading.Event()

        def sample():
            while not done.is_set():
                peak_sampled[0] = max(peak_sampled[0], rss_kib(proc.pid) or 0)
                time.sleep(0.005)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        times, rows = [], 0
        request = {"action": "generate", "context": a.context}
        for _ in range(a.reps):
            t = time.monotonic()
            obs = call(ext_socket(core_sock), "table", a.table, request, timeout=40.0)
            times.append(time.monotonic() - t)
            rows = len(obs.get("response") or [])
        # The same generates, the reply read but not decoded: the
        # extension's own time (its table, encoding and writes).
        wire, wire_bytes = [], 0
        request_bytes = call_bytes("table", a.table, request)
        for _ in range(a.reps):
            took, wire_bytes = raw_reply(ext_socket(core_sock), request_bytes)
            wire.append(took)
        done.set()
        sampler.join()
        after = rss_kib(proc.pid)
        times.sort()
        wire.sort()
        med = times[len(times) // 2]
        return {
            "reply_wire_median_s": wire[len(wire) // 2],
            "reply_bytes": wire_bytes,
            "registration_s": registered,
            "rss_idle_kib": idle,
            "rss_query_sampled_kib": peak_sampled[0],
            "rss_hwm_kib": rss_kib(proc.pid, "VmHWM"),
            "rss_after_kib": after,
            "rows": rows,
            "generate_median_s": med,
            "generate_all_s": times,
            "rows_per_s": rows / med if med > 0 else None,
        }
    finally:
        proc.kill()
        proc.wait()
        core.die()


def scenario_blind(a):
    """--reps generates of --table (every column), then the extension's stderr:
    what a table could not read must be logged once per generate."""
    core_sock = os.path.join(a.workdir, "core.sock")
    core = FakeCore(core_sock)
    proc = start_extension(
        a.bin, ["--socket", core_sock, "--timeout", "3", "--interval", "1", "--root", a.root], a.workdir
    )
    try:
        wait_serving(core, proc)
        ext = ext_socket(core_sock)
        reg = core.registry
        ctx = context_json(reg, [], [r["name"] for r in reg["table"][a.table]])
        obs = {"generates": []}
        for _ in range(a.reps):
            obs["generates"].append(call(ext, "table", a.table, {"action": "generate", "context": ctx}))
        core.die()
        obs["exit"] = wait_exit(proc, 6)
        obs["stderr"] = stderr_of(proc)
        return obs
    finally:
        if proc.poll() is None:
            proc.kill()
        core.die()


SCENARIOS = {
    "main": scenario_main,
    "blind": scenario_blind,
    "sigterm": scenario_sigterm,
    "shutdown": scenario_shutdown,
    "duplicate": scenario_duplicate,
    "nocore": scenario_nocore,
    "refused": scenario_refused,
    "deregistered": scenario_deregistered,
    "generate": scenario_generate,
    "hold": scenario_hold,
    "bench": scenario_bench,
}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("scenario", choices=sorted(SCENARIOS))
    p.add_argument("--bin", required=True)
    p.add_argument("--workdir", required=True)
    p.add_argument("--root", default="/nonexistent")
    p.add_argument("--proc", default=None)
    p.add_argument("--table", default="dbus_service_files")
    p.add_argument("--context", default="{}")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--wrap", default="")
    p.add_argument("--interval", default="1")
    a = p.parse_args()
    WRAP.extend(shlex.split(a.wrap))
    # Never outlive a stuck run (the Rust side has no timeout of its own);
    # raising, not dying, lets each scenario's `finally` kill the extension.
    def timed_out(signum, frame):
        raise TimeoutError("scenario %s ran past 50 s" % a.scenario)

    signal.signal(signal.SIGALRM, timed_out)
    signal.alarm(50)
    obs = SCENARIOS[a.scenario](a)
    if obs is None:
        return
    json.dump(obs, sys.stdout)
    sys.stdout.write("\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
