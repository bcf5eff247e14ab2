/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * org.blegate.Device1, the D-Bus glue of the device registry: the vtable, the lookup of a
 * device from its object path, the enumeration of every device's path, and the signals that
 * announce a device and its changes. Nothing here changes a device: every property is
 * read-only, and the manager decides when the changes are published.
 */

#include <stddef.h>

#include "bus-names.h"
#include "device-bus.h"

static int property_get_string(sd_bus *bus, const char *path, const char *interface, const char *property,
                               sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        const Device *d = userdata;
        const char *s;

        if (streq(property, "Id"))
                s = d->id;
        else if (streq(property, "Kind"))
                s = device_kind_to_string(d->kind);
        else if (streq(property, "Type"))
                s = d->type;
        else if (streq(property, "Address"))
                s = d->address;
        else
                s = d->name;

        return sd_bus_message_append(reply, "s", strempty(s));
}

static int property_get_connected(sd_bus *bus, const char *path, const char *interface, const char *property,
                                  sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        const Device *d = userdata;

        return sd_bus_message_append(reply, "b", (int) d->connected);
}

static int append_channels(sd_bus_message *reply, uint32_t channels) {
        int k;

        k = sd_bus_message_open_container(reply, 'a', "s");
        if (k < 0)
                return k;
        for (Channel c = 0; c < _CHANNEL_MAX; c++)
                if (channels & CHANNEL_BIT(c)) {
                        k = sd_bus_message_append(reply, "s", channel_to_string(c));
                        if (k < 0)
                                return k;
                }
        return sd_bus_message_close_container(reply);
}

static int property_get_channels(sd_bus *bus, const char *path, const char *interface, const char *property,
                                 sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        const Device *d = userdata;

        return append_channels(reply, d->channels);
}

const sd_bus_vtable device_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Id", "s", property_get_string, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Kind", "s", property_get_string, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Type", "s", property_get_string, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Address", "s", property_get_string, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Name", "s", property_get_string, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("RSSI", "n", NULL, offsetof(Device, rssi), SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Connected", "b", property_get_connected, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("LastSeenUsec", "t", NULL, offsetof(Device, last_seen_usec),
                        SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("ReadingsReceived", "t", NULL, offsetof(Device, readings_received),
                        SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("AnomaliesDetected", "t", NULL, offsetof(Device, anomalies_detected),
                        SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Channels", "as", property_get_channels, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_VTABLE_END
};

int device_object_find(sd_bus *bus, const char *path, const char *interface, void *userdata, void **ret_found,
                       sd_bus_error *error) {
        DeviceRegistry *reg = userdata;
        _cleanup_free_ char *id = NULL;
        Device *d;
        int k;

        /* The path comes from a caller: decode it, then let the registry reject what is not an id. */
        k = sd_bus_path_decode(path, BUS_PATH_DEVICES, &id);
        if (k <= 0)
                return k;

        d = device_registry_get(reg, id);
        if (!d)
                return 0;
        *ret_found = d;
        return 1;
}

int device_bus_path(const Device *d, char **ret) {
        return sd_bus_path_encode(BUS_PATH_DEVICES, d->id, ret);
}

int device_node_enumerator(sd_bus *bus, const char *path, void *userdata, char ***ret_nodes, sd_bus_error *error) {
        DeviceRegistry *reg = userdata;
        _cleanup_free_ Device **list = NULL;
        char **nodes;
        int n, k;

        n = device_registry_list(reg, &list);
        if (n < 0)
                return n;

        nodes = new0(char *, n + 1);
        if (!nodes)
                return -ENOMEM;
        for (int i = 0; i < n; i++) {
                k = device_bus_path(list[i], nodes + i);
                if (k < 0) {
                        strv_free_contents(nodes, i);
                        free(nodes);
                        return k;
                }
        }

        *ret_nodes = nodes;
        return 0;
}

int device_bus_announce(sd_bus *bus, const Device *d) {
        _cleanup_free_ char *path = NULL;
        int k;

        k = device_bus_path(d, &path);
        if (k < 0)
                return k;
        return sd_bus_emit_interfaces_added(bus, path, BUS_INTERFACE_DEVICE, NULL);
}

int device_bus_publish(sd_bus *bus, Device *d) {
        _cleanup_free_ char *path = NULL;
        const char *names[11];
        size_t n = 0;
        int k;

        if (d->changed == 0)
                return 0;

        if (d->changed & DEVICE_CHANGED_SEEN) {
                names[n++] = "LastSeenUsec";
                names[n++] = "ReadingsReceived";
        }
        if (d->changed & DEVICE_CHANGED_ANOMALIES)
                names[n++] = "AnomaliesDetected";
        if (d->changed & DEVICE_CHANGED_CHANNELS)
                names[n++] = "Channels";
        if (d->changed & DEVICE_CHANGED_TYPE) {
                names[n++] = "Type";
                names[n++] = "Kind";
        }
        if (d->changed & DEVICE_CHANGED_RADIO) {
                names[n++] = "Address";
                names[n++] = "RSSI";
                names[n++] = "Name";
                names[n++] = "Connected";
        }
        names[n] = NULL;
        d->changed = 0;

        k = device_bus_path(d, &path);
        if (k < 0)
                return k;
        return sd_bus_emit_properties_changed_strv(bus, path, BUS_INTERFACE_DEVICE, (char **) names);
}

int device_bus_append(sd_bus_message *reply, const Device *d) {
        _cleanup_free_ char *path = NULL;
        int k;

        k = device_bus_path(d, &path);
        if (k < 0)
                return k;

        k = sd_bus_message_open_container(reply, 'r', "osssssnbtttas");
        if (k < 0)
                return k;
        k = sd_bus_message_append(reply, "osssssnbttt", path, d->id, device_kind_to_string(d->kind), d->type,
                                  d->address, strempty(d->name), d->rssi, (int) d->connected, d->last_seen_usec,
                                  d->readings_received, d->anomalies_detected);
        if (k < 0)
                return k;
        k = append_channels(reply, d->channels);
        if (k < 0)
                return k;
        return sd_bus_message_close_container(reply);
}
