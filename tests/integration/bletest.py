# SPDX-License-Identifier: LGPL-2.1-or-later
"""What the BLE integration tests share: a private bus, the fake bluetoothd (fakebluez.py) as a
child, blegated on that bus, and what the fake says it sent next to what the store holds."""

import os
import sqlite3
import subprocess
import sys

from harness import TestCase, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
FAKE = os.path.join(HERE, "fakebluez.py")
NAME = "org.blegate.Gateway1"
TAGS = 3
G = 9.80665
RECOVERY_TIMEOUT = 5.0

# A session-like bus that lets anyone own and call anything: the policy is test-bus.py's subject.
BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""


def tag_id(i):
    return f"f00b1e0000{i:02x}"


class BleTestCase(TestCase):
    def setUp(self):
        super().setUp()
        self.socket = self.path("bus")
        self.address = f"unix:path={self.socket}"
        conf = self.write("bus.conf", BUS_CONFIG.format(socket=self.socket))
        self.bus_log = open(self.path("dbus-daemon.log"), "wb")
        self.bus = subprocess.Popen(["dbus-daemon", "--config-file", conf, "--nofork", "--nopidfile"],
                                    stdin=subprocess.DEVNULL, stdout=self.bus_log, stderr=self.bus_log)
        wait_for(lambda: os.path.exists(self.socket), timeout=10, what="the private dbus-daemon")
        self.env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=self.address)
        self.env.pop("JOURNAL_STREAM", None)
        self.sent_path = self.path("sent")
        self.fakes = []

    def tearDown(self):
        for d in self.daemons:
            d.stop()
        for p in self.fakes:
            self.stop_proc(p)
        self.stop_proc(self.bus)
        self.bus_log.close()
        super().tearDown()

    @staticmethod
    def stop_proc(p):
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def run_cmd(self, *argv):
        return subprocess.run(list(argv), capture_output=True, text=True, timeout=60, env=self.env)

    def start_fake(self, *extra, tags=TAGS):
        """The fake bluetoothd with tags Ruuvi tags and any further options of fakebluez.py."""
        log = open(self.path(f"fake-{len(self.fakes)}.log"), "wb")
        p = subprocess.Popen([sys.executable, FAKE, "--sent", self.sent_path, "--tags", str(tags), "--rate", "10",
                              "--repeat", "2", "--seq-start", "65500", *map(str, extra)],
                             stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=self.env)
        log.close()
        self.fakes.append(p)
        wait_for(lambda: self.run_cmd("busctl", "--system", "status", "org.bluez").returncode == 0
                 or p.poll() is not None, timeout=20, interval=0.1, what="the fake bluetoothd")
        self.assertIsNone(p.poll(), self.fake_output())
        return p

    def stop_fake(self):
        """bluetoothd leaves the bus: SIGTERM, handled between two ticks, so what it sent is in the file."""
        p = self.fakes[-1]
        p.terminate()
        self.assertEqual(p.wait(10), 0, self.fake_output())

    def fake_output(self):
        with open(self.path(f"fake-{len(self.fakes) - 1}.log"), errors="replace") as f:
            return f.read()[-4000:]

    def control(self, method, *args):
        sig = {"SetPowered": ["b"], "Spike": ["s"]}.get(method, [])
        p = self.run_cmd("busctl", "--system", "call", "org.bluez", "/", "org.blegate.FakeBluez1", method,
                         *sig, *map(str, args))
        self.assertEqual(p.returncode, 0, p.stderr)
        return p.stdout

    def start_gateway(self, ble=""):
        """blegated on the private bus; ble: more lines for its [BLE] section."""
        cfg = self.config("[Detector]\nWindow=20\nMinSamples=20\nThreshold=6\n[Gateway]\nStatusInterval=0.5\n"
                          f"[BLE]\n{ble}")
        d = self.start("--config", cfg, env={"DBUS_SYSTEM_BUS_ADDRESS": self.address})
        d.wait_notified("READY=1")
        return d

    def sent(self):
        """(tag id, seq, az in mG) of every measurement the fake advertised, in order."""
        if not os.path.exists(self.sent_path):
            return []
        with open(self.sent_path) as f:
            return [(m, int(s), int(az)) for m, s, az in (line.split() for line in f if line.endswith("\n"))]

    def stored(self):
        """tag id -> [(seq, az)] of the readings in the store, by seq."""
        db = self.path("buffer.db")
        if not os.path.exists(db):
            return {}
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
        try:
            rows = con.execute("SELECT d.name, r.seq, r.az FROM readings r JOIN devices d ON d.id = r.device "
                               "ORDER BY d.name, r.seq").fetchall()
        except sqlite3.OperationalError:
            return {}
        finally:
            con.close()
        out = {}
        for name, seq, az in rows:
            out.setdefault(name, []).append((seq, az))
        return out

    def stored_count(self):
        return sum(len(v) for v in self.stored().values())

    def assert_resumes(self, d):
        """New readings are stored within RECOVERY_TIMEOUT seconds."""
        before = self.stored_count()
        wait_for(lambda: self.stored_count() >= before + TAGS, timeout=RECOVERY_TIMEOUT,
                 what=f"readings after the recovery:\n{d.output()[-3000:]}")
        self.assertIsNone(d.proc.poll(), d.output())

    def assert_stored_exactly(self, d):
        """Once the fleet is quiet: every measurement sent is stored once, seq following the tag's
        counter (its differences, modulo 2^16, across the wrap), az converted to m/s²."""
        sent = self.sent()
        self.assertGreater(len(sent), 0)
        want = {}
        for m, s, az in sent:
            want.setdefault(m, []).append((s, az))
        wait_for(lambda: self.stored_count() >= len(sent), timeout=RECOVERY_TIMEOUT,
                 what=f"{len(sent)} readings stored, {self.stored_count()} are:\n{d.output()[-3000:]}")
        got = self.stored()
        self.assertEqual(sorted(got), sorted(want))
        for m in want:
            self.assertEqual(len(got[m]), len(want[m]), m)
            for (s0, _), (s1, _), (g0, _), (g1, _) in zip(want[m], want[m][1:], got[m], got[m][1:]):
                self.assertEqual(g1 - g0, (s1 - s0) % 65536, m)
            for (_, az), (_, gaz) in zip(want[m], got[m]):
                self.assertAlmostEqual(gaz, az * G / 1000, places=9)

    def count(self, d, text):
        return d.output().count(text)
