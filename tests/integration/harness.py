# SPDX-License-Identifier: LGPL-2.1-or-later
"""Shared pieces of the integration tests: a private scratch directory, the daemon run as a
child with its log captured and its sd_notify messages received on a private socket, and waits
that are bounded in time. Everything a test starts is stopped when the test ends."""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

BLEGATED = os.environ.get("BLEGATED", "blegated")
BLEGATECTL = os.environ.get("BLEGATECTL", "blegatectl")
SAMPLE_RECORDING = os.environ.get("SAMPLE_RECORDING")
SAMPLE_ANOMALIES = os.environ.get("SAMPLE_ANOMALIES")
GENERATE_RECORDING = os.environ.get("GENERATE_RECORDING")

DEFAULT_TIMEOUT = 30.0


def wait_for(predicate, timeout=DEFAULT_TIMEOUT, interval=0.02, what="condition"):
    """Polls predicate until it returns a true value; fails the test after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class Daemon:
    """blegated as a child process, with stderr in a file and a NOTIFY_SOCKET of its own."""

    def __init__(self, workdir, args, env=None):
        self.workdir = workdir
        self.log_path = os.path.join(workdir, f"blegated-{time.monotonic_ns()}.log")
        self.notify_path = os.path.join(workdir, f"notify-{time.monotonic_ns()}")
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(self.notify_path)
        self.notify.setblocking(False)
        self.notifications = []
        full_env = dict(os.environ)
        full_env.pop("JOURNAL_STREAM", None)
        full_env["NOTIFY_SOCKET"] = self.notify_path
        full_env.update(env or {})
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([BLEGATED] + list(args), stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=subprocess.STDOUT, env=full_env)

    def output(self):
        with open(self.log_path, "r", errors="replace") as f:
            return f.read()

    def received(self):
        """Every sd_notify message received so far, one string per datagram."""
        while True:
            try:
                self.notifications.append(self.notify.recv(4096).decode())
            except BlockingIOError:
                return self.notifications

    def notified(self, assignment):
        return any(assignment in msg.split("\n") for msg in self.received())

    def wait_notified(self, assignment, timeout=DEFAULT_TIMEOUT):
        wait_for(lambda: self.notified(assignment), timeout, what=f"sd_notify {assignment}")

    def wait_log(self, text, timeout=DEFAULT_TIMEOUT):
        wait_for(lambda: text in self.output(), timeout, what=f"log line containing {text!r}:\n{self.output()}")

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait(self, timeout=DEFAULT_TIMEOUT):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"blegated did not exit within {timeout}s:\n{self.output()}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        self.notify.close()


class TestCase(unittest.TestCase):
    """A test case with a private directory and cleanup of every daemon it started."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="blegate-it-")
        self.daemons = []

    def tearDown(self):
        for d in self.daemons:
            d.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def path(self, name):
        return os.path.join(self.dir, name)

    def write(self, name, text):
        p = self.path(name)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "w") as f:
            f.write(text)
        return p

    def config(self, text=""):
        """A config with its store in the private directory, plus text."""
        return self.write("blegate.conf", f"[Store]\nPath={self.path('buffer.db')}\n{text}")

    def start(self, *args, env=None):
        d = Daemon(self.dir, args, env)
        self.daemons.append(d)
        return d

    def run_daemon(self, *args, timeout=DEFAULT_TIMEOUT):
        """Runs blegated to completion; returns (exit code, output)."""
        d = self.start(*args)
        code = d.wait(timeout)
        return code, d.output()


def main():
    unittest.main(verbosity=2)
