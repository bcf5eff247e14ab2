#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The D-Bus API (org.blegate.Gateway1, Device1, Sink1) and blegatectl's bus commands, on a
private system bus: a dbus-daemon started per test with a system-bus-like configuration that
includes the shipped policy (units/org.blegate.Gateway1.conf), the test's own user standing in for
the blegate user. Every property, method and signal through busctl and blegatectl (tables and
--json); an unprivileged caller (nobody) reads but is refused every change with AccessDenied;
malformed calls get D-Bus errors and the daemon lives on; what the daemon exports equals the
introspection XML in docs/; and a gateway without a bus, or whose bus comes and goes, keeps
collecting data. The suite runs as root, as CI does: without it, the nobody tests fail."""

import csv
import datetime
import json
import os
import pwd
import re
import signal
import subprocess
import time
import xml.etree.ElementTree as ET

import dbus
import dbus.mainloop.glib
from gi.repository import GLib

import harness
from harness import TestCase, wait_for

TOP = os.path.join(os.environ.get("SOURCE_DIR", os.path.dirname(__file__)), "..", "..")
POLICY = os.path.abspath(os.path.join(TOP, "units", "org.blegate.Gateway1.conf"))
DOCS = os.path.join(TOP, "docs")

NAME = "org.blegate.Gateway1"
PATH = "/org/blegate/Gateway1"
GATEWAY = "org.blegate.Gateway1"
DEVICE = "org.blegate.Device1"
SINK = "org.blegate.Sink1"
ERROR = "org.freedesktop.DBus.Error."
UNPRIVILEGED = ["setpriv", "--reuid", "nobody", "--regid", "nogroup", "--clear-groups"]

# What /usr/share/dbus-1/system.conf says, minus what a test cannot use (a user to switch to,
# activation, syslog), on a socket of the test's own; then the shipped policy.
BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
    <deny send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"
          send_member="UpdateActivationEnvironment"/>
  </policy>
  <include>{policy}</include>
  <!-- The test's user stands in for the blegate user, which does not exist here. -->
  <policy user="{user}">
    <allow own="org.blegate.Gateway1"/>
  </policy>
</busconfig>
"""


class PrivateBus:
    """A dbus-daemon on a socket in the test's directory."""

    def __init__(self, workdir):
        self.socket = os.path.join(workdir, "system_bus_socket")
        self.address = f"unix:path={self.socket}"
        self.config = os.path.join(workdir, "bus.conf")
        self.log_path = os.path.join(workdir, "dbus-daemon.log")
        with open(self.config, "w") as f:
            f.write(BUS_CONFIG.format(socket=self.socket, policy=POLICY, user=pwd.getpwuid(os.getuid()).pw_name))
        self.proc = None

    def start(self):
        if os.path.exists(self.socket):
            os.unlink(self.socket)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(["dbus-daemon", "--config-file", self.config, "--nofork", "--nopidfile"],
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        wait_for(lambda: os.path.exists(self.socket) or self.proc.poll() is not None, timeout=10,
                 what="the private dbus-daemon")
        if self.proc.poll() is not None:
            with open(self.log_path) as f:
                raise AssertionError(f"dbus-daemon failed:\n{f.read()}")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


class Signals:
    """Every signal on the bus with the time it arrived, via python-dbus on a GLib main context
    that pump() drains: nothing runs in the background, so waits must pump (wait() does)."""

    def __init__(self, address):
        self.context = GLib.MainContext.default()
        self.bus = dbus.bus.BusConnection(address, mainloop=dbus.mainloop.glib.DBusGMainLoop())
        self.records = []
        self.bus.add_signal_receiver(self.on_signal, interface_keyword="interface", member_keyword="member",
                                     path_keyword="path")

    def on_signal(self, *args, interface=None, member=None, path=None):
        self.records.append((time.monotonic(), str(interface), str(member), str(path), args))

    def pump(self):
        while self.context.iteration(False):
            pass

    def find(self, member, path=None, where=lambda args: True):
        self.pump()
        return [r for r in self.records
                if r[2] == member and (path is None or r[3] == path) and where(r[4])]

    def wait(self, member, path=None, where=lambda args: True, count=1, timeout=harness.DEFAULT_TIMEOUT):
        return wait_for(lambda: len(self.find(member, path, where)) >= count and self.find(member, path, where),
                        timeout, interval=0.01, what=f"{count} {member} signal(s) on {path}")

    def watch_for(self, seconds):
        """Pumps for this long, so that arrival times are precise to a few ms."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.pump()
            time.sleep(0.005)

    def close(self):
        self.bus.close()


def path_encode(prefix, name):
    """sd_bus_path_encode(): [A-Za-z0-9] stay, except a leading digit; the rest is _xx."""
    out = []
    for i, c in enumerate(name):
        if c.isascii() and (c.isalpha() or (c.isdigit() and i > 0)):
            out.append(c)
        else:
            out.append(f"_{ord(c):02x}")
    return f"{prefix}/{''.join(out)}"


def device_path(device_id):
    return path_encode(f"{PATH}/device", device_id)


EVENT = re.compile(r"Anomaly on (\S+) (\S\S) from (\S+) to (\S+) \((\d+) readings?\): peak z=(\S+) ")


def usec(iso):
    t = datetime.datetime.strptime(iso, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc)
    return round(t.timestamp() * 1000) * 1000


def logged_events(output):
    """(device, channel, start_usec, end_usec, readings) of every event the daemon logged."""
    return [(dev, ch, usec(start), usec(end), int(n)) for dev, ch, start, end, n, _ in EVENT.findall(output)]


def sample_devices():
    """id -> (type, readings, channels with a value) of the sample recording."""
    devices = {}
    with open(harness.SAMPLE_RECORDING) as f:
        for row in csv.DictReader(f):
            t, n, channels = devices.get(row["deviceId"], (row["deviceType"], 0, set()))
            channels |= {c for c in ("ax", "ay", "az", "gx", "gy", "gz", "mx", "my", "mz", "oa", "ob", "og")
                         if row.get(c)}
            devices[row["deviceId"]] = (t, n + 1, channels)
    return devices


CHANNEL_ORDER = ["ax", "ay", "az", "gx", "gy", "gz", "mx", "my", "mz", "oa", "ob", "og"]
KINDS = {"simulator": "replay", "ruuvi": "ruuvi", "sensortag": "sensortag"}


def interface_xml(xml, interface):
    """The canonical form of one <interface> element of an introspection document."""
    root = ET.fromstring(re.sub(r"<!DOCTYPE[^>]*>", "", xml))
    for node in root.iter("interface"):
        if node.get("name") == interface:
            return ET.canonicalize(ET.tostring(node, encoding="unicode"), strip_text=True)
    raise AssertionError(f"no interface {interface} in:\n{xml}")


class BusTestCase(TestCase):
    def setUp(self):
        super().setUp()
        # nobody must reach the bus socket in here.
        os.chmod(self.dir, 0o755)
        self.bus = PrivateBus(self.dir)
        self.bus.start()
        self.env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=self.bus.address)
        self.env.pop("JOURNAL_STREAM", None)
        self.procs = []
        self.signals = None

    def tearDown(self):
        for d in self.daemons:
            d.stop()
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        if self.signals:
            self.signals.close()
        self.bus.stop()
        super().tearDown()

    def run_cmd(self, argv, unprivileged=False):
        return subprocess.run((UNPRIVILEGED if unprivileged else []) + list(argv), capture_output=True, text=True,
                              timeout=60, env=self.env)

    def busctl(self, *args, unprivileged=False):
        return self.run_cmd(["busctl", "--system", *args], unprivileged)

    def busctl_json(self, *args, unprivileged=False):
        p = self.busctl("--json=short", *args, unprivileged=unprivileged)
        self.assertEqual(p.returncode, 0, f"busctl {args}: {p.stderr}")
        return [json.loads(line) for line in p.stdout.splitlines()]

    def get(self, prop, path=PATH, interface=GATEWAY, unprivileged=False):
        return self.busctl_json("get-property", NAME, path, interface, prop, unprivileged=unprivileged)[0]["data"]

    def call(self, method, signature=None, *args, path=PATH, interface=GATEWAY, unprivileged=False):
        argv = ["call", NAME, path, interface, method] + ([signature, *map(str, args)] if signature else [])
        replies = self.busctl_json(*argv, unprivileged=unprivileged)
        return replies[0]["data"] if replies else None

    def bus_error(self, path, method, *args, unprivileged=False):
        """(error name, message) of a call made with dbus-send, which names the error; (None, reply)
        when the call succeeded."""
        p = self.run_cmd(["dbus-send", "--system", "--print-reply", f"--dest={NAME}", path, method, *args],
                         unprivileged)
        if p.returncode == 0:
            return None, p.stdout
        m = re.match(r"Error (\S+): (.*)", p.stderr.strip(), re.S)
        self.assertIsNotNone(m, p.stderr)
        return m.group(1), m.group(2)

    def set_error(self, prop, variant, unprivileged=False):
        return self.bus_error(PATH, "org.freedesktop.DBus.Properties.Set", f"string:{GATEWAY}", f"string:{prop}",
                              f"variant:{variant}", unprivileged=unprivileged)

    def ctl(self, *args, unprivileged=False):
        return self.run_cmd([harness.BLEGATECTL, *args], unprivileged)

    def start_gateway(self, *args, config="", name=True):
        """blegated on the private bus, once it owns the name (or, name=False, once it is up)."""
        d = self.start("--config", self.config(config), *args, env={"DBUS_SYSTEM_BUS_ADDRESS": self.bus.address})
        d.wait_notified("READY=1")
        if name:
            d.wait_log("Acquired the bus name org.blegate.Gateway1")
        return d

    def start_replayed(self, config=""):
        """A gateway that has taken in and stored the whole sample recording, then idles."""
        d = self.start_gateway("--replay", harness.SAMPLE_RECORDING, "--speed", "0", config=config)
        d.wait_log("Replay of")
        rows = sum(v[1] for v in sample_devices().values())
        wait_for(lambda: self.get("ReadingsStored") == rows, what="every reading stored")
        return d, rows

    def assert_alive(self, d):
        self.assertIsNone(d.proc.poll(), d.output())
        self.assertEqual(self.get("State"), "running")


class Properties(BusTestCase):
    def test_gateway_properties(self):
        d, rows = self.start_replayed("[Detector]\nThreshold=5\n")
        events = logged_events(d.output())
        version = subprocess.run([harness.BLEGATED, "--version"], capture_output=True, text=True,
                                 check=True).stdout.split()[1]
        self.assertGreater(len(events), 10)

        self.assertEqual(self.get("Version"), version)
        self.assertEqual(self.get("State"), "running")
        self.assertEqual(self.get("ReadingsReceived"), rows)
        self.assertEqual(self.get("ReadingsStored"), rows)
        self.assertEqual(self.get("BufferedReadings"), rows)
        # No sinks yet: nothing is delivered, the oldest undelivered is the first line.
        self.assertEqual(self.get("UndeliveredReadings"), rows)
        self.assertEqual(self.get("OldestUndeliveredUsec"), 1515542400000000)
        self.assertGreater(self.get("BufferBytes"), 0)
        self.assertEqual(self.get("ReadingsDropped"), 0)
        self.assertEqual(self.get("UntrackedReadings"), 0)
        self.assertEqual(self.get("GattLinks"), 0)
        self.assertEqual(self.get("BluetoothRecoveries"), 0)
        self.assertEqual(self.get("AnomaliesDetected"), len(events))
        self.assertEqual(self.get("Threshold"), 5.0)
        self.assertEqual(self.get("Window"), 100)
        self.assertEqual(self.get("MinSamples"), 100)
        self.assertEqual(self.get("MinStdDev"), 0.001)

        # GetAll, through the ObjectManager: the gateway and every device, with their interfaces.
        objects = self.call("GetManagedObjects", path="/org/blegate",
                            interface="org.freedesktop.DBus.ObjectManager")[0]
        self.assertEqual(objects[PATH][GATEWAY]["ReadingsReceived"]["data"], rows)
        devices = sample_devices()
        self.assertEqual(sorted(p for p in objects if p != PATH), sorted(device_path(i) for i in devices))

        # blegatectl status, as a table and as JSON.
        p = self.ctl("status")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn(f"blegated {version}: running", p.stdout)
        self.assertIn(f"Readings: {rows} received, {rows} stored, 0 dropped", p.stdout)
        self.assertIn(f"Anomalies: {len(events)} events", p.stdout)
        self.assertIn("Devices: 4\n", p.stdout)
        self.assertIn("Bluetooth: 0 GATT links streaming, 0 recoveries\n", p.stdout)
        self.assertIn("the oldest from 2018-01-10T00:00:00.000Z", p.stdout)
        self.assertIn("Detector: Threshold=5 Window=100 MinSamples=100 MinStdDev=0.001", p.stdout)
        p = self.ctl("status", "--json")
        self.assertEqual(p.returncode, 0, p.stderr)
        status = json.loads(p.stdout)
        for prop, value in objects[PATH][GATEWAY].items():
            self.assertEqual(status[prop], value["data"], prop)
        self.assertEqual(status["Devices"], 4)

    def test_devices(self):
        d, rows = self.start_replayed("[Detector]\nThreshold=5\n")
        events = logged_events(d.output())
        devices = sample_devices()

        listed = self.call("ListDevices")[0]
        self.assertEqual([r[1] for r in listed], sorted(devices))
        now = time.time() * 1e6
        for path, dev_id, kind, dev_type, address, name, rssi, connected, seen, n, anomalies, channels in listed:
            t, readings, dev_channels = devices[dev_id]
            self.assertEqual(path, device_path(dev_id))
            self.assertEqual((kind, dev_type, address, name, rssi, connected), (KINDS[t], t, "", "", 127, False))
            self.assertEqual(n, readings)
            self.assertEqual(anomalies, sum(1 for e in events if e[0] == dev_id))
            self.assertEqual(channels, [c for c in CHANNEL_ORDER if c in dev_channels])
            self.assertLess(abs(seen - now), 120e6, "LastSeenUsec is the wall clock of arrival")

            # The same through Device1's properties.
            props = {p: self.get(p, path, DEVICE) for p in ("Id", "Kind", "Type", "Address", "Name", "RSSI",
                                                            "Connected", "LastSeenUsec", "ReadingsReceived",
                                                            "AnomaliesDetected", "Channels")}
            self.assertEqual(props, {"Id": dev_id, "Kind": kind, "Type": dev_type, "Address": "", "Name": "",
                                     "RSSI": 127, "Connected": False, "LastSeenUsec": seen, "ReadingsReceived": n,
                                     "AnomaliesDetected": anomalies, "Channels": channels})

        # The device tree, through introspection.
        tree = self.busctl("tree", NAME).stdout
        for dev_id in devices:
            self.assertIn(device_path(dev_id), tree)

        # blegatectl devices, as a table and as JSON.
        p = self.ctl("devices")
        self.assertEqual(p.returncode, 0, p.stderr)
        lines = p.stdout.splitlines()
        self.assertEqual(lines[0].split(), ["ID", "KIND", "ADDRESS", "RSSI", "LINK", "LAST", "SEEN", "READINGS",
                                            "ANOMALIES", "CHANNELS"])
        self.assertEqual(lines[-1], "4 devices.")
        for row, (path, dev_id, kind, *_, n, anomalies, channels) in zip(lines[1:5], listed):
            cells = row.split()
            self.assertEqual(cells[:5], [dev_id, kind, "-", "-", "-"])
            self.assertEqual(cells[-3:], [str(n), str(anomalies), ",".join(channels)])
        p = self.ctl("devices", "--json")
        self.assertEqual(p.returncode, 0, p.stderr)
        rows_json = [json.loads(line) for line in p.stdout.splitlines()]
        self.assertEqual([[r[k] for k in ("Path", "Id", "Kind", "Type", "Address", "Name", "RSSI", "Connected",
                                          "LastSeenUsec", "ReadingsReceived", "AnomaliesDetected", "Channels")]
                          for r in rows_json], listed)

    def test_too_many_devices_are_counted_not_tracked(self):
        rec = self.write("many.csv", "timestamp,deviceId,ax\n" +
                         "".join(f"{1515542400000 + i},dev-{i:04d},{i % 7}\n" for i in range(1100)))
        d = self.start_gateway("--replay", rec, "--speed", "0")
        d.wait_log("Replay of")
        self.assertEqual(len(self.call("ListDevices")[0]), 1024)
        self.assertEqual(self.get("UntrackedReadings"), 1100 - 1024)
        self.assertEqual(self.get("ReadingsReceived"), 1100)
        wait_for(lambda: self.get("ReadingsStored") == 1100, what="the untracked readings stored too")
        self.assertEqual(d.output().count("is one more than the 1024 devices"), 1)
        self.assertIn("(and 76 readings of devices beyond the limit)", self.ctl("status").stdout)

    def test_sinks_tree_is_empty(self):
        self.start_replayed()
        p = self.ctl("sinks")
        self.assertEqual((p.returncode, p.stdout), (0, "No sinks configured.\n"), p.stderr)
        p = self.ctl("sinks", "--json")
        self.assertEqual((p.returncode, p.stdout), (0, ""), p.stderr)
        self.assertNotIn(f"{PATH}/sink/", self.busctl("tree", NAME).stdout)
        name, _ = self.bus_error(f"{PATH}/sink/mqtt", "org.freedesktop.DBus.Properties.Get", f"string:{SINK}",
                                 "string:Name")
        self.assertEqual(name, ERROR + "UnknownObject")


class Methods(BusTestCase):
    def test_get_anomalies(self):
        d, rows = self.start_replayed("[Detector]\nThreshold=4\n")
        events = logged_events(d.output())
        self.assertGreater(len(events), 20)

        got = self.call("GetAnomalies", "tu", 0, 10000)[0]
        self.assertEqual(sorted(tuple(e[:5]) for e in got), sorted(events))
        starts = [e[2] for e in got]
        self.assertEqual(starts, sorted(starts), "oldest first")
        for e in got:
            self.assertGreaterEqual(abs(e[6]), 4)

        # since is inclusive; max bounds the answer.
        since = got[10][2]
        later = self.call("GetAnomalies", "tu", since, 3)[0]
        self.assertEqual(len(later), 3)
        self.assertTrue(all(e[2] >= since for e in later))
        self.assertEqual(later[0], [e for e in got if e[2] >= since][0])
        self.assertEqual(self.call("GetAnomalies", "tu", 2**63, 5)[0], [])

        # blegatectl anomalies: table, JSON, --since in each of its forms, --limit.
        p = self.ctl("anomalies", "--limit", "5")
        self.assertEqual(p.returncode, 0, p.stderr)
        lines = p.stdout.splitlines()
        self.assertEqual(lines[0].split(), ["START", "DEVICE", "CHANNEL", "READINGS", "DURATION", "PEAK", "VALUE",
                                            "PEAK", "Z"])
        self.assertEqual(len(lines), 1 + 5 + 2)
        self.assertIn("5 anomaly events (the limit", lines[-1])
        first = lines[1].split()
        self.assertEqual(first[:4], [datetime.datetime.fromtimestamp(got[0][2] / 1e6, datetime.timezone.utc)
                                     .strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z", got[0][0], got[0][1],
                                     str(got[0][4])])
        self.assertEqual(first[-1], f"{got[0][6]:.2f}")

        p = self.ctl("anomalies", "--json", "--limit", "10000")
        self.assertEqual(p.returncode, 0, p.stderr)
        as_json = [json.loads(line) for line in p.stdout.splitlines()]
        self.assertEqual([[e[k] for k in ("device", "channel", "start_usec", "end_usec", "readings", "peak_value",
                                          "peak_z")] for e in as_json], got)

        since_ms = since // 1000
        iso = datetime.datetime.fromtimestamp(since_ms / 1000, datetime.timezone.utc).strftime(
            "%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        expected = [e for e in got if e[2] >= since]
        for form in (str(since_ms), iso, iso.replace("T", " ").replace("Z", "+00:00")):
            p = self.ctl("anomalies", "--json", "--since", form, "--limit", "10000")
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertEqual(len(p.stdout.splitlines()), len(expected), form)
        # The recording is from 2018: nothing started in the last day.
        p = self.ctl("anomalies", "--since", "-1d")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("0 anomaly events.", p.stdout)
        p = self.ctl("anomalies", "--json", "--since", "2018-01-10", "--limit", "10000")
        self.assertEqual(len(p.stdout.splitlines()), len(got))

        for bad in (["--since", "yesterday"], ["--since", "2018-02-30"], ["--since", "-5 parsecs"],
                    ["--limit", "0"], ["--limit", "10001"], ["--limit", "-1"], ["extra"]):
            p = self.ctl("anomalies", *bad)
            self.assertEqual(p.returncode, 2, bad)
            self.assertNotEqual(p.stderr, "", bad)

    def test_flush(self):
        # Nothing commits by itself for a minute: what is stored, Flush stored.
        d = self.start_gateway("--replay", harness.SAMPLE_RECORDING, "--speed", "1",
                               config="[Store]\nCommitInterval=60\nCommitReadings=100000\n")
        wait_for(lambda: self.get("ReadingsReceived") > 100, what="readings")
        self.assertEqual(self.get("ReadingsStored"), 0)
        received = self.get("ReadingsReceived")
        self.assertIsNone(self.call("Flush"))
        self.assertGreaterEqual(self.get("ReadingsStored"), received)
        self.assertIn("Flush requested over D-Bus", d.output())

        received = self.get("ReadingsReceived")
        p = self.ctl("flush")
        self.assertEqual((p.returncode, p.stdout), (0, ""), p.stderr)
        self.assertGreaterEqual(self.get("ReadingsStored"), received)

    def test_reload(self):
        cfg = self.path("blegate.conf")
        d = self.start_gateway("--replay", harness.SAMPLE_RECORDING, "--speed", "1", config="[Detector]\nThreshold=5\n")
        self.config("[Detector]\nThreshold=6\n")
        self.assertIsNone(self.call("Reload"))
        self.assertEqual(self.get("Threshold"), 6.0)
        self.assertTrue(d.notified("RELOADING=1"))

        self.config("[Detector]\nThreshold=7\n")
        p = self.ctl("reload")
        self.assertEqual((p.returncode, p.stdout), (0, ""), p.stderr)
        self.assertEqual(self.get("Threshold"), 7.0)

        # An invalid file: the reason comes back, the running configuration stays.
        self.config("[Detector]\nThreshold=3\nWindow=lots\n")
        name, message = self.bus_error(PATH, f"{GATEWAY}.Reload")
        self.assertEqual(name, "org.blegate.Error.InvalidConfiguration")
        self.assertIn(f"{cfg}:5: ", message)
        self.assertIn("Window", message)
        p = self.ctl("reload")
        self.assertEqual(p.returncode, 1)
        self.assertIn(f"{cfg}:5: ", p.stderr)
        self.assertEqual(self.get("Threshold"), 7.0)
        self.assert_alive(d)


class Settings(BusTestCase):
    def test_writes_apply_until_the_next_reload(self):
        d = self.start_gateway("--replay", harness.SAMPLE_RECORDING, "--speed", "1", config="[Detector]\nThreshold=5\n")
        self.signals = Signals(self.bus.address)

        p = self.busctl("set-property", NAME, PATH, GATEWAY, "Threshold", "d", "4.5")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(self.get("Threshold"), 4.5)
        self.signals.wait("PropertiesChanged", PATH, lambda a: a[0] == GATEWAY and a[1].get("Threshold") == 4.5)
        self.assertIn("Detector Threshold= set to 4.5 over D-Bus by :", d.output())

        p = self.ctl("set", "window", "50")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual((self.get("Window"), self.get("MinSamples")), (50, 50))
        self.assertIn("Detector Window= changed from 100 to 50", d.output())
        self.signals.wait("PropertiesChanged", PATH,
                          lambda a: a[0] == GATEWAY and a[1].get("Window") == 50 and a[1].get("MinSamples") == 50)
        p = self.ctl("set", "threshold", "3.25")
        self.assertEqual(p.returncode, 0, p.stderr)
        status = json.loads(self.ctl("status", "--json").stdout)
        self.assertEqual((status["Threshold"], status["Window"]), (3.25, 50))

        # A reload re-reads the file: the writes are gone. SIGHUP does the same.
        self.assertIsNone(self.call("Reload"))
        self.assertEqual((self.get("Threshold"), self.get("Window"), self.get("MinSamples")), (5.0, 100, 100))
        self.signals.wait("PropertiesChanged", PATH, lambda a: a[0] == GATEWAY and a[1].get("Threshold") == 5.0)
        self.assertEqual(self.ctl("set", "threshold", "8").returncode, 0)
        d.signal(signal.SIGHUP)
        wait_for(lambda: self.get("Threshold") == 5.0, what="SIGHUP to restore Threshold")

        # An explicit MinSamples stays unless the window drops below it.
        self.config("[Detector]\nWindow=200\nMinSamples=150\n")
        self.assertIsNone(self.call("Reload"))
        self.assertEqual(self.ctl("set", "window", "300").returncode, 0)
        self.assertEqual((self.get("Window"), self.get("MinSamples")), (300, 150))
        self.assertEqual(self.ctl("set", "window", "120").returncode, 0)
        self.assertEqual((self.get("Window"), self.get("MinSamples")), (120, 120))
        self.assert_alive(d)

    def test_bad_values_are_refused(self):
        d = self.start_gateway("--replay", harness.SAMPLE_RECORDING, "--speed", "1")
        for variant in ("double:0", "double:-1", "double:nan", "double:inf", "double:-inf"):
            name, message = self.set_error("Threshold", variant)
            self.assertEqual(name, ERROR + "InvalidArgs", variant)
            self.assertIn("Threshold must be a finite number > 0", message)
        for variant in ("uint32:0", "uint32:1", "uint32:100001", "uint32:4294967295"):
            name, message = self.set_error("Window", variant)
            self.assertEqual(name, ERROR + "InvalidArgs", variant)
            self.assertIn("Window must be in 2..100000", message)
        for prop, variant in (("Threshold", "string:high"), ("Window", "int32:50"), ("Window", "double:50")):
            self.assertEqual(self.set_error(prop, variant)[0], ERROR + "InvalidArgs", variant)
        for prop in ("ReadingsReceived", "State", "Version", "MinSamples"):
            self.assertEqual(self.set_error(prop, "uint64:1")[0], ERROR + "PropertyReadOnly", prop)
        self.assertEqual(self.set_error("Bogus", "uint32:1")[0], ERROR + "UnknownProperty")
        # busctl says so too.
        for value in ("0", "-1", "nan"):
            p = self.busctl("set-property", NAME, PATH, GATEWAY, "Threshold", "d", "--", value)
            self.assertNotEqual(p.returncode, 0)
            self.assertIn("Threshold must be a finite number > 0", p.stderr)
        self.assertEqual((self.get("Threshold"), self.get("Window")), (3.0, 100))

        # blegatectl: a usage error, from its own parsing or from the daemon's InvalidArgs.
        p = self.ctl("set", "threshold", "0")
        self.assertEqual(p.returncode, 2)
        self.assertIn("Threshold must be a finite number > 0, not 0", p.stderr)
        p = self.ctl("set", "window", "100001")
        self.assertEqual(p.returncode, 2)
        self.assertIn("Window must be in 2..100000, not 100001", p.stderr)
        for args in (["threshold", "0"], ["threshold", "-1"], ["threshold", "nan"], ["threshold", "x"],
                     ["window", "1"], ["window", "100001"], ["window", "-5"], ["window", "9" * 30], ["speed", "2"],
                     ["threshold"], []):
            p = self.ctl("set", *args)
            self.assertEqual(p.returncode, 2, args)
            self.assertNotEqual(p.stderr, "", args)
        self.assert_alive(d)

    def test_malformed_calls(self):
        d = self.start_gateway("--replay", harness.SAMPLE_RECORDING, "--speed", "1")
        method = f"{GATEWAY}.GetAnomalies"
        cases = [
            ((PATH, method, "uint64:0", "uint32:0"), "InvalidArgs"),
            ((PATH, method, "uint64:0", "uint32:10001"), "InvalidArgs"),
            ((PATH, method, "uint64:0", "uint32:4294967295"), "InvalidArgs"),
            ((PATH, method, "string:0", "uint32:5"), "InvalidArgs"),
            ((PATH, method, "uint64:0"), "InvalidArgs"),
            ((PATH, method, "uint64:0", "uint32:5", "uint32:5"), "InvalidArgs"),
            ((PATH, f"{GATEWAY}.ListDevices", "string:x"), "InvalidArgs"),
            ((PATH, f"{GATEWAY}.Flush", "int32:1"), "InvalidArgs"),
            ((PATH, f"{GATEWAY}.Explode"), "UnknownMethod"),
            ((PATH, "org.blegate.Nothing1.ListDevices"), "UnknownMethod"),
            (("/org/blegate/Gateway2", f"{GATEWAY}.ListDevices"), "UnknownObject"),
            ((device_path("nope"), "org.freedesktop.DBus.Properties.GetAll", f"string:{DEVICE}"), "UnknownObject"),
            ((f"{PATH}/device/_zz", "org.freedesktop.DBus.Properties.GetAll", f"string:{DEVICE}"), "UnknownObject"),
            ((f"{PATH}/device/{'a' * 200}", "org.freedesktop.DBus.Properties.GetAll", f"string:{DEVICE}"),
             "UnknownObject"),
            ((f"{PATH}/device/phone_2d1/x", "org.freedesktop.DBus.Properties.GetAll", f"string:{DEVICE}"),
             "UnknownObject"),
        ]
        for args, error in cases:
            name, message = self.bus_error(*args)
            self.assertEqual(name, ERROR + error, (args, message))
        p = self.busctl("call", NAME, PATH, GATEWAY, "GetAnomalies", "tu", "0", "4000000000")
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("max must be in 1..10000", p.stderr)
        p = self.busctl("call", NAME, PATH, GATEWAY, "GetAnomalies", "su", "x", "5")
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("expecting 'tu'", p.stderr)
        self.assert_alive(d)


class Access(BusTestCase):
    def test_unprivileged_reads_but_cannot_change(self):
        self.assertEqual(os.getuid(), 0, "the suite runs as root: the test switches to nobody")
        d = self.start_gateway("--replay", harness.SAMPLE_RECORDING, "--speed", "1",
                               config="[Store]\nCommitInterval=60\nCommitReadings=100000\n")
        wait_for(lambda: self.get("ReadingsReceived") > 0, what="readings")

        # Reading is open to everyone.
        self.assertEqual(self.get("State", unprivileged=True), "running")
        self.assertEqual(self.get("Threshold", unprivileged=True), 3.0)
        self.assertEqual(len(self.call("ListDevices", unprivileged=True)[0]), 4)
        self.assertEqual(self.call("GetAnomalies", "tu", 0, 5, unprivileged=True)[0], [])
        self.assertEqual(self.busctl("introspect", NAME, PATH, unprivileged=True).returncode, 0)
        for verb in (["status"], ["status", "--json"], ["devices"], ["anomalies"], ["sinks"]):
            p = self.ctl(*verb, unprivileged=True)
            self.assertEqual(p.returncode, 0, (verb, p.stderr))

        # Changing is not.
        for prop, variant in (("Threshold", "double:4"), ("Window", "uint32:50")):
            name, message = self.set_error(prop, variant, unprivileged=True)
            self.assertEqual(name, ERROR + "AccessDenied", prop)
        for method in ("Flush", "Reload"):
            name, _ = self.bus_error(PATH, f"{GATEWAY}.{method}", unprivileged=True)
            self.assertEqual(name, ERROR + "AccessDenied", method)
        p = self.busctl("set-property", NAME, PATH, GATEWAY, "Threshold", "d", "4", unprivileged=True)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("Access denied", p.stderr)
        for verb in (["set", "threshold", "4"], ["set", "window", "50"], ["flush"], ["reload"]):
            p = self.ctl(*verb, unprivileged=True)
            self.assertEqual(p.returncode, 4, verb)
            self.assertIn("Access denied", p.stderr)
            self.assertIn("run it as root", p.stderr)

        self.assertEqual((self.get("Threshold"), self.get("Window")), (3.0, 100))
        self.assertEqual(self.get("ReadingsStored"), 0, "the refused Flush committed nothing")
        self.assertNotIn("Reload requested", d.output())
        self.assert_alive(d)


class Signalling(BusTestCase):
    def test_signals_live(self):
        self.signals = Signals(self.bus.address)
        d = self.start_gateway("--replay", harness.SAMPLE_RECORDING, "--speed", "4")
        watch = subprocess.Popen([harness.BLEGATECTL, "watch", "--json"], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, env=self.env)
        self.procs.append(watch)
        table = subprocess.Popen([harness.BLEGATECTL, "watch"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True, env=self.env)
        self.procs.append(table)
        self.signals.watch_for(4.5)
        self.signals.wait("PropertiesChanged", PATH, lambda a: a[1].get("State") == "running")

        # A device appears once, with its properties.
        added = self.signals.find("InterfacesAdded", "/org/blegate")
        self.assertEqual(sorted(str(a[4][0]) for a in added), sorted(device_path(i) for i in sample_devices()))
        for _, _, _, _, (path, interfaces) in added:
            self.assertEqual(list(interfaces), [DEVICE])
            self.assertEqual(interfaces[DEVICE]["ReadingsReceived"], 1)
            self.assertEqual(interfaces[DEVICE]["RSSI"], 127)

        # Counters: at most one PropertiesChanged a second, for the gateway and for each device.
        def spacing(path, prop):
            times = [r[0] for r in self.signals.find("PropertiesChanged", path, lambda a: prop in a[1])]
            self.assertGreaterEqual(len(times), 2, path)
            return min(b - a for a, b in zip(times, times[1:]))

        self.assertGreater(spacing(PATH, "ReadingsReceived"), 0.9)
        for dev_id in sample_devices():
            self.assertGreater(spacing(device_path(dev_id), "ReadingsReceived"), 0.9)
        changed = self.signals.find("PropertiesChanged", PATH, lambda a: "ReadingsReceived" in a[1])
        self.assertGreater(changed[-1][4][1]["ReadingsReceived"], 1000)
        self.assertIn("BufferedReadings", [k for c in changed for k in c[4][1]])

        # Stopping: State says so, the open events are closed and signalled too.
        d.signal(signal.SIGTERM)
        self.assertEqual(d.wait(), 0)
        self.signals.wait("PropertiesChanged", PATH, lambda a: a[1].get("State") == "stopping")
        logged = logged_events(d.output())
        self.assertGreater(len(logged), 10)
        self.signals.wait("AnomalyDetected", PATH, count=len(logged))
        signalled = [(str(a[0]), str(a[1]), int(a[2]), int(a[3]), int(a[4]))
                     for *_, a in self.signals.find("AnomalyDetected", PATH)]
        self.assertEqual(signalled, logged)

        # blegatectl watch saw them as they came, and outlives the daemon.
        wait_for(lambda: watch.poll() is None, what="watch to keep running")
        watch.send_signal(signal.SIGINT)
        out, err = watch.communicate(timeout=10)
        self.assertEqual(watch.returncode, 0, err)
        self.assertIn("blegated went away", err)
        seen = [json.loads(line) for line in out.splitlines()]
        self.assertGreater(len(seen), 0)
        for e in seen:
            self.assertIn((e["device"], e["channel"], e["start_usec"], e["end_usec"], e["readings"]), signalled)
        table.send_signal(signal.SIGINT)
        out, err = table.communicate(timeout=10)
        self.assertEqual(table.returncode, 0, err)
        lines = out.splitlines()
        self.assertEqual(lines[0].split()[:3], ["START", "DEVICE", "CHANNEL"])
        self.assertGreater(len(lines), 1)


class Introspection(BusTestCase):
    def docs_xml(self, interface):
        with open(os.path.join(DOCS, f"{interface}.xml")) as f:
            return interface_xml(f.read(), interface)

    def test_exported_interfaces_match_the_docs(self):
        self.start_replayed()
        for interface, path in ((GATEWAY, PATH), (DEVICE, device_path("phone-1"))):
            p = self.busctl("introspect", "--xml-interface", NAME, path)
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertEqual(interface_xml(p.stdout, interface), self.docs_xml(interface),
                             f"{interface} as exported differs from docs/{interface}.xml; regenerate it with "
                             f"blegated --bus-introspect={interface} and update docs/{interface}.md")
        # The ObjectManager is at the root.
        p = self.busctl("introspect", "--xml-interface", NAME, "/org/blegate")
        self.assertIn('<interface name="org.freedesktop.DBus.ObjectManager">', p.stdout)

    def test_bus_introspect_matches_the_docs(self):
        """--bus-introspect prints what the vtables say; this covers Sink1, which has no object
        until the first sink exists."""
        for interface in (GATEWAY, DEVICE, SINK):
            p = subprocess.run([harness.BLEGATED, f"--bus-introspect={interface}"], capture_output=True, text=True,
                               timeout=30)
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertEqual(interface_xml(p.stdout, interface), self.docs_xml(interface), interface)
        p = subprocess.run([harness.BLEGATED, "--bus-introspect=org.example.Nope1"], capture_output=True, text=True,
                           timeout=30)
        self.assertEqual(p.returncode, 1)
        self.assertIn("Unknown interface", p.stderr)


class WithoutBus(BusTestCase):
    def test_no_bus_keeps_collecting(self):
        d = self.start("--config", self.config(), "--replay", harness.SAMPLE_RECORDING, "--speed", "0",
                       "--drain-and-exit", env={"DBUS_SYSTEM_BUS_ADDRESS": f"unix:path={self.dir}/no-bus"})
        self.assertEqual(d.wait(), 0, d.output())
        rows = sum(v[1] for v in sample_devices().values())
        self.assertIn("Failed to connect to the system bus, running without the D-Bus API", d.output())
        self.assertIn(f"finished: {rows} readings", d.output())
        self.assertIn(f"{rows} readings committed", d.output())
        self.assertTrue(d.notified("READY=1"))

    def test_blegatectl_without_daemon_or_bus(self):
        for verb in (["status"], ["devices"], ["anomalies"], ["sinks"], ["watch"], ["flush"], ["reload"],
                     ["set", "threshold", "4"]):
            p = self.ctl(*verb)
            self.assertEqual(p.returncode, 3, verb)
            self.assertIn("blegated is not running", p.stderr)
        self.env["DBUS_SYSTEM_BUS_ADDRESS"] = f"unix:path={self.dir}/no-bus"
        p = self.ctl("status")
        self.assertEqual(p.returncode, 3)
        self.assertIn("Failed to connect to the system bus", p.stderr)

    def test_bus_comes_and_goes(self):
        self.bus.stop()
        d = self.start("--config", self.config(), "--replay", harness.SAMPLE_RECORDING, "--speed", "1",
                       env={"DBUS_SYSTEM_BUS_ADDRESS": self.bus.address})
        d.wait_notified("READY=1")
        d.wait_log("Failed to connect to the system bus, running without the D-Bus API")

        self.bus.start()
        d.wait_log("Acquired the bus name org.blegate.Gateway1", timeout=15)
        self.assertEqual(self.ctl("status").returncode, 0)
        before = self.get("ReadingsReceived")

        self.bus.stop()
        d.wait_log("Lost the connection to the system bus")
        self.assertIsNone(d.proc.poll())
        self.bus.start()
        wait_for(lambda: d.output().count("Acquired the bus name") == 2, timeout=20, what="the name again")
        self.assertGreater(self.get("ReadingsReceived"), before)
        # One warning per outage; the attempts in between are debug messages.
        self.assertEqual(d.output().count("Failed to connect to the system bus"), 1)
        self.assert_alive(d)

    def test_name_already_taken(self):
        self.start_gateway("--replay", harness.SAMPLE_RECORDING, "--speed", "1")
        other = self.start("--config", self.write("other.conf", f"[Store]\nPath={self.path('other.db')}\n"),
                           "--replay", harness.SAMPLE_RECORDING, "--speed", "0", "--drain-and-exit",
                           env={"DBUS_SYSTEM_BUS_ADDRESS": self.bus.address})
        self.assertEqual(other.wait(), 0, other.output())
        self.assertIn("Another process owns the bus name org.blegate.Gateway1", other.output())
        self.assertTrue(other.notified("READY=1"))


if __name__ == "__main__":
    harness.main()
