#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""A fake bluetoothd on the bus DBUS_SYSTEM_BUS_ADDRESS names: python3-dbusmock's bluez5 template
(0.28.7, Debian 12) loaded in this process, plus a scripted fleet of Ruuvi tags, GATT devices
(SensorTags, Thingy:52s, phones) and a control interface for fault injection. Run it as a child;
stopping it (SIGTERM) is bluetoothd leaving the bus, and starting it again with the same --sent file
is bluetoothd coming back, the tags' counters going on where they were.

The adapter (hci0) behaves as BlueZ 5.66 does where the daemon depends on it, which the template
does not: SetDiscoveryFilter and StartDiscovery fail with NotReady while powered off; powering off
ends discovery, forgets the filter, disconnects every link and removes the devices; adverts are
only heard while someone discovers with DuplicateData=true or a registered advertisement monitor
matches them (the template's ManufacturerData default has the wrong type, a{qv} arrays, so devices
are built here instead of with AddDevice).

Ruuvi fleet: --tags tags, each taking a format-5 measurement every 1/--rate s whether or not anyone
listens (so the measurement sequence jumps over gaps, and wraps at 65535 when --seq-start is near
it), each measurement heard advertised --repeat times (once per measurement however many listeners
there are). The first advert of a tag on this adapter is its InterfacesAdded, the rest
PropertiesChanged(ManufacturerData, RSSI). Every measurement heard is appended to --sent as
"<tag mac hex> <seq> <az mG>" before its adverts go out, so the test knows exactly what the daemon
could hear. Two more devices advertise beside the fleet and must never become readings: one with
another company's manufacturer data, one Ruuvi Air (data format 6, no acceleration). One more sits
on the adapter from the start as the template's AddDevice makes it, with ManufacturerData of the
wrong type. Tags are temporary non-connectable devices: they go when discovery stops.

GATT devices (--sensortags, --thingys, --phones N; none by default), connectable:
  SensorTag i  54:6C:0E:00:00:<i>  "SensorTag <i>"  id 546c0e0000<i>, stream "sensortag"
  Thingy i     D0:0D:52:00:00:<i>  "Thingy <i>"     id d00d520000<i>, streams "thingy52-raw", "thingy52-euler"
  phone i      5A:00:00:00:00:<i>  no name          id phone-<i> (its identity), stream "phone"
(<i> two hex digits), on hci<i % --adapters>. Each appears (InterfacesAdded, UUIDs = [its service
UUID]) when heard and then advertises once a second (PropertiesChanged(RSSI)) while heard and not
connected; it stays when discovery stops and goes on power off and with the adapter.
Device1.Connect/Disconnect behave as BlueZ's: Connect fails with NotReady
"br-connection-adapter-not-powered" when powered off, with an injected error (FailConnect),
AlreadyConnected, or Failed "le-connection-concurrent-connection-limit" beyond --max-links on its
adapter; else Connected=true, and --resolve-delay ms later the GATT objects are exported the first
time (InterfacesAdded per service and characteristic; they survive disconnects) and
ServicesResolved=true. A link going down (Disconnect, DropLink, power off) emits Notifying=false per
notifying characteristic, closes acquired sockets (NotifyAcquired=false), then ServicesResolved=false,
Connected=false. GATT methods fail with NotConnected while disconnected. ReadValue returns the value
and emits PropertiesChanged(Value) with it, as BlueZ does. WriteValue checks the length
(InvalidValueLength) and the range: out of range is org.bluez.Error.Failed "Operation failed with
ATT error: 0x80" (the message BlueZ gives for an application error):
  SensorTag  AA81 data (read, notify; streams once AA82 enables an axis, at the AA83 period)
             AA82 config (read, write; 2 bytes, bits 10-15 must be 0; default 00 02: off, 8 G;
             reset on disconnect, as the tag does)
             AA83 period (read, write; 1 byte, 10..255 × 10 ms; default 100; reset on disconnect)
  Thingy     0401 config (read, write; 9 bytes, motion Hz at offset 6, 5..200; default 10 Hz; kept
             across disconnects, as the firmware keeps it in flash), 0406 raw and 0407 Euler (notify)
  phone      0101 samples (notify; --phone-batch samples per notification, sequence from 65500,
             time = real time of the first sample), 0102 identity (read), 0103 config (read: 01 0F
             and the rate; write: 4 bytes, version 1, rate 1..200 Hz; default every group, linear,
             100 Hz; reset on disconnect, as the profile allows)
Kinds named in --acquire (default "phone") offer AcquireNotify on their notify characteristics
(property NotifyAcquired, false until acquired; other kinds have no such property): a
SOCK_SEQPACKET socket, one send() per notification, mtu 517; InProgress while StartNotify'd,
NotPermitted when acquired already; closing the other end ends the acquisition. StartNotify
fails with NotPermitted while acquired and succeeds again while notifying.

Streams are paced by one timer (every --tick-ms, 10 by default) against wall time: every stream
produces its samples at its rate whether or not anyone listens (its counters go on, like a
phone's sequence); all devices' samples fall due in the same tick, or with --spread evenly over a
period, device after device, as on air (with --tick-ms 1, say). A sample is sent only while the
device is connected and the characteristic notifies (PropertiesChanged(Value) on it, and Value
updated) or is acquired. A send that would block (the daemon not reading its socket) drops the
notification, unrecorded. Every sample sent is appended to --gatt-sent, before it
goes out, as
  <device id> <stream> <channel> <value>
with a marker channel whose raw integer follows a per-device per-stream counter (a triangle wave of
step 2, unique over 20480 consecutive samples, never anomalous by itself), and value the repr() of
the SI value the daemon stores: sensortag mz (raw µT; 0.0 if the config leaves the magnetometer
off), thingy52-raw mz (raw/16 µT), thingy52-euler oa (yaw, raw/65536 °), phone gz (raw/10 °/s;
"none" if the written config drops the gyro group). The other channels vary slowly with a little
deterministic noise, far from a z-score of 6 with a window of 20.

Passive scanning (--monitor): hci0 offers org.bluez.AdvertisementMonitorManager1
(SupportedMonitorTypes ["or_patterns"], SupportedFeatures []). As BlueZ 5.66 does, RegisterMonitor(o)
answers at once (InvalidArguments for a path not starting with "/", AlreadyExists for a root the
caller registered already), then reads the caller's ObjectManager at root: each
org.bluez.AdvertisementMonitor1 with Type "or_patterns" and 1..16 Patterns of content <= 31 bytes
gets Activate(); any other gets Release() and is ignored. While hci0 is powered (discovering or not)
and not stalled, the devices matching an active monitor's patterns are heard as with discovery, and
each monitor gets DeviceFound(o) once per device appearance. AD data matched: Ruuvi tags type 0xFF
= 99 04 + payload; GATT devices type 0x07 = their service UUID (16 bytes, little-endian), type 0x01
= 06. A root whose owner leaves the bus is forgotten; RemoveAdapter calls Release() on every
monitor and forgets them; power off keeps them. Without --monitor the interface is absent
(UnknownMethod).

A second adapter (--adapters 2): hci1, powered, with discovery as hci0's and the GATT devices of
odd index, no tags, no monitors. The faults below (power, removal, stall) are hci0's alone, so a
test sees that hci1's links go on meanwhile.

Demonstrations: --spike-every S gives one device of the fleet a spike every S seconds, in turn
(the tags, then the GATT devices), as Spike(id) does. --quiet sends dbusmock's log of every method
call and signal (to stdout otherwise) to /dev/null; the objects the template and this fake add
inherit the root's log file.

Control, interface org.blegate.FakeBluez1 on /:
  SetPowered(b)       power hci0 off or on (Properties.Set of Adapter1.Powered does the same)
  RemoveAdapter()     hci0 and its devices go away (InterfacesRemoved)
  AddAdapter()        hci0 comes back, powered, not discovering
  StopScan()          discovery stops without anyone asking (as when the kernel ends a scan)
  Spike(s id)         a tag's (mac hex) next measurement has az = 30000 mG; a GATT device's next
                      accelerometer sample has raw az = 32767 (SensorTag, Thingy raw, phone)
  Heard() -> t        Ruuvi measurements advertised since this process started
  DropLink(s address) the link drops as if out of range (nothing if not connected)
  Unresolve(s address) the device's GATT server goes (notifications end, ServicesResolved=false)
                      while the link stays connected, until someone calls Disconnect
  FailConnect(s address, s error, s message, u count)
                      the next count Connect calls fail with that error; Failed
                      "le-connection-abort-by-local" first sets Connected=true then false
  HangConnect(u ms)   the next Connect call (any device) blocks the fake for ms, as a hung
                      bluetoothd does, and then succeeds: its caller may have given up by then
  ConnectCalls() -> a{su}  Connect calls per address so far (Echo objects: "<address>@hci1")
  Echo(s address)     with --adapters 2: hci1 hears a GATT device of hci0 too (as when it goes on
                      advertising while connected): a second Device1 object for it on hci1,
                      advertising once a second while hci1 discovers; its Connect fails NotReady
  Links() -> as       addresses connected now
  PeakLinks() -> u    the most links ever up at once
  Stall(s mode)       hci0 stays Discovering but hears nothing (no adverts, no new devices; links
                      go on): "discovery" until StopDiscovery or power off, "power" until power
                      off, "off" ends it now
  Delivered() -> t    GATT samples sent so far
  Monitors() -> u     advertisement monitor roots registered now
"""

import argparse
import math
import os
import select
import signal
import socket
import struct
import sys
import time

import dbus
import dbus.lowlevel
import dbus.mainloop.glib
import dbus.service
import dbusmock.mockobject
from dbusmock.templates import bluez5
from gi.repository import GLib

ADAPTER = "org.bluez.Adapter1"
DEVICE = "org.bluez.Device1"
SERVICE = "org.bluez.GattService1"
CHAR = "org.bluez.GattCharacteristic1"
MONITOR_MANAGER = "org.bluez.AdvertisementMonitorManager1"
MONITOR = "org.bluez.AdvertisementMonitor1"
PROPS = "org.freedesktop.DBus.Properties"
OM = "org.freedesktop.DBus.ObjectManager"
CONTROL = "org.blegate.FakeBluez1"
RUUVI = 0x0499
ADAPTER_NAME = "hci0"
MTU = 517
ATT_ERROR = "Operation failed with ATT error: 0x80"
MARKER_HALF = 10240   # the marker's triangle wave: 2 × this many distinct values in a row


def adapter_path(name):
    return "/org/bluez/" + name


def device_path(adapter, address):
    return f"{adapter_path(adapter)}/dev_{address.replace(':', '_')}"


ADAPTER_PATH = adapter_path(ADAPTER_NAME)


def tag_mac(i):
    """Random static addresses (top bits 11), as Ruuvi tags use."""
    return bytes([0xF0, 0x0B, 0x1E, 0x00, (i >> 8) & 0xFF, i & 0xFF])


def format5(seq, ax, ay, az, mac):
    # temperature 21.5 °C, humidity 40 %, 100000 Pa, 3000 mV / +4 dBm, movement 0
    power = ((3000 - 1600) << 5) | ((4 + 40) // 2)
    return struct.pack(">BhHHhhhHBH6s", 5, int(21.5 / 0.005), int(40 / 0.0025), 100000 - 50000,
                       ax, ay, az, power, 0, seq, mac)


def error(name, message):
    return dbus.exceptions.DBusException(message, name="org.bluez.Error." + name)


def marker(n):
    """Even values up, odd values down: unique over 2 × MARKER_HALF samples, steps of 1 or 2."""
    m = n % (2 * MARKER_HALF)
    return -MARKER_HALF + 2 * m if m < MARKER_HALF else MARKER_HALF - 1 - 2 * (m - MARKER_HALF)


def wave(n, k, amplitude, noise=5):
    """A slow sine (period 400 samples, phase by k) plus a period-11 ramp of ±noise: plausible,
    never far from its last 20 values in units of their spread."""
    return int(round(amplitude * math.sin(2 * math.pi * (n + 37 * k) / 400))) + noise * ((n * 7 + k * 3) % 11 - 5) // 5


def clamp16(v):
    return max(-32768, min(32767, v))


class Tag:
    def __init__(self, i, seq):
        self.mac = tag_mac(i)
        self.address = ":".join(f"{b:02X}" for b in self.mac)
        self.path = device_path(ADAPTER_NAME, self.address)
        self.name = f"Ruuvi {self.mac[4]:02X}{self.mac[5]:02X}"
        self.seq = seq
        self.n = 0
        self.spike = False

    def measure(self):
        # 0xFFFF is "not available" in format 5: a tag's counter skips it.
        self.seq = (self.seq + 1) & 0xFFFF
        if self.seq == 0xFFFF:
            self.seq = 0
        self.n += 1
        az = 30000 if self.spike else 1000 + self.n % 17
        self.spike = False
        return format5(self.seq, self.n % 7, -(self.n % 5), az, self.mac), az


SENSORTAG_BASE = "f000{}-0451-4000-b000-000000000000"
THINGY_BASE = "ef68{}-9b35-4933-9b10-52ffa9740042"
PHONE_BASE = "34ba{}-423b-4cae-b2f8-fcf1b6678a74"

# kind: (service uuid, [(characteristic uuid, flags, stream name or None)])
PROFILES = {
    "sensortag": (SENSORTAG_BASE.format("aa80"), [
        (SENSORTAG_BASE.format("aa81"), ["read", "notify"], "sensortag"),
        (SENSORTAG_BASE.format("aa82"), ["read", "write"], None),
        (SENSORTAG_BASE.format("aa83"), ["read", "write"], None)]),
    "thingy": (THINGY_BASE.format("0400"), [
        (THINGY_BASE.format("0401"), ["read", "write"], None),
        (THINGY_BASE.format("0406"), ["notify"], "thingy52-raw"),
        (THINGY_BASE.format("0407"), ["notify"], "thingy52-euler")]),
    "phone": (PHONE_BASE.format("0100"), [
        (PHONE_BASE.format("0101"), ["notify"], "phone"),
        (PHONE_BASE.format("0102"), ["read"], None),
        (PHONE_BASE.format("0103"), ["read", "write"], None)]),
}


class Characteristic:
    def __init__(self, dev, index, uuid, flags, stream):
        self.dev = dev
        self.uuid = uuid
        self.flags = flags
        self.path = f"{dev.path}/service000c/char{0x0d + 2 * index:04x}"
        self.offers_acquire = "notify" in flags and dev.kind in dev.fake.acquire_kinds
        self.notifying = False
        self.sock = None       # our end of an acquired socket
        self.watch = None
        self.stream = Stream(self, stream) if stream else None

    def props(self):
        p = {
            "UUID": dbus.String(self.uuid),
            "Service": dbus.ObjectPath(self.dev.path + "/service000c"),
            "Value": dbus.Array([], signature="y"),
            "Flags": dbus.Array(self.flags, signature="s"),
        }
        if "notify" in self.flags:
            p["Notifying"] = dbus.Boolean(False)
        if self.offers_acquire:
            p["NotifyAcquired"] = dbus.Boolean(False)
        return p

    def listened(self):
        return self.dev.connected and (self.notifying or self.sock is not None)


class Stream:
    """One notify characteristic's samples: a counter, and an accumulator against wall time."""

    def __init__(self, char, name):
        self.char = char
        self.name = name
        self.n = 0            # samples produced, ever
        self.rate = 0.0
        self.t0 = 0.0
        self.produced = 0     # since t0
        self.pending = []     # phone: samples of the batch being filled
        self.phase = 0.0      # of a period: where its samples fall against the other streams'

    def set_rate(self, rate, now):
        if rate != self.rate:
            self.rate = rate
            self.t0 = now + (self.phase / rate if rate > 0 else 0.0)
            self.produced = 0
            self.pending = []


class GattDevice:
    def __init__(self, fake, kind, i):
        self.fake = fake
        self.kind = kind
        self.index = i
        prefix = {"sensortag": "54:6C:0E:00:00", "thingy": "D0:0D:52:00:00", "phone": "5A:00:00:00:00"}[kind]
        self.address = f"{prefix}:{i:02X}"
        self.adapter = f"hci{i % fake.args.adapters}"
        self.path = device_path(self.adapter, self.address)
        self.id = f"phone-{i:02d}" if kind == "phone" else self.address.replace(":", "").lower()
        self.name = {"sensortag": f"SensorTag {i}", "thingy": f"Thingy {i}", "phone": None}[kind]
        self.service_uuid, chars = PROFILES[kind]
        self.chars = [Characteristic(self, k, *c) for k, c in enumerate(chars)]
        self.by_uuid = {c.uuid: c for c in self.chars}
        self.rssi = -50 - i % 20
        self.present = False      # Device1 object on the adapter
        self.exported = False     # GATT objects exported
        self.connected = False
        self.link = 0             # link generation, so a late resolve timer knows it is stale
        self.fail = []            # [error name, message, count]
        self.spike = False
        self.found_by = set()     # monitor object keys that got DeviceFound
        self.phone_seq = 65500
        self.thingy_config = struct.pack("<HHHHB", 1000, 500, 500, 10, 1)
        self.reset_link_state()

    def reset_link_state(self):
        """What the device forgets when its link drops."""
        self.sensortag_config = 0x0200
        self.sensortag_period = 100
        self.phone_groups = 0x0F
        self.phone_rate = 100

    def advert_data(self):
        uuid = bytes.fromhex(self.service_uuid.replace("-", ""))[::-1]
        return {0x01: b"\x06", 0x07: uuid}

    def stream_rate(self, stream):
        if self.kind == "sensortag":
            return 100.0 / self.sensortag_period if self.sensortag_config & 0x7F else 0.0
        if self.kind == "thingy":
            return float(struct.unpack_from("<H", self.thingy_config, 6)[0])
        return float(self.phone_rate)

    def value(self, char):
        u = char.uuid[4:8]
        if u == "aa82":
            return struct.pack("<H", self.sensortag_config)
        if u == "aa83":
            return bytes([self.sensortag_period])
        if u == "0401":
            return self.thingy_config
        if u == "0102":
            return self.id.encode()
        if u == "0103":
            return struct.pack("<BBH", 1, 0x0F, self.phone_rate)
        if u == "aa81":
            return self.sensortag_sample(max(0, char.stream.n - 1), False)[0]
        return b""

    def write(self, char, data):
        u = char.uuid[4:8]
        size = {"aa82": 2, "aa83": 1, "0401": 9, "0103": 4}[u]
        if len(data) != size:
            raise error("InvalidValueLength", "Invalid Length")
        if u == "aa82":
            v = struct.unpack("<H", data)[0]
            if v & 0xFC00:
                raise error("Failed", ATT_ERROR)
            self.sensortag_config = v
        elif u == "aa83":
            if data[0] < 10:
                raise error("Failed", ATT_ERROR)
            self.sensortag_period = data[0]
        elif u == "0401":
            hz = struct.unpack_from("<H", data, 6)[0]
            if not 5 <= hz <= 200:
                raise error("Failed", ATT_ERROR)
            self.thingy_config = data
        else:
            version, groups, rate = struct.unpack("<BBH", data)
            if version != 1 or not 1 <= rate <= 200:
                raise error("Failed", ATT_ERROR)
            self.phone_groups = groups & 0x0F
            self.phone_rate = rate

    def take_spike(self):
        s, self.spike = self.spike, False
        return s

    # Samples: (bytes, marker value) from the stream's counter n.

    def sensortag_sample(self, n, spike):
        cfg = self.sensortag_config
        range_g = 2 << ((cfg >> 8) & 3)
        one_g = 32768 // range_g
        raw = [wave(n, 0, 200), wave(n, 1, 150), wave(n, 2, 100),
               wave(n, 3, 40), wave(n, 4, 40), one_g + wave(n, 5, 40),
               30 + wave(n, 6, 4), -12 + wave(n, 7, 4), marker(n)]
        if spike:
            raw[5] = 32767
        # bit 0..2 gyro Z Y X, 3..5 accel Z Y X, 6 magnetometer: a disabled axis reads 0
        enabled = [cfg & 4, cfg & 2, cfg & 1, cfg & 32, cfg & 16, cfg & 8, cfg & 64, cfg & 64, cfg & 64]
        raw = [clamp16(v) if on else 0 for v, on in zip(raw, enabled)]
        return struct.pack("<9h", *raw), repr(float(raw[8]))

    def thingy_raw_sample(self, n, spike):
        raw = [wave(n, 0, 30), wave(n, 1, 30), 1024 + wave(n, 2, 30),
               wave(n, 3, 64), wave(n, 4, 64), wave(n, 5, 64),
               320 + wave(n, 6, 32), -160 + wave(n, 7, 32), marker(n)]
        if spike:
            raw[2] = 32767
        return struct.pack("<9h", *raw), repr(raw[8] / 16.0)

    def thingy_euler_sample(self, n):
        raw = [wave(n, 0, 5 * 65536, 3000), wave(n, 1, 3 * 65536, 3000), 90 * 65536 + marker(n)]
        return struct.pack("<3i", *raw), repr(raw[2] / 65536.0)

    def phone_sample(self, n, spike):
        """One sample's groups as written: accel (0.01 m/s²), gyro (0.1 °/s), orientation (0.02°)."""
        accel = [wave(n, 0, 20), wave(n, 1, 20), wave(n, 2, 20)]
        if spike:
            accel[2] = 32767
        gyro = [wave(n, 3, 50), wave(n, 4, 50), marker(n)]
        angles = [9000 + wave(n, 5, 500), 2000 + wave(n, 6, 300), -1000 + wave(n, 7, 300)]
        out = b""
        for flag, values in ((1, accel), (2, gyro), (4, angles)):
            if self.phone_groups & flag:
                out += struct.pack("<3h", *values)
        return out, repr(gyro[2] / 10.0) if self.phone_groups & 2 else "none"


class Monitor:
    def __init__(self, owner, root, path, patterns):
        self.owner = owner
        self.root = root
        self.path = path
        self.patterns = patterns   # [(start, ad type, content bytes)]

    def key(self):
        return (self.owner, self.path)

    def matches(self, ad):
        for start, ad_type, content in self.patterns:
            data = ad.get(ad_type)
            if data is not None and data[start:start + len(content)] == content:
                return True
        return False


class Fake:
    def __init__(self, args, root, bus):
        self.args = args
        self.root = root
        self.bus = bus
        self.heard = 0
        self.delivered = 0
        self.devices = set()   # paths of tag objects on the adapter now
        self.acquire_kinds = set(args.acquire.replace(",", " ").split())
        self.stall = None
        self.connect_calls = {}
        self.peak_links = 0
        self.hang_ms = 0       # the next Connect blocks this long (HangConnect)
        self.echoes = {}       # address -> its second object's path, on hci1 (Echo)
        self.roots = {}        # (owner, root path) -> [Monitor], active ones only
        self.owner_watches = {}
        self.last_sender = None
        resume = {}
        if os.path.exists(args.sent):
            with open(args.sent) as f:
                for line in f:
                    mac, seq, _ = line.split()
                    resume[mac] = int(seq)
        self.tags = []
        for i in range(args.tags):
            t = Tag(i, args.seq_start)
            t.seq = resume.get(t.mac.hex(), t.seq)
            self.tags.append(t)
        self.sent = open(args.sent, "a")
        self.gatt_sent = open(args.gatt_sent, "a") if args.gatt_sent else None
        self.other = Tag(0xA0, 0)   # an iBeacon-like advert of another company
        self.air = Tag(0xA1, 0)     # a Ruuvi Air: format 6, recognised and skipped
        self.gatt = ([GattDevice(self, "sensortag", i) for i in range(args.sensortags)] +
                     [GattDevice(self, "thingy", i) for i in range(args.thingys)] +
                     [GattDevice(self, "phone", i) for i in range(args.phones)])
        self.by_address = {d.address: d for d in self.gatt}
        now = time.monotonic()
        for n, d in enumerate(self.gatt):
            for c in d.chars:
                if c.stream:
                    c.stream.phase = n / len(self.gatt) if args.spread else 0.0
                    c.stream.set_rate(d.stream_rate(c.stream), now)

        methods = [
            ("SetPowered", "b", "", lambda _, on: self.set_powered(bool(on))),
            ("RemoveAdapter", "", "", lambda _: self.remove_adapter()),
            ("AddAdapter", "", "", lambda _: self.add_adapter()),
            ("StopScan", "", "", lambda _: self.stop_scan()),
            ("Spike", "s", "", lambda _, mac: self.set_spike(str(mac))),
            ("Heard", "", "t", lambda _: dbus.UInt64(self.heard)),
            ("DropLink", "s", "", lambda _, a: self.drop_link(str(a))),
            ("Unresolve", "s", "", lambda _, a: self.unresolve(str(a))),
            ("FailConnect", "sssu", "", lambda _, a, n, m, c: self.fail_connect(str(a), str(n), str(m), int(c))),
            ("HangConnect", "u", "", lambda _, ms: setattr(self, "hang_ms", int(ms))),
            ("Echo", "s", "", lambda _, a: self.echo(str(a))),
            ("ConnectCalls", "", "a{su}", lambda _: dbus.Dictionary(
                {dbus.String(a): dbus.UInt32(n) for a, n in sorted(self.connect_calls.items())}, signature="su")),
            ("Links", "", "as", lambda _: dbus.Array([d.address for d in self.gatt if d.connected], signature="s")),
            ("PeakLinks", "", "u", lambda _: dbus.UInt32(self.peak_links)),
            ("Stall", "s", "", lambda _, mode: self.set_stall(str(mode))),
            ("Delivered", "", "t", lambda _: dbus.UInt64(self.delivered)),
            ("Monitors", "", "u", lambda _: dbus.UInt32(len(self.roots))),
        ]
        for name, in_sig, out_sig, code in methods:
            root.AddMethod(CONTROL, name, in_sig, out_sig, code)
        # dbusmock's methods do not see the caller, and its Properties.Set only stores the value:
        # a filter, which libdbus runs before the objects' handlers, notes the caller of monitor
        # calls and gives Set(Adapter1.Powered) the effects SetPowered has.
        bus.add_message_filter(self.filter)
        self.add_adapter()
        for i in range(1, args.adapters):
            self.new_adapter(f"hci{i}")
        GLib.timeout_add(max(1, int(1000 / args.rate)), self.tick)
        if self.gatt:
            GLib.timeout_add(args.tick_ms, self.gatt_tick)
            GLib.timeout_add(1000, self.gatt_advertise)

    # The adapter

    def adapter(self, name=ADAPTER_NAME):
        return dbusmock.mockobject.objects.get(adapter_path(name))

    def powered(self, name=ADAPTER_NAME):
        a = self.adapter(name)
        return bool(a and a.props[ADAPTER]["Powered"])

    def new_adapter(self, name):
        """Powered, discovering on request. hci1 and on are no more than this: GATT devices
        only, the faults being hci0's."""
        self.root.AddAdapter(name, "fake")
        a = self.adapter(name)
        a.AddMethod(ADAPTER, "StartDiscovery", "", "", lambda obj: self.start_discovery(obj))
        a.AddMethod(ADAPTER, "StopDiscovery", "", "", lambda obj: self.stop_discovery(obj))
        a.AddMethod(ADAPTER, "SetDiscoveryFilter", "a{sv}", "", lambda obj, f: self.set_filter(obj, f))
        a.filter = {}  # not a property: GetManagedObjects could not send None
        return a

    def add_adapter(self):
        if self.adapter():
            return
        a = self.new_adapter(ADAPTER_NAME)
        self.devices = set()
        # A device as the template makes it, with its mistyped ManufacturerData (aa{qv}): the
        # daemon must read the rest of BlueZ's objects regardless.
        self.root.AddDevice(ADAPTER_NAME, "11:22:33:44:55:66", "legacy")
        if self.args.monitor:
            props = {"SupportedMonitorTypes": dbus.Array(["or_patterns"], signature="s"),
                     "SupportedFeatures": dbus.Array([], signature="s")}
            a.AddProperties(MONITOR_MANAGER, props)
            a.AddMethod(MONITOR_MANAGER, "RegisterMonitor", "o", "", lambda _, r: self.register_monitor(str(r)))
            a.AddMethod(MONITOR_MANAGER, "UnregisterMonitor", "o", "", lambda _, r: self.unregister_monitor(str(r)))
            self.root.EmitSignal(OM, "InterfacesAdded", "oa{sa{sv}}",
                                 [dbus.ObjectPath(ADAPTER_PATH), {MONITOR_MANAGER: props}])

    def remove_adapter(self):
        if self.adapter():
            for d in self.gatt_on(ADAPTER_NAME):
                self.link_down(d)
                self.remove_gatt_device(d)
            for key in list(self.roots):
                for m in self.roots[key]:
                    self.call_noreply(m.owner, m.path, "Release")
                self.forget_root(key)
            self.stall = None
            self.root.RemoveAdapterWithDevices(ADAPTER_NAME)
        self.devices = set()

    @staticmethod
    def not_ready():
        raise dbus.exceptions.DBusException("Resource Not Ready", name="org.bluez.Error.NotReady")

    def start_discovery(self, a):
        if not a.props[ADAPTER]["Powered"]:
            self.not_ready()
        if a.props[ADAPTER]["Discovering"]:
            raise dbus.exceptions.DBusException("Operation already in progress", name="org.bluez.Error.InProgress")
        a.UpdateProperties(ADAPTER, {"Discovering": dbus.Boolean(True)})

    def stop_discovery(self, a):
        if self.stall == "discovery" and a.path == ADAPTER_PATH:
            self.stall = None
        if not a.props[ADAPTER]["Discovering"]:
            raise dbus.exceptions.DBusException("No discovery started", name="org.bluez.Error.Failed")
        a.UpdateProperties(ADAPTER, {"Discovering": dbus.Boolean(False)})
        if a.path == ADAPTER_PATH:
            self.drop_devices()

    def set_filter(self, a, f):
        if not a.props[ADAPTER]["Powered"]:
            self.not_ready()
        a.filter = dict(f)

    def drop_devices(self):
        """The temporary, non-connectable devices (the tags) go."""
        for path in sorted(self.devices):
            self.adapter().RemoveDevice(path)
            for d in self.monitor_list():
                d.found.discard(path)
        self.devices = set()

    def set_powered(self, on):
        a = self.adapter()
        if on:
            a.UpdateProperties(ADAPTER, {"Powered": dbus.Boolean(True)})
            return
        self.stall = None
        for d in self.gatt_on(ADAPTER_NAME):
            self.link_down(d)
        # As BlueZ's adapter_stop(): sessions and filters gone, discovery off, in one signal.
        a.filter = {}
        a.UpdateProperties(ADAPTER, {"Powered": dbus.Boolean(False), "Discovering": dbus.Boolean(False)})
        self.drop_devices()
        for d in self.gatt_on(ADAPTER_NAME):
            self.remove_gatt_device(d)

    def gatt_on(self, name):
        return [d for d in self.gatt if d.adapter == name]

    def stop_scan(self):
        a = self.adapter()
        if a.props[ADAPTER]["Discovering"]:
            a.UpdateProperties(ADAPTER, {"Discovering": dbus.Boolean(False)})

    def set_stall(self, mode):
        if mode not in ("discovery", "power", "off"):
            raise dbus.exceptions.DBusException(f"no stall mode {mode}", name="org.freedesktop.DBus.Error.InvalidArgs")
        self.stall = None if mode == "off" else mode

    def set_spike(self, mac):
        for t in self.tags:
            if t.mac.hex() == mac:
                t.spike = True
                return
        for d in self.gatt:
            if d.id == mac:
                d.spike = True
                return
        raise dbus.exceptions.DBusException(f"no tag {mac}", name="org.freedesktop.DBus.Error.InvalidArgs")

    def discovering(self, name=ADAPTER_NAME):
        a = self.adapter(name)
        if not a or (self.stall and name == ADAPTER_NAME):
            return False
        p = a.props[ADAPTER]
        return bool(p["Powered"] and p["Discovering"] and a.filter.get("DuplicateData"))

    def monitors_matching(self, ad, name=ADAPTER_NAME):
        """Monitors are registered on hci0 only."""
        if name != ADAPTER_NAME or not self.powered() or self.stall:
            return []
        return [m for m in self.monitor_list() if m.matches(ad)]

    def monitor_list(self):
        return [m for ms in self.roots.values() for m in ms]

    def found(self, path, monitors):
        for m in monitors:
            if path not in m.found:
                m.found.add(path)
                self.call_noreply(m.owner, m.path, "DeviceFound", "o", dbus.ObjectPath(path))

    # Ruuvi tags

    def advertise(self, t, payload, company=RUUVI, rssi=None):
        data = dbus.Dictionary({dbus.UInt16(company): dbus.Array(payload, signature="y")}, signature="qv")
        rssi = dbus.Int16(-60 - self.tags.index(t) if rssi is None else rssi)
        if t.path not in self.devices:
            props = {
                "Address": dbus.String(t.address),
                "AddressType": dbus.String("random"),
                "Adapter": dbus.ObjectPath(ADAPTER_PATH),
                "Alias": dbus.String(t.name),
                "Name": dbus.String(t.name),
                "Paired": dbus.Boolean(False),
                "Connected": dbus.Boolean(False),
                "RSSI": rssi,
                "ManufacturerData": data,
            }
            self.root.AddObject(t.path, DEVICE, props, [])
            self.devices.add(t.path)
            self.root.EmitSignal(OM, "InterfacesAdded", "oa{sa{sv}}", [dbus.ObjectPath(t.path), {DEVICE: props}])
            return
        dev = dbusmock.mockobject.objects[t.path]
        dev.props[DEVICE]["ManufacturerData"] = data
        dev.props[DEVICE]["RSSI"] = rssi
        dev.EmitSignal(PROPS, "PropertiesChanged", "sa{sv}as",
                       [DEVICE, {"ManufacturerData": dbus.Dictionary(data, signature="qv", variant_level=1),
                                 "RSSI": dbus.Int16(rssi, variant_level=1)}, dbus.Array([], signature="s")])

    def hear(self, t, payload, company=RUUVI, rssi=None):
        """The advert is heard by discovery or a matching monitor: once, whoever listens."""
        monitors = self.monitors_matching({0xFF: struct.pack("<H", company) + payload})
        if not self.discovering() and not monitors:
            return False
        self.advertise(t, payload, company, rssi)
        self.found(t.path, monitors)
        return True

    def tick(self):
        for t in self.tags:
            payload, az = t.measure()
            if not self.discovering() and not self.monitors_matching({0xFF: struct.pack("<H", RUUVI) + payload}):
                continue
            self.sent.write(f"{t.mac.hex()} {t.seq} {az}\n")
            self.sent.flush()
            self.heard += 1
            for _ in range(self.args.repeat):
                self.hear(t, payload)
        self.hear(self.other, b"\x02\x15" + bytes(21), company=0x004C, rssi=-70)
        self.hear(self.air, bytes([6]) + bytes(19), rssi=-71)
        return True

    # GATT devices: presence and adverts

    def gatt_advertise(self):
        for d in self.gatt:
            if d.connected:
                continue
            monitors = self.monitors_matching(d.advert_data(), d.adapter)
            if not self.discovering(d.adapter) and not monitors:
                continue
            if not d.present:
                self.add_gatt_device(d)
            else:
                obj = dbusmock.mockobject.objects[d.path]
                obj.props[DEVICE]["RSSI"] = dbus.Int16(d.rssi)
                self.emit_props(d.path, DEVICE, {"RSSI": dbus.Int16(d.rssi, variant_level=1)})
            self.found(d.path, monitors)
        if self.discovering("hci1"):
            for path in self.echoes.values():
                self.emit_props(path, DEVICE, {"RSSI": dbus.Int16(-85, variant_level=1)})
        return True

    def echo(self, address):
        d = self.gatt_device(address)
        if not self.adapter("hci1") or d.adapter == "hci1" or d.address in self.echoes:
            raise dbus.exceptions.DBusException("no echo for that", name="org.freedesktop.DBus.Error.InvalidArgs")
        path = device_path("hci1", d.address)
        props = self.device_props(d, "hci1")
        self.root.AddObject(path, DEVICE, props, [])
        dbusmock.mockobject.objects[path].AddMethod(DEVICE, "Connect", "", "", lambda _: self.echo_connect(d))
        self.echoes[d.address] = path
        self.root.EmitSignal(OM, "InterfacesAdded", "oa{sa{sv}}", [dbus.ObjectPath(path), {DEVICE: props}])

    def echo_connect(self, d):
        key = f"{d.address}@hci1"
        self.connect_calls[key] = self.connect_calls.get(key, 0) + 1
        raise error("NotReady", "Resource Not Ready")

    def device_props(self, d, adapter):
        props = {
            "Address": dbus.String(d.address),
            "AddressType": dbus.String("public" if d.kind != "phone" else "random"),
            "Adapter": dbus.ObjectPath(adapter_path(adapter)),
            "Alias": dbus.String(d.name or d.address.replace(":", "-")),
            "Paired": dbus.Boolean(False),
            "Connected": dbus.Boolean(False),
            "ServicesResolved": dbus.Boolean(False),
            "RSSI": dbus.Int16(d.rssi),
            "UUIDs": dbus.Array([d.service_uuid], signature="s"),
        }
        if d.name:
            props["Name"] = dbus.String(d.name)
        return props

    def add_gatt_device(self, d):
        props = self.device_props(d, d.adapter)
        self.root.AddObject(d.path, DEVICE, props, [])
        obj = dbusmock.mockobject.objects[d.path]
        obj.AddMethod(DEVICE, "Connect", "", "", lambda _: self.connect(d))
        obj.AddMethod(DEVICE, "Disconnect", "", "", lambda _: self.disconnect(d))
        d.present = True
        d.exported = False
        self.root.EmitSignal(OM, "InterfacesAdded", "oa{sa{sv}}", [dbus.ObjectPath(d.path), {DEVICE: props}])

    def remove_gatt_device(self, d):
        if not d.present:
            return
        paths = [(c.path, [CHAR]) for c in d.chars] + [(d.path + "/service000c", [SERVICE])] if d.exported else []
        for path, ifaces in paths + [(d.path, [DEVICE])]:
            self.root.RemoveObject(path)
            self.root.EmitSignal(OM, "InterfacesRemoved", "oas", [dbus.ObjectPath(path), ifaces])
        for m in self.monitor_list():
            m.found.discard(d.path)
        d.present = d.exported = False

    # GATT devices: links

    def connect(self, d):
        self.connect_calls[d.address] = self.connect_calls.get(d.address, 0) + 1
        obj = dbusmock.mockobject.objects[d.path]
        if not self.powered(d.adapter):
            raise error("NotReady", "br-connection-adapter-not-powered")
        if self.hang_ms:
            time.sleep(self.hang_ms / 1000)
            self.hang_ms = 0
        if d.fail:
            name, message, _ = d.fail[0]
            d.fail[0][2] -= 1
            if d.fail[0][2] <= 0:
                d.fail.pop(0)
            if name == "org.bluez.Error.Failed" and message == "le-connection-abort-by-local" and not d.connected:
                obj.UpdateProperties(DEVICE, {"Connected": dbus.Boolean(True)})
                obj.UpdateProperties(DEVICE, {"Connected": dbus.Boolean(False)})
            raise dbus.exceptions.DBusException(message, name=name)
        if d.connected:
            raise error("AlreadyConnected", "Already Connected")
        if sum(x.connected for x in self.gatt_on(d.adapter)) >= self.args.max_links:
            raise error("Failed", "le-connection-concurrent-connection-limit")
        d.connected = True
        d.link += 1
        self.peak_links = max(self.peak_links, sum(x.connected for x in self.gatt))
        obj.UpdateProperties(DEVICE, {"Connected": dbus.Boolean(True)})
        link = d.link
        GLib.timeout_add(self.args.resolve_delay, lambda: self.resolve(d, link))

    def resolve(self, d, link):
        if not d.connected or d.link != link or not d.present:
            return False
        if not d.exported:
            service = d.path + "/service000c"
            props = {"UUID": dbus.String(d.service_uuid), "Primary": dbus.Boolean(True),
                     "Device": dbus.ObjectPath(d.path)}
            self.root.AddObject(service, SERVICE, props, [])
            self.root.EmitSignal(OM, "InterfacesAdded", "oa{sa{sv}}", [dbus.ObjectPath(service), {SERVICE: props}])
            for c in d.chars:
                self.export_char(c)
            d.exported = True
        dbusmock.mockobject.objects[d.path].UpdateProperties(DEVICE, {"ServicesResolved": dbus.Boolean(True)})
        return False

    def export_char(self, c):
        props = c.props()
        self.root.AddObject(c.path, CHAR, props, [])
        obj = dbusmock.mockobject.objects[c.path]
        obj.AddMethod(CHAR, "ReadValue", "a{sv}", "ay", lambda _, o: self.read_value(c, o))
        obj.AddMethod(CHAR, "WriteValue", "aya{sv}", "", lambda _, v, o: self.write_value(c, v, o))
        obj.AddMethod(CHAR, "StartNotify", "", "", lambda _: self.start_notify(c))
        obj.AddMethod(CHAR, "StopNotify", "", "", lambda _: self.stop_notify(c))
        obj.AddMethod(CHAR, "AcquireNotify", "a{sv}", "hq", lambda _, o: self.acquire_notify(c))
        self.root.EmitSignal(OM, "InterfacesAdded", "oa{sa{sv}}", [dbus.ObjectPath(c.path), {CHAR: props}])

    def disconnect(self, d):
        if not d.connected:
            raise error("NotConnected", "Not Connected")
        self.link_down(d)

    def drop_link(self, address):
        d = self.gatt_device(address)
        self.link_down(d)

    def fail_connect(self, address, name, message, count):
        self.gatt_device(address).fail.append([name, message, count])

    def gatt_device(self, address):
        d = self.by_address.get(address.upper())
        if not d:
            raise dbus.exceptions.DBusException(f"no device {address}", name="org.freedesktop.DBus.Error.InvalidArgs")
        return d

    def link_down(self, d):
        """In BlueZ's order: notifications off, acquired sockets closed, then the link state."""
        if not d.connected:
            return
        d.connected = False
        self.services_down(d)
        obj = dbusmock.mockobject.objects[d.path]
        obj.UpdateProperties(DEVICE, {"ServicesResolved": dbus.Boolean(False)})
        obj.UpdateProperties(DEVICE, {"Connected": dbus.Boolean(False)})
        if d.kind != "thingy":
            d.reset_link_state()
            self.update_rates(d)

    def unresolve(self, address):
        """The device's GATT server goes away (a phone app restarting) while the link stays up."""
        d = self.gatt_device(address)
        if not d.connected:
            return
        self.services_down(d)
        dbusmock.mockobject.objects[d.path].UpdateProperties(DEVICE, {"ServicesResolved": dbus.Boolean(False)})

    def services_down(self, d):
        for c in d.chars:
            obj = dbusmock.mockobject.objects.get(c.path)
            if c.notifying:
                c.notifying = False
                obj.UpdateProperties(CHAR, {"Notifying": dbus.Boolean(False)})
            if c.sock:
                self.release_acquired(c)
            if c.stream:
                c.stream.pending = []

    def update_rates(self, d):
        now = time.monotonic()
        for c in d.chars:
            if c.stream:
                c.stream.set_rate(d.stream_rate(c.stream), now)

    # GATT methods

    @staticmethod
    def check_connected(c):
        if not c.dev.connected:
            raise error("NotConnected", "Not Connected")

    def read_value(self, c, options):
        self.check_connected(c)
        if "read" not in c.flags:
            raise error("NotPermitted", "Read not permitted")
        value = c.dev.value(c)
        offset = int(options.get("offset", 0))
        if offset > len(value):
            raise error("InvalidOffset", "Invalid offset")
        value = dbus.Array(value[offset:], signature="y")
        obj = dbusmock.mockobject.objects[c.path]
        obj.props[CHAR]["Value"] = value
        self.emit_props(c.path, CHAR, {"Value": dbus.Array(value, signature="y", variant_level=1)})
        return value

    def write_value(self, c, value, options):
        self.check_connected(c)
        if "write" not in c.flags:
            raise error("NotPermitted", "Write not permitted")
        c.dev.write(c, bytes(value))
        self.update_rates(c.dev)

    def start_notify(self, c):
        self.check_connected(c)
        if "notify" not in c.flags:
            raise error("NotSupported", "Notify not supported")
        if c.sock:
            raise error("NotPermitted", "Notify acquired")
        if not c.notifying:
            c.notifying = True
            dbusmock.mockobject.objects[c.path].UpdateProperties(CHAR, {"Notifying": dbus.Boolean(True)})

    def stop_notify(self, c):
        self.check_connected(c)
        if c.notifying:
            c.notifying = False
            dbusmock.mockobject.objects[c.path].UpdateProperties(CHAR, {"Notifying": dbus.Boolean(False)})

    def acquire_notify(self, c):
        if not c.offers_acquire:
            raise error("NotSupported", "Operation is not supported")
        self.check_connected(c)
        if c.notifying:
            raise error("InProgress", "Notify already started")
        if c.sock:
            raise error("NotPermitted", "Notify acquired")
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ours.setblocking(False)
        fd = dbus.types.UnixFd(theirs.fileno())   # a duplicate: our copy closes here
        theirs.close()
        c.sock = ours
        c.watch = GLib.io_add_watch(ours.fileno(), GLib.PRIORITY_DEFAULT, GLib.IO_HUP | GLib.IO_ERR,
                                    lambda *_: self.release_acquired(c) and False)
        dbusmock.mockobject.objects[c.path].UpdateProperties(CHAR, {"NotifyAcquired": dbus.Boolean(True)})
        return (fd, dbus.UInt16(MTU))

    def release_acquired(self, c):
        if c.watch:
            GLib.source_remove(c.watch)
            c.watch = None
        if c.sock:
            c.sock.close()
            c.sock = None
            dbusmock.mockobject.objects[c.path].UpdateProperties(CHAR, {"NotifyAcquired": dbus.Boolean(False)})
        return False

    # GATT streams

    def emit_props(self, path, iface, changed):
        msg = dbus.lowlevel.SignalMessage(path, PROPS, "PropertiesChanged")
        msg.append(iface, changed, dbus.Array([], signature="s"), signature="sa{sv}as")
        self.bus.send_message(msg)

    def gatt_tick(self):
        now = time.monotonic()
        wall = time.time()
        out = []     # (characteristic, bytes, lines), sent after the lines are on disk
        for d in self.gatt:
            for c in d.chars:
                s = c.stream
                if not s or s.rate <= 0:
                    continue
                due = int((now - s.t0) * s.rate) - s.produced
                if due <= 0:
                    continue
                s.produced += due
                # Bounded: after a stall of more than a second, the oldest samples are lost.
                skip = max(0, due - max(1, int(s.rate)))
                s.n += skip
                if d.kind == "phone":
                    d.phone_seq = (d.phone_seq + skip) & 0xFFFF
                listened = c.listened()
                for k in range(skip, due):
                    n = s.n
                    s.n += 1
                    t_due = s.t0 + (s.produced - due + k + 1) / s.rate
                    spike = d.take_spike() if s.name != "thingy52-euler" else False
                    if d.kind == "phone":
                        seq = d.phone_seq
                        d.phone_seq = (d.phone_seq + 1) & 0xFFFF
                        if not listened:
                            continue
                        body, value = d.phone_sample(n, spike)
                        s.pending.append((seq, int((wall - (now - t_due)) * 1e6), body, value))
                        if len(s.pending) >= self.args.phone_batch:
                            out.append(self.phone_notification(d, c))
                        continue
                    if not listened:
                        continue
                    if s.name == "sensortag":
                        data, value = d.sensortag_sample(n, spike)
                    elif s.name == "thingy52-raw":
                        data, value = d.thingy_raw_sample(n, spike)
                    else:
                        data, value = d.thingy_euler_sample(n)
                    out.append((c, data, [f"{d.id} {s.name} {self.marker_channel(s.name)} {value}\n"]))
        if not out:
            return True
        sendable = []
        for c, data, lines in out:
            if c.sock and not select.select([], [c.sock], [], 0)[1]:
                continue   # the daemon does not read: dropped, as a full queue drops it
            sendable.append((c, data))
            if self.gatt_sent:
                self.gatt_sent.writelines(lines)
            self.delivered += len(lines)
        if self.gatt_sent:
            self.gatt_sent.flush()
        for c, data in sendable:
            if c.sock:
                try:
                    c.sock.send(data)
                except OSError:
                    self.release_acquired(c)
                continue
            value = dbus.Array(data, signature="y")
            dbusmock.mockobject.objects[c.path].props[CHAR]["Value"] = value
            self.emit_props(c.path, CHAR, {"Value": dbus.Array(data, signature="y", variant_level=1)})
        return True

    @staticmethod
    def marker_channel(stream):
        return {"sensortag": "mz", "thingy52-raw": "mz", "thingy52-euler": "oa", "phone": "gz"}[stream]

    def phone_notification(self, d, c):
        batch, c.stream.pending = c.stream.pending, []
        seq0, t0 = batch[0][0], batch[0][1]
        flags = d.phone_groups & 0x0F
        data = struct.pack("<BBHQ", 1, flags, seq0, t0)
        for _, t, body, _ in batch:
            data += struct.pack("<H", min(0xFFFF, max(0, (t - t0) // 100))) + body
        lines = [f"{d.id} phone gz {value}\n" for *_, value in batch]
        return (c, data, lines)

    # Advertisement monitors

    def filter(self, _, msg):
        if msg.get_type() != dbus.lowlevel.MESSAGE_TYPE_METHOD_CALL:
            return dbus.lowlevel.HANDLER_RESULT_NOT_YET_HANDLED
        if msg.get_interface() == MONITOR_MANAGER:
            self.last_sender = msg.get_sender()
        elif (msg.get_interface() == PROPS and msg.get_member() == "Set" and
              msg.get_path() == ADAPTER_PATH and self.adapter() and
              msg.get_args_list()[:2] == [ADAPTER, "Powered"]):
            # Only hci0 has the effects; on the others Set only stores the value.
            self.set_powered(bool(msg.get_args_list()[2]))
            self.bus.send_message(dbus.lowlevel.MethodReturnMessage(msg))
            return dbus.lowlevel.HANDLER_RESULT_HANDLED
        return dbus.lowlevel.HANDLER_RESULT_NOT_YET_HANDLED

    def call_noreply(self, owner, path, method, sig="", *args):
        msg = dbus.lowlevel.MethodCallMessage(owner, path, MONITOR, method)
        if sig:
            msg.append(*args, signature=sig)
        msg.set_no_reply(True)
        self.bus.send_message(msg)

    def register_monitor(self, root):
        owner = self.last_sender
        if not root.startswith("/"):
            raise error("InvalidArguments", "Invalid arguments in method call")
        key = (owner, root)
        if key in self.roots:
            raise error("AlreadyExists", "Already Exists")
        self.roots[key] = []
        if owner not in self.owner_watches:
            self.owner_watches[owner] = self.bus.watch_name_owner(owner, lambda new: self.owner_changed(owner, new))
        self.bus.call_async(owner, root, OM, "GetManagedObjects", "", (),
                            lambda objs: self.monitors_read(key, objs), lambda e: None)

    def monitors_read(self, key, objects):
        if key not in self.roots:
            return
        owner, root = key
        for path, ifaces in sorted(objects.items()):
            props = ifaces.get(MONITOR)
            if props is None or not str(path).startswith(root):
                continue
            patterns = []
            try:
                ok = str(props.get("Type")) == "or_patterns"
                for start, ad_type, content in props.get("Patterns", []):
                    patterns.append((int(start), int(ad_type), bytes(content)))
                ok = ok and 1 <= len(patterns) <= 16 and all(len(p[2]) <= 31 and p[0] + len(p[2]) <= 31
                                                             for p in patterns)
            except (TypeError, ValueError):
                ok = False
            if not ok:
                self.call_noreply(owner, str(path), "Release")
                continue
            m = Monitor(owner, root, str(path), patterns)
            m.found = set()
            self.roots[key].append(m)
            self.call_noreply(owner, m.path, "Activate")

    def unregister_monitor(self, root):
        key = (self.last_sender, root)
        if key not in self.roots:
            raise error("DoesNotExist", "Does Not Exist")
        self.forget_root(key)

    def forget_root(self, key):
        self.roots.pop(key, None)
        owner = key[0]
        if not any(k[0] == owner for k in self.roots) and owner in self.owner_watches:
            self.owner_watches.pop(owner).cancel()

    def owner_changed(self, owner, new):
        if not new:
            for key in [k for k in self.roots if k[0] == owner]:
                self.forget_root(key)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tags", type=int, default=3)
    parser.add_argument("--rate", type=float, default=10, help="measurements per second per tag")
    parser.add_argument("--repeat", type=int, default=2, help="adverts per measurement")
    parser.add_argument("--seq-start", type=int, default=65500)
    parser.add_argument("--sent", required=True)
    parser.add_argument("--sensortags", type=int, default=0)
    parser.add_argument("--thingys", type=int, default=0)
    parser.add_argument("--phones", type=int, default=0)
    parser.add_argument("--gatt-sent", help="one line per GATT sample sent")
    parser.add_argument("--phone-batch", type=int, default=4, help="samples per phone notification (1..32)")
    parser.add_argument("--acquire", default="phone", help="kinds offering AcquireNotify: sensortag thingy phone")
    parser.add_argument("--max-links", type=int, default=7, help="links per adapter")
    parser.add_argument("--adapters", type=int, default=1, choices=(1, 2),
                        help="GATT device i is on hci<i %% ADAPTERS>")
    parser.add_argument("--resolve-delay", type=int, default=20, help="ms from Connect to ServicesResolved")
    parser.add_argument("--monitor", action="store_true", help="offer AdvertisementMonitorManager1")
    parser.add_argument("--tick-ms", type=int, default=10, help="the GATT streams' timer")
    parser.add_argument("--spread", action="store_true",
                        help="devices' samples fall evenly over a period, as on air, not together "
                             "(with a --tick-ms shorter than the period)")
    parser.add_argument("--spike-every", type=float, default=0, metavar="SECONDS",
                        help="spike one device in turn every SECONDS (0: never)")
    parser.add_argument("--quiet", action="store_true", help="no dbusmock log of calls and signals")
    args = parser.parse_args()
    if not 1 <= args.phone_batch <= 32:
        parser.error("--phone-batch must be 1..32")

    dbus.mainloop.glib.DBusGMainLoop(set_as_default=True)
    bus = dbus.bus.BusConnection(os.environ["DBUS_SYSTEM_BUS_ADDRESS"])
    loop = GLib.MainLoop()
    bus.add_signal_receiver(lambda: loop.quit(), signal_name="Disconnected",
                            path="/org/freedesktop/DBus/Local", dbus_interface="org.freedesktop.DBus.Local")
    name = dbus.service.BusName(bluez5.BUS_NAME, bus, allow_replacement=True, replace_existing=True,
                                do_not_queue=True)
    root = dbusmock.mockobject.DBusMockObject(name, bluez5.MAIN_OBJ, OM, {},
                                              os.devnull if args.quiet else None, True)
    dbusmock.mockobject.objects[bluez5.MAIN_OBJ] = root
    root.AddTemplate("bluez5", None)
    fake = Fake(args, root, bus)
    ids = [t.mac.hex() for t in fake.tags] + [d.id for d in fake.gatt]
    if args.spike_every > 0 and ids:
        turn = [0]

        def spike():
            fake.set_spike(ids[turn[0] % len(ids)])
            turn[0] += 1
            return True
        GLib.timeout_add(max(1, round(args.spike_every * 1000)), spike)

    GLib.unix_signal_add(GLib.PRIORITY_HIGH, signal.SIGTERM, loop.quit)
    print("ready", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
