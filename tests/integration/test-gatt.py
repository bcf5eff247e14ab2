#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""GATT streaming end to end on a private bus: the fake bluetoothd (fakebluez.py) with SensorTags,
Thingy:52s and phones, and blegated. The daemon connects to each, configures it, subscribes (the
phones through AcquireNotify sockets, the others through PropertiesChanged) and stores every
sample the fake sent while a link was up, exactly once. Faults: links dropped, Connect failing
with BlueZ's errors, the adapter powered off and on, removed and re-added, bluetoothd restarting,
discovery that goes silent; after each the links come back within seconds, with a backoff that
never turns into a busy loop. MaxConnections= caps the links per adapter (two adapters: each has
its own slots and its own faults; Adapters= picks one; a device both hear keeps its link), the
others queue in order, and a connection the daemon does not use (services gone, a Connect
answered after it gave up) is given back; Allow=/Deny= select devices; passive scanning is used
where BlueZ offers a monitor."""

import collections
import json
import os
import re
import sqlite3
import time

import harness
from bletest import RECOVERY_TIMEOUT, BleTestCase
from harness import wait_for

SENSORTAGS, THINGYS, PHONES = 2, 2, 2


def sensortag(i):
    return f"54:6C:0E:00:00:{i:02X}"


def thingy(i):
    return f"D0:0D:52:00:00:{i:02X}"


def phone(i):
    return f"5A:00:00:00:00:{i:02X}"


def key(address):
    return address.replace(":", "").lower()


class GattTestCase(BleTestCase):
    def setUp(self):
        super().setUp()
        self.gatt_sent_path = self.path("gatt-sent")

    def start_fleet(self, *extra, sensortags=SENSORTAGS, thingys=THINGYS, phones=PHONES, tags=0):
        return self.start_fake("--sensortags", sensortags, "--thingys", thingys, "--phones", phones,
                               "--gatt-sent", self.gatt_sent_path, *extra, tags=tags)

    def call(self, method, signature="", *args):
        p = self.run_cmd("busctl", "--system", "--json=short", "call", "org.bluez", "/", "org.blegate.FakeBluez1",
                         method, *([signature] if signature else []), *map(str, args))
        self.assertEqual(p.returncode, 0, p.stderr)
        return json.loads(p.stdout)["data"] if p.stdout.strip() else None

    def links(self):
        return sorted(self.call("Links")[0])

    def status(self):
        p = self.run_cmd(harness.BLEGATECTL, "status", "--json")
        self.assertEqual(p.returncode, 0, p.stderr)
        return json.loads(p.stdout)

    def connect_calls(self, address):
        return self.call("ConnectCalls")[0].get(address, 0)

    def gatt_sent(self):
        """(device id, channel) -> [values] of every sample the fake delivered, in order."""
        out = collections.defaultdict(list)
        if os.path.exists(self.gatt_sent_path):
            with open(self.gatt_sent_path) as f:
                for line in f:
                    if line.endswith("\n"):
                        dev, _, channel, value = line.split()
                        out[(dev, channel)].append(float(value))
        return out

    def stored_values(self, device, channel):
        con = self.store()
        if con is None:
            return []
        try:
            return [v for (v,) in con.execute(
                f"SELECT r.{channel} FROM readings r JOIN devices d ON d.id = r.device "
                f"WHERE d.name = ? AND r.{channel} IS NOT NULL ORDER BY r.seq", (device,))]
        finally:
            con.close()

    def store(self):
        db = self.path("buffer.db")
        if not os.path.exists(db):
            return None
        return sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)

    @staticmethod
    def streaming(d, address):
        """How often the link to address has been set up."""
        return sum(1 for line in d.output().splitlines()
                   if line.startswith(f"Link to {address} (") and " streaming as " in line)

    def wait_streaming(self, d, address, n=1, timeout=RECOVERY_TIMEOUT):
        wait_for(lambda: self.streaming(d, address) >= n, timeout=timeout,
                 what=f"link {n} to {address} streaming:\n{d.output()[-3000:]}")

    def sent_by(self, device):
        return sum(len(v) for (dev, _), v in self.gatt_sent().items() if dev == device)

    def wait_flowing(self, *devices, n=10):
        """Until the fake has sent n more samples of each device: a fault injected then hits a link
        that carries data."""
        start = {dev: self.sent_by(dev) for dev in devices}
        for dev in devices:
            wait_for(lambda: self.sent_by(dev) >= start[dev] + n, timeout=5, what=f"{n} samples of {dev} sent")

    def assert_delivered_exactly(self, d):
        """Once the fleet is quiet: every sample the fake delivered is stored once, with the value
        it encoded, for every device and stream."""
        sent = self.gatt_sent()
        self.assertTrue(sent, "the fake delivered nothing")
        for (dev, channel), values in sorted(sent.items()):
            wait_for(lambda: len(self.stored_values(dev, channel)) >= len(values), timeout=RECOVERY_TIMEOUT,
                     what=f"{len(values)} {channel} values of {dev} stored, "
                          f"{len(self.stored_values(dev, channel))} are:\n{d.output()[-3000:]}")
            got = self.stored_values(dev, channel)
            self.assertEqual(len(got), len(values), f"{dev} {channel}")
            for want, have in zip(sorted(values), sorted(got)):
                self.assertAlmostEqual(have, want, delta=1e-9 * max(1.0, abs(want)), msg=f"{dev} {channel}")


class Streams(GattTestCase):
    def test_fleet_streams_and_is_stored_exactly(self):
        self.start_fleet()
        d = self.start_gateway("MaxConnections=7\n")
        for i in range(SENSORTAGS):
            self.wait_streaming(d, sensortag(i), timeout=10)
        for i in range(THINGYS):
            self.wait_streaming(d, thingy(i), timeout=10)
        for i in range(PHONES):
            self.wait_streaming(d, phone(i), timeout=10)
        self.assertIn(f"Link to {phone(0)} (phone) streaming as phone-00.", d.output())
        self.assertIn(f"Link to {sensortag(1)} (sensortag) streaming as {key(sensortag(1))}.", d.output())

        # The phones' samples come through AcquireNotify sockets, the rest as PropertiesChanged.
        for i in range(PHONES):
            path = f"/org/bluez/hci0/dev_{phone(i).replace(':', '_')}"
            p = self.run_cmd("busctl", "--system", "tree", "--list", "org.bluez")
            chars = [c for c in p.stdout.split() if c.startswith(path + "/") and "char" in c]
            acquired = [self.run_cmd("busctl", "--system", "get-property", "org.bluez", c,
                                     "org.bluez.GattCharacteristic1", "NotifyAcquired").stdout.strip()
                        for c in chars]
            self.assertIn("b true", acquired, f"{chars} {acquired}")

        # Devices on the gateway's bus, connected.
        wait_for(lambda: self.stored_values("phone-01", "ax"), timeout=5, what="phone readings")
        time.sleep(1.0)
        p = self.run_cmd(harness.BLEGATECTL, "devices", "--json")
        self.assertEqual(p.returncode, 0, p.stderr)
        devices = {r["Id"]: r for r in map(json.loads, p.stdout.splitlines())}
        for i in range(SENSORTAGS):
            self.assertEqual((devices[key(sensortag(i))]["Kind"], devices[key(sensortag(i))]["Connected"]),
                             ("sensortag", True))
        for i in range(THINGYS):
            self.assertEqual(devices[key(thingy(i))]["Kind"], "thingy52")
        for i in range(PHONES):
            self.assertEqual((devices[f"phone-{i:02d}"]["Kind"], devices[f"phone-{i:02d}"]["Address"]),
                             ("phone", phone(i)))
        p = self.run_cmd(harness.BLEGATECTL, "devices")
        self.assertEqual(p.returncode, 0, p.stderr)
        table = {line.split()[0]: line.split() for line in p.stdout.splitlines()[1:] if line.strip()}
        for i in range(SENSORTAGS):
            self.assertEqual(table[key(sensortag(i))][1:5], ["sensortag", sensortag(i), str(-50 - i), "up"],
                             p.stdout)

        # A spike on a Thingy's accelerometer is an anomaly.
        self.control("Spike", key(thingy(1)))
        d.wait_log(f"Anomaly on {key(thingy(1))} az", timeout=10)

        self.stop_fake()
        d.wait_log("BlueZ left the bus, waiting for it to come back.")
        self.assert_delivered_exactly(d)
        self.assertIsNone(d.proc.poll(), d.output())
        self.assertNotIn("Failed", d.output())

    def test_stop_disconnects(self):
        """BlueZ keeps a link when its client leaves: the daemon lets its devices go on stop."""
        self.start_fleet(sensortags=1, thingys=1, phones=0)
        d = self.start_gateway()
        self.wait_streaming(d, sensortag(0), timeout=10)
        self.wait_streaming(d, thingy(0), timeout=10)
        self.assertEqual(self.links(), [sensortag(0), thingy(0)])
        d.stop()
        wait_for(lambda: self.links() == [], timeout=5, what="the links given back")


class Faults(GattTestCase):
    def test_dropped_links_and_connect_errors(self):
        self.start_fleet(sensortags=1, thingys=1, phones=1)
        d = self.start_gateway()
        for a in (sensortag(0), thingy(0), phone(0)):
            self.wait_streaming(d, a, timeout=10)
        self.wait_flowing(key(sensortag(0)), key(thingy(0)), "phone-00")

        # Out of range: lost, then back within seconds.
        for n, a in enumerate((sensortag(0), thingy(0), phone(0))):
            self.call("DropLink", "s", a)
            d.wait_log(f"Link to {a} (")
            wait_for(lambda: f"Link to {a} ({'sensortag thingy52 phone'.split()[n]}) lost" in d.output(),
                     timeout=5, what="the loss logged")
            self.wait_streaming(d, a, n=2)
        self.wait_flowing(key(sensortag(0)), key(thingy(0)), "phone-00")

        # Interference: abort-by-local is retried at once, and works.
        self.call("FailConnect", "sssu", sensortag(0), "org.bluez.Error.Failed", "le-connection-abort-by-local", 1)
        self.call("DropLink", "s", sensortag(0))
        self.wait_streaming(d, sensortag(0), n=3)
        self.assertIn(f"Failed to connect to {sensortag(0)} (sensortag): Connect: org.bluez.Error.Failed: "
                      "le-connection-abort-by-local; retrying in 0.", d.output())

        # A device that keeps refusing, with BlueZ's errors: retried later and later (1, 2, 4 s,
        # ±25%), never in a loop.
        calls = self.connect_calls(thingy(0))
        errors = [("org.bluez.Error.NotReady", "Resource Not Ready"),
                  ("org.bluez.Error.Failed", "le-connection-timeout"),
                  ("org.bluez.Error.Failed", "Input/output error")]
        for name, message in errors:
            self.call("FailConnect", "sssu", thingy(0), name, message, 1)
        self.call("DropLink", "s", thingy(0))
        self.wait_streaming(d, thingy(0), n=3, timeout=20)
        self.assertEqual(self.connect_calls(thingy(0)) - calls, 4)
        failed = re.findall(rf"Failed to connect to {thingy(0)} \(thingy52\): Connect: "
                            r"(\S+): (.*?); retrying in ([0-9.]+) s", d.output())
        self.assertEqual([(n, m) for n, m, _ in failed], errors, d.output())
        for want, (_, _, got) in zip((1, 2, 4), failed):
            self.assertTrue(0.75 * want - 0.05 <= float(got) <= 1.25 * want + 0.05, failed)

        # Every loss was a recovery, logged once with its number and counted on the bus.
        status = self.status()
        losses = re.findall(r"Link to \S+ \(\w+\) lost \(.*\(recovery (\d+)\)\.", d.output())
        self.assertEqual([int(n) for n in losses], list(range(1, 6)), d.output())
        self.assertEqual((status["GattLinks"], status["BluetoothRecoveries"]), (3, 5))
        self.assertIn("Bluetooth: 3 GATT links streaming, 5 recoveries",
                      self.run_cmd(harness.BLEGATECTL, "status").stdout)

        self.stop_fake()
        self.assert_delivered_exactly(d)
        self.assertIsNone(d.proc.poll(), d.output())

    def test_connect_in_progress_waits(self):
        """InProgress from Connect: another client is making the link. The daemon waits for it
        (up to its connect timeout) instead of calling it lost at the device's next advert."""
        self.start_fleet(sensortags=1, thingys=0, phones=0)
        d = self.start_gateway()
        self.wait_streaming(d, sensortag(0), timeout=10)
        calls = self.connect_calls(sensortag(0))
        self.call("FailConnect", "sssu", sensortag(0), "org.bluez.Error.InProgress", "In Progress", 1)
        self.call("DropLink", "s", sensortag(0))
        wait_for(lambda: self.connect_calls(sensortag(0)) > calls, timeout=5, what="Connect called again")
        time.sleep(3.5)  # the device advertises once a second meanwhile
        self.assertEqual(self.connect_calls(sensortag(0)) - calls, 1, d.output())
        self.assertNotIn("disconnected before its services were resolved", d.output())

    def test_adapter_and_bluetoothd_faults(self):
        self.start_fleet(sensortags=1, thingys=0, phones=1)
        d = self.start_gateway()
        devices = (key(sensortag(0)), "phone-00")
        for a in (sensortag(0), phone(0)):
            self.wait_streaming(d, a, timeout=10)
        self.wait_flowing(*devices)

        self.control("SetPowered", "false")
        d.wait_log("Adapter hci0 powered off")
        self.control("SetPowered", "true")
        for a in (sensortag(0), phone(0)):
            self.wait_streaming(d, a, n=2)
        self.wait_flowing(*devices)

        self.control("RemoveAdapter")
        d.wait_log("Adapter hci0 removed")
        self.control("AddAdapter")
        for a in (sensortag(0), phone(0)):
            self.wait_streaming(d, a, n=3)
        self.wait_flowing(*devices)

        self.stop_fake()
        d.wait_log("BlueZ left the bus")
        self.start_fleet(sensortags=1, thingys=0, phones=1)
        for a in (sensortag(0), phone(0)):
            self.wait_streaming(d, a, n=4)
        self.wait_flowing(*devices)

        self.stop_fake()
        self.assert_delivered_exactly(d)
        self.assertIsNone(d.proc.poll(), d.output())
        # Links are only tried on objects BlueZ shows: none called a path it had forgotten.
        self.assertNotIn("UnknownObject", d.output())

    def test_stalled_discovery(self):
        self.start_fake()
        d = self.start_gateway("StallTimeout=1\n")
        d.wait_log("Discovery started on hci0.")
        self.assert_resumes(d)
        # Silent until discovery is restarted.
        self.call("Stall", "s", "discovery")
        d.wait_log("Discovery on hci0 heard nothing for too long, restarting it", timeout=RECOVERY_TIMEOUT)
        self.assert_resumes(d)
        # Silent until the adapter is power-cycled: restarting is tried first, then the power.
        self.call("Stall", "s", "power")
        d.wait_log("Discovery on hci0 is still silent, power-cycling the adapter", timeout=3 * RECOVERY_TIMEOUT)
        self.assert_resumes(d)
        self.assertIsNone(d.proc.poll(), d.output())


class Limits(GattTestCase):
    def test_connection_cap_queues_in_order(self):
        self.start_fleet(sensortags=4, thingys=0, phones=0)
        d = self.start_gateway("MaxConnections=2\n")
        wait_for(lambda: len(self.links()) == 2, timeout=10, what="two links")
        d.wait_log("queued: hci0 has MaxConnections=2 links.")
        time.sleep(1)
        up = self.links()
        self.assertEqual(len(up), 2)
        self.assertEqual(self.call("PeakLinks")[0], 2)
        waiting = sorted(set(sensortag(i) for i in range(4)) - set(up))

        # A slot freed goes to the one that waited longest, not back to the dropped device.
        first = min(waiting, key=lambda a: d.output().index(f"Link to {a} (sensortag) queued"))
        self.call("DropLink", "s", up[0])
        self.wait_streaming(d, first)
        wait_for(lambda: len(self.links()) == 2, timeout=5, what="two links again")
        time.sleep(1.5)
        self.assertEqual(self.call("PeakLinks")[0], 2)
        self.assertIn(first, self.links())

    def test_services_gone_gives_the_slot_back(self):
        """ServicesResolved=false while the link stays connected (a phone's app restarting): the
        daemon disconnects, so the slot it hands on is not held by a connection nobody counts."""
        self.start_fleet(sensortags=2, thingys=0, phones=0)
        d = self.start_gateway("MaxConnections=1\n")
        wait_for(lambda: len(self.links()) == 1, timeout=10, what="one link")
        first = self.links()[0]
        self.wait_streaming(d, first, timeout=10)
        other = ({sensortag(0), sensortag(1)} - {first}).pop()
        self.call("Unresolve", "s", first)
        d.wait_log(f"Link to {first} (sensortag) lost (its services went away)")
        self.wait_streaming(d, other, timeout=10)
        self.assertEqual(self.call("PeakLinks")[0], 1)
        self.assertEqual(self.links(), [other])

    def test_late_connection_gives_the_slot_back(self):
        """A Connect that bluetoothd answers only after the daemon's 30 s timeout still makes the
        connection. The link is then queued behind the device that got the slot meanwhile: the
        daemon disconnects the late one rather than hold a second radio link under
        MaxConnections=1."""
        self.start_fleet(sensortags=2, thingys=0, phones=0)
        self.call("HangConnect", "u", 31000)
        d = self.start_gateway("MaxConnections=1\n")
        d.wait_log("queued: hci0 has MaxConnections=1 links.")
        d.wait_log("Failed to connect to ", timeout=40)
        late = re.search(r"Failed to connect to (\S+) ", d.output()).group(1)
        other = ({sensortag(0), sensortag(1)} - {late}).pop()
        self.wait_streaming(d, other, timeout=10)
        wait_for(lambda: self.links() == [other], timeout=5, what=f"only {other} connected: {self.links()}")
        time.sleep(1.5)
        self.assertEqual(self.links(), [other])
        self.assertIn(f"Connect to {late} (sensortag) went through after it had timed out, disconnecting it",
                      d.output())
        self.assertEqual(self.connect_calls(late), 1, d.output())
        self.assertIsNone(d.proc.poll(), d.output())

    def test_late_connection_used_is_ours(self):
        """The Connect that timed out goes through while the link, out of its backoff, is
        connecting again: the link uses that connection and, being its maker, gives it back when
        the daemon stops."""
        self.start_fleet(sensortags=1, thingys=0, phones=0)
        # Past the daemon's 30 s timeout and its 1 s backoff: the second Connect waits behind it.
        self.call("HangConnect", "u", 33000)
        d = self.start_gateway()
        d.wait_log(f"Failed to connect to {sensortag(0)} ", timeout=40)
        self.wait_streaming(d, sensortag(0), timeout=10)
        self.assertEqual(self.connect_calls(sensortag(0)), 2, d.output())
        self.assertNotIn("went through after it had timed out", d.output())
        d.stop()
        wait_for(lambda: self.links() == [], timeout=5, what="the link given back")

    def test_connection_cap_is_per_adapter(self):
        """Two adapters, MaxConnections=1: one link on each. hci0 powered off and on loses and
        brings back its own link only."""
        self.start_fleet("--adapters", 2, sensortags=4, thingys=0, phones=0)
        d = self.start_gateway("MaxConnections=1\n")
        wait_for(lambda: len(self.links()) == 2, timeout=10, what="two links")
        for adapter in ("hci0", "hci1"):
            d.wait_log(f"queued: {adapter} has MaxConnections=1 links.")
        time.sleep(1)
        # Which device of each adapter got its slot is the daemon's choice; one each is the rule.
        on0 = [a for a in self.links() if a in (sensortag(0), sensortag(2))]
        on1 = [a for a in self.links() if a in (sensortag(1), sensortag(3))]
        self.assertEqual((len(on0), len(on1)), (1, 1), self.links())
        on0, on1 = on0[0], on1[0]
        self.wait_streaming(d, on0, timeout=10)
        self.wait_streaming(d, on1, timeout=10)

        self.control("SetPowered", "false")
        d.wait_log("Adapter hci0 powered off")
        self.wait_flowing(key(on1))
        self.control("SetPowered", "true")
        wait_for(lambda: len(self.links()) == 2 and on1 in self.links(), timeout=RECOVERY_TIMEOUT,
                 what=f"a link on hci0 again beside {on1}: {self.links()}")
        self.assertNotIn(f"Link to {on1} (sensortag) lost", d.output())
        self.assertEqual(self.streaming(d, on1), 1, d.output())
        self.assertEqual(self.connect_calls(on1), 1)
        self.assertIsNone(d.proc.poll(), d.output())

    def test_device_heard_on_two_adapters_keeps_its_link(self):
        """hci1 hears a device streaming through hci0 (it advertises while connected): BlueZ
        makes a second object for it, and the link stays on the object it connected through."""
        self.start_fleet("--adapters", 2, sensortags=1, thingys=0, phones=0)
        d = self.start_gateway()
        self.wait_streaming(d, sensortag(0), timeout=10)
        d.wait_log("Discovery started on hci1.")
        self.call("Echo", "s", sensortag(0))
        time.sleep(2.5)  # two adverts of the second object
        self.wait_flowing(key(sensortag(0)))
        self.assertEqual(self.streaming(d, sensortag(0)), 1, d.output())
        self.assertEqual(self.call("ConnectCalls")[0], {sensortag(0): 1}, d.output())
        self.assertNotIn(f"Link to {sensortag(0)} (sensortag) lost", d.output())
        self.assertIsNone(d.proc.poll(), d.output())

    def test_adapters_selects(self):
        self.start_fleet("--adapters", 2, sensortags=2, thingys=0, phones=0)
        d = self.start_gateway("Adapters=hci1\n")
        self.wait_streaming(d, sensortag(1), timeout=10)
        self.wait_flowing(key(sensortag(1)))
        self.assertEqual(self.links(), [sensortag(1)])
        self.assertEqual(self.connect_calls(sensortag(0)), 0)
        self.assertNotIn("hci0", d.output())
        self.assertIsNone(d.proc.poll(), d.output())

    def test_allow_and_deny(self):
        self.start_fleet(sensortags=2, thingys=1, phones=1)
        d = self.start_gateway(f"Allow=sensortag phone {thingy(0).lower()}\nDeny={sensortag(1)} phone\n")
        self.wait_streaming(d, sensortag(0), timeout=10)
        self.wait_streaming(d, thingy(0), timeout=10)
        time.sleep(1.5)
        self.assertEqual(self.links(), [sensortag(0), thingy(0)])
        self.assertEqual(self.connect_calls(sensortag(1)), 0)
        self.assertEqual(self.connect_calls(phone(0)), 0)

    def test_passive_scanning(self):
        self.start_fake("--monitor")
        d = self.start_gateway()
        d.wait_log("Passive scanning on hci0 through an advertisement monitor.")
        self.assert_resumes(d)
        p = self.run_cmd("busctl", "--system", "get-property", "org.bluez", "/org/bluez/hci0", "org.bluez.Adapter1",
                         "Discovering")
        self.assertEqual(p.stdout, "b false\n", p.stderr)
        self.assertNotIn("Discovery started", d.output())
        self.assertEqual(self.call("Monitors")[0], 1)

    def test_no_monitor_falls_back_to_discovery(self):
        self.start_fake()
        d = self.start_gateway()
        d.wait_log("No advertisement monitor on hci0")
        d.wait_log("Discovery started on hci0.")
        self.assert_resumes(d)


if __name__ == "__main__":
    harness.main()
