/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * org.blegate.Sink1: one object per sink under BUS_PATH_SINKS, served by one fallback vtable
 * (sink-bus.c). The manager is the userdata of every callback: a sink's Pending comes from its
 * cursor in the store. There are no sinks yet (MQTT and CouchDB come next), so the tree is
 * empty, but the interface is in place and documented.
 */

#include <systemd/sd-bus.h>

#include "manager.h"

extern const sd_bus_vtable sink_vtable[];

int sink_object_find(sd_bus *bus, const char *path, const char *interface, void *userdata, void **ret_found,
                     sd_bus_error *error);
int sink_node_enumerator(sd_bus *bus, const char *path, void *userdata, char ***ret_nodes, sd_bus_error *error);

/* PropertiesChanged for a sink whose status changed; clears s->changed. */
int sink_bus_publish(sd_bus *bus, SinkStatus *s);
