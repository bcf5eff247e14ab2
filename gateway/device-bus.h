/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * org.blegate.Device1: one object per device of the registry, under BUS_PATH_DEVICES, served
 * by one fallback vtable whose find callback looks the device up by its decoded path
 * (device-bus.c). The registry is the userdata of the find and enumerator callbacks.
 */

#include <systemd/sd-bus.h>

#include "device.h"

extern const sd_bus_vtable device_vtable[];

int device_object_find(sd_bus *bus, const char *path, const char *interface, void *userdata, void **ret_found,
                       sd_bus_error *error);
int device_node_enumerator(sd_bus *bus, const char *path, void *userdata, char ***ret_nodes, sd_bus_error *error);

/* BUS_PATH_DEVICES/<id escaped>, malloc'd. 0 or -ENOMEM. */
int device_bus_path(const Device *d, char **ret);
/* InterfacesAdded for a new device. */
int device_bus_announce(sd_bus *bus, const Device *d);
/* PropertiesChanged for what d->changed names; clears it. */
int device_bus_publish(sd_bus *bus, Device *d);
/* One ListDevices() row, "(osssssnbtttas)". */
int device_bus_append(sd_bus_message *reply, const Device *d);
