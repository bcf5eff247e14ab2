/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The manager's D-Bus connection and its org.blegate.Gateway1 object (manager-bus.c). The
 * manager calls these where something happens; each one does nothing while there is no bus.
 */

#include <systemd/sd-bus.h>

#include "manager.h"

/* Connects to the system bus and asks for the name, asynchronously. When the bus cannot be
 * reached, logs a warning and tries again later: the gateway runs on without its API. Returns
 * < 0 only when the event loop refuses a timer. */
int manager_connect_bus(Manager *m);
/* Drops the connection and stops retrying (manager_free()). */
void manager_disconnect_bus(Manager *m);

/* InterfacesAdded for a device the registry just created. */
void manager_bus_add_device(Manager *m, Device *d);
/* The AnomalyDetected signal. */
void manager_bus_send_anomaly(Manager *m, const AnomalyEvent *e);
/* PropertiesChanged for State, if it changed since it was last published. */
void manager_bus_publish_state(Manager *m);
/* PropertiesChanged for these properties of the gateway (a NULL-terminated list). */
void manager_bus_publish_settings(Manager *m, char **names);

/* The introspection XML of one of our interfaces, as sd-bus generates it from the vtable,
 * without a bus (blegated --bus-introspect=INTERFACE, for docs/ and the test that compares
 * them). 0, -ENOENT for an interface that is not ours, or another negative errno. */
int bus_introspect(const char *interface, char **ret);
