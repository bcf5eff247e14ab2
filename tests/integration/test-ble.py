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
import re
import signal
import time

import harness
from bletest import RECOVERY_TIMEOUT, TAGS, BleTestCase, tag_id
from harness import wait_for

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
        self.assertEqual([r[3:5] for r in rows], [[str(-60 - i), "-"] for i in range(TAGS)])
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
                                   r"0 recoveries, 0 links, 0 notifications, 0 malformed\.", d.output()), timeout=5, what=f"the status line:\n{d.output()}")
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
