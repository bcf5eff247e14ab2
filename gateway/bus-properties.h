/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Walking an a{sv} of D-Bus properties (GetAll, PropertiesChanged, InterfacesAdded), for every
 * client of a D-Bus service in blegate: the BlueZ client and blegatectl. One walk, so the
 * container bookkeeping that sd-bus needs is written once.
 */

#include <systemd/sd-bus.h>

/* Called with m positioned at the value (the variant) of the property called name. Returns 1 if
 * it read the variant, 0 to have it skipped, or a negative errno to stop the walk. */
typedef int (*BusPropertyFunc)(sd_bus_message *m, const char *name, void *userdata);

/* Walks the a{sv} m is positioned at, calling f for every property; returns 0 or the first
 * negative errno. */
int bus_message_foreach_property(sd_bus_message *m, BusPropertyFunc f, void *userdata);
