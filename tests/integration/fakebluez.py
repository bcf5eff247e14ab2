#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""A fake bluetoothd on the bus DBUS_SYSTEM_BUS_ADDRESS names: python3-dbusmock's bluez5 template
(0.28.7, Debian 12) loaded in this process, plus a scripted fleet of Ruuvi tags and a control
interface for fault injection. Run it as a child; stopping it (SIGTERM) is bluetoothd leaving the
bus, and starting it again with the same --sent file is bluetoothd coming back, the tags' counters
going on where they were.

The adapter (hci0) behaves as BlueZ does where the daemon depends on it, which the template does
not: SetDiscoveryFilter and StartDiscovery fail with NotReady while powered off; powering off ends
discovery, forgets the filter and removes the temporary devices; adverts are only heard while
someone discovers with DuplicateData=true (the template's ManufacturerData default has the wrong
type, a{qv} arrays, so devices are built here instead of with AddDevice).

The fleet: --tags Ruuvi tags, each taking a format-5 measurement every 1/--rate s whether or not
anyone listens (so the measurement sequence jumps over gaps, and wraps at 65535 when --seq-start
is near it), each measurement advertised --repeat times while the adapter discovers. The first
advert of a tag on this adapter is its InterfacesAdded, the rest PropertiesChanged(ManufacturerData,
RSSI). Every measurement heard is appended to --sent as "<tag mac hex> <seq> <az mG>" before its
adverts go out, so the test knows exactly what the daemon could hear. Two more devices advertise
beside the fleet and must never become readings: one with another company's manufacturer data,
one Ruuvi Air (data format 6, no acceleration). One more sits on the adapter from the start as
the template's AddDevice makes it, with ManufacturerData of the wrong type.

Control, interface org.blegate.FakeBluez1 on /:
  SetPowered(b)       power hci0 off or on
  RemoveAdapter()     hci0 and its devices go away (InterfacesRemoved)
  AddAdapter()        hci0 comes back, powered, not discovering
  StopScan()          discovery stops without anyone asking (as when the kernel ends a scan)
  Spike(s mac)        the tag's next measurement has az = 30000 mG
  Heard() -> t        measurements advertised since this process started
"""

import argparse
import os
import signal
import struct
import sys

import dbus
import dbus.mainloop.glib
import dbus.service
import dbusmock.mockobject
from dbusmock.templates import bluez5
from gi.repository import GLib

ADAPTER = "org.bluez.Adapter1"
DEVICE = "org.bluez.Device1"
PROPS = "org.freedesktop.DBus.Properties"
OM = "org.freedesktop.DBus.ObjectManager"
CONTROL = "org.blegate.FakeBluez1"
RUUVI = 0x0499
ADAPTER_NAME = "hci0"
ADAPTER_PATH = "/org/bluez/" + ADAPTER_NAME


def tag_mac(i):
    """Random static addresses (top bits 11), as Ruuvi tags use."""
    return bytes([0xF0, 0x0B, 0x1E, 0x00, (i >> 8) & 0xFF, i & 0xFF])


def format5(seq, ax, ay, az, mac):
    # temperature 21.5 °C, humidity 40 %, 100000 Pa, 3000 mV / +4 dBm, movement 0
    power = ((3000 - 1600) << 5) | ((4 + 40) // 2)
    return struct.pack(">BhHHhhhHBH6s", 5, int(21.5 / 0.005), int(40 / 0.0025), 100000 - 50000,
                       ax, ay, az, power, 0, seq, mac)


class Tag:
    def __init__(self, i, seq):
        self.mac = tag_mac(i)
        self.address = ":".join(f"{b:02X}" for b in self.mac)
        self.path = ADAPTER_PATH + "/dev_" + self.address.replace(":", "_")
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


class Fake:
    def __init__(self, args, root):
        self.args = args
        self.root = root
        self.heard = 0
        self.devices = set()   # paths of tag objects on the adapter now
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
        self.other = Tag(0xA0, 0)   # an iBeacon-like advert of another company
        self.air = Tag(0xA1, 0)     # a Ruuvi Air: format 6, recognised and skipped

        root.AddMethod(CONTROL, "SetPowered", "b", "", lambda _, on: self.set_powered(bool(on)))
        root.AddMethod(CONTROL, "RemoveAdapter", "", "", lambda _: self.remove_adapter())
        root.AddMethod(CONTROL, "AddAdapter", "", "", lambda _: self.add_adapter())
        root.AddMethod(CONTROL, "StopScan", "", "", lambda _: self.stop_scan())
        root.AddMethod(CONTROL, "Spike", "s", "", lambda _, mac: self.set_spike(str(mac)))
        root.AddMethod(CONTROL, "Heard", "", "t", lambda _: dbus.UInt64(self.heard))
        self.add_adapter()
        GLib.timeout_add(max(1, int(1000 / args.rate)), self.tick)

    def adapter(self):
        return dbusmock.mockobject.objects.get(ADAPTER_PATH)

    def add_adapter(self):
        if self.adapter():
            return
        self.root.AddAdapter(ADAPTER_NAME, "fake")
        a = self.adapter()
        a.AddMethod(ADAPTER, "StartDiscovery", "", "", lambda obj: self.start_discovery(obj))
        a.AddMethod(ADAPTER, "StopDiscovery", "", "", lambda obj: self.stop_discovery(obj))
        a.AddMethod(ADAPTER, "SetDiscoveryFilter", "a{sv}", "", lambda obj, f: self.set_filter(obj, f))
        a.filter = {}  # not a property: GetManagedObjects could not send None
        self.devices = set()
        # A device as the template makes it, with its mistyped ManufacturerData (aa{qv}): the
        # daemon must read the rest of BlueZ's objects regardless.
        self.root.AddDevice(ADAPTER_NAME, "11:22:33:44:55:66", "legacy")

    def remove_adapter(self):
        if self.adapter():
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
        if not a.props[ADAPTER]["Discovering"]:
            raise dbus.exceptions.DBusException("No discovery started", name="org.bluez.Error.Failed")
        a.UpdateProperties(ADAPTER, {"Discovering": dbus.Boolean(False)})
        self.drop_devices()

    def set_filter(self, a, f):
        if not a.props[ADAPTER]["Powered"]:
            self.not_ready()
        a.filter = dict(f)

    def drop_devices(self):
        for path in sorted(self.devices):
            self.adapter().RemoveDevice(path)
        self.devices = set()

    def set_powered(self, on):
        a = self.adapter()
        if on:
            a.UpdateProperties(ADAPTER, {"Powered": dbus.Boolean(True)})
            return
        # As BlueZ's adapter_stop(): sessions and filters gone, discovery off, in one signal.
        a.filter = {}
        a.UpdateProperties(ADAPTER, {"Powered": dbus.Boolean(False), "Discovering": dbus.Boolean(False)})
        self.drop_devices()

    def stop_scan(self):
        a = self.adapter()
        if a.props[ADAPTER]["Discovering"]:
            a.UpdateProperties(ADAPTER, {"Discovering": dbus.Boolean(False)})

    def set_spike(self, mac):
        for t in self.tags:
            if t.mac.hex() == mac:
                t.spike = True
                return
        raise dbus.exceptions.DBusException(f"no tag {mac}", name="org.freedesktop.DBus.Error.InvalidArgs")

    def listening(self):
        a = self.adapter()
        if not a:
            return False
        p = a.props[ADAPTER]
        return bool(p["Powered"] and p["Discovering"] and a.filter.get("DuplicateData"))

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

    def tick(self):
        listening = self.listening()
        for t in self.tags:
            payload, az = t.measure()
            if not listening:
                continue
            self.sent.write(f"{t.mac.hex()} {t.seq} {az}\n")
            self.sent.flush()
            self.heard += 1
            for _ in range(self.args.repeat):
                self.advertise(t, payload)
        if listening:
            self.advertise(self.other, b"\x02\x15" + bytes(21), company=0x004C, rssi=-70)
            self.advertise(self.air, bytes([6]) + bytes(19), rssi=-71)
        return True


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tags", type=int, default=3)
    parser.add_argument("--rate", type=float, default=10, help="measurements per second per tag")
    parser.add_argument("--repeat", type=int, default=2, help="adverts per measurement")
    parser.add_argument("--seq-start", type=int, default=65500)
    parser.add_argument("--sent", required=True)
    args = parser.parse_args()

    dbus.mainloop.glib.DBusGMainLoop(set_as_default=True)
    bus = dbus.bus.BusConnection(os.environ["DBUS_SYSTEM_BUS_ADDRESS"])
    loop = GLib.MainLoop()
    bus.add_signal_receiver(lambda: loop.quit(), signal_name="Disconnected",
                            path="/org/freedesktop/DBus/Local", dbus_interface="org.freedesktop.DBus.Local")
    name = dbus.service.BusName(bluez5.BUS_NAME, bus, allow_replacement=True, replace_existing=True,
                                do_not_queue=True)
    root = dbusmock.mockobject.DBusMockObject(name, bluez5.MAIN_OBJ, OM, {}, None, True)
    dbusmock.mockobject.objects[bluez5.MAIN_OBJ] = root
    root.AddTemplate("bluez5", None)
    Fake(args, root)

    GLib.unix_signal_add(GLib.PRIORITY_HIGH, signal.SIGTERM, loop.quit)
    print("ready", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
