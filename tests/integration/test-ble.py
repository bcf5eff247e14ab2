#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""BLE ingestion end to end on a private bus: the fake bluetoothd (fakebluez.py, python3-dbusmock's
bluez5 template with a scripted fleet of Ruuvi tags) and blegated. Every measurement the fake
advertised while the daemon listened is stored exactly once, however often it was heard, with seq
following the tag's 16-bit counter across its wrap; the tags appear on the gateway's bus with
kind, address and RSSI; an injected spike becomes an anomaly event. Faults: the adapter powered
off and on, removed and re-added, bluetoothd leaving the bus and coming back, BlueZ absent at
start. After each the daemon logs the recovery once, hears the fleet again within seconds, and
never exits."""

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time

import harness
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

    def start_fake(self):
        log = open(self.path(f"fake-{len(self.fakes)}.log"), "wb")
        p = subprocess.Popen([sys.executable, FAKE, "--sent", self.sent_path, "--tags", str(TAGS), "--rate", "10",
                              "--repeat", "2", "--seq-start", "65500"],
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

    def start_gateway(self):
        cfg = self.config("[Detector]\nWindow=20\nMinSamples=20\nThreshold=6\n[Gateway]\nStatusInterval=0.5\n")
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


class Fleet(BleTestCase):
    def test_readings_devices_and_anomaly(self):
        self.start_fake()
        d = self.start_gateway()
        d.wait_log("Discovery started on hci0.")
        # Past the wrap of the tags' counters (they start at 65500, 10 a second).
        wait_for(lambda: len(self.sent()) >= TAGS * 50, timeout=20, what="the fleet")

        p = self.run_cmd(harness.BLEGATECTL, "devices")
        self.assertEqual(p.returncode, 0, p.stderr)
        rows = [line.split() for line in p.stdout.splitlines()[1:] if line.strip() and "devices." not in line]
        self.assertEqual([r[:3] for r in rows],
                         [[tag_id(i), "ruuvi", f"F0:0B:1E:00:00:{i:02X}"] for i in range(TAGS)])
        self.assertEqual([r[3] for r in rows], [str(-60 - i) for i in range(TAGS)])
        self.assertTrue(all(r[-1] == "ax,ay,az" for r in rows), p.stdout)
        p = self.run_cmd(harness.BLEGATECTL, "devices", "--json")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual([(r["Kind"], r["Name"], r["Connected"]) for r in map(json.loads, p.stdout.splitlines())],
                         [("ruuvi", f"Ruuvi 00{i:02X}", False) for i in range(TAGS)])

        self.control("Spike", tag_id(1))
        d.wait_log(f"Anomaly on {tag_id(1)} az", timeout=10)
        # Stored with the next commit, at most CommitInterval later.
        wait_for(lambda: tag_id(1) in self.run_cmd(harness.BLEGATECTL, "anomalies").stdout, timeout=5,
                 interval=0.2, what="the anomaly event in the store")

        self.stop_fake()
        d.wait_log("BlueZ left the bus, waiting for it to come back.")
        self.assert_stored_exactly(d)
        self.assertIsNone(d.proc.poll())
        # The status line counts what BLE did: the repeats and the Ruuvi Air's adverts.
        sent = len(self.sent())
        wait_for(lambda: re.search(rf"BLE: {sent} adverts, {sent} repeats dropped, [1-9]\d* skipped, 0 malformed, "
                                   r"0 recoveries\.", d.output()), timeout=5, what=f"the status line:\n{d.output()}")
        self.assertEqual(self.count(d, "Failed"), 0, d.output())

    def test_adapters_not_listed_are_left_alone(self):
        self.start_fake()
        cfg = self.config("[BLE]\nAdapters=hci1\n")
        d = self.start("--config", cfg, env={"DBUS_SYSTEM_BUS_ADDRESS": self.address})
        d.wait_log("BlueZ is on the bus, reading its adapters.")
        # Nothing to wait for when all goes right: give a wrong start the time to show.
        time.sleep(1.5)
        p = self.run_cmd("busctl", "--system", "get-property", "org.bluez", "/org/bluez/hci0", "org.bluez.Adapter1",
                         "Discovering")
        self.assertEqual(p.stdout, "b false\n", p.stderr)
        self.assertEqual(self.control("Heard"), "t 0\n")
        self.assertNotIn("Adapter hci0", d.output())
        self.assertIsNone(d.proc.poll(), d.output())

    def test_bluez_absent_at_start(self):
        d = self.start_gateway()
        d.wait_log("BlueZ (org.bluez) is not on the bus, waiting for it")
        self.start_fake()
        d.wait_log("Discovery started on hci0.", timeout=RECOVERY_TIMEOUT)
        self.assert_resumes(d)
        self.assertEqual(self.count(d, "is not on the bus"), 1)
        self.assertIn("BlueZ is on the bus, reading its adapters.", d.output())
        self.assertIn("Adapter hci0 found.", d.output())


class Faults(BleTestCase):
    def test_power_cycle_removal_and_restart(self):
        self.start_fake()
        d = self.start_gateway()
        d.wait_log("Discovery started on hci0.")
        self.assert_resumes(d)

        # Powered off: BlueZ drops discovery and the filter; the daemon waits, then re-sends both.
        self.control("SetPowered", "false")
        d.wait_log("Adapter hci0 powered off, waiting for it to come back.")
        self.control("SetPowered", "true")
        d.wait_log("Adapter hci0 powered on again, restarting discovery", timeout=RECOVERY_TIMEOUT)
        wait_for(lambda: self.count(d, "Discovery started on hci0.") == 2, timeout=RECOVERY_TIMEOUT,
                 what="discovery again")
        self.assert_resumes(d)

        # Removed and re-added (an unplugged dongle).
        self.control("RemoveAdapter")
        d.wait_log("Adapter hci0 removed, waiting for it to come back.")
        self.control("AddAdapter")
        d.wait_log("Adapter hci0 added, starting discovery (recovery 2).", timeout=RECOVERY_TIMEOUT)
        wait_for(lambda: self.count(d, "Discovery started on hci0.") == 3, timeout=RECOVERY_TIMEOUT,
                 what="discovery after re-adding")
        self.assert_resumes(d)

        # Discovery ends without the daemon asking (the kernel stopped the scan).
        self.control("StopScan")
        d.wait_log("Discovery stopped by itself on hci0, restarting it (recovery 3).")
        wait_for(lambda: self.count(d, "Discovery started on hci0.") == 4, timeout=RECOVERY_TIMEOUT,
                 what="discovery after it stopped")
        self.assert_resumes(d)

        # bluetoothd leaves the bus and comes back; the tags counted on meanwhile.
        self.stop_fake()
        d.wait_log("BlueZ left the bus, waiting for it to come back.")
        self.start_fake()
        d.wait_log("BlueZ is back on the bus, re-reading its adapters (recovery 4).", timeout=RECOVERY_TIMEOUT)
        wait_for(lambda: self.count(d, "Discovery started on hci0.") == 5, timeout=RECOVERY_TIMEOUT,
                 what="discovery after the restart")
        self.assert_resumes(d)

        self.stop_fake()
        self.assert_stored_exactly(d)
        self.assertIsNone(d.proc.poll(), d.output())
        # Every recovery step logged once.
        for text in ("powered off", "powered on again", "removed, waiting", "added, starting discovery",
                     "stopped by itself", "BlueZ left the bus", "BlueZ is back on the bus"):
            expected = 2 if text == "BlueZ left the bus" else 1
            self.assertEqual(self.count(d, text), expected, f"{text}:\n{d.output()}")

    def test_bluetoothd_killed(self):
        """kill -9: no goodbye, only NameOwnerChanged. What was in flight may be lost, so only the
        recovery is checked here; the exact count is the graceful restart's."""
        self.start_fake()
        d = self.start_gateway()
        d.wait_log("Discovery started on hci0.")
        self.assert_resumes(d)
        for n in (1, 2):
            self.fakes[-1].send_signal(signal.SIGKILL)
            self.fakes[-1].wait(10)
            d.wait_log("BlueZ left the bus, waiting for it to come back.")
            self.start_fake()
            wait_for(lambda: self.count(d, "BlueZ is back on the bus") == n, timeout=RECOVERY_TIMEOUT,
                     what=f"BlueZ back, time {n}")
            self.assert_resumes(d)
        self.assertEqual(self.count(d, "BlueZ left the bus"), 2)
        self.assertIsNone(d.proc.poll(), d.output())


if __name__ == "__main__":
    harness.main()
