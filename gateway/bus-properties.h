/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * What every client of a D-Bus service in blegate (the BlueZ client, blegatectl) needs alike:
 * walking an a{sv} of D-Bus properties (GetAll, PropertiesChanged, InterfacesAdded), so the
 * container bookkeeping that sd-bus needs is written once, and an error reply made fit for a
 * log line.
 */

#include <stddef.h>
#include <systemd/sd-bus.h>

/* Called with m positioned at the value (the variant) of the property called name. Returns 1 if
 * it read the variant, 0 to have it skipped, or a negative errno to stop the walk. */
typedef int (*BusPropertyFunc)(sd_bus_message *m, const char *name, void *userdata);

/* Walks the a{sv} m is positioned at, calling f for every property; returns 0 or the first
 * negative errno. */
int bus_message_foreach_property(sd_bus_message *m, BusPropertyFunc f, void *userdata);

/* "what: org.bluez.Error.Failed: le-connection-abort-by-local" into buf (what may be NULL). The
 * message is another program's text: only its first line is kept, with anything but printable
 * ASCII as '?', and the whole cut to size. Returns buf. */
const char *bus_error_format(const char *what, const sd_bus_error *e, char *buf, size_t size);
