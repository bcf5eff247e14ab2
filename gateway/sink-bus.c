/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * org.blegate.Sink1, the D-Bus glue of the sinks: the vtable, the lookup of a sink from its
 * object path, and the enumeration of their paths. A sink fills its SinkStatus and lists it in
 * Manager.sinks; what it has not yet taken (Pending) is read from its cursor in the store when
 * asked, never cached. The find callback hands the getters the manager rather than the sink,
 * since they need both; each getter finds its sink again from the path, among a handful.
 *
 * Pending grows with every committed reading, so it is not signalled (its introspection says
 * EmitsChangedSignal=false): read it when needed. The rest is signalled when the sink marks
 * itself changed, at most once a second, from the manager's publishing timer.
 */

#include "bus-names.h"
#include "sink-bus.h"

static SinkStatus *sink_find(Manager *m, const char *path) {
        _cleanup_free_ char *name = NULL;

        if (sd_bus_path_decode(path, BUS_PATH_SINKS, &name) <= 0)
                return NULL;
        for (size_t i = 0; i < m->n_sinks; i++)
                if (streq(m->sinks[i]->name, name))
                        return m->sinks[i];
        return NULL;
}

static int property_get_status(sd_bus *bus, const char *path, const char *interface, const char *property,
                               sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        SinkStatus *s = sink_find(m, path);
        StoreSinkInfo info = {};

        if (!s)
                return sd_bus_error_setf(error, SD_BUS_ERROR_UNKNOWN_OBJECT, "No sink at %s.", path);

        if (streq(property, "Name"))
                return sd_bus_message_append(reply, "s", s->name);
        if (streq(property, "Kind"))
                return sd_bus_message_append(reply, "s", strempty(s->kind));
        if (streq(property, "Connected"))
                return sd_bus_message_append(reply, "b", (int) s->connected);
        if (streq(property, "Delivered"))
                return sd_bus_message_append(reply, "t", s->delivered);
        if (streq(property, "Pending")) {
                /* A sink the store does not know yet has nothing pending. */
                (void) store_sink_get(m->store, s->name, &info);
                return sd_bus_message_append(reply, "t", info.backlog);
        }
        if (streq(property, "LastError"))
                return sd_bus_message_append(reply, "s", strempty(s->last_error));
        return sd_bus_message_append(reply, "t", s->last_delivery_usec);
}

const sd_bus_vtable sink_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Name", "s", property_get_status, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Kind", "s", property_get_status, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Connected", "b", property_get_status, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Delivered", "t", property_get_status, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Pending", "t", property_get_status, 0, 0),
        SD_BUS_PROPERTY("LastError", "s", property_get_status, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("LastDeliveryUsec", "t", property_get_status, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_VTABLE_END
};

int sink_object_find(sd_bus *bus, const char *path, const char *interface, void *userdata, void **ret_found,
                     sd_bus_error *error) {
        Manager *m = userdata;

        if (!sink_find(m, path))
                return 0;
        *ret_found = m;
        return 1;
}

int sink_node_enumerator(sd_bus *bus, const char *path, void *userdata, char ***ret_nodes, sd_bus_error *error) {
        Manager *m = userdata;
        char **nodes;
        int k;

        nodes = new0(char *, m->n_sinks + 1);
        if (!nodes)
                return -ENOMEM;
        for (size_t i = 0; i < m->n_sinks; i++) {
                k = sd_bus_path_encode(BUS_PATH_SINKS, m->sinks[i]->name, nodes + i);
                if (k < 0) {
                        strv_free_contents(nodes, i);
                        free(nodes);
                        return k;
                }
        }

        *ret_nodes = nodes;
        return 0;
}

int sink_bus_publish(sd_bus *bus, SinkStatus *s) {
        _cleanup_free_ char *path = NULL;
        int k;

        if (!s->changed)
                return 0;
        s->changed = false;

        k = sd_bus_path_encode(BUS_PATH_SINKS, s->name, &path);
        if (k < 0)
                return k;
        return sd_bus_emit_properties_changed(bus, path, BUS_INTERFACE_SINK, "Connected", "Delivered", "LastError",
                                              "LastDeliveryUsec", NULL);
}
